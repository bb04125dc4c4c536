"""The ``effir-surgery`` command line: the command group, SIGTERM handling and ``run`` (a recipe). The other commands
live in ``cli_prune`` (prune, analyze), ``cli_finetune``, ``cli_evaluate`` and ``cli_hub`` (push, verify); what they
share (flags, the one-line error exit) in ``cli_options``. Each command turns its flags into a config and calls one
function. Flag names equal config field names in kebab case. Bad input exits with code 2 and a one-line message.
"""

from __future__ import annotations

import click

from . import __version__
from .cli_evaluate import evaluate
from .cli_export import export
from .cli_finetune import finetune
from .cli_hub import push, verify
from .cli_options import TRUST_HELP, Stopped, config_defaults, handle_errors
from .cli_prune import analyze, prune
from .config import RunConfig
from .errors import EffirError


def _interrupt(signum, frame):
    raise Stopped(signum)


def _stop_on_sigterm_like_ctrl_c() -> None:
    """Make SIGTERM (``kill``, ``timeout``, a job scheduler) stop the command as Ctrl-C does: it raises
    ``KeyboardInterrupt``, so every ``finally`` runs and temporary folders (atomic saves, the GGUF cache) are
    removed instead of left behind. Only when SIGTERM still has its default action (a host program's own handler
    is kept) and only for the duration of the command: the previous handler is restored when it ends."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        return
    signal.signal(signal.SIGTERM, _interrupt)
    click.get_current_context().call_on_close(lambda: signal.signal(signal.SIGTERM, previous))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="effir-surgery")
def main():
    """Turn decoder LLMs into fast dense retrievers (EffiR): analyze sublayer redundancy, remove MLP sublayers and
    neurons, fine-tune for retrieval, evaluate with MTEB and publish on the Hub."""
    _stop_on_sigterm_like_ctrl_c()


for command in (analyze, evaluate, export, finetune, prune, push, verify):
    main.add_command(command)


@main.command()
@click.argument("recipe", type=click.Path())
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a recipe setting, e.g. --set finetune.max_steps=20 or --set evaluate=null (repeatable; the "
    "value is read as YAML; a relative path given here is relative to the current directory).",
)
@click.option(
    "--skip",
    multiple=True,
    type=click.Choice(["prune", "finetune", "evaluate", "push"]),
    help="Skip a stage of the recipe (repeatable); the next stage starts from the previous stage's output, or "
    "from the recipe's model.",
)
@click.option(
    "--push-to-hub",
    default=None,
    metavar="REPO_ID",
    help="Publish the run's final model to this Hub repo (owner/name), as `effir-surgery push` does; overrides the "
    "recipe's push_to_hub.",
)
@click.option("--trust-remote-code", is_flag=True, default=None, help=TRUST_HELP + " Overrides the recipe's setting.")
@handle_errors
@config_defaults(RunConfig)
def run(recipe, overrides, skip, push_to_hub, trust_remote_code):
    """Run a RECIPE (YAML): load -> analyze -> plan -> surgery -> fine-tune -> evaluate -> push.

    Stage outputs stay in the recipe's run_dir; rerunning reuses every stage whose settings, input and output
    are unchanged (checked by content hash) and resumes an interrupted fine-tuning. Before the first stage it
    prints the model's layers and parameters, the stages (run or reused) with their settings and, for a prune
    stage, the plan with its projected parameters (after the importance scoring when the plan needs scores).

    \b
    Top-level keys of a recipe:
      name          a label for the run (optional)
      model         required: a Hub repo id (org/name), a local model folder,
                    a .gguf file, or smollm2-135m (bundled SmolLM2-135M-Instruct)
      revision      branch, tag or commit of a Hub model
      dtype         float32, bfloat16 or float16, for every stage (default {dtype})
      device        auto, cpu, cuda, cuda:1 ... (default {device})
      trust_remote_code  true: run code from the model that is not effir-surgery's (review it first)
      run_dir       required: folder of the stage outputs (pruned/, finetuned/,
                    eval/) and of run.json, the record that reruns reuse
      push_to_hub   owner/name: publish the final model when the run ends
      prune         stage: what to cut and the calibration texts
      finetune      stage: how to fine-tune; needs train (the training data)
      evaluate      stage: what to score on (task or data_dir) and which other
                    models to compare (models)

    A stage's keys are the flags of the matching command (effir-surgery prune --help, finetune --help, evaluate
    --help) in snake case: --mlp-drop 0.5 is mlp_drop: 0.5, a repeatable flag is a list (data_dir: [a, b]), an
    on/off flag is true or false (--full is lora: false). The model, dtype, device and output folders come from
    the recipe, so they are not stage keys. Leave a stage out (or set it to null) to skip it.

    evaluate.models adds models to compare with the run's final model, which is always scored first (the
    speed-up reference): baselines (bm25, all-MiniLM-L6-v2), model folders, Hub ids, @source (the recipe's model
    before any stage) and @pruned (this run's prune output, before fine-tuning). Quote the @ tokens in YAML.

    Relative paths written in the recipe are relative to the recipe file's folder, not to the current
    directory: run_dir, prune.calib, finetune.train, evaluate.data_dir and evaluate.cache_dir always; model and
    evaluate.models entries when they exist there or can only be paths (./x, ../x, a/b/c, x.gguf), so a Hub id
    such as org/name stays a Hub id. A path given with --set is relative to the current directory. The format
    in full: recipes/README.md in the project.

    \b
    A minimal recipe (my.yaml; run it with: effir-surgery run my.yaml):
      name: smollm2-drop25
      model: smollm2-135m
      run_dir: runs/smollm2-drop25
      prune:
        mlp_drop: 0.25
        calib: data/scifact          # a BEIR folder beside my.yaml
      finetune:
        train: data/scifact
        epochs: 1
      evaluate:
        data_dir: [data/scifact]
        models: ["@pruned", "@source", bm25]
    """
    from .eval_results import EvalResults, results_table
    from .recipe import load_recipe
    from .run import run as run_pipeline
    from .validation import check_repo_id

    config = load_recipe(recipe, list(overrides))
    if push_to_hub is not None:
        try:
            check_repo_id(push_to_hub)
        except ValueError as exc:
            raise EffirError(f"--push-to-hub: {exc}") from None
        config = config.model_copy(update={"push_to_hub": push_to_hub})
    if trust_remote_code:
        config = config.model_copy(update={"trust_remote_code": True})
    result = run_pipeline(config, tuple(skip))
    for name, stage in result.stages.items():
        click.echo(f"{name}: {stage['status']} -> {stage['output']}")
    if result.results:
        click.echo(results_table(EvalResults.model_validate(result.results)))
    click.echo(f"run finished in {result.seconds:.1f}s ({result.run_dir})")


if __name__ == "__main__":
    main()

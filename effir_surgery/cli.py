"""The ``effir-surgery`` command line. Each command turns its flags into a config and calls one pipeline function.

Flag names equal config field names in kebab case. Bad input exits with code 2 and a one-line message.
"""

from __future__ import annotations

import functools
import sys

import click

from . import __version__
from .errors import EffirError


def _drop_none(values: dict) -> dict:
    return {k: v for k, v in values.items() if v is not None}


TRUST_HELP = (
    "Allow code from the model folder or repo that is not effir-surgery's own remote code (another auto_map, "
    "a custom tokenizer or sentence-transformers module, extra .py files) to run. Review it first; without the "
    "flag such a model is refused before anything from it runs."
)


def load_options(f):
    f = click.option("--trust-remote-code", is_flag=True, default=None, help=TRUST_HELP)(f)
    f = click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: auto).")(f)
    f = click.option(
        "--dtype",
        type=click.Choice(["float32", "bfloat16", "float16"]),
        default=None,
        help="Weights dtype while working (default float32).",
    )(f)
    f = click.option("--revision", default=None, help="Hub revision (branch, tag or commit) of MODEL.")(f)
    return f


def calib_options(f):
    f = click.option("--calib-batch-size", type=int, default=None, help="Calibration batch size (default 8).")(f)
    f = click.option("--calib-max-length", type=int, default=None, help="Tokens per calibration text (default 256).")(
        f
    )
    f = click.option("--calib-samples", type=int, default=None, help="Number of calibration texts (default 128).")(f)
    f = click.option(
        "--calib", default=None, help="Calibration texts: a BEIR folder or a jsonl file (default: bundled texts)."
    )(f)
    return f


def handle_errors(f):
    """Print ``EffirError`` as one line and exit with code 2."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except EffirError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)

    return wrapper


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


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


@main.command()
@click.argument("model")
@click.option("-o", "--output", type=click.Path(), default=None, help="Folder to write the pruned model to.")
@click.option(
    "--mlp-drop",
    type=float,
    default=None,
    help="Fraction of MLP sublayers to remove, lowest importance first, in [0, 1). 0.5 on 30 layers = 15.",
)
@click.option("--drop-mlp-layers", default=None, help="Explicit MLP sublayers to remove, e.g. 3,7,11.")
@click.option(
    "--attn-drop",
    type=float,
    default=None,
    help="Fraction of attention sublayers to remove (for comparison studies), in [0, 1).",
)
@click.option("--drop-attention-layers", default=None, help="Explicit attention sublayers to remove, e.g. 20,21.")
@click.option(
    "--mlp-width",
    type=float,
    default=None,
    help="Keep this fraction of each remaining MLP's neurons, in (0, 1] (one-shot width reduction from activation "
    "scores; learned widths: `finetune --learn-width`).",
)
@click.option(
    "--param-budget",
    default=None,
    help="Total parameters after surgery (e.g. 90M); MLP widths are chosen per layer to meet it.",
)
@click.option("--width-multiple", type=int, default=None, help="Round MLP widths to this multiple (default 8).")
@calib_options
@click.option(
    "--importance",
    type=click.Path(),
    default=None,
    help="Reuse an importance.json from `analyze` instead of scoring again.",
)
@load_options
@click.option("--overwrite", is_flag=True, default=None, help="Replace the output folder if it exists.")
@click.option("--dry-run", is_flag=True, default=None, help="Print the plan and projected cost; write nothing.")
@click.option(
    "--compare",
    is_flag=True,
    default=None,
    help="After saving, encode texts with the source and the pruned model in a clean process: speed-up "
    "and embedding agreement.",
)
@click.option(
    "--verify-reload/--no-verify-reload",
    default=None,
    help="Reload the saved folder in a clean process and compare outputs before finishing (default on).",
)
@click.option(
    "--streaming/--no-streaming",
    default=None,
    help="Analyse layer by layer and stream the surgery disk to disk, for models larger than RAM "
    "(default: automatic, when the model would take more than half of the available RAM).",
)
@click.option(
    "--push-to-hub",
    default=None,
    metavar="REPO_ID",
    help="After saving, publish the folder to this Hub repo (owner/name), as `effir-surgery push` does.",
)
@handle_errors
def prune(model, **flags):
    """Remove MLP (or attention) sublayers and MLP neurons from MODEL and save a folder that loads with plain
    transformers (trust_remote_code=True) and sentence-transformers.

    MODEL is a Hub repo id, a local HF folder, a .gguf file, or 'smollm2-135m' (bundled SmolLM2-135M-Instruct).
    """
    from .config import PruneConfig, validated
    from .pipeline import prune as run_prune

    config = validated(PruneConfig, model=model, **_drop_none(flags))
    result = run_prune(config)
    _print_prune_result(result, config)


def _print_prune_result(result, config) -> None:
    click.echo(result.plan.summary())
    if result.output is None:
        click.echo("(dry run: nothing written)")
        return
    record = result.record
    click.echo(f"saved: {result.output}  ({record.config_class}; {len(record.operations)} operations)")
    click.echo(
        f"params (measured): {record.params_before:,} -> {record.params_after:,} "
        f"({100 * (1 - record.params_after / record.params_before):.1f}% fewer)"
    )
    if result.reload:
        click.echo(
            f"clean-process reload: OK ({result.reload['causal_class']}, outputs identical, "
            f"effir_surgery not importable there)"
        )
    if result.reload_skipped:
        click.echo(f"clean-process reload: skipped ({result.reload_skipped})")
    if result.comparison:
        c = result.comparison
        mean_len = round(c["tokens"] / c["texts"])
        click.echo(
            f"encode ({c['texts']} texts, {c['tokens']:,} tokens, {c['dtype']}, batch {c['batch_size']}, "
            f"{c['threads']} threads, clean process, plain transformers):\n"
            f"  source {c['source']['tokens_per_s']:,.0f} tok/s, pruned {c['pruned']['tokens_per_s']:,.0f} tok/s "
            f"-> speed-up {c['speedup']:.2f}x (FLOP ratio at their mean length of {mean_len} tokens: "
            f"{result.plan.projection(mean_len).flop_ratio:.2f}x)\n"
            f"  embedding cosine, source vs pruned (no fine-tuning yet): mean {c['cosine_mean']:.3f}, "
            f"min {c['cosine_min']:.3f}"
        )
    if result.peak_memory:
        from ._memory import format_bytes

        mode = "streaming, layer-wise analysis" if result.streaming else "in memory"
        click.echo(
            f"peak memory ({mode}): {format_bytes(result.peak_memory['process'])} RSS in this process, "
            f"{format_bytes(result.peak_memory['children'])} in its clean-process checks"
        )
    click.echo(f"time: {result.seconds:.1f}s")


@main.command()
@click.argument("model")
@click.option(
    "-o",
    "--output",
    type=click.Path(),
    default=None,
    help="Folder for importance.json, importance.md and importance.png (default ./analysis).",
)
@click.option(
    "--probe",
    default=None,
    type=click.Path(),
    help="Also run the drop-one retrieval probe (nDCG@10 with each sublayer removed) on this BEIR folder.",
)
@click.option("--probe-split", default=None, help="qrels split used by the probe (default train).")
@click.option("--probe-queries", type=int, default=None, help="Queries in the probe slice (default 32).")
@click.option(
    "--probe-docs", type=int, default=None, help="Documents in the probe pool, relevant ones included (default 160)."
)
@click.option("--probe-max-length", type=int, default=None, help="Tokens per probe text (default 128).")
@click.option("--overwrite", is_flag=True, default=None, help="Replace the output folder if it exists.")
@click.option(
    "--streaming/--no-streaming",
    default=None,
    help="Run the calibration one decoder layer at a time, loading each layer from disk, for models larger than "
    "RAM; same scores (default: automatic, when the model would take more than half of the available RAM). "
    "--probe needs the whole model and is refused with it.",
)
@calib_options
@load_options
@handle_errors
def analyze(model, **flags):
    """Score the importance of every attention and MLP sublayer of MODEL (1 - cos of the residual stream).

    MODEL is a Hub repo id, a local HF folder, a .gguf file, or 'smollm2-135m'.
    """
    from .config import AnalyzeConfig, validated
    from .pipeline import analyze as run_analyze
    from .report import importance_table

    config = validated(AnalyzeConfig, model=model, **_drop_none(flags))
    report = run_analyze(config)
    click.echo(importance_table(report))
    click.echo(f"wrote {config.output}/importance.json, importance.md, importance.png ({report.seconds:.1f}s)")


@main.command()
@click.argument("model")
@click.option(
    "--train", required=True, help="Training data: a jsonl file (query, positive, negatives) or a BEIR folder."
)
@click.option("-o", "--output", required=True, type=click.Path(), help="Folder to write the fine-tuned model to.")
@click.option("--train-split", default=None, help="qrels split of a BEIR folder used for training (default train).")
@click.option(
    "--query-prompt", default=None, help="Instruction prepended to queries (default: the EffiR-style prompt)."
)
@click.option("--document-prompt", default=None, help="Prefix for documents (default: none).")
@click.option(
    "--max-length", type=int, default=None, help="Tokens per query or document while training (default 256)."
)
@click.option(
    "--hard-negatives", type=int, default=None, help="Hard negatives per query (default 1; 0 = in-batch only)."
)
@click.option(
    "--mine",
    type=click.Choice(["bm25", "model", "none"]),
    default=None,
    help="Where missing hard negatives come from: BM25 (default), the model itself, or nowhere.",
)
@click.option(
    "--mine-range-min",
    type=int,
    default=None,
    help="Skip this many top-ranked non-positive documents when mining (default 2).",
)
@click.option("--mine-range-max", type=int, default=None, help="Mine from ranks below this (default 30).")
@click.option("--max-examples", type=int, default=None, help="Use at most this many (query, positive) rows.")
@click.option("--epochs", type=float, default=None, help="Training epochs (default 1).")
@click.option("--max-steps", type=int, default=None, help="Stop after this many optimizer steps (overrides --epochs).")
@click.option(
    "--batch-size",
    type=int,
    default=None,
    help="Queries per step; their documents are in-batch negatives (default 32).",
)
@click.option(
    "--mini-batch-size",
    type=int,
    default=None,
    help="GradCache mini-batch: bounds memory, not the math (default 8). Equal to --batch-size: no GradCache, "
    "about a quarter faster.",
)
@click.option("--learning-rate", type=float, default=None, help="Peak learning rate (default 1e-4).")
@click.option("--warmup-ratio", type=float, default=None, help="Fraction of steps for linear warm-up (default 0.1).")
@click.option("--weight-decay", type=float, default=None, help="AdamW weight decay (default 0).")
@click.option("--scale", type=float, default=None, help="InfoNCE inverse temperature (default 50 = temperature 0.02).")
@click.option("--lora/--full", default=None, help="LoRA adapters, merged on save (default), or full fine-tuning.")
@click.option("--lora-r", type=int, default=None, help="LoRA rank (default 16).")
@click.option("--lora-alpha", type=int, default=None, help="LoRA alpha (default 32).")
@click.option("--lora-dropout", type=float, default=None, help="LoRA dropout (default 0.05).")
@click.option("--gradient-checkpointing", is_flag=True, default=None, help="Trade compute for memory.")
@click.option("--bf16/--no-bf16", default=None, help="bf16 mixed precision (default: on where the GPU supports it).")
@click.option("--seed", type=int, default=None, help="Random seed (default 42).")
@click.option("--save-steps", type=int, default=None, help="Checkpoint every N steps for resuming (default 50).")
@click.option("--logging-steps", type=int, default=None, help="Log the loss every N steps (default 10).")
@click.option(
    "--learn-width",
    is_flag=True,
    default=None,
    help="Learn MLP widths with per-neuron gates (EffiR self-slimming); needs --mlp-width or --param-budget.",
)
@click.option("--mlp-width", type=float, default=None, help="With --learn-width: fraction of MLP neurons to keep.")
@click.option("--param-budget", default=None, help="With --learn-width: total parameters after slicing (e.g. 90M).")
@click.option(
    "--gate-penalty",
    type=float,
    default=None,
    help=(
        "Strength of the gates' L1 proximal step; 1 shrinks an undefended gate to the floor within the schedule "
        "window, and the schedule closes the smallest gates (default 1)."
    ),
)
@click.option("--gate-learning-rate", type=float, default=None, help="Learning rate of the gates (default 0.02).")
@click.option(
    "--gate-score",
    type=click.Choice(["value", "taylor"]),
    default=None,
    help=(
        "Which gates the schedule closes: the smallest gate values (default), or the smallest accumulated "
        "(z * dL/dz)^2, the first-order loss change of closing each gate ('taylor')."
    ),
)
@click.option("--width-multiple", type=int, default=None, help="Round learned widths up to this multiple (default 8).")
@load_options
@click.option(
    "--overwrite",
    is_flag=True,
    default=None,
    help="Replace the output folder, and discard checkpoints of a different run.",
)
@click.option(
    "--verify-reload/--no-verify-reload",
    default=None,
    help="Reload the saved folder in a clean process before finishing (default on).",
)
@click.option(
    "--push-to-hub",
    default=None,
    metavar="REPO_ID",
    help="After saving, publish the folder to this Hub repo (owner/name), as `effir-surgery push` does.",
)
@handle_errors
def finetune(model, **flags):
    """Fine-tune MODEL (a pruned folder or any model source) as a dense retriever.

    Contrastive InfoNCE with in-batch and hard negatives (sentence-transformers' CachedMultipleNegativesRankingLoss,
    i.e. GradCache, when --mini-batch-size splits the batch; MultipleNegativesRankingLoss when it does not),
    last-token pooling, instruction-prefixed queries. Rerunning an interrupted command resumes from its last
    checkpoint. Works under `accelerate launch` for multi-GPU runs.
    """
    from .config import FinetuneConfig, validated
    from .pipeline import finetune as run_finetune

    config = validated(FinetuneConfig, model=model, **_drop_none(flags))
    result = run_finetune(config)
    if result is not None:
        click.echo(f"saved: {result.output}")
        click.echo(
            f"steps: {result.steps} (resumed from step {result.resumed_from_step}), rows: {result.examples}, "
            f"train loss: {result.train_loss:.4f}, time: {result.seconds:.1f}s"
        )
        if result.width_plan is not None:
            click.echo(result.width_plan.summary())


@main.command()
@click.argument("models", nargs=-1, required=True)
@click.option("--task", multiple=True, help="MTEB retrieval task name, e.g. SciFact (repeatable).")
@click.option(
    "--data-dir",
    multiple=True,
    type=click.Path(),
    help="Local BEIR folder for a task, read offline (repeatable; pairs with --task in order).",
)
@click.option("--split", default=None, help="Evaluation split (default test).")
@click.option("--max-queries", type=int, default=None, help="Subsample queries (their relevant documents are kept).")
@click.option("--max-docs", type=int, default=None, help="Subsample the corpus to about this many documents.")
@click.option(
    "-o",
    "--output",
    type=click.Path(),
    default=None,
    help="Folder for results.json, results.md, tradeoff.png (default ./eval).",
)
@click.option("--batch-size", type=int, default=None, help="Encoding batch size (default 16).")
@click.option("--max-length", type=int, default=None, help="Truncate texts to this many tokens (default: model's).")
@click.option(
    "--dtype",
    type=click.Choice(["float32", "bfloat16", "float16"]),
    default=None,
    help="Weights dtype (default float32; bfloat16 when every encoding device is a GPU that supports it).",
)
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: auto).")
@click.option(
    "--devices",
    multiple=True,
    help="Encode on these devices in parallel, one process each (repeatable: --devices cuda:0 --devices cuda:1; "
    "default: every GPU when there are several).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    default=None,
    help="Write into an existing output folder, replacing its result files (its mteb-cache is reused).",
)
@click.option("--trust-remote-code", is_flag=True, default=None, help=TRUST_HELP)
@click.option("--speed-docs", type=int, default=None, help="Corpus documents timed per model (default 128).")
@click.option("--measure/--no-measure", default=None, help="Measure throughput and memory (default on).")
@click.option("--seed", type=int, default=None, help="Seed for subsampling (default 0).")
@click.option(
    "--cache-dir",
    type=click.Path(),
    default=None,
    help="mteb result cache shared across evaluations (default OUTPUT/mteb-cache).",
)
@click.option(
    "--attach",
    is_flag=True,
    default=None,
    help="Also write each evaluated effir-surgery folder's results into FOLDER/results.json (model card).",
)
@handle_errors
def evaluate(models, **flags):
    """Evaluate MODELS on retrieval tasks with MTEB, with an efficiency report (params, FLOPs/token, measured
    throughput, peak memory) measured the same way for every model.

    MODELS are pruned or fine-tuned folders, Hub ids, 'smollm2-135m', or the baselines 'bm25' and
    'all-MiniLM-L6-v2'. The first dense model is the reference for speed-ups.
    """
    from .config import EvalConfig, validated
    from .evaluate import evaluate as run_evaluate
    from .evaluate import results_table

    flags["task"] = list(flags["task"]) or None
    flags["data_dir"] = list(flags["data_dir"]) or None
    flags["devices"] = list(flags["devices"]) or None
    config = validated(EvalConfig, models=list(models), **_drop_none(flags))
    results = run_evaluate(config)
    click.echo(results_table(results))
    click.echo(f"wrote {config.output}/results.json, results.md, tradeoff.png")


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
      dtype         float32 (default), bfloat16 or float16, for every stage
      device        auto (default), cpu, cuda, cuda:1 ...
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
    from .config import check_repo_id, load_recipe
    from .evaluate import EvalResults, results_table
    from .pipeline import run as run_pipeline

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


@main.command()
@click.argument("folder", metavar="MODEL_DIR", type=click.Path())
@click.option("--repo-id", required=True, help="Hub model repo to publish to, owner/name (created if missing).")
@click.option(
    "--private", is_flag=True, default=None, help="Create the repo as private (an existing repo keeps its visibility)."
)
@click.option("--revision", default=None, help="Branch to upload to (created if missing; default main).")
@click.option(
    "--commit-message", default=None, help="Commit message (default: 'Upload NAME with effir-surgery VERSION')."
)
@click.option(
    "--dry-run", is_flag=True, default=None, help="Check the folder, print its files and model card; upload nothing."
)
@click.option(
    "--reload-check/--no-reload-check",
    default=None,
    help="Reload the folder in a clean process before uploading (default on; skipped anyway, with a note, when the "
    "model would not fit in memory twice).",
)
@handle_errors
def push(folder, **flags):
    """Publish MODEL_DIR, a folder saved by prune or finetune, on the Hugging Face Hub with a generated model card.

    A pre-flight check runs first (files, weights against the config, remote code and auto_map, tokenizer,
    sentence-transformers files, plan, clean-process reload); a folder that fails is refused with the list of
    problems. The token comes from HF_TOKEN or `hf auth login`. README.md in MODEL_DIR is regenerated.
    """
    from .config import PushConfig, validated
    from .hub import push as run_push

    config = validated(PushConfig, folder=folder, **_drop_none(flags))
    result = run_push(config)
    click.echo(result.summary())
    if config.dry_run:
        click.echo("\n--- README.md (model card) ---\n" + result.card)


@main.command()
@click.argument("model", metavar="MODEL_DIR_OR_REPO")
@click.option("--revision", default=None, help="Branch, tag or commit of a Hub repo id (default main).")
@handle_errors
def verify(model, **flags):
    """Check that the remote code (configuration_effir.py, modeling_effir.py) of a saved folder or a Hub repo is
    exactly the code this effir-surgery version ships, that auto_map points at it, and that nothing else would run
    code (no other auto_map entry, tokenizer auto_map, custom sentence-transformers module or .py file). Exits with
    code 2 naming what differs. For a repo id only config.json, tokenizer_config.json, modules.json and the .py
    files are downloaded.
    """
    from .config import VerifyConfig, validated
    from .hub import verify as run_verify

    config = validated(VerifyConfig, model=model, **_drop_none(flags))
    click.echo(run_verify(config).summary())


if __name__ == "__main__":
    main()

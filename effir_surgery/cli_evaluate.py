"""The ``effir-surgery evaluate`` command: its flags become an ``EvalConfig`` for ``evaluate.evaluate``."""

from __future__ import annotations

import click

from .cli_options import TRUST_HELP, config_option, drop_none, handle_errors
from .config import EvalConfig
from .validation import validated


@click.command()
@click.argument("models", nargs=-1, required=True)
@click.option("--task", multiple=True, help="MTEB retrieval task name, e.g. SciFact (repeatable).")
@click.option(
    "--data-dir",
    multiple=True,
    type=click.Path(),
    help="Local BEIR folder for a task, read offline (repeatable; pairs with --task in order).",
)
@config_option(EvalConfig, "--split", help="Evaluation split.")
@click.option("--max-queries", type=int, default=None, help="Subsample queries (their relevant documents are kept).")
@click.option("--max-docs", type=int, default=None, help="Subsample the corpus to about this many documents.")
@config_option(
    EvalConfig,
    "-o",
    "--output",
    type=click.Path(),
    help="Folder for results.json, results.md, tradeoff.png.",
)
@config_option(EvalConfig, "--batch-size", type=int, help="Encoding batch size.")
@click.option("--max-length", type=int, default=None, help="Truncate texts to this many tokens (default: model's).")
@config_option(
    EvalConfig,
    "--dtype",
    type=click.Choice(["float32", "bfloat16", "float16"]),
    help="Weights dtype (without --dtype: bfloat16 when every encoding device is a GPU that supports it).",
)
@config_option(EvalConfig, "--device", help="cpu, cuda, cuda:1 ...")
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
@config_option(EvalConfig, "--speed-docs", type=int, help="Corpus documents timed per model.")
@config_option(EvalConfig, "--measure/--no-measure", help="Measure throughput and memory.")
@config_option(EvalConfig, "--seed", type=int, help="Seed for subsampling.")
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
    from .eval_results import results_table
    from .evaluate import evaluate as run_evaluate

    flags["task"] = list(flags["task"]) or None
    flags["data_dir"] = list(flags["data_dir"]) or None
    flags["devices"] = list(flags["devices"]) or None
    config = validated(EvalConfig, models=list(models), **drop_none(flags))
    results = run_evaluate(config)
    click.echo(results_table(results))
    click.echo(f"wrote {config.output}/results.json, results.md, tradeoff.png")

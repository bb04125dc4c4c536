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


def load_options(f):
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="effir-surgery")
def main():
    """Turn decoder LLMs into fast dense retrievers (EffiR): analyze sublayer redundancy, remove MLP sublayers and
    neurons, fine-tune for retrieval, evaluate with MTEB and publish on the Hub."""


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
    help="Keep this fraction of each remaining MLP's neurons, in (0, 1] (one-shot width reduction).",
)
@click.option(
    "--param-budget",
    default=None,
    help="Total parameters after surgery (e.g. 90M); MLP widths are chosen per layer to meet it.",
)
@click.option(
    "--width-method",
    type=click.Choice(["activation", "learned"]),
    default=None,
    help="How neurons are chosen: activation (one-shot scores, default) or learned (trained gates).",
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


if __name__ == "__main__":
    main()

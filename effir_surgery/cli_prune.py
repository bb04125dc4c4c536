"""The model-surgery commands: ``effir-surgery prune`` (cut a model and save it) and ``effir-surgery analyze`` (score
its sublayers). Each turns its flags into a config and calls one pipeline function.
"""

from __future__ import annotations

import click

from .cli_options import calib_options, config_option, drop_none, handle_errors, load_options, push_option
from .config import AnalyzeConfig, PruneConfig
from .validation import validated


@click.command()
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
@config_option(PruneConfig, "--width-multiple", type=int, help="Round MLP widths to this multiple.")
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
@config_option(
    PruneConfig,
    "--verify-reload/--no-verify-reload",
    help="Reload the saved folder in a clean process and compare outputs before finishing.",
)
@click.option(
    "--streaming/--no-streaming",
    default=None,
    help="Analyse layer by layer and stream the surgery disk to disk, for models larger than RAM "
    "(default: automatic, when the model would take more than half of the available RAM).",
)
@push_option
@handle_errors
def prune(model, **flags):
    """Remove MLP (or attention) sublayers and MLP neurons from MODEL and save a folder that loads with plain
    transformers (trust_remote_code=True) and sentence-transformers.

    MODEL is a Hub repo id, a local HF folder, a .gguf file, or 'smollm2-135m' (bundled SmolLM2-135M-Instruct).
    """
    from .pipeline import prune as run_prune

    config = validated(PruneConfig, model=model, **drop_none(flags))
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


@click.command()
@click.argument("model")
@config_option(
    AnalyzeConfig,
    "-o",
    "--output",
    type=click.Path(),
    help="Folder for importance.json, importance.md and importance.png.",
)
@click.option(
    "--probe",
    default=None,
    type=click.Path(),
    help="Also run the drop-one retrieval probe (nDCG@10 with each sublayer removed) on this BEIR folder.",
)
@config_option(AnalyzeConfig, "--probe-split", help="qrels split used by the probe.")
@config_option(AnalyzeConfig, "--probe-queries", type=int, help="Queries in the probe slice.")
@config_option(AnalyzeConfig, "--probe-docs", type=int, help="Documents in the probe pool, relevant ones included.")
@config_option(AnalyzeConfig, "--probe-max-length", type=int, help="Tokens per probe text.")
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
    from .pipeline import analyze as run_analyze
    from .report import importance_table

    config = validated(AnalyzeConfig, model=model, **drop_none(flags))
    report = run_analyze(config)
    click.echo(importance_table(report))
    click.echo(f"wrote {config.output}/importance.json, importance.md, importance.png ({report.seconds:.1f}s)")

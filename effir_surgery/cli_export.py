"""``effir-surgery export``: a saved folder for a serving runtime (ONNX Runtime). Turns its flags into an
``ExportConfig`` and calls ``export.export``."""

from __future__ import annotations

import click

from .cli_options import TRUST_HELP, config_option, drop_none, handle_errors
from .config import ExportConfig
from .validation import validated


@click.command()
@click.argument("model", metavar="MODEL_DIR", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(), help="Output folder.")
@config_option(ExportConfig, "--format", type=click.Choice(["onnx"]), help="Target runtime's format.")
@config_option(
    ExportConfig,
    "--quantize",
    type=click.Choice(["none", "int8"]),
    help="Also write a graph with int8 weights (onnx/model_int8.onnx; weight-only, activations stay float32).",
)
@click.option("--overwrite", is_flag=True, default=None, help="Replace an existing output folder.")
@click.option("--trust-remote-code", is_flag=True, default=None, help=TRUST_HELP)
@handle_errors
def export(model, **flags):
    """Export MODEL_DIR (a folder prune, finetune or run wrote; an unpruned source folder works too, for comparison)
    for ONNX Runtime: onnx/model.onnx takes input_ids and attention_mask (dynamic batch and sequence, left padding as
    the saved tokenizer makes it) and returns last_hidden_state and sentence_embedding (last token, normalised). The
    embeddings are checked against PyTorch before the folder is kept; export.json records the measured difference.
    """
    from .export import export as run_export

    config = validated(ExportConfig, model=model, **drop_none(flags))
    result = run_export(config)
    for name in result.files:
        if name.startswith("onnx/"):
            click.echo(f"wrote {result.output / name}")
    click.echo(f"embeddings vs PyTorch: max abs difference {result.max_abs_diff:.1e} (float32 graph)")
    if result.int8_cosine_min is not None:
        click.echo(
            f"int8 graph vs PyTorch: cosine mean {result.int8_cosine_mean:.4f}, min {result.int8_cosine_min:.4f}"
        )
    click.echo(f"time: {result.seconds:.1f}s")

"""The ``effir-surgery finetune`` command: its flags become a ``FinetuneConfig`` for ``pipeline.finetune``."""

from __future__ import annotations

import click

from .cli_options import config_option, drop_none, handle_errors, load_options, push_option
from .config import FinetuneConfig
from .validation import validated


@click.command()
@click.argument("model")
@click.option(
    "--train", required=True, help="Training data: a jsonl file (query, positive, negatives) or a BEIR folder."
)
@click.option("-o", "--output", required=True, type=click.Path(), help="Folder to write the fine-tuned model to.")
@config_option(FinetuneConfig, "--train-split", help="qrels split of a BEIR folder used for training.")
@config_option(FinetuneConfig, "--query-prompt", help="Instruction prepended to queries.")
@config_option(FinetuneConfig, "--document-prompt", help="Prefix for documents.")
@config_option(FinetuneConfig, "--max-length", type=int, help="Tokens per query or document while training.")
@config_option(FinetuneConfig, "--hard-negatives", type=int, help="Hard negatives per query (0 = in-batch only).")
@config_option(
    FinetuneConfig,
    "--mine",
    type=click.Choice(["bm25", "model", "none"]),
    help="Where missing hard negatives come from: BM25, the model itself, or nowhere.",
)
@config_option(
    FinetuneConfig,
    "--mine-range-min",
    type=int,
    help="Skip this many top-ranked non-positive documents when mining.",
)
@config_option(FinetuneConfig, "--mine-range-max", type=int, help="Mine from ranks below this.")
@click.option("--max-examples", type=int, default=None, help="Use at most this many (query, positive) rows.")
@config_option(FinetuneConfig, "--epochs", type=float, help="Training epochs.")
@click.option("--max-steps", type=int, default=None, help="Stop after this many optimizer steps (overrides --epochs).")
@config_option(
    FinetuneConfig,
    "--batch-size",
    type=int,
    help="Queries per step; their documents are in-batch negatives.",
)
@config_option(
    FinetuneConfig,
    "--mini-batch-size",
    type=int,
    help="GradCache mini-batch: bounds memory, not the math. Equal to --batch-size: no GradCache, "
    "about a quarter faster.",
)
@config_option(FinetuneConfig, "--learning-rate", type=float, help="Peak learning rate.")
@config_option(FinetuneConfig, "--warmup-ratio", type=float, help="Fraction of steps for linear warm-up.")
@config_option(FinetuneConfig, "--weight-decay", type=float, help="AdamW weight decay.")
@config_option(FinetuneConfig, "--scale", type=float, help="InfoNCE scale: the inverse of the softmax temperature.")
@config_option(FinetuneConfig, "--lora/--full", help="LoRA adapters, merged on save, or full fine-tuning.")
@config_option(FinetuneConfig, "--lora-r", type=int, help="LoRA rank.")
@config_option(FinetuneConfig, "--lora-alpha", type=int, help="LoRA alpha.")
@config_option(FinetuneConfig, "--lora-dropout", type=float, help="LoRA dropout.")
@click.option("--gradient-checkpointing", is_flag=True, default=None, help="Trade compute for memory.")
@click.option("--bf16/--no-bf16", default=None, help="bf16 mixed precision (default: on where the GPU supports it).")
@config_option(FinetuneConfig, "--seed", type=int, help="Random seed.")
@config_option(FinetuneConfig, "--save-steps", type=int, help="Checkpoint every N steps for resuming.")
@config_option(FinetuneConfig, "--logging-steps", type=int, help="Log the loss every N steps.")
@click.option(
    "--learn-width",
    is_flag=True,
    default=None,
    help="Learn MLP widths with per-neuron gates (EffiR self-slimming); needs --mlp-width or --param-budget.",
)
@click.option("--mlp-width", type=float, default=None, help="With --learn-width: fraction of MLP neurons to keep.")
@click.option("--param-budget", default=None, help="With --learn-width: total parameters after slicing (e.g. 90M).")
@config_option(
    FinetuneConfig,
    "--gate-penalty",
    type=float,
    help=(
        "Strength of the gates' L1 proximal step; 1 shrinks an undefended gate to the floor within the schedule "
        "window, and the schedule closes the smallest gates."
    ),
)
@config_option(FinetuneConfig, "--gate-learning-rate", type=float, help="Learning rate of the gates.")
@config_option(
    FinetuneConfig,
    "--gate-score",
    type=click.Choice(["value", "taylor"]),
    help=(
        "Which gates the schedule closes: the smallest gate values ('value'), or the smallest accumulated "
        "(z * dL/dz)^2, the first-order loss change of closing each gate ('taylor')."
    ),
)
@config_option(FinetuneConfig, "--width-multiple", type=int, help="Round learned widths up to this multiple.")
@load_options
@click.option(
    "--overwrite",
    is_flag=True,
    default=None,
    help="Replace the output folder, and discard checkpoints of a different run.",
)
@config_option(
    FinetuneConfig,
    "--verify-reload/--no-verify-reload",
    help="Reload the saved folder in a clean process before finishing.",
)
@push_option
@handle_errors
def finetune(model, **flags):
    """Fine-tune MODEL (a pruned folder or any model source) as a dense retriever.

    Contrastive InfoNCE with in-batch and hard negatives (sentence-transformers' CachedMultipleNegativesRankingLoss,
    i.e. GradCache, when --mini-batch-size splits the batch; MultipleNegativesRankingLoss when it does not),
    last-token pooling, instruction-prefixed queries. Rerunning an interrupted command resumes from its last
    checkpoint. Works under `accelerate launch` for multi-GPU runs.
    """
    from .pipeline import finetune as run_finetune

    config = validated(FinetuneConfig, model=model, **drop_none(flags))
    result = run_finetune(config)
    if result is not None:
        click.echo(f"saved: {result.output}")
        click.echo(
            f"steps: {result.steps} (resumed from step {result.resumed_from_step}), rows: {result.examples}, "
            f"train loss: {result.train_loss:.4f}, time: {result.seconds:.1f}s"
        )
        if result.width_plan is not None:
            click.echo(result.width_plan.summary())

"""Parameter and FLOP counts computed from a ``ModelShape`` alone (pure arithmetic, no model needed).

Used by ``prune --dry-run`` to project a plan's cost, and by the efficiency report.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from .arch import ModelShape


class ParamCount(BaseModel):
    """Parameters of a model. ``non_embedding`` excludes the input embedding and an untied LM head, which
    retrieval encoding does not multiply by (the embedding is a lookup, the head is unused)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    total: int
    embedding: int
    lm_head: int
    non_embedding: int
    mlp: int
    attention: int


def param_count(
    shape: ModelShape, mlp_widths: list[int] | None = None, dropped_attention: list[int] | None = None
) -> ParamCount:
    """Exact parameter count of ``shape`` with the given per-layer MLP widths and dropped attention layers
    (defaults: the shape's current ones). A width of 0 removes the MLP and its norms."""
    widths = shape.mlp_widths if mlp_widths is None else mlp_widths
    dropped = set(shape.dropped_attention if dropped_attention is None else dropped_attention)
    mlp = sum(
        w * shape.mlp_params_per_neuron + shape.mlp_fixed_params + shape.mlp_norm_params for w in widths if w > 0
    )
    kept_attention = shape.num_layers - len(dropped)
    attention = kept_attention * (shape.attention_params + shape.attention_norm_params)
    non_embedding = mlp + attention + shape.final_norm_params
    total = non_embedding + shape.embedding_params + shape.lm_head_params
    return ParamCount(
        total=total,
        embedding=shape.embedding_params,
        lm_head=shape.lm_head_params,
        non_embedding=non_embedding,
        mlp=mlp,
        attention=attention,
    )


def mean_context(seq_len: int, window: int | None) -> float:
    """Mean number of keys a query attends to under a causal mask of length ``seq_len`` (sliding ``window``)."""
    if window is None or window >= seq_len:
        return (seq_len + 1) / 2
    # positions 0..window-1 see p+1 keys, the rest see `window` keys
    return (window * (window + 1) / 2 + (seq_len - window) * window) / seq_len


def flops_per_token(
    shape: ModelShape,
    seq_len: int,
    mlp_widths: list[int] | None = None,
    dropped_attention: list[int] | None = None,
) -> float:
    """Forward FLOPs per token when encoding sequences of ``seq_len`` tokens (no LM head).

    Counts 2 FLOPs per multiply-add of every linear layer, plus ``4 * heads * head_dim * context`` per attention
    layer for the scores and the weighted sum (causal, so the mean context is about half the length, capped by a
    sliding window). Norms, activations and the embedding lookup are left out: they are a few FLOPs per hidden
    unit, well under 1% of the total for these models.
    """
    widths = shape.mlp_widths if mlp_widths is None else mlp_widths
    dropped = set(shape.dropped_attention if dropped_attention is None else dropped_attention)
    flops = 0.0
    for i in range(shape.num_layers):
        if i not in dropped:
            context = mean_context(seq_len, shape.attention_windows[i])
            flops += 2 * shape.attention_linear_params + 4 * shape.num_attention_heads * shape.head_dim * context
        flops += 2 * widths[i] * shape.mlp_linear_params_per_neuron
    return flops


class CostComparison(BaseModel):
    """Parameters and FLOPs/token of a model before and after a change, from the two shapes alone."""

    params_before: int
    params_after: int
    non_embedding_before: int
    non_embedding_after: int
    seq_len: int
    flops_per_token_before: float
    flops_per_token_after: float

    @property
    def flop_ratio(self) -> float:
        return self.flops_per_token_before / self.flops_per_token_after

    @classmethod
    def between(cls, before: ModelShape, after: ModelShape, seq_len: int = 512) -> CostComparison:
        p_before, p_after = param_count(before), param_count(after)
        return cls(
            params_before=p_before.total,
            params_after=p_after.total,
            non_embedding_before=p_before.non_embedding,
            non_embedding_after=p_after.non_embedding,
            seq_len=seq_len,
            flops_per_token_before=flops_per_token(before, seq_len),
            flops_per_token_after=flops_per_token(after, seq_len),
        )

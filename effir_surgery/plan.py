"""Pure planning: ``make_plan(shape, config, report) -> SurgeryPlan``. No model, no torch; JSON round-trips.

The plan says which MLP and attention sublayers to remove and which MLP neurons each remaining layer keeps.
``surgery.apply_plan`` is the only code that carries it out. One job, over 400 lines: the plan model and the
selection rules it is made by (depth by importance or index, width by ratio, budget or learned gates) belong
together, since each rule's checks quote the others' limits.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from pydantic import BaseModel, ConfigDict, model_validator

from . import __version__
from .analyze import ImportanceReport
from .arch import ModelShape
from .config import PlanSettings
from .costs import CostComparison, param_count
from .errors import EffirError

PLAN_FORMAT_VERSION = 1


class SurgeryPlan(BaseModel):
    """What to cut from one model. Indices refer to the model as described by ``shape`` (before surgery).

    Attributes:
        drop_mlp_layers / drop_attention_layers: sublayers removed by this plan (sorted).
        mlp_widths: every layer's MLP width after the plan; 0 for a removed MLP.
        kept_neurons: layer index (str) -> sorted neuron indices kept, for each layer this plan narrows.
        selection: how each part was chosen, in words (for the model card and the log).
        scores: the importance scores used (``mlp``, ``attention``), if any.
    """

    model_config = ConfigDict(extra="forbid")

    format_version: int = PLAN_FORMAT_VERSION
    tool_version: str = __version__
    model: str
    revision: str | None = None
    shape: ModelShape
    drop_mlp_layers: list[int]
    drop_attention_layers: list[int]
    mlp_widths: list[int]
    kept_neurons: dict[str, list[int]]
    selection: dict[str, str]
    scores: dict[str, list[float]] | None = None

    @model_validator(mode="after")
    def _consistent(self):
        n = self.shape.num_layers
        if len(self.mlp_widths) != n:
            raise ValueError(f"mlp_widths has {len(self.mlp_widths)} entries for {n} layers")
        for i in self.drop_mlp_layers:
            if self.mlp_widths[i] != 0:
                raise ValueError(f"layer {i} is in drop_mlp_layers but its width is {self.mlp_widths[i]}")
        for key, keep in self.kept_neurons.items():
            i = int(key)
            if len(keep) != self.mlp_widths[i] or len(set(keep)) != len(keep):
                raise ValueError(f"layer {i} keeps {len(keep)} distinct neurons but its width is {self.mlp_widths[i]}")
            if keep and not 0 <= min(keep) <= max(keep) < self.shape.mlp_widths[i]:
                raise ValueError(f"layer {i} keeps neurons outside [0, {self.shape.mlp_widths[i]})")
        for i, (before, after) in enumerate(zip(self.shape.mlp_widths, self.mlp_widths, strict=True)):
            if after != before and after != 0 and str(i) not in self.kept_neurons:
                raise ValueError(f"layer {i} changes width {before} -> {after} without kept_neurons")
        return self

    @property
    def dropped_attention_after(self) -> list[int]:
        return sorted(set(self.shape.dropped_attention) | set(self.drop_attention_layers))

    @property
    def is_noop(self) -> bool:
        return not self.drop_mlp_layers and not self.drop_attention_layers and not self.kept_neurons

    @property
    def shape_after(self) -> ModelShape:
        """The model's shape once the plan is carried out."""
        return self.shape.model_copy(
            update={"mlp_widths": list(self.mlp_widths), "dropped_attention": self.dropped_attention_after}
        )

    def projection(self, seq_len: int = 512) -> CostComparison:
        return CostComparison.between(self.shape, self.shape_after, seq_len)

    def summary(self) -> str:
        """A few human-readable lines: what is removed and the projected cost."""
        p = self.projection()
        lines = [
            f"model: {self.model} ({self.shape.model_type}, {self.shape.num_layers} layers)",
            f"drop MLP layers ({len(self.drop_mlp_layers)}): {self.drop_mlp_layers or 'none'}",
            f"drop attention layers ({len(self.drop_attention_layers)}): {self.drop_attention_layers or 'none'}",
        ]
        if self.kept_neurons:
            kept = [w for w in self.mlp_widths if w > 0]
            lines.append(
                f"MLP widths: {min(kept)}-{max(kept)} (mean {sum(kept) / len(kept):.0f}, "
                f"was {self.shape.intermediate_size})"
            )
        for key, value in self.selection.items():
            lines.append(f"{key}: {value}")
        lines.append(
            f"params: {p.params_before:,} -> {p.params_after:,} ({100 * (1 - p.params_after / p.params_before):.1f}% "
            f"fewer); non-embedding {p.non_embedding_before:,} -> {p.non_embedding_after:,}"
        )
        lines.append(
            f"FLOPs/token at {p.seq_len} tokens: {p.flops_per_token_before / 1e6:.1f}M -> "
            f"{p.flops_per_token_after / 1e6:.1f}M ({p.flop_ratio:.2f}x fewer)"
        )
        return "\n".join(lines)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.model_dump_json(indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> SurgeryPlan:
        try:
            return cls.model_validate(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise EffirError(f"'{path}' is not a valid surgery plan: {str(exc).splitlines()[0]}") from None


def round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def _max_ratio(n: int) -> float:
    """Largest two-decimal ratio r with round_half_up(r * n) <= n - 1."""
    return math.floor(((n - 0.5) / n - 1e-9) * 100) / 100


def _check_indices(indices: list[int], n: int, flag: str) -> None:
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise EffirError(f"{flag}: layer {bad[0]} is out of range; this model has {n} layers (0-{n - 1}).")


def _select_depth(
    candidates: list[int], n_layers: int, ratio: float | None, explicit: list[int] | None, scores, kind: str
) -> tuple[list[int], str]:
    """Which of ``candidates`` (present sublayers) to remove; ``kind`` is ``mlp`` or ``attention``."""
    flag, ratio_flag = (
        ("--drop-mlp-layers", "--mlp-drop") if kind == "mlp" else ("--drop-attention-layers", "--attn-drop")
    )
    label = "MLP" if kind == "mlp" else "attention"
    if explicit is not None:
        _check_indices(explicit, n_layers, flag)
        gone = sorted(set(explicit) - set(candidates))
        if gone:
            raise EffirError(f"{flag}: the {label} sublayer of layer {gone[0]} is already removed in this model.")
        if len(explicit) >= len(candidates):
            raise EffirError(f"{flag} would remove every {label} sublayer; keep at least one.")
        return sorted(explicit), f"explicit ({flag} {','.join(map(str, sorted(explicit)))})"
    if ratio is None or ratio == 0:
        return [], "none"
    n = len(candidates)
    k = round_half_up(ratio * n)
    if k >= n:
        raise EffirError(
            f"{ratio_flag} {ratio} would remove all {n} {label} sublayers of this model; use at most "
            f"{_max_ratio(n)} to keep at least one."
        )
    if scores is None:
        raise EffirError(f"{ratio_flag} needs importance scores; run the analysis (calibration) first.")
    ranked = sorted(candidates, key=lambda i: (scores[i], i))
    return sorted(ranked[:k]), f"lowest 1-cos importance ({ratio_flag} {ratio}: {k} of {n})"


def _round_to(x: float, multiple: int) -> int:
    return multiple * round_half_up(x / multiple)


def _top_neurons(scores: list[float], width: int) -> list[int]:
    ranked = sorted(range(len(scores)), key=lambda j: (-scores[j], j))
    return sorted(ranked[:width])


def _neuron_target(
    shape: ModelShape, layers: list[int], current: list[int], budget: int, multiple: int, dropped_attention: list[int]
) -> float:
    """How many neurons the MLPs of ``layers`` may keep in total for the whole model to have ``budget`` params.

    params = (everything but those MLPs' neurons) + per_neuron * (sum of their widths). Raises ``EffirError`` when
    the budget is below every MLP at width ``multiple`` or above the model as it stands.
    """
    zero = list(current)
    for i in layers:
        zero[i] = 0
    fixed = param_count(shape, zero, dropped_attention).total + len(layers) * (
        shape.mlp_fixed_params + shape.mlp_norm_params
    )
    target = (budget - fixed) / shape.mlp_params_per_neuron
    lowest = sum(min(multiple, current[i]) for i in layers)
    highest = sum(current[i] for i in layers)
    if target < lowest:
        smallest = fixed + lowest * shape.mlp_params_per_neuron
        raise EffirError(
            f"--param-budget {budget:,} is below the smallest model this plan can make ({smallest:,}, every kept MLP "
            f"at width {multiple}); raise the budget or remove more MLP layers."
        )
    if target > highest:
        largest = fixed + highest * shape.mlp_params_per_neuron
        raise EffirError(
            f"--param-budget {budget:,} is above the model's size after the depth cuts ({largest:,}); nothing to "
            f"slice. Lower the budget or leave it out."
        )
    return target


def neuron_budget(shape: ModelShape, budget: int, multiple: int = 1) -> int:
    """Total MLP neurons (over the present MLPs of ``shape``) a model of ``budget`` parameters can keep."""
    layers = shape.kept_mlp_layers
    return int(_neuron_target(shape, layers, list(shape.mlp_widths), budget, multiple, shape.dropped_attention))


def _budget_widths(
    shape: ModelShape,
    layers: list[int],
    current: list[int],
    budget: int,
    multiple: int,
    report: ImportanceReport,
    dropped_attention: list[int],
) -> list[int]:
    """Per-layer widths whose total parameter count is within one rounding multiple of ``budget``.

    Neurons compete globally. A neuron's weight is its share of its layer's summed neuron score times the layer's
    MLP importance (``1 - cos``), so a layer that turns the residual stream more keeps more neurons, and within a
    layer the neurons that carry more of the output survive. Counts are then rounded to ``multiple`` and nudged
    one multiple at a time (best or worst marginal neurons first) until the total is within one multiple.
    """
    widths = list(current)
    target = _neuron_target(shape, layers, current, budget, multiple, dropped_attention)
    weights: dict[int, list[float]] = {}
    for i in layers:
        s = report.neuron_scores(i)
        total = sum(s) or 1.0
        weights[i] = sorted((v / total * max(report.mlp[i], 1e-12) for v in s), reverse=True)
    pool = sorted(((w, i) for i in layers for w in weights[i]), reverse=True)
    counts = {i: 0 for i in layers}
    for _, i in pool[: int(round(target))]:
        counts[i] += 1
    for i in layers:
        widths[i] = min(current[i], max(min(multiple, current[i]), _round_to(counts[i], multiple)))

    def up(i: int) -> int:
        # one multiple, or the rest of the way to the layer's full width when that is not a multiple
        return min(widths[i] + multiple, current[i])

    def down(i: int) -> int:
        # back onto the grid of multiples (from a full width that is not a multiple), else one multiple
        return widths[i] - (widths[i] % multiple or multiple)

    def marginal(i: int, grow: bool) -> float:
        w = widths[i]
        return sum(weights[i][w : up(i)]) if grow else sum(weights[i][down(i) : w])

    # Each step moves at most one multiple toward the target, so the deficit never changes sign by more than a
    # step, and a layer can always move unless all are at their full width (the deficit is then <= 0, as the
    # target is at most the full widths) or at their smallest width (the deficit is then >= 0).
    while True:
        deficit = target - sum(widths[i] for i in layers)
        if abs(deficit) < multiple:
            return widths
        if deficit > 0:
            candidates = [i for i in layers if widths[i] < current[i]]
            if not candidates:
                break
            best = max(candidates, key=lambda i: (marginal(i, True), -i))
            widths[best] = up(best)
        else:
            candidates = [i for i in layers if down(i) >= min(multiple, current[i])]
            if not candidates:
                break
            worst = min(candidates, key=lambda i: (marginal(i, False), i))
            widths[worst] = down(worst)
    raise EffirError(  # unreachable while _neuron_target bounds the target; kept so a miss is never silent
        f"internal error: per-layer widths {widths} miss the neuron target {target:.0f} by more than {multiple}; "
        "please report this with the command."
    )


def validate_plan_config(shape: ModelShape, config: PlanSettings) -> None:
    """Checks that need only the model's shape (layer count): run before any weights are loaded."""
    if config.drop_mlp_layers is not None:
        _check_indices(config.drop_mlp_layers, shape.num_layers, "--drop-mlp-layers")
    if config.drop_attention_layers is not None:
        _check_indices(config.drop_attention_layers, shape.num_layers, "--drop-attention-layers")
    for ratio, flag, present in (
        (config.mlp_drop, "--mlp-drop", shape.kept_mlp_layers),
        (config.attn_drop, "--attn-drop", shape.kept_attention_layers),
    ):
        if ratio and round_half_up(ratio * len(present)) >= len(present):
            label = "MLP" if flag == "--mlp-drop" else "attention"
            raise EffirError(
                f"{flag} {ratio} would remove all {len(present)} {label} sublayers of this model; use at most "
                f"{_max_ratio(len(present))} to keep at least one."
            )
    if config.param_budget is not None:
        _check_budget_before_scores(shape, config)


def _check_budget_before_scores(shape: ModelShape, config: PlanSettings) -> None:
    """Refuse an impossible ``--param-budget`` from the shape alone, before weights are loaded and scored.

    The parameter count after the depth cuts depends only on *how many* sublayers go when every present MLP has
    the same width (attention sublayers are all the same size in every supported family), so placeholder scores
    stand in for the real ones. With MLPs of different widths it depends on which layers the scores pick; the
    check then happens in ``make_plan``.
    """
    present = shape.kept_mlp_layers
    if config.drop_mlp_layers is None and len({shape.mlp_widths[i] for i in present}) > 1:
        return
    placeholder = [0.0] * shape.num_layers
    drop_mlp, _ = _select_depth(present, shape.num_layers, config.mlp_drop, config.drop_mlp_layers, placeholder, "mlp")
    drop_attn, _ = _select_depth(
        shape.kept_attention_layers,
        shape.num_layers,
        config.attn_drop,
        config.drop_attention_layers,
        placeholder,
        "attention",
    )
    widths = [0 if i in drop_mlp else w for i, w in enumerate(shape.mlp_widths)]
    layers = [i for i, w in enumerate(widths) if w > 0]
    dropped_after = sorted(set(shape.dropped_attention) | set(drop_attn))
    _neuron_target(shape, layers, widths, config.param_budget, config.width_multiple, dropped_after)


def make_plan(
    shape: ModelShape, config: PlanSettings, report: ImportanceReport | None = None, model_name: str = ""
) -> SurgeryPlan:
    """Decide what to cut. Pure: the same inputs give the same plan.

    Args:
        shape: the model as it is now (it may already be pruned).
        config: depth and width settings.
        report: importance scores; needed for ratio-based depth selection and for width reduction.
    Raises:
        EffirError: for out-of-range layers, a ratio that removes every sublayer, an impossible budget, or a
            missing report.
    """
    validate_plan_config(shape, config)
    if report is not None and report.shape.num_layers != shape.num_layers:
        raise EffirError("The importance report was computed on a different model (layer count differs).")
    scores_mlp = report.mlp if report else None
    scores_attn = report.attention if report else None
    drop_mlp, how_mlp = _select_depth(
        shape.kept_mlp_layers, shape.num_layers, config.mlp_drop, config.drop_mlp_layers, scores_mlp, "mlp"
    )
    drop_attn, how_attn = _select_depth(
        shape.kept_attention_layers,
        shape.num_layers,
        config.attn_drop,
        config.drop_attention_layers,
        scores_attn,
        "attention",
    )
    widths = [0 if i in drop_mlp else w for i, w in enumerate(shape.mlp_widths)]
    kept_neurons: dict[str, list[int]] = {}
    selection = {"MLP depth": how_mlp, "attention depth": how_attn}
    if config.wants_width:
        layers = [i for i, w in enumerate(widths) if w > 0]
        if report is None or not report.neurons or any(str(i) not in report.neurons for i in layers):
            raise EffirError("Width reduction needs per-neuron scores; run the analysis with neuron scores first.")
        m = config.width_multiple
        if config.mlp_width is not None:
            for i in layers:
                widths[i] = min(widths[i], max(min(m, widths[i]), _round_to(config.mlp_width * widths[i], m)))
            selection["MLP width"] = f"uniform keep ratio {config.mlp_width} (multiple of {m}), top neurons by score"
        else:
            dropped_after = sorted(set(shape.dropped_attention) | set(drop_attn))
            widths = _budget_widths(shape, layers, widths, config.param_budget, m, report, dropped_after)
            selection["MLP width"] = (
                f"adaptive per layer for a budget of {config.param_budget:,} params (multiple of {m})"
            )
        for i in layers:
            if widths[i] < shape.mlp_widths[i]:
                kept_neurons[str(i)] = _top_neurons(report.neuron_scores(i), widths[i])
    scores = {"mlp": report.mlp, "attention": report.attention} if report else None
    return SurgeryPlan(
        model=model_name or (report.model if report else ""),
        shape=shape,
        drop_mlp_layers=drop_mlp,
        drop_attention_layers=drop_attn,
        mlp_widths=widths,
        kept_neurons=kept_neurons,
        selection=selection,
        scores=scores,
    )


def plan_from_gates(
    shape: ModelShape, kept: dict[int, list[int]], multiple: int = 1, model_name: str = "", selection: str = ""
) -> SurgeryPlan:
    """The plan that slices away closed gates after ``ops.fold_gates``.

    ``kept`` maps layer -> neurons with an open gate. A layer with no open gate loses its whole MLP, unless its
    ``down_proj`` has a bias (which a closed MLP still adds); then it keeps one multiple of closed neurons. Widths are
    rounded **up** to ``multiple`` by also keeping closed neurons (lowest index first): their ``down_proj`` columns
    are zero after folding, so this stays exact while keeping kernel-friendly widths.
    """
    output_bias = shape.mlp_fixed_params > 0
    widths = list(shape.mlp_widths)
    kept_neurons: dict[str, list[int]] = {}
    drop = []
    for i, keep in sorted(kept.items()):
        current = shape.mlp_widths[i]
        if not keep and not output_bias:
            widths[i] = 0
            drop.append(i)
            continue
        target = min(current, multiple * max(1, math.ceil(len(keep) / multiple)))
        chosen = set(keep)
        for j in range(current):
            if len(chosen) >= target:
                break
            chosen.add(j)
        widths[i] = target
        if target < current:
            kept_neurons[str(i)] = sorted(chosen)
    return SurgeryPlan(
        model=model_name,
        shape=shape,
        drop_mlp_layers=drop,
        drop_attention_layers=[],
        mlp_widths=widths,
        kept_neurons=kept_neurons,
        selection={"MLP width": selection or f"learned gates (open neurons, rounded up to a multiple of {multiple})"},
    )

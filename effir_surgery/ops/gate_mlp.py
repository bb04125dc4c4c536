"""Learned width (EffiR "self-slimming"): a trainable gate per MLP neuron, the steps that close gates, and the exact
fold.

A gated MLP computes ``down(ReLU(z) * act(gate(x)) * up(x))`` with one ``z_i`` per neuron, initialised to 1 (the
identity). InfoNCE trains ``z`` with the rest of the model. There is no penalty term in the loss: the L1 penalty
``lambda * sum_i ReLU(z_i)`` (a sum over all neurons) is applied as its proximal step, ``shrink_gates`` (every open
gate moves a fixed amount toward zero), so its strength does not depend on the optimizer's per-parameter
normalisation. Gates close along the gradual pruning schedule ``scheduled_open_count`` (Zhu & Gupta 2017, arXiv
1710.01878): ``close_to_budget`` closes the smallest open gates down to the scheduled count, so the target width is
met exactly, and ``keep_closed`` keeps closed gates closed. ``finetune.width._gate_schedule`` calls these after
every optimizer step (docs/method.md, section 4). ``fold_gates`` then multiplies each surviving gate into its
``down_proj`` column, which is exact because ``down(g * h) = (down * g) h``, and returns the neurons to keep;
``plan.plan_from_gates`` + ``surgery.apply_plan`` slice the rest away.

Which gates the schedule closes: by default the smallest gate values. Adam moves every gate by about its learning
rate whatever the size of its gradient, so in a short run the values hardly tell an important neuron from an idle
one. ``accumulate_scores`` offers the alternative the trainer uses with ``gate_score="taylor"``: each gate's
accumulated ``(z_i * dL/dz_i)^2``, the squared first-order change of the loss when the gate closes (Molchanov et al.
2019, arXiv 1906.10771, who put such gates on neurons for exactly this). ``close_to_budget(..., by=...)`` then
closes the open gates with the smallest scores.

References: EffiR, Lei et al. 2026, arXiv 2512.20612 (fine-grained width reduction with ReLU(z) gates).
"""

from __future__ import annotations

import torch
from torch import nn

from ..arch import ArchSpec


class GatedMLP(nn.Module):
    """An MLP with a trainable gate ``neuron_gate`` (shape ``(width,)``) on its hidden neurons.

    Takes over the wrapped MLP's projections and activation under their own names, so parameter names (and LoRA
    targets) stay ``...mlp.gate_proj`` etc.; the only new parameter is ``...mlp.neuron_gate``.

    Shapes: ``(batch, seq, hidden) -> (batch, seq, hidden)``.
    """

    def __init__(self, mlp: nn.Module, spec: ArchSpec, init: float = 1.0):
        super().__init__()
        self._names = (spec.gate, spec.up, spec.down, spec.act)
        for name in self._names:
            setattr(self, name, getattr(mlp, name))
        object.__setattr__(self, "_plain", mlp)  # the original module, not registered as a child
        weight = getattr(mlp, spec.gate).weight
        self.neuron_gate = nn.Parameter(
            torch.full((weight.shape[0],), float(init), dtype=torch.float32, device=weight.device)
        )
        self.closed: torch.Tensor | None = None  # gates closed for good (see keep_closed)
        # accumulated (z * dL/dz)^2 per neuron (accumulate_scores); saved with the trainer's checkpoints
        self.register_buffer("neuron_score", torch.zeros_like(self.neuron_gate.detach()), persistent=False)

    def gate_values(self) -> torch.Tensor:
        """``ReLU(z)``: the multiplier of each neuron, exactly 0 for a closed gate."""
        return torch.relu(self.neuron_gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up, down, act = (getattr(self, name) for name in self._names)
        hidden = act(gate(x)) * up(x)  # (batch, seq, width)
        return down(hidden * self.gate_values().to(hidden.dtype))

    def unwrap(self) -> nn.Module:
        """The original MLP module, holding this module's current projections (after training or a LoRA merge)."""
        for name in self._names:
            setattr(self._plain, name, getattr(self, name))
        return self._plain


def _layers(model, spec: ArchSpec):
    return getattr(model.base_model, spec.layers)


def insert_gates(model, spec: ArchSpec, init: float = 1.0) -> list[GatedMLP]:
    """Wrap every present MLP of ``model`` in a ``GatedMLP`` **in place**; returns the gated modules in layer order.
    With ``init=1`` the model computes exactly what it did before."""
    gated = []
    for layer in _layers(model, spec):
        mlp = getattr(layer, spec.mlp)
        if hasattr(mlp, spec.gate) and not isinstance(mlp, GatedMLP):
            mlp = GatedMLP(mlp, spec, init)
            setattr(layer, spec.mlp, mlp)
        if isinstance(mlp, GatedMLP):
            gated.append(mlp)
    return gated


def shrink_gates(gates: list[GatedMLP], amount: float, floor: float = 0.0) -> None:
    """Proximal step of the L1 penalty, in place: every open gate moves ``amount`` toward zero and stops at
    ``floor`` (soft thresholding, as in ISTA, when ``floor`` is 0). A gate at or below zero is closed and stays."""
    with torch.no_grad():
        for g in gates:
            z = g.neuron_gate
            z.copy_(torch.where(z > 0, (z - amount).clamp_min(floor), z))


def keep_closed(gates: list[GatedMLP], open_floor: float | None = None) -> None:
    """Keep closed gates closed, in place: a gate that reached zero would otherwise be reopened by the optimizer's
    momentum, although its gradient is zero. Call after every optimizer step; a gate at or below zero joins the
    closed set and is set to exactly zero (so a resumed run rebuilds the set from the saved values).

    With ``open_floor``, open gates are instead held at or above it, so no further gate closes (the width is fixed).
    """
    with torch.no_grad():
        for g in gates:
            if g.closed is None:
                g.closed = g.neuron_gate <= 0
            g.neuron_gate.masked_fill_(g.closed, 0.0)
            if open_floor is not None:
                g.neuron_gate.copy_(torch.where(g.closed, g.neuron_gate, g.neuron_gate.clamp_min(open_floor)))
            g.closed |= g.neuron_gate <= 0


def scheduled_open_count(total: int, target: int, step: int, start: int, end: int) -> int:
    """Neurons allowed open at ``step`` under the cubic gradual-pruning schedule (Zhu & Gupta 2017): all of them
    until ``start``, ``target`` from ``end`` on, and ``target + (total - target) * (1 - progress)^3`` in between, so
    most neurons close early, while the network can still adapt, and few close near the end."""
    if step <= start:
        return total
    progress = min(1.0, (step - start) / max(1, end - start))
    return target + round((total - target) * (1.0 - progress) ** 3)


def open_fraction(gates: list[GatedMLP]) -> float:
    """Fraction of neurons whose gate is still open (``z > 0``)."""
    with torch.no_grad():
        open_ = sum(int((g.neuron_gate > 0).sum()) for g in gates)
        return open_ / max(1, sum(g.neuron_gate.numel() for g in gates))


def accumulate_scores(gates: list[GatedMLP]) -> None:
    """Add each gate's ``(z_i * dL/dz_i)^2`` to its ``neuron_score``, in place; call once per optimizer step, after
    the backward pass and before the step. A gate without a gradient (none computed yet) adds nothing."""
    with torch.no_grad():
        for g in gates:
            grad = g.neuron_gate.grad
            if grad is None:
                continue
            if hasattr(grad, "full_tensor"):  # a sharded gradient (FSDP2): every process adds the whole one
                grad = grad.full_tensor()
            value = g.neuron_gate.full_tensor() if hasattr(g.neuron_gate, "full_tensor") else g.neuron_gate
            g.neuron_score += (value.detach().float() * grad.detach().float()).square().to(g.neuron_score.device)


def close_to_budget(gates: list[GatedMLP], keep: int, by: str = "value") -> None:
    """Close all but ``keep`` open gates (globally), in place: the ones with the largest gate values (``by="value"``)
    or the largest accumulated Taylor scores (``by="taylor"``, see ``accumulate_scores``). Ties at the threshold are
    broken by position (later layers' later neurons close first), so exactly ``keep`` stay open."""
    if by not in ("value", "taylor"):
        raise ValueError(f"by must be 'value' or 'taylor', not {by!r}")
    with torch.no_grad():
        opened = [g.neuron_gate.detach() > 0 for g in gates]
        if sum(int(o.sum()) for o in opened) <= keep:
            return
        # the ranking key of every open gate; closed gates rank below all of them (-1: scores and values are > 0)
        keys = [
            torch.where(o, (g.neuron_gate.detach() if by == "value" else g.neuron_score).float(), -1.0)
            for g, o in zip(gates, opened, strict=True)
        ]
        threshold = torch.topk(torch.cat([k.flatten() for k in keys]), keep).values.min()
        for g, k in zip(gates, keys, strict=True):
            g.neuron_gate.masked_fill_(k < threshold, 0.0)
        excess = sum(int((k >= threshold).sum()) for k in keys) - keep
        for g, k in zip(reversed(gates), reversed(keys), strict=True):
            if excess <= 0:
                break
            ties = torch.nonzero(k == threshold).flatten().flip(0)[:excess]
            g.neuron_gate[ties] = 0.0
            excess -= ties.numel()


def fold_gates(model, spec: ArchSpec) -> dict[int, list[int]]:
    """Remove every ``GatedMLP`` **in place**, folding ``ReLU(z_i)`` into column ``i`` of ``down_proj``.

    The model's outputs are unchanged (up to rounding in the weights' dtype). Returns, per layer that had gates,
    the neurons with an open gate; the others now contribute exactly nothing and can be sliced away.
    """
    kept: dict[int, list[int]] = {}
    for i, layer in enumerate(_layers(model, spec)):
        mlp = getattr(layer, spec.mlp)
        if not isinstance(mlp, GatedMLP):
            continue
        with torch.no_grad():
            values = mlp.gate_values().detach()
            down = getattr(mlp, spec.down)
            down.weight.mul_(values.to(down.weight.dtype).unsqueeze(0))  # (hidden, width) * (1, width)
        kept[i] = torch.nonzero(values > 0).flatten().tolist()
        setattr(layer, spec.mlp, mlp.unwrap())
    return kept

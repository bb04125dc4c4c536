"""``slice_mlp``: keep a subset of one MLP's neurons."""

import torch
from torch import nn

from ..arch import ArchSpec


def _sliced_linear(linear: nn.Linear, keep: torch.Tensor, dim: int) -> nn.Linear:
    """A new ``nn.Linear`` holding ``linear``'s weight rows (``dim=0``) or columns (``dim=1``) at ``keep``."""
    weight = linear.weight.detach().index_select(dim, keep.to(linear.weight.device)).clone()
    out_features, in_features = weight.shape
    new = nn.Linear(in_features, out_features, bias=linear.bias is not None, device="meta")
    new.weight = nn.Parameter(weight, requires_grad=linear.weight.requires_grad)
    if linear.bias is not None:
        bias = linear.bias.detach()
        # an output bias is per neuron (rows); down_proj's bias lives in hidden space and is kept whole
        bias = bias.index_select(0, keep.to(bias.device)) if dim == 0 else bias
        new.bias = nn.Parameter(bias.clone(), requires_grad=linear.bias.requires_grad)
    return new


def slice_mlp(layer: nn.Module, spec: ArchSpec, keep: torch.Tensor | list[int]) -> None:
    """Shrink the MLP of ``layer`` **in place** to the neurons in ``keep``.

    Rebuilds gate and up as ``Linear(hidden, len(keep))`` (their rows ``keep``) and down as
    ``Linear(len(keep), hidden)`` (its columns ``keep``), preserving dtype, device and ``requires_grad``.
    Keeping every neuron in order reproduces the original outputs exactly.
    """
    mlp = getattr(layer, spec.mlp)
    keep = torch.as_tensor(keep, dtype=torch.long)
    width = getattr(mlp, spec.gate).out_features
    if keep.numel() == 0 or int(keep.min()) < 0 or int(keep.max()) >= width or keep.unique().numel() != keep.numel():
        raise ValueError(f"keep must be distinct neuron indices in [0, {width}); got {keep.numel()} indices")
    setattr(mlp, spec.gate, _sliced_linear(getattr(mlp, spec.gate), keep, 0))
    setattr(mlp, spec.up, _sliced_linear(getattr(mlp, spec.up), keep, 0))
    setattr(mlp, spec.down, _sliced_linear(getattr(mlp, spec.down), keep, 1))
    mlp.intermediate_size = int(keep.numel())

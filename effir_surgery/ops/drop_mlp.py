"""``drop_mlp``: remove a decoder layer's MLP sublayer so the block's MLP branch adds nothing."""

from torch import nn

from ..arch import ArchSpec
from ..hf.modeling_effir import RemovedNorm, ZeroMLP


def drop_mlp(layer: nn.Module, spec: ArchSpec) -> None:
    """Replace the MLP of ``layer`` **in place** by ``ZeroMLP`` and its branch norms by ``RemovedNorm``.

    Afterwards the layer computes ``h + attn(norm(h))`` only: the MLP half is the identity on the residual
    stream (for Gemma 3 the post-feedforward norm of a zero branch is zero as well).
    """
    setattr(layer, spec.mlp, ZeroMLP())
    for name in spec.mlp_norms:
        setattr(layer, name, RemovedNorm())

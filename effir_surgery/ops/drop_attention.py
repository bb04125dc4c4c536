"""``drop_attention``: remove a decoder layer's attention sublayer (for comparison studies)."""

from torch import nn

from ..arch import ArchSpec
from ..hf.modeling_effir import RemovedNorm, ZeroAttention


def drop_attention(layer: nn.Module, spec: ArchSpec) -> None:
    """Replace the attention of ``layer`` **in place** by ``ZeroAttention`` and its branch norms by
    ``RemovedNorm``, so the attention half of the block is the identity on the residual stream."""
    setattr(layer, spec.attention, ZeroAttention())
    for name in spec.attention_norms:
        setattr(layer, name, RemovedNorm())

"""Surgery operators: small in-place verbs on one decoder layer. ``OPERATORS`` maps the names used in plans and
logs to the functions; every structural change goes through it, as the calls ``surgery.layer_operations`` lists
(run by ``surgery.apply_plan``, and by ``streaming`` on a model held layer by layer)."""

from .drop_attention import drop_attention
from .drop_mlp import drop_mlp
from .gate_mlp import GatedMLP, fold_gates, insert_gates
from .slice_mlp import slice_mlp

OPERATORS = {
    "drop_mlp": drop_mlp,
    "drop_attention": drop_attention,
    "slice_mlp": slice_mlp,
}

__all__ = [
    "OPERATORS",
    "GatedMLP",
    "drop_attention",
    "drop_mlp",
    "fold_gates",
    "insert_gates",
    "slice_mlp",
]

"""Surgery operators: small in-place verbs on one decoder layer. ``OPERATORS`` maps the names used in plans and
logs to the functions; ``surgery.apply_plan`` is their only caller."""

from .drop_attention import drop_attention
from .drop_mlp import drop_mlp
from .slice_mlp import slice_mlp

OPERATORS = {
    "drop_mlp": drop_mlp,
    "drop_attention": drop_attention,
    "slice_mlp": slice_mlp,
}

__all__ = ["OPERATORS", "drop_attention", "drop_mlp", "slice_mlp"]

"""User-facing settings of every stage, as validated pydantic models (``extra="forbid"``: a typo is an error).

CLI flags equal field names in kebab case (``--mlp-drop`` <-> ``mlp_drop``). No torch import here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import EffirError

DEFAULT_QUERY_PROMPT = "Instruct: Given a query, retrieve relevant passages that answer the query\nQuery: "

Dtype = Literal["float32", "bfloat16", "float16"]


class StrictConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def parse_count(value) -> int | None:
    """Parse a parameter count such as ``90000000``, ``"90M"``, ``"1.5B"`` or ``"500k"``."""
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMbBgG]?)\s*", str(value))
    if not match:
        raise ValueError(f"'{value}' is not a parameter count; write e.g. 90000000, 90M or 1.5B")
    scale = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9}[match.group(2).lower()]
    return int(float(match.group(1)) * scale)


class EncoderConfig(StrictConfig):
    """How texts become embeddings; shared by fine-tuning, evaluation and the saved sentence-transformers files.

    Last-token pooling over a tokenizer that appends EOS, left padding, L2 normalisation; queries get
    ``query_prompt`` prepended, documents ``document_prompt`` (empty by default).
    """

    query_prompt: str = DEFAULT_QUERY_PROMPT
    document_prompt: str = ""
    max_length: int = Field(512, ge=8)


class LoadConfig(StrictConfig):
    """Which model to load and how."""

    model: str = Field(description="Hub repo id, local HF folder, .gguf file, or 'smollm2-135m'.")
    revision: str | None = None
    dtype: Dtype = "float32"
    device: str = "auto"


class CalibConfig(StrictConfig):
    """Calibration texts for importance scores: a BEIR folder, a jsonl file, or (None) the bundled texts."""

    calib: str | None = None
    calib_samples: int = Field(128, ge=1)
    calib_max_length: int = Field(256, ge=8)
    calib_batch_size: int = Field(8, ge=1)


def _ratio_message(what: str, value: float, interval: str) -> str:
    return f"must be in {interval}: it is the fraction of {what}; got {value}."


class PlanConfig(StrictConfig):
    """What to remove. Depth: ``mlp_drop`` (fraction of MLP sublayers, lowest importance first) or
    ``drop_mlp_layers`` (explicit indices); the same for attention. Width: ``mlp_width`` (uniform keep ratio)
    or ``param_budget`` (total parameters after surgery, widths adapted per layer)."""

    mlp_drop: float | None = None
    drop_mlp_layers: list[int] | None = None
    attn_drop: float | None = None
    drop_attention_layers: list[int] | None = None
    mlp_width: float | None = None
    param_budget: int | None = None
    width_method: Literal["activation", "learned"] = "activation"
    width_multiple: int = Field(8, ge=1)

    @field_validator("mlp_drop", "attn_drop")
    @classmethod
    def _drop_ratio(cls, value, info):
        if value is not None and not 0 <= value < 1:
            what = "MLP sublayers to remove" if info.field_name == "mlp_drop" else "attention sublayers to remove"
            raise ValueError(_ratio_message(what, value, "[0, 1)"))
        return value

    @field_validator("mlp_width")
    @classmethod
    def _width_ratio(cls, value):
        if value is not None and not 0 < value <= 1:
            raise ValueError(_ratio_message("MLP neurons to keep per layer", value, "(0, 1]"))
        return value

    @field_validator("param_budget", mode="before")
    @classmethod
    def _budget(cls, value):
        value = parse_count(value)
        if value is not None and value <= 0:
            raise ValueError(f"must be a positive parameter count; got {value}.")
        return value

    @field_validator("drop_mlp_layers", "drop_attention_layers", mode="before")
    @classmethod
    def _layer_list(cls, value):
        if isinstance(value, str):
            try:
                value = [int(v) for v in value.replace(" ", "").split(",") if v]
            except ValueError:
                raise ValueError(f"expected comma-separated layer indices such as 3,7,11; got '{value}'.") from None
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"layer indices must not repeat; got {value}.")
        return value

    @model_validator(mode="after")
    def _exclusive(self):
        pairs = [
            ("mlp_drop", "drop_mlp_layers"),
            ("attn_drop", "drop_attention_layers"),
            ("mlp_width", "param_budget"),
        ]
        for a, b in pairs:
            if getattr(self, a) is not None and getattr(self, b) is not None:
                flag_a, flag_b = "--" + a.replace("_", "-"), "--" + b.replace("_", "-")
                raise ValueError(f"give either {flag_a} or {flag_b}, not both.")
        return self

    @property
    def wants_width(self) -> bool:
        return self.mlp_width is not None or self.param_budget is not None

    @property
    def needs_scores(self) -> bool:
        """Whether the plan needs an importance report (scored depth selection or one-shot width)."""
        return (
            self.mlp_drop is not None
            or self.attn_drop is not None
            or (self.wants_width and self.width_method == "activation")
        )


class PruneConfig(LoadConfig, PlanConfig, CalibConfig):
    """``effir-surgery prune``: load, score, plan, cut, save (atomically) and check the reload."""

    output: Path | None = None
    importance: Path | None = None
    overwrite: bool = False
    dry_run: bool = False
    compare: bool = False
    verify_reload: bool = True

    @model_validator(mode="after")
    def _output_needed(self):
        if self.output is None and not self.dry_run:
            raise ValueError("an output folder is required (-o/--output DIR) unless --dry-run is given.")
        return self


class AnalyzeConfig(LoadConfig, CalibConfig):
    """``effir-surgery analyze``: importance of every sublayer, written as JSON, a table and a plot."""

    output: Path = Path("analysis")


def validated(cls: type[StrictConfig], *, as_flags: bool = True, **values) -> StrictConfig:
    """Build ``cls`` and turn a pydantic ``ValidationError`` into a one-line ``EffirError`` that names the CLI
    flag (``as_flags``) or the dotted field path."""
    try:
        return cls(**values)
    except ValidationError as exc:
        raise EffirError(format_validation_error(exc, as_flags)) from None


def format_validation_error(exc: ValidationError, as_flags: bool = False) -> str:
    parts = []
    for error in exc.errors():
        loc = ".".join(str(p) for p in error["loc"])
        if as_flags and loc:
            loc = "--" + loc.replace("_", "-")
        msg = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            msg = "unknown setting (check the spelling)"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)

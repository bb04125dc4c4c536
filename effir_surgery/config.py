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
    """``effir-surgery analyze``: importance of every sublayer, written as JSON, a table and a plot; optionally the
    drop-one retrieval probe on a BEIR folder."""

    output: Path = Path("analysis")
    probe: str | None = None
    probe_split: str = "train"
    probe_queries: int = Field(32, ge=1)
    probe_docs: int = Field(160, ge=2)
    probe_max_length: int = Field(128, ge=8)


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


class FinetuneConfig(EncoderConfig):
    """``effir-surgery finetune``: contrastive retrieval fine-tuning (InfoNCE with in-batch and hard negatives,
    GradCache) of a model folder or any model source, optionally with LoRA and with learned MLP widths.

    ``scale`` is the inverse temperature of InfoNCE (50 = temperature 0.02). ``batch_size`` queries per step share
    their positives and hard negatives as negatives; ``mini_batch_size`` bounds memory (GradCache).
    """

    model: str
    train: str
    output: Path
    train_split: str = "train"
    revision: str | None = None
    dtype: Dtype = "float32"
    device: str = "auto"
    max_length: int = Field(256, ge=8)
    hard_negatives: int = Field(1, ge=0)
    mine: Literal["bm25", "model", "none"] = "bm25"
    mine_range_min: int = Field(2, ge=0)
    mine_range_max: int = Field(30, ge=1)
    max_examples: int | None = Field(None, ge=1)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(32, ge=2)
    mini_batch_size: int = Field(8, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    scale: float = Field(50.0, gt=0)
    lora: bool = True
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    gradient_checkpointing: bool = False
    bf16: bool | None = None
    seed: int = 42
    save_steps: int = Field(50, ge=1)
    logging_steps: int = Field(10, ge=1)
    learn_width: bool = False
    mlp_width: float | None = None
    param_budget: int | None = None
    gate_penalty: float = Field(1.0, ge=0)
    gate_learning_rate: float = Field(0.05, gt=0)
    width_multiple: int = Field(8, ge=1)
    overwrite: bool = False
    verify_reload: bool = True

    @field_validator("mlp_width")
    @classmethod
    def _width_ratio(cls, value):
        if value is not None and not 0 < value <= 1:
            raise ValueError(_ratio_message("MLP neurons to keep", value, "(0, 1]"))
        return value

    @field_validator("param_budget", mode="before")
    @classmethod
    def _budget(cls, value):
        return PlanConfig._budget(value)

    @model_validator(mode="after")
    def _consistent(self):
        if self.learn_width and (self.mlp_width is None) == (self.param_budget is None):
            raise ValueError("--learn-width needs exactly one target: --mlp-width RATIO or --param-budget N.")
        if not self.learn_width and (self.mlp_width is not None or self.param_budget is not None):
            raise ValueError("--mlp-width/--param-budget set a learned-width target; add --learn-width.")
        if self.mine_range_max <= self.mine_range_min:
            raise ValueError("--mine-range-max must be larger than --mine-range-min.")
        if self.mini_batch_size > self.batch_size:
            raise ValueError("--mini-batch-size cannot exceed --batch-size.")
        return self

    def encoder(self) -> EncoderConfig:
        return EncoderConfig(
            query_prompt=self.query_prompt, document_prompt=self.document_prompt, max_length=self.max_length
        )

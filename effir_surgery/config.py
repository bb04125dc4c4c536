"""User-facing settings of every stage, as validated pydantic models (``extra="forbid"``: a typo is an error).

CLI flags equal field names in kebab case (``--mlp-drop`` <-> ``mlp_drop``). Reading recipe files is ``recipe.py``'s
job; checks of single values are ``validation.py``'s. No torch import here. One job, over 400 lines: the configs of
every command and recipe stage, kept together because they share their parts (``<Stage>Settings``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from .validation import check_device, check_repo_id, parse_count

DEFAULT_QUERY_PROMPT = "Instruct: Given a query, retrieve relevant passages that answer the query\nQuery: "

Dtype = Literal["float32", "bfloat16", "float16"]


class StrictConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


Device = Annotated[str, AfterValidator(check_device)]


class HubTarget(StrictConfig):
    """``push_to_hub``: publish the result to this Hub model repo (``owner/name``) when the command succeeds."""

    push_to_hub: str | None = None

    @field_validator("push_to_hub")
    @classmethod
    def _repo_id(cls, value):
        return check_repo_id(value)


class EncoderSettings(StrictConfig):
    """How texts become embeddings; shared by fine-tuning, evaluation and the saved sentence-transformers files.

    Last-token pooling over a tokenizer that appends EOS, left padding, L2 normalisation; queries get
    ``query_prompt`` prepended, documents ``document_prompt`` (empty by default).
    """

    query_prompt: str = DEFAULT_QUERY_PROMPT
    document_prompt: str = ""
    max_length: int = Field(512, ge=8)


class LoadSettings(StrictConfig):
    """Which model to load and how."""

    model: str = Field(description="Hub repo id, local HF folder, .gguf file, or 'smollm2-135m'.")
    revision: str | None = None
    dtype: Dtype = "float32"
    device: Device = "auto"
    # run code from the model folder or repo that is not this toolkit's own remote code (see ``trust.py``)
    trust_remote_code: bool = False


class CalibSettings(StrictConfig):
    """Calibration texts for importance scores: a BEIR folder, a jsonl file, or (None) the bundled texts."""

    calib: str | None = None
    calib_samples: int = Field(128, ge=1)
    calib_max_length: int = Field(256, ge=8)
    calib_batch_size: int = Field(8, ge=1)


def _ratio_message(what: str, value: float, interval: str) -> str:
    return f"must be in {interval}: it is the fraction of {what}; got {value}."


class PlanSettings(StrictConfig):
    """What to remove. Depth: ``mlp_drop`` (fraction of MLP sublayers, lowest importance first) or
    ``drop_mlp_layers`` (explicit indices); the same for attention. Width: ``mlp_width`` (uniform keep ratio)
    or ``param_budget`` (total parameters after surgery, widths adapted per layer), from one-shot activation
    scores; learned widths are a fine-tuning setting (``FinetuneSettings.learn_width``)."""

    mlp_drop: float | None = None
    drop_mlp_layers: list[int] | None = None
    attn_drop: float | None = None
    drop_attention_layers: list[int] | None = None
    mlp_width: float | None = None
    param_budget: int | None = None
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
        return self.mlp_drop is not None or self.attn_drop is not None or self.wants_width


class PruneConfig(LoadSettings, PlanSettings, CalibSettings, HubTarget):
    """``effir-surgery prune``: load, score, plan, cut, save (atomically) and check the reload.

    ``streaming``: analyse layer by layer and stream the surgery from disk to disk, for models larger than RAM
    (``None``: automatically when the model in ``dtype`` would take more than half of the available RAM).
    """

    output: Path | None = None
    importance: Path | None = None
    overwrite: bool = False
    dry_run: bool = False
    compare: bool = False
    verify_reload: bool = True
    streaming: bool | None = None

    @model_validator(mode="after")
    def _output_needed(self):
        if self.output is None and not self.dry_run:
            raise ValueError("an output folder is required (-o/--output DIR) unless --dry-run is given.")
        if self.push_to_hub and self.dry_run:
            raise ValueError("--push-to-hub publishes the saved folder; a --dry-run saves nothing to publish.")
        return self


class AnalyzeConfig(LoadSettings, CalibSettings):
    """``effir-surgery analyze``: importance of every sublayer, written as JSON, a table and a plot; optionally the
    drop-one retrieval probe on a BEIR folder.

    ``streaming``: run the calibration one decoder layer at a time, loading each layer's weights from disk, for
    models larger than RAM (``None``: automatically, by the rule ``prune`` uses: when the model in ``dtype`` would
    take more than half of the available RAM). The scores are the same either way. The probe needs the whole
    model in memory, so ``probe`` with ``streaming=True`` is refused.
    """

    output: Path = Path("analysis")
    overwrite: bool = False
    probe: str | None = None
    probe_split: str = "train"
    probe_queries: int = Field(32, ge=1)
    probe_docs: int = Field(160, ge=2)
    probe_max_length: int = Field(128, ge=8)
    streaming: bool | None = None

    @model_validator(mode="after")
    def _probe_needs_the_whole_model(self):
        if self.probe is not None and self.streaming:
            raise ValueError(
                "--probe needs the whole model in memory and cannot run with --streaming (layer by layer); "
                "drop --probe, or use --no-streaming."
            )
        return self


class ExportConfig(StrictConfig):
    """``effir-surgery export``: a saved folder (pruned, fine-tuned or not) for a serving runtime. ``format``
    ``onnx``: ``onnx/model.onnx`` for ONNX Runtime with the pooling inside; ``quantize`` ``int8`` adds
    ``onnx/model_int8.onnx`` (int8 weight-only quantization of every MatMul)."""

    model: str = Field(
        description="A saved model folder (what prune, finetune or run wrote, or any folder of a supported family)."
    )
    output: Path
    format: Literal["onnx"] = "onnx"
    quantize: Literal["none", "int8"] = "none"
    overwrite: bool = False
    trust_remote_code: bool = False


class PushConfig(StrictConfig):
    """``effir-surgery push``: publish a saved folder on the Hugging Face Hub after a pre-flight check.

    ``folder`` is uploaded to the model repo ``repo_id`` (created when missing; ``private`` applies only then) on
    branch ``revision`` (default ``main``; created when missing) with a generated model card. ``dry_run`` runs the
    check and renders the card without uploading; ``reload_check`` False skips the check's clean-process reload.
    The token comes from huggingface_hub (``HF_TOKEN`` or ``hf auth login``).
    """

    folder: Path
    repo_id: str
    private: bool = False
    revision: str | None = None
    commit_message: str | None = None
    dry_run: bool = False
    reload_check: bool = True  # the clean-process reload of the pre-flight check (skipped anyway when it cannot fit)

    @field_validator("repo_id")
    @classmethod
    def _repo_id(cls, value):
        return check_repo_id(value)


class VerifyConfig(StrictConfig):
    """``effir-surgery verify``: compare a folder's or a Hub repo's remote code with the files this toolkit version
    ships. ``model`` is a local folder or a repo id; ``revision`` (repo ids only) pins a branch, tag or commit."""

    model: str
    revision: str | None = None


class FinetuneSettings(EncoderSettings):
    """How to fine-tune (the ``finetune`` stage of a recipe): contrastive retrieval fine-tuning (InfoNCE with
    in-batch and hard negatives), optionally with LoRA and with learned MLP widths.

    ``scale`` is the inverse temperature of InfoNCE (50 = temperature 0.02). ``batch_size`` queries per step share
    their positives and hard negatives as negatives; ``mini_batch_size`` below ``batch_size`` bounds memory with
    GradCache (``CachedMultipleNegativesRankingLoss``), equal to it uses the plain ``MultipleNegativesRankingLoss``.
    """

    train: str
    train_split: str = "train"
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
    # L1 proximal strength: 1 shrinks an undefended gate from 1 to the floor within the schedule window; gates are
    # closed (set to 0) only by the schedule, smallest first
    gate_penalty: float = Field(1.0, ge=0)
    gate_learning_rate: float = Field(0.02, gt=0)
    # which gates the schedule closes: the smallest values, or the smallest accumulated (z * dL/dz)^2 ("taylor")
    gate_score: Literal["value", "taylor"] = "value"
    width_multiple: int = Field(8, ge=1)

    @field_validator("mlp_width")
    @classmethod
    def _width_ratio(cls, value):
        if value is not None and not 0 < value <= 1:
            raise ValueError(_ratio_message("MLP neurons to keep", value, "(0, 1]"))
        return value

    @field_validator("param_budget", mode="before")
    @classmethod
    def _budget(cls, value):
        return PlanSettings._budget(value)

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

    def encoder(self) -> EncoderSettings:
        return EncoderSettings(
            query_prompt=self.query_prompt, document_prompt=self.document_prompt, max_length=self.max_length
        )


class FinetuneConfig(LoadSettings, FinetuneSettings, HubTarget):
    """``effir-surgery finetune``: fine-tune a model folder or any model source as a retriever and save it."""

    output: Path
    overwrite: bool = False
    verify_reload: bool = True


class EvalSettings(StrictConfig):
    """What to evaluate on and how (the ``evaluate`` stage of a recipe). Tasks are MTEB task names (data from the
    Hub) or local BEIR folders (``data_dir``, paired in order with ``task`` when both are given). ``cache_dir``
    holds mteb results per model content and task content (default ``OUTPUT/mteb-cache``); runs that share it
    never score the same model on the same data twice.

    In a recipe the run's final model is evaluated first (the speed-up reference); ``models`` adds more: baselines
    (``bm25``, ``all-MiniLM-L6-v2``), other folders, ``@source`` (the recipe's model before any stage) or
    ``@pruned`` (this run's prune output, before fine-tuning). The ``evaluate`` command needs at least one."""

    task: list[str] = []
    data_dir: list[str] = []
    split: str = "test"
    max_queries: int | None = Field(None, ge=1)
    max_docs: int | None = Field(None, ge=1)
    batch_size: int = Field(16, ge=1)
    max_length: int | None = Field(None, ge=8)
    dtype: Dtype = "float32"
    device: Device = "auto"
    # Encode on several devices at once (sentence-transformers' multi-process pool), e.g. ["cuda:0", "cuda:1"];
    # empty = every GPU when there is more than one, else the single ``device``.
    devices: list[Device] = []
    speed_docs: int = Field(128, ge=1)
    measure: bool = True
    seed: int = 0
    cache_dir: Path | None = None
    attach: bool = False
    models: list[str] = []  # last, so dumps keep the field order they had

    @model_validator(mode="after")
    def _tasks(self):
        if not self.task and not self.data_dir:
            raise ValueError("give at least one --task NAME or --data-dir BEIR_FOLDER.")
        if self.task and self.data_dir and len(self.task) != len(self.data_dir):
            raise ValueError(
                f"{len(self.task)} --task and {len(self.data_dir)} --data-dir given; pair them one to one "
                "(or give only --data-dir and the task name is taken from the folder)."
            )
        return self


class EvalConfig(EvalSettings):
    """``effir-surgery evaluate``: retrieval quality through mteb plus an efficiency report, for several models.

    Models are model sources (pruned folders, Hub ids, ``smollm2-135m``) or baseline names (``bm25``,
    ``all-MiniLM-L6-v2``); the first dense model is the reference for speed-ups.
    """

    models: list[str] = Field(min_length=1)
    output: Path = Path("eval")
    overwrite: bool = False
    trust_remote_code: bool = False


class PruneSettings(PlanSettings, CalibSettings):
    """The ``prune`` stage of a recipe: what to cut (the model, dtype and output folder come from the recipe)."""

    verify_reload: bool = True


class RunConfig(HubTarget):
    """A recipe for ``effir-surgery run``: one model through prune -> finetune -> evaluate -> push.

    Every stage is optional (omit it, set it to null, or ``--skip`` it). Stage outputs live in ``run_dir``
    (``pruned/``, ``finetuned/``, ``eval/``); a rerun reuses every stage whose inputs and settings hash to what
    was recorded and whose output is unchanged. Relative paths written in the recipe file are relative to the
    recipe's folder (``recipe.load_recipe`` makes them absolute, see ``recipe.resolve_recipe_paths``); ``--set``
    values are relative to the current directory. The format is documented in ``recipes/README.md``.
    """

    name: str | None = None
    model: str
    revision: str | None = None
    dtype: Dtype = "float32"
    device: Device = "auto"
    trust_remote_code: bool = False
    run_dir: Path
    prune: PruneSettings | None = None
    finetune: FinetuneSettings | None = None
    evaluate: EvalSettings | None = None

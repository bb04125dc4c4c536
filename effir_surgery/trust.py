"""Whose code runs: the decision to pass ``trust_remote_code`` for a model folder, made before anything from the
folder is imported.

A folder needs remote code when its ``config.json`` or ``tokenizer_config.json`` has an ``auto_map``, when its
``modules.json`` names a module outside sentence-transformers, or when it carries Python files. Such code runs only
when it is exactly the code this toolkit version ships (``remote_code_findings`` finds nothing: the two sealed
files, byte for byte, the expected ``auto_map``, stock sentence-transformers modules, no other ``.py`` file), or
when the user allowed foreign code for this command (``--trust-remote-code``, ``allowing_foreign_code``). A stock
folder needs no remote code and loads with ``trust_remote_code=False``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

from .errors import EffirError
from .folder import CONFIG_FILE, HF_DIR, REMOTE_CODE_FILES, ST_MODULE_PREFIX, ST_MODULES_FILE, TOKENIZER_CONFIG_FILE

_allow_foreign = False


@contextlib.contextmanager
def allowing_foreign_code(allow: bool):
    """Within the block, folders whose remote code is not this toolkit's may run it (the user's
    ``--trust-remote-code``); outside it they are refused."""
    global _allow_foreign
    previous, _allow_foreign = _allow_foreign, bool(allow)
    try:
        yield
    finally:
        _allow_foreign = previous


def foreign_code_allowed() -> bool:
    """Whether the current command allowed foreign code (to hand on to the processes it starts)."""
    return _allow_foreign


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def code_references(folder: str | Path) -> list[str]:
    """Everything in ``folder`` that would make transformers or sentence-transformers run code from it: one short
    description each (``"config.json auto_map.AutoModel -> modeling_effir.EffirLlamaModel"``). Empty for a stock
    folder. Reads a few small files; imports nothing."""
    folder = Path(folder)
    found = []
    config = _json(folder / CONFIG_FILE)
    for key, ref in ((config or {}).get("auto_map") or {}).items() if isinstance(config, dict) else ():
        found.append(f"config.json auto_map.{key} -> {ref}")
    tokenizer = _json(folder / TOKENIZER_CONFIG_FILE)
    if isinstance(tokenizer, dict) and tokenizer.get("auto_map"):
        found.append(f"tokenizer_config.json auto_map {tokenizer['auto_map']}")
    modules = _json(folder / ST_MODULES_FILE)
    for module in modules if isinstance(modules, list) else ():
        kind = str((module or {}).get("type", "")) if isinstance(module, dict) else ""
        if not kind.startswith(ST_MODULE_PREFIX):
            found.append(f"modules.json module '{kind}' (not a sentence-transformers module)")
    found += [f"code file {p.relative_to(folder)}" for p in sorted(folder.rglob("*.py")) if p.is_file()]
    return found


def extra_code_findings(folder: str | Path, expected_auto_map: dict | None) -> list[str]:
    """Code references in ``folder`` beyond the sealed remote code: ``auto_map`` entries for auto classes
    ``expected_auto_map`` does not have (None: a stock folder, where every entry is foreign), a tokenizer
    ``auto_map``, modules outside sentence-transformers, and ``.py`` files other than the two sealed ones (or any,
    in a stock folder)."""
    folder = Path(folder)
    config = _json(folder / CONFIG_FILE)
    auto_map = (config.get("auto_map") if isinstance(config, dict) else None) or {}
    findings = [
        f"config.json auto_map.{key} -> {ref} is not effir-surgery's"
        for key, ref in (auto_map.items() if isinstance(auto_map, dict) else [("?", auto_map)])
        if key not in (expected_auto_map or {})
    ]
    allowed = set(REMOTE_CODE_FILES) if expected_auto_map is not None else set()
    findings += [
        f"extra code file {p.relative_to(folder).as_posix()}"
        for p in sorted(folder.rglob("*.py"))
        if p.is_file() and p.relative_to(folder).as_posix() not in allowed
    ]
    findings += [r for r in code_references(folder) if r.startswith((TOKENIZER_CONFIG_FILE, ST_MODULES_FILE))]
    return findings


def remote_code_findings(folder: str | Path) -> list[str]:
    """Why ``folder``'s remote code is not exactly what this toolkit version writes: one line per finding (an
    edited or missing remote-code file, an expected ``auto_map`` entry missing or changed, and every
    ``extra_code_findings``).
    Empty for a folder written by this version and for a stock folder without remote code."""
    from .folder import expected_auto_map, is_effir_data

    folder = Path(folder)
    config = _json(folder / CONFIG_FILE)
    if not isinstance(config, dict):
        return ["config.json is missing or not a JSON object"]
    findings = []
    model_type = str(config.get("model_type", ""))
    expected = expected_auto_map(model_type) if is_effir_data(config) else None
    if is_effir_data(config):
        if expected is None:
            findings.append(f"model_type '{model_type}' is unknown to this effir-surgery version")
        for name in REMOTE_CODE_FILES:
            if not (folder / name).is_file():
                findings.append(f"{name} is missing")
            elif _sha256(folder / name) != _sha256(HF_DIR / name):
                findings.append(f"{name} differs from the copy effir-surgery ships")
        auto_map = config.get("auto_map") if isinstance(config.get("auto_map"), dict) else {}
        findings += [
            f"config.json auto_map.{key} is {auto_map.get(key)!r}, expected '{ref}'"
            for key, ref in (expected or {}).items()
            if auto_map.get(key) != ref
        ]
    return findings + extra_code_findings(folder, expected)


def trust_remote_code(folder: str | Path, what: str | None = None) -> bool:
    """The ``trust_remote_code`` to load ``folder`` with: False when it needs no remote code, True when its code is
    exactly this toolkit's or the user allowed foreign code (``allowing_foreign_code``).

    Raises:
        EffirError: the folder would run code that is not this toolkit's and the user did not allow it; the
            message names the first finding and the flag that allows it.
    """
    folder = Path(folder)
    if not code_references(folder):
        return False
    findings = remote_code_findings(folder)
    if not findings or _allow_foreign:
        return True
    more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
    raise EffirError(
        f"'{what or folder}' would run code that is not effir-surgery's: {findings[0]}{more}. Nothing from it was "
        "run. Review the code, then pass --trust-remote-code to allow it (`effir-surgery verify` lists every finding)."
    )

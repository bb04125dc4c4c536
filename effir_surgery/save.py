"""Save a (pruned) model as a self-contained folder that loads with plain transformers and sentence-transformers.

Folder contents: ``config.json`` (effir or stock), safetensors weights, ``configuration_effir.py`` and
``modeling_effir.py`` (when the config is effir), the tokenizer (appends EOS, pads left), sentence-transformers
files, ``surgery_plan.json``, ``provenance.json`` and a model card. The folder is written to a temporary sibling
and renamed into place only after it reloads correctly in a clean process, so no half-written output remains.
This module only writes; the checks it runs on what it wrote (``check_folder_files``, the clean-process
``verify_reload``) live in ``check.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from . import __version__
from ._logging import info
from .check import check_folder_files, verify_reload
from .config import EncoderSettings
from .encode import prepare_tokenizer, write_st_files
from .errors import EffirError
from .folder import (
    CONFIG_FILE,
    HF_DIR,
    PLAN_FILE,
    PROVENANCE_FILE,
    REMOTE_CODE_FILES,
    TOKENIZER_CONFIG_FILE,
    Provenance,
    expected_auto_map,
)
from .outputs import check_output, remove_stale_siblings, remove_tree, sibling
from .trust import trust_remote_code

# Largest weight file written (the Hub's customary shard size); larger models get shards plus an index.
MAX_SHARD_SIZE = "5GB"
# Folder-local files a saved checkpoint must never carry to the Hub.
_TOKENIZER_LOCAL_KEYS = ("local_files_only", "is_local", "cache_dir", "_commit_hash", "token")


def invocation() -> str:
    """The command line that is running, for provenance."""
    import shlex
    import sys

    argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else []
    return shlex.join(argv)


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is swapped out first and put back if the rename fails."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = sibling(out, "old")
    try:
        os.replace(out, old)
        os.replace(tmp, out)
    except BaseException:
        if old.exists() and not out.exists():
            os.replace(old, out)  # keep the previous output rather than nothing
        raise
    remove_tree(old)


@contextlib.contextmanager
def atomic_folder(out: str | Path, overwrite: bool = False):
    """Yield a temporary sibling folder; on success it replaces ``out``, on any error it is deleted.

    That includes Ctrl-C and SIGTERM (the CLI turns SIGTERM into ``KeyboardInterrupt``): no ``.NAME.tmp-*``
    folder is left behind. Only SIGKILL or a power cut can leave one; the next save to ``out`` removes it.

    Raises:
        EffirError: writing failed with an ``OSError`` (no space left on device ...): one line saying what failed,
            that the temporary folder was removed and that ``out`` is as it was.
    """
    out = check_output(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(out)
    tmp = sibling(out, "tmp")
    existed = out.exists()
    try:
        tmp.mkdir()
        yield tmp
        _move_into_place(tmp, out)
    except OSError as exc:  # a full disk, a quota, a folder gone read-only: one line saying what was cleaned up
        remove_tree(tmp)
        cleaned = f"could not remove {tmp}" if tmp.exists() else f"removed the unfinished {tmp.name}"
        kept = f"'{out}' still holds what it held before" if existed else f"'{out}' was not created"
        where = f" writing {Path(exc.filename).name}" if exc.filename else ""
        raise EffirError(
            f"Saving to '{out}' failed{where}: {exc.strerror or exc}; {cleaned}, {kept}. Free space (or fix the "
            "folder's permissions) and run again."
        ) from None
    finally:
        remove_tree(tmp)


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def is_effir_config(config) -> bool:
    return hasattr(config, "mlp_intermediate_sizes")


def _fix_auto_map(folder: Path, config) -> None:
    """Point ``auto_map`` at the local remote-code files for every auto class and copy the files in."""
    for name in REMOTE_CODE_FILES:
        shutil.copyfile(HF_DIR / name, folder / name)
    config_path = folder / CONFIG_FILE
    data = json.loads(config_path.read_text())
    data["auto_map"] = expected_auto_map(config.model_type)
    _write_json(config_path, data)


def _record_origin(folder: Path, record: Provenance) -> None:
    """Copy what a model card's metadata needs (source, base model, licence) into ``config.json``'s
    ``effir_surgery`` field. transformers and sentence-transformers re-save ``config.json`` with every model but drop
    ``provenance.json``, so a card rendered after such a re-save (``push``) still names the base model and licence."""
    keys = ("source_model", "base_model", "license", "source_format", "language")
    origin = {key: getattr(record, key) for key in keys if getattr(record, key)}
    if not origin:
        return
    path = folder / CONFIG_FILE
    data = json.loads(path.read_text())
    data["effir_surgery"] = {"tool": "effir-surgery", "tool_version": __version__, **(data.get("effir_surgery") or {})}
    data["effir_surgery"].update(origin)
    _write_json(path, data)


def _sanitize_tokenizer_config(folder: Path) -> None:
    path = folder / TOKENIZER_CONFIG_FILE
    if path.is_file():
        data = json.loads(path.read_text())
        for key in _TOKENIZER_LOCAL_KEYS:
            data.pop(key, None)
        data["padding_side"] = "left"
        _write_json(path, data)


def save_model(
    model,
    tokenizer,
    out: str | Path,
    *,
    encoder: EncoderSettings | None = None,
    plan=None,
    provenance: Provenance | dict | None = None,
    overwrite: bool = False,
    verify: bool = True,
    dtype: str = "float32",
    extra_files: dict[str, str] | None = None,
    max_shard_size: int | str = MAX_SHARD_SIZE,
) -> dict:
    """Write ``model`` (a causal LM, after ``apply_plan`` or untouched) and ``tokenizer`` to ``out`` atomically.

    Args:
        encoder: the encoder definition written as sentence-transformers files (default ``EncoderSettings()``).
        plan: the ``SurgeryPlan`` carried out, saved as ``surgery_plan.json``.
        provenance: what produced the folder (invocation, source, record); saved as ``provenance.json``.
        verify: reload in a clean process and compare outputs before the folder is moved into place.
        extra_files: name -> text of further files to write (for example ``importance.json``).
        max_shard_size: weights above this size are split into shards plus ``model.safetensors.index.json``.
    Returns:
        The clean-process reload report (empty when ``verify`` is False).
    """
    report: dict = {}
    with atomic_folder(out, overwrite) as tmp:
        model.save_pretrained(tmp, max_shard_size=max_shard_size)
        write_support_files(
            tmp,
            model.config,
            tokenizer,
            out=out,
            encoder=encoder,
            plan=plan,
            provenance=provenance,
            extra_files=extra_files,
        )
        if verify:
            info("Checking the saved folder in a clean process (plain transformers, no effir_surgery) ...")
            report = verify_reload(tmp, model, dtype)
    return report


def write_support_files(
    folder: Path,
    config,
    tokenizer,
    *,
    out: str | Path,
    encoder: EncoderSettings | None = None,
    plan=None,
    provenance: Provenance | dict | None = None,
    extra_files: dict[str, str] | None = None,
) -> None:
    """Complete a folder that already holds ``config.json`` and the weights: remote code and ``auto_map`` (effir
    configs), the tokenizer (EOS appended, left padding), sentence-transformers files, ``surgery_plan.json``,
    ``provenance.json``, ``extra_files`` and the model card (named after ``out``, where the folder will live).

    Raises:
        AssertionError: the folder is still incomplete afterwards (``check_folder_files``).
    """
    from .card import write_model_card

    if is_effir_config(config):
        _fix_auto_map(folder, config)
    tokenizer = prepare_tokenizer(tokenizer)
    tokenizer.save_pretrained(folder)
    _sanitize_tokenizer_config(folder)
    write_st_files(folder, encoder or EncoderSettings(), config.hidden_size)
    if plan is not None:
        plan.save(folder / PLAN_FILE)
    record = provenance if isinstance(provenance, Provenance) else Provenance.model_validate(provenance or {})
    record = record.model_copy()
    record.tool_version = __version__  # marks the field set, so the file always carries it
    (folder / PROVENANCE_FILE).write_text(record.to_json())
    _record_origin(folder, record)
    for name, text in (extra_files or {}).items():
        (folder / name).write_text(text)
    write_model_card(folder, model_path=out)
    problems = check_folder_files(folder)
    if problems:
        raise AssertionError(f"saved folder is incomplete: {problems}")


def load_saved(folder: str | Path, dtype=None, device: str = "cpu", causal_lm: bool = True):
    """Load a saved folder (``trust_remote_code``) as ``(model, tokenizer)``."""
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    from .checkpoint import check_folder

    check_folder(Path(folder))
    cls = AutoModelForCausalLM if causal_lm else AutoModel
    trust = trust_remote_code(folder)
    model = cls.from_pretrained(folder, trust_remote_code=trust, dtype=dtype).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust)
    return model, tokenizer

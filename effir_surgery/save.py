"""Save a (pruned) model as a self-contained folder that loads with plain transformers and sentence-transformers.

Folder contents: ``config.json`` (effir or stock), safetensors weights, ``configuration_effir.py`` and
``modeling_effir.py`` (when the config is effir), the tokenizer (appends EOS, pads left), sentence-transformers
files, ``surgery_plan.json``, ``provenance.json`` and a model card. The folder is written to a temporary sibling
and renamed into place only after it reloads correctly in a clean process, so no half-written output remains.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from . import __version__
from ._logging import info
from .config import EncoderConfig
from .encode import prepare_tokenizer, write_st_files
from .errors import EffirError
from .folder import HF_DIR, REMOTE_CODE_FILES, expected_auto_map, is_effir_data
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
    config_path = folder / "config.json"
    data = json.loads(config_path.read_text())
    data["auto_map"] = expected_auto_map(config.model_type)
    _write_json(config_path, data)


def _sanitize_tokenizer_config(folder: Path) -> None:
    path = folder / "tokenizer_config.json"
    if path.is_file():
        data = json.loads(path.read_text())
        for key in _TOKENIZER_LOCAL_KEYS:
            data.pop(key, None)
        data["padding_side"] = "left"
        _write_json(path, data)


def check_folder_files(folder: str | Path) -> list[str]:
    """Problems that make a saved folder unusable, found from its files alone (empty list when fine).

    Checks that ``config.json`` parses; for an effir config, that both remote-code files are present and that
    ``auto_map`` points every auto class at them (a reference to another repo, ``repo--module.Class``, would run
    that repo's code); that safetensors weights, the tokenizer (``tokenizer.json`` carries the EOS-appending
    post-processor) and the sentence-transformers files are present. Weights are not read: ``hub.preflight``
    compares them with the config.
    """
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        return ["config.json is missing"]
    try:
        data = json.loads(config_path.read_text())
    except ValueError as exc:
        return [f"config.json is not valid JSON ({exc})"]
    problems = []
    model_type = str(data.get("model_type", ""))
    auto_map = data.get("auto_map") or {}
    if not isinstance(auto_map, dict):
        problems.append(f"auto_map is {type(auto_map).__name__}, not a mapping of auto class to module.Class")
        auto_map = {}
    expected = None
    if is_effir_data(data):
        for name in REMOTE_CODE_FILES:
            if not (folder / name).is_file():
                problems.append(f"{name} is missing (remote code that this effir '{model_type}' checkpoint needs)")
        expected = expected_auto_map(model_type)
        if expected is None:
            problems.append(f"model_type '{model_type}' is not a family effir-surgery {__version__} writes")
        for auto, want in (expected or {}).items():
            if not auto_map.get(auto):
                problems.append(f"auto_map has no {auto} entry (expected '{want}')")
            elif auto_map[auto] != want:
                problems.append(
                    f"auto_map.{auto} is '{auto_map[auto]}'; an effir '{model_type}' checkpoint needs '{want}'"
                )
    for auto, refs in auto_map.items():
        if auto in (expected or {}):
            continue  # checked against the exact reference above
        # AutoTokenizer maps to a [slow, fast] pair, either of which may be null
        for ref in refs if isinstance(refs, list) else [refs]:
            if ref is not None and ("--" in str(ref) or not (folder / f"{str(ref).split('.')[0]}.py").is_file()):
                problems.append(f"auto_map.{auto} points at '{ref}', which is not a file in the folder")
    if not list(folder.glob("*.safetensors")):
        problems.append("no *.safetensors weights")
    for name in ("tokenizer_config.json", "tokenizer.json"):
        if not (folder / name).is_file():
            problems.append(f"{name} is missing (tokenizer)")
    problems += _st_problems(folder)
    return problems


def _st_problems(folder: Path) -> list[str]:
    """Missing or unreadable sentence-transformers files: ``modules.json``, the config of every module stored in a
    subfolder (pooling), and ``config_sentence_transformers.json`` (prompts, similarity)."""
    problems = []
    if not (folder / "config_sentence_transformers.json").is_file():
        problems.append("config_sentence_transformers.json is missing (sentence-transformers)")
    path = folder / "modules.json"
    if not path.is_file():
        return [*problems, "modules.json is missing (sentence-transformers)"]
    try:
        modules = json.loads(path.read_text())
        stored = [(m["path"], m["type"]) for m in modules if m.get("path")]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return [*problems, f"modules.json is not a sentence-transformers module list ({exc})"]
    for sub, kind in stored:
        # Normalize keeps no state; every other module in a subfolder (Pooling, Dense) is rebuilt from its config.
        if not kind.endswith("Normalize") and not (folder / sub / "config.json").is_file():
            problems.append(f"{sub}/config.json is missing (sentence-transformers module {kind.split('.')[-1]})")
    return problems


def _reload_inputs(vocab_size: int, pad_id: int):
    """Two sequences, the second left-padded, so the check also covers masking."""
    import torch

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab_size, (2, 12), generator=generator)
    mask = torch.ones_like(ids)
    ids[1, :4] = pad_id
    mask[1, :4] = 0
    return {"input_ids": ids, "attention_mask": mask}


def reload_inputs(config) -> dict:
    """The test batch of the reload check for a model of ``config`` (``input_ids``, ``attention_mask``)."""
    pad = config.pad_token_id if isinstance(config.pad_token_id, int) else 0
    return _reload_inputs(config.vocab_size, pad)


def verify_reload(folder: Path, model, dtype: str) -> dict:
    """Reload ``folder`` in a clean process (no effir_surgery) and compare logits and hidden states with ``model``.

    Returns the subprocess report; raises ``EffirError`` if the outputs differ or the tokenizer is wrong.
    """
    import torch

    inputs = reload_inputs(model.config)
    device = next(model.parameters()).device
    with torch.inference_mode():
        logits = model(**{k: v.to(device) for k, v in inputs.items()}, use_cache=False).logits
        hidden = model.base_model(**{k: v.to(device) for k, v in inputs.items()}, use_cache=False).last_hidden_state
    return check_reload(folder, inputs, {"logits": logits, "hidden": hidden}, dtype)


def check_reload(folder: Path, inputs: dict, expected: dict, dtype: str) -> dict:
    """Reload ``folder`` in a clean process (no effir_surgery), run ``inputs`` and compare its logits and last
    hidden states with ``expected`` (``{"logits", "hidden"}``, computed here by other means).

    Returns the subprocess report; raises ``EffirError`` if the outputs differ or the tokenizer is wrong.
    """
    import torch

    from .fresh import reload_outputs

    outputs, report = reload_outputs(folder, inputs, dtype)
    tol = {"atol": 1e-5, "rtol": 1e-4} if dtype == "float32" else {"atol": 1e-2, "rtol": 1e-2}
    mask = inputs["attention_mask"].bool()
    same_hidden = torch.allclose(expected["hidden"].float().cpu()[mask], outputs["hidden"].float()[mask], **tol)
    same_logits = torch.allclose(expected["logits"].float().cpu()[mask], outputs["logits"].float()[mask], **tol)
    if not (same_hidden and same_logits):
        raise EffirError(
            f"The folder reloads in a clean process but its outputs differ (hidden {same_hidden}, "
            f"logits {same_logits}); this is a bug, please report it."
        )
    if report["toolkit_importable"]:
        raise AssertionError("the clean reload process could import effir_surgery")
    if not report["tokenizer_appends_eos"] or report["padding_side"] != "left":
        raise EffirError("The saved tokenizer does not append EOS with left padding; this is a bug, please report it.")
    return report


def save_model(
    model,
    tokenizer,
    out: str | Path,
    *,
    encoder: EncoderConfig | None = None,
    plan=None,
    provenance: dict | None = None,
    overwrite: bool = False,
    verify: bool = True,
    dtype: str = "float32",
    extra_files: dict[str, str] | None = None,
    max_shard_size: int | str = MAX_SHARD_SIZE,
) -> dict:
    """Write ``model`` (a causal LM, after ``apply_plan`` or untouched) and ``tokenizer`` to ``out`` atomically.

    Args:
        encoder: the encoder definition written as sentence-transformers files (default ``EncoderConfig()``).
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
    encoder: EncoderConfig | None = None,
    plan=None,
    provenance: dict | None = None,
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
    write_st_files(folder, encoder or EncoderConfig(), config.hidden_size)
    if plan is not None:
        plan.save(folder / "surgery_plan.json")
    record = {"tool": "effir-surgery", "tool_version": __version__, **(provenance or {})}
    _write_json(folder / "provenance.json", record)
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

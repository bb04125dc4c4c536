"""Check a saved model folder: every check of a folder ``save`` wrote lives here, and nothing here writes.

One job: say whether a saved folder is complete, self-consistent and loadable, from its files and, when asked, from
one clean-process reload. The public functions and their contracts:

- ``check_folder_files(folder) -> list[str]``: problems found from the files alone (config, remote code and
  ``auto_map``, weights present, tokenizer, sentence-transformers files); empty when fine. Reads no weights.
- ``reload_verdict(folder, inputs, dtype, expected=None) -> ReloadVerdict``: the one clean-process reload check
  (plain transformers, ``effir_surgery`` not importable): runs ``inputs`` through the causal LM and the base model
  and reports whether the outputs are finite and, given ``expected``, equal to them. Raises ``EffirError`` when the
  folder does not load, ``AssertionError`` when the clean process could import ``effir_surgery``.
- ``check_reload(folder, inputs, expected, dtype) -> dict`` and ``verify_reload(folder, model, dtype) -> dict``:
  the save-time use of ``reload_verdict`` (``expected`` computed by other means, or by ``model``); return the
  subprocess report and raise ``EffirError`` when the outputs differ or the tokenizer is wrong.
  ``reload_inputs(config)`` is their test batch.
- ``reload_memory_skip(folder, memory_fraction) -> str | None``: why the reload must not run here (too little RAM).
- ``preflight(folder, reload=True) -> PreflightReport``: whether the folder may be published: the files, weights
  against what ``config.json`` builds (safetensors headers only), metadata, the plan, the model card, then (only
  when all of that passes) the reload through ``reload_verdict``. ``problems_message`` words a refusal.
- ``verify_folder(folder, target, revision) -> VerifyResult``: the folder's remote code is byte for byte the code
  this toolkit version ships (one ``RemoteCodeCheck`` per file) and ``auto_map`` points at it; raises
  ``EffirError`` listing every mismatch. ``hub.verify`` runs it on a folder or on what it downloaded from a repo.

torch, safetensors and the clean subprocess are used inside functions so that importing this module stays light.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal, NamedTuple

from pydantic import BaseModel

from . import __version__
from ._memory import available_memory, format_bytes
from .card import render_model_card
from .checkpoint import check_safetensors, tensor_mismatches
from .errors import EffirError
from .folder import (
    CONFIG_FILE,
    HF_DIR,
    PLAN_FILE,
    RECORD_FILES,
    REMOTE_CODE_FILES,
    RESULTS_FILE,
    RESULTS_SCHEMA,
    ST_CONFIG_FILE,
    ST_MODULES_FILE,
    TOKENIZER_CONFIG_FILE,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    WEIGHTS_INDEX_FILE,
    WIDTH_PLAN_FILE,
    FolderFile,
    expected_auto_map,
    is_effir_data,
    publishable_files,
)
from .plan import SurgeryPlan
from .trust import extra_code_findings, remote_code_findings

# Metadata the model card reads; each must parse when present.
_SHOWN = 3  # tensors named per kind of weight mismatch; the count says how many more there are
# The clean-process reload may use at most this fraction of the available RAM (streaming's reload rule).
RELOAD_MEMORY_FRACTION = 0.5


class PreflightReport(BaseModel):
    """Outcome of ``preflight``.

    Attributes:
        files: what ``push`` uploads; ``skipped``: what lies in the folder but is not uploaded, with the reason.
        problems: each reason the folder may not be published (empty when it may).
        notes: things worth knowing that do not block publishing.
        model_class: the class the folder's config builds (weights were checked against it).
        reload: the clean-process reload report, when the reload ran; ``reload_skipped``: why it did not run
            although it was asked for (not enough memory).
    """

    folder: Path
    files: list[FolderFile]
    skipped: list[str]
    problems: list[str]
    notes: list[str] = []
    model_class: str | None = None
    reload: dict | None = None
    reload_skipped: str | None = None


class RemoteCodeCheck(BaseModel):
    """One remote-code file compared with the toolkit's copy; ``first_difference`` is a 1-based line number."""

    name: str
    status: Literal["identical", "differs", "missing"]
    sha256: str | None
    expected_sha256: str
    first_difference: int | None = None


class VerifyResult(BaseModel):
    """Outcome of a successful ``verify``: every remote-code file is identical to this toolkit version's copy
    (``files`` is empty for a stock config, which has no remote code)."""

    target: str
    revision: str | None
    model_type: str
    written_by: str | None
    files: list[RemoteCodeCheck]

    def summary(self) -> str:
        where = self.target + (f" (revision {self.revision})" if self.revision else "")
        if not self.files:
            return f"{where}: stock model_type '{self.model_type}', no remote code; nothing to verify."
        lines = [f"{where}: remote code identical to the files shipped with effir-surgery {__version__}"]
        lines += [f"  {c.name:<24} sha256 {c.sha256}" for c in self.files]
        lines.append("  auto_map: AutoConfig, AutoModel, AutoModelForCausalLM -> these files")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- files


def check_folder_files(folder: str | Path) -> list[str]:
    """Problems that make a saved folder unusable, found from its files alone (empty list when fine).

    Checks that ``config.json`` parses; for an effir config, that both remote-code files are present and that
    ``auto_map`` points every auto class at them (a reference to another repo, ``repo--module.Class``, would run
    that repo's code); that safetensors weights, the tokenizer (``tokenizer.json`` carries the EOS-appending
    post-processor) and the sentence-transformers files are present. Weights are not read: ``preflight``
    compares them with the config.
    """
    folder = Path(folder)
    config_path = folder / CONFIG_FILE
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
    for name in (TOKENIZER_CONFIG_FILE, TOKENIZER_FILE):
        if not (folder / name).is_file():
            problems.append(f"{name} is missing (tokenizer)")
    problems += _st_problems(folder)
    return problems


def _st_problems(folder: Path) -> list[str]:
    """Missing or unreadable sentence-transformers files: ``modules.json``, the config of every module stored in a
    subfolder (pooling), and ``config_sentence_transformers.json`` (prompts, similarity)."""
    problems = []
    if not (folder / ST_CONFIG_FILE).is_file():
        problems.append("config_sentence_transformers.json is missing (sentence-transformers)")
    path = folder / ST_MODULES_FILE
    if not path.is_file():
        return [*problems, "modules.json is missing (sentence-transformers)"]
    try:
        modules = json.loads(path.read_text())
        stored = [(m["path"], m["type"]) for m in modules if m.get("path")]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return [*problems, f"modules.json is not a sentence-transformers module list ({exc})"]
    for sub, kind in stored:
        # Normalize keeps no state; every other module in a subfolder (Pooling, Dense) is rebuilt from its config.
        if not kind.endswith("Normalize") and not (folder / sub / CONFIG_FILE).is_file():
            problems.append(f"{sub}/config.json is missing (sentence-transformers module {kind.split('.')[-1]})")
    return problems


# ---------------------------------------------------------------------------------- weights against config


def _weight_files(folder: Path) -> tuple[list[Path], dict[str, str] | None, list[str]]:
    """The safetensors files transformers loads from ``folder``, the index's tensor -> file map if sharded, and
    problems with the set of files (missing shards, files no loader reads)."""
    present = sorted(folder.glob("*.safetensors"))
    index_path = folder / WEIGHTS_INDEX_FILE
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return [], None, [f"model.safetensors.index.json is not a valid index ({exc})"]
        problems = [
            f"weight shard {s} is listed in model.safetensors.index.json but missing"
            for s in shards
            if not (folder / s).is_file()
        ]
        problems += [
            f"{p.name} is not listed in model.safetensors.index.json" for p in present if p.name not in shards
        ]
        return [folder / s for s in shards if (folder / s).is_file()], weight_map, problems
    if present and not (folder / WEIGHTS_FILE).is_file():
        return [], None, [f"no model.safetensors (and no index), so {present[0].name} would not be loaded"]
    stray = [
        f"{p.name} is not part of the weights (without an index only model.safetensors is loaded)"
        for p in present
        if p.name != WEIGHTS_FILE
    ]
    return [p for p in present if p.name == WEIGHTS_FILE], None, stray


def _describe(items: list[str]) -> str:
    return ", ".join(items[:_SHOWN]) + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def _weight_problems(folder: Path, data: dict) -> tuple[list[str], str | None]:
    """Compare the tensor names and shapes in the safetensors headers with what ``config.json`` builds.

    Only headers are read (``check_safetensors`` for completeness, then ``safe_open`` for names and shapes), so a
    multi-GB checkpoint is checked in milliseconds. Returns ``(problems, class name)``.
    """
    from safetensors import SafetensorError, safe_open

    files, weight_map, problems = _weight_files(folder)
    stored: dict[str, tuple[str, tuple[int, ...]]] = {}
    for file in files:
        try:
            check_safetensors(file)
            with safe_open(file, framework="pt") as handle:
                for name in handle.keys():
                    if name in stored:
                        problems.append(f"tensor '{name}' is stored twice ({stored[name][0]} and {file.name})")
                    stored[name] = (file.name, tuple(handle.get_slice(name).get_shape()))
        except (EffirError, SafetensorError, OSError) as exc:
            problems.append(str(exc))
    if problems or not files:
        return problems, None
    if weight_map is not None:
        misplaced = [f"'{n}'" for n, (f, _) in stored.items() if weight_map.get(n) != f]
        if misplaced:
            problems.append(f"the index maps {len(misplaced)} tensor(s) to the wrong shard: {_describe(misplaced)}")
    try:
        class_name, missing, unexpected, wrong = tensor_mismatches(stored, data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return [*problems, f"config.json does not build a model ({type(exc).__name__}: {exc})"], None
    if missing:
        problems.append(f"the weights lack {len(missing)} tensor(s) that {class_name} has: {_describe(missing)}")
    if unexpected:
        problems.append(
            f"the weights hold {len(unexpected)} tensor(s) that {class_name} does not have: {_describe(unexpected)}"
        )
    if wrong:
        problems.append(
            f"{len(wrong)} tensor shape(s) do not match what config.json builds ({class_name}): {_describe(wrong)}"
        )
    return problems, class_name


def _config_widths(data: dict) -> tuple[list[int], list[int]] | None:
    n = data.get("num_hidden_layers")
    if not isinstance(n, int) or "intermediate_size" not in data:
        return None
    widths = data.get("mlp_intermediate_sizes") or [data["intermediate_size"]] * n
    return list(widths), sorted(data.get("dropped_attention_layers") or [])


def _metadata_problems(folder: Path, data: dict) -> list[str]:
    """JSON metadata that does not parse, an invalid ``surgery_plan.json``, or a plan that describes another
    structure than ``config.json`` (checked when no ``width_plan.json`` narrowed the model afterwards)."""
    problems = []
    for name in RECORD_FILES:
        path = folder / name
        if path.is_file():
            try:
                content = json.loads(path.read_text())
            except ValueError as exc:
                problems.append(f"{name} is not valid JSON ({exc})")
                continue
            schema = content.get("schema") if isinstance(content, dict) else None
            if name == RESULTS_FILE and schema != RESULTS_SCHEMA:
                problems.append(f"results.json has schema {schema!r}; this version reads {RESULTS_SCHEMA}")
    plan_path = folder / PLAN_FILE
    if plan_path.is_file():
        try:
            plan = SurgeryPlan.load(plan_path)
        except EffirError as exc:
            return [*problems, f"surgery_plan.json is invalid: {str(exc).split(': ', 1)[-1]}"]
        structure = _config_widths(data)
        if structure and not (folder / WIDTH_PLAN_FILE).is_file():
            widths, dropped_attention = structure
            if plan.mlp_widths != widths:
                problems.append(f"surgery_plan.json gives MLP widths {plan.mlp_widths}, config.json {widths}")
            if plan.dropped_attention_after != dropped_attention:
                problems.append(
                    f"surgery_plan.json removes attention in layers {plan.dropped_attention_after}, config.json in "
                    f"{dropped_attention}"
                )
    return problems


# ---------------------------------------------------------------------------------- clean-process reload


class ReloadVerdict(NamedTuple):
    """What one clean-process reload found: the subprocess ``report`` (model classes, ``tokenizer_appends_eos``,
    ``padding_side``), whether the outputs on the test batch are ``finite``, and, when expected outputs were given,
    whether the last hidden states and the logits match them (``None`` when there was nothing to compare)."""

    report: dict
    finite: bool
    same_hidden: bool | None = None
    same_logits: bool | None = None


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


def reload_verdict(folder: Path, inputs: dict, dtype: str, expected: dict | None = None) -> ReloadVerdict:
    """Load ``folder`` in a clean process (plain transformers, ``effir_surgery`` not importable) as
    ``AutoModelForCausalLM`` and ``AutoModel``, run ``inputs`` (a left-padded batch) and judge the outputs on the
    unmasked positions: finite, and, given ``expected`` (``{"logits", "hidden"}``), equal to it within the
    tolerance of ``dtype``. Save (``check_reload``) and the pre-flight check (``preflight``) both use this.

    Raises:
        EffirError: the folder does not load in the clean process (the message ends with the process's error).
        AssertionError: the clean process could import ``effir_surgery``.
    """
    import torch

    from .fresh import reload_outputs

    outputs, report = reload_outputs(folder, inputs, dtype)
    if report["toolkit_importable"]:
        raise AssertionError("the clean reload process could import effir_surgery")
    mask = inputs["attention_mask"].bool()
    finite = all(torch.isfinite(outputs[key].float()[mask]).all() for key in ("hidden", "logits"))
    if expected is None:
        return ReloadVerdict(report, bool(finite))
    tol = {"atol": 1e-5, "rtol": 1e-4} if dtype == "float32" else {"atol": 1e-2, "rtol": 1e-2}
    same_hidden = torch.allclose(expected["hidden"].float().cpu()[mask], outputs["hidden"].float()[mask], **tol)
    same_logits = torch.allclose(expected["logits"].float().cpu()[mask], outputs["logits"].float()[mask], **tol)
    return ReloadVerdict(report, bool(finite), same_hidden, same_logits)


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
    verdict = reload_verdict(folder, inputs, dtype, expected)
    if not (verdict.same_hidden and verdict.same_logits):
        raise EffirError(
            f"The folder reloads in a clean process but its outputs differ (hidden {verdict.same_hidden}, "
            f"logits {verdict.same_logits}); this is a bug, please report it."
        )
    report = verdict.report
    if not report["tokenizer_appends_eos"] or report["padding_side"] != "left":
        raise EffirError("The saved tokenizer does not append EOS with left padding; this is a bug, please report it.")
    return report


def _reload_problems(folder: Path, data: dict) -> tuple[list[str], dict | None]:
    """The pre-flight use of ``reload_verdict``: a tiny left-padded batch built from ``config.json`` (``data``);
    problems if the folder does not load, the outputs are not finite, or the tokenizer does not append EOS with
    left padding (last-token pooling depends on both)."""
    dtype = str(data.get("dtype") or data.get("torch_dtype") or "float32")
    dtype = dtype if dtype in ("float32", "bfloat16", "float16") else "float32"
    pad = data.get("pad_token_id") if isinstance(data.get("pad_token_id"), int) else 0
    inputs = _reload_inputs(int(data["vocab_size"]), pad)
    try:
        verdict = reload_verdict(folder, inputs, dtype)
    except EffirError as exc:
        last = str(exc).strip().splitlines()[-1].strip()
        return [f"it does not load in a clean process with plain transformers: {last}"], None
    report = verdict.report
    problems = []
    if not verdict.finite:
        problems.append("the reloaded model outputs NaN or inf on a test batch")
    if not report["tokenizer_appends_eos"]:
        problems.append("the tokenizer does not append EOS (last-token pooling would read the wrong token)")
    if report["padding_side"] != "left":
        problems.append(f"the tokenizer pads on the {report['padding_side']}; last-token pooling needs left padding")
    return problems, report


def _weights_bytes(folder: Path) -> int:
    """Bytes of the safetensors weights in ``folder`` (what a reload reads into memory)."""
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))


def reload_memory_skip(folder: Path, memory_fraction: float = RELOAD_MEMORY_FRACTION) -> str | None:
    """Why the clean-process reload of ``folder`` must not run here, or ``None`` when it fits.

    The reload holds the causal LM and the base model at once, about twice the weights; it is skipped when that
    is more than ``memory_fraction`` of the available RAM, the rule ``streaming`` uses for its own reload check.
    """
    need, available = 2 * _weights_bytes(folder), available_memory()
    if need <= memory_fraction * available:
        return None
    return (
        f"loading it needs about {format_bytes(need)} (causal LM and base model), more than "
        f"{memory_fraction:.0%} of the {format_bytes(available)} of RAM available; the folder was checked without "
        "loading it"
    )


# ------------------------------------------------------------------------------------------- pre-flight


def preflight(folder: str | Path, *, reload: bool = True) -> PreflightReport:
    """Check that ``folder`` is complete and self-consistent enough to publish. Nothing is written.

    Problems found (each one line): files missing or unusable (``check_folder_files``: config, remote code and
    ``auto_map``, weights, tokenizer, sentence-transformers files); weights that are truncated or do not match what
    the folder's config builds (names and shapes from safetensors headers against the class built on the meta
    device); unreadable metadata; an invalid ``surgery_plan.json`` or one that disagrees with the config; a model
    card that cannot be rendered. Only when all of that passes, and ``reload`` is set, the folder is loaded in a
    clean process (``_reload_problems``, through ``reload_verdict``), since that loads the model twice; when twice
    the weights would not fit in the available RAM (``reload_memory_skip``) the reload is skipped and
    ``reload_skipped`` says why.

    Raises:
        EffirError: ``folder`` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise EffirError(f"'{folder}' is not a folder; pass the folder a prune or finetune command saved.")
    files, skipped = publishable_files(folder)
    problems = check_folder_files(folder)
    notes, model_class, report = [], None, None
    try:
        data = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        data = None  # check_folder_files reported it
    if isinstance(data, dict):
        weight_problems, model_class = _weight_problems(folder, data)
        problems += weight_problems
        problems += _metadata_problems(folder, data)
        # check_folder_files reported missing remote-code files and expected auto_map entries; what it does not
        # see: sealed files edited, and code references beyond them
        model_type = str(data.get("model_type", ""))
        expected = expected_auto_map(model_type) if is_effir_data(data) else None
        foreign = [f for f in remote_code_findings(folder) if f.endswith("differs from the copy effir-surgery ships")]
        problems += [f"remote code: {finding}" for finding in foreign + extra_code_findings(folder, expected)]
    if not problems:
        try:
            render_model_card(folder)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            problems.append(f"the model card cannot be rendered from the folder's files ({type(exc).__name__}: {exc})")
    reload_skipped = None
    if not problems and reload:
        reload_skipped = reload_memory_skip(folder)
        if reload_skipped is None:
            reload_problems, report = _reload_problems(folder, data)
            problems += reload_problems
    return PreflightReport(
        folder=folder,
        files=files,
        skipped=skipped,
        problems=problems,
        notes=notes,
        model_class=model_class,
        reload=report,
        reload_skipped=reload_skipped,
    )


def problems_message(folder: str | Path, problems: list[str]) -> str:
    """The refusal printed for a folder that fails ``preflight``: a header line, then one line per problem."""
    count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
    return f"'{folder}' cannot be published ({count}; fix and re-run):\n" + "\n".join(f"  - {p}" for p in problems)


# ------------------------------------------------------------------------------------------- remote code


def _compare_file(path: Path, reference: Path) -> RemoteCodeCheck:
    expected = reference.read_bytes()
    check = {"name": path.name, "expected_sha256": hashlib.sha256(expected).hexdigest()}
    if not path.is_file():
        return RemoteCodeCheck(**check, status="missing", sha256=None)
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if sha == check["expected_sha256"]:
        return RemoteCodeCheck(**check, status="identical", sha256=sha)
    ours, theirs = expected.splitlines(), data.splitlines()
    # zip stops at the shorter file: when one is a prefix of the other, the first extra line is the difference
    pairs = enumerate(zip(ours, theirs, strict=False), 1)
    line = next((i for i, (a, b) in pairs if a != b), min(len(ours), len(theirs)) + 1)
    return RemoteCodeCheck(**check, status="differs", sha256=sha, first_difference=line)


def verify_folder(folder: Path, target: str, revision: str | None) -> VerifyResult:
    """Check that the remote code of ``folder`` (``target`` names it in messages: the folder, or the Hub repo it was
    downloaded from) is exactly the code this toolkit version ships and that ``auto_map`` points every auto class at
    it; a stock config passes with nothing to compare. ``verify`` reports the result.

    Raises:
        EffirError: ``config.json`` is unreadable, a file differs or is missing, ``auto_map`` points elsewhere, or the
            folder would run other code (one message listing every finding).
    """
    try:
        data = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, ValueError) as exc:
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise EffirError(f"'{target}' has no readable config.json ({why}).") from None
    model_type = str(data.get("model_type", ""))
    auto_map = data.get("auto_map") or {}
    written_by = (data.get("effir_surgery") or {}).get("tool_version")
    if not is_effir_data(data):
        if auto_map:
            refs = ", ".join(map(str, auto_map.values()))
            raise EffirError(
                f"'{target}' has stock model_type '{model_type}' but an auto_map ({refs}): that remote code is not "
                "effir-surgery's."
            )
        foreign = extra_code_findings(folder, None)
        if foreign:
            raise EffirError(f"'{target}' would run code that is not effir-surgery's: " + "; ".join(foreign) + ".")
        return VerifyResult(target=target, revision=revision, model_type=model_type, written_by=None, files=[])
    checks = [_compare_file(folder / name, HF_DIR / name) for name in REMOTE_CODE_FILES]
    failures = []
    for c in checks:
        if c.status == "missing":
            failures.append(f"{c.name} is missing")
        elif c.status == "differs":
            failures.append(
                f"{c.name} differs from the copy shipped with effir-surgery {__version__} (first difference at line "
                f"{c.first_difference}; sha256 {c.sha256[:12]}..., expected {c.expected_sha256[:12]}...)"
            )
    expected = expected_auto_map(model_type)
    if expected is None:
        failures.append(f"model_type '{model_type}' is unknown to effir-surgery {__version__}")
    for auto, want in (expected or {}).items():
        if auto_map.get(auto) != want:
            failures.append(f"auto_map.{auto} is {auto_map.get(auto)!r}, expected '{want}'")
    failures += extra_code_findings(folder, expected or {})
    if failures:
        hint = (
            f" The files were written by effir-surgery {written_by}; verify with that version."
            if written_by and written_by != __version__ and any(c.status == "differs" for c in checks)
            else ""
        )
        raise EffirError(f"'{target}': remote code mismatch: " + "; ".join(failures) + "." + hint)
    return VerifyResult(target=target, revision=revision, model_type=model_type, written_by=written_by, files=checks)

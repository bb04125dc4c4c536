"""Publish a saved model folder on the Hugging Face Hub, and check remote code against this toolkit's own copy.

``preflight`` decides whether a folder may be published (files complete, weights matching what the folder's config
builds, remote code and ``auto_map`` in place, plan valid, clean-process reload working; the reload is skipped, and
the summary says so, when the model would not fit twice in the available RAM). ``push`` renders the model
card for the target repo and uploads exactly the checked files through huggingface_hub (``create_repo``, then
``upload_folder``: large files take the library's own LFS/Xet path, and the library retries transient failures).
``verify`` compares the remote code of a folder or a Hub repo with the files in ``effir_surgery/hf``.
huggingface_hub, torch and transformers are imported inside functions so that ``import effir_surgery`` stays light.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from . import __version__
from ._logging import info
from ._memory import available_memory, format_bytes
from .card import file_sha256, render_model_card
from .checkpoint import check_safetensors, tensor_mismatches
from .config import PushConfig, VerifyConfig, check_repo_id
from .errors import EffirError
from .folder import HF_DIR, REMOTE_CODE_FILES, expected_auto_map, is_effir_data
from .load import missing_local_path
from .outputs import scratch_folder
from .plan import SurgeryPlan
from .save import _reload_inputs, check_folder_files
from .trust import extra_code_findings, remote_code_findings

# Folders holding a run's working state; never part of a published model.
_WORK_DIRS = {"__pycache__", "checkpoints", "runs", "wandb"}
# Pickle files run code when loaded; weights are published as safetensors only.
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
# Metadata the model card reads; each must parse when present.
_JSON_FILES = ("provenance.json", "finetune.json", "results.json", "width_plan.json", "importance.json")
RESULTS_SCHEMA = "effir-surgery/results/v1"
_SHOWN = 3  # tensors named per kind of weight mismatch; the count says how many more there are
# The clean-process reload may use at most this fraction of the available RAM (streaming's reload rule).
RELOAD_MEMORY_FRACTION = 0.5


class FolderFile(BaseModel):
    """A file to publish: its path inside the folder (POSIX separators) and its size in bytes."""

    path: str
    size: int


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


class PushResult(BaseModel):
    """What ``push`` did (or, for a dry run, would do). ``card`` is the rendered ``README.md``."""

    folder: Path
    repo_id: str
    revision: str | None
    private: bool
    dry_run: bool
    files: list[FolderFile]
    skipped: list[str]
    notes: list[str]
    model_class: str | None
    reload_class: str | None
    reload_skipped: str | None = None
    card: str
    repo_url: str | None = None
    commit_url: str | None = None

    def summary(self) -> str:
        """The check's outcome, every file with its size, what is left out, and where the upload went."""
        total = sum(f.size for f in self.files)
        if self.reload_class:
            reload = f"clean-process reload OK ({self.reload_class})"
        elif self.reload_skipped:
            reload = f"clean-process reload NOT checked: {self.reload_skipped}"
        else:
            reload = "reload not checked"
        lines = [
            f"pre-flight check of {self.folder}: OK ({len(self.files)} files, {_size(total)}; weights match "
            f"{self.model_class}; {reload})"
        ]
        width = max(len(f.path) for f in self.files)
        lines += [f"  {f.path:<{width}}  {_size(f.size):>9}" for f in self.files]
        lines += [f"not uploaded: {item}" for item in self.skipped]
        lines += [f"note: {note}" for note in self.notes]
        branch = self.revision or "main"
        if self.dry_run:
            visibility = "private" if self.private else "public"
            lines.append(
                f"dry run: nothing uploaded; would upload these {len(self.files)} files to {self.repo_id} "
                f"(branch {branch}; a new repo would be {visibility})"
            )
        else:
            lines.append(f"uploaded {len(self.files)} files ({_size(total)}) to {self.repo_url} (branch {branch})")
            if self.commit_url:
                lines.append(f"commit: {self.commit_url}")
        return "\n".join(lines)


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


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _skip_reason(name: str, is_dir: bool) -> str | None:
    if name.startswith("."):
        return "dot folder" if is_dir else "hidden file"
    if is_dir and (name in _WORK_DIRS or name.startswith("checkpoint-")):
        return "run state, not part of the model"
    if not is_dir and name.endswith(_PICKLE_SUFFIXES):
        return "pickle file: not published, weights go out as safetensors only"
    return None


def publishable_files(folder: str | Path) -> tuple[list[FolderFile], list[str]]:
    """The files of ``folder`` that make up the model, and what is left out (``"path (reason)"``).

    Left out: dot files and dot folders (``.git``, ``.cache``, temporary files), run state (``checkpoints/``,
    ``checkpoint-*/``, ``runs/``, ``wandb/``, ``__pycache__/``) and pickle files.
    """
    folder = Path(folder)
    files, skipped = [], []
    for root, dirs, names in os.walk(folder):
        rel = Path(root).relative_to(folder)
        for name in sorted(dirs):
            if reason := _skip_reason(name, is_dir=True):
                skipped.append(f"{(rel / name).as_posix()}/ ({reason})")
        dirs[:] = sorted(d for d in dirs if not _skip_reason(d, is_dir=True))
        for name in sorted(names):
            path = (rel / name).as_posix()
            if reason := _skip_reason(name, is_dir=False):
                skipped.append(f"{path} ({reason})")
            else:
                files.append(FolderFile(path=path, size=(Path(root) / name).stat().st_size))
    return sorted(files, key=lambda f: f.path), skipped


def _weight_files(folder: Path) -> tuple[list[Path], dict[str, str] | None, list[str]]:
    """The safetensors files transformers loads from ``folder``, the index's tensor -> file map if sharded, and
    problems with the set of files (missing shards, files no loader reads)."""
    present = sorted(folder.glob("*.safetensors"))
    index_path = folder / "model.safetensors.index.json"
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
    if present and not (folder / "model.safetensors").is_file():
        return [], None, [f"no model.safetensors (and no index), so {present[0].name} would not be loaded"]
    stray = [
        f"{p.name} is not part of the weights (without an index only model.safetensors is loaded)"
        for p in present
        if p.name != "model.safetensors"
    ]
    return [p for p in present if p.name == "model.safetensors"], None, stray


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
    for name in _JSON_FILES:
        path = folder / name
        if path.is_file():
            try:
                content = json.loads(path.read_text())
            except ValueError as exc:
                problems.append(f"{name} is not valid JSON ({exc})")
                continue
            schema = content.get("schema") if isinstance(content, dict) else None
            if name == "results.json" and schema != RESULTS_SCHEMA:
                problems.append(f"results.json has schema {schema!r}; this version reads {RESULTS_SCHEMA}")
    plan_path = folder / "surgery_plan.json"
    if plan_path.is_file():
        try:
            plan = SurgeryPlan.load(plan_path)
        except EffirError as exc:
            return [*problems, f"surgery_plan.json is invalid: {str(exc).split(': ', 1)[-1]}"]
        structure = _config_widths(data)
        if structure and not (folder / "width_plan.json").is_file():
            widths, dropped_attention = structure
            if plan.mlp_widths != widths:
                problems.append(f"surgery_plan.json gives MLP widths {plan.mlp_widths}, config.json {widths}")
            if plan.dropped_attention_after != dropped_attention:
                problems.append(
                    f"surgery_plan.json removes attention in layers {plan.dropped_attention_after}, config.json in "
                    f"{dropped_attention}"
                )
    return problems


def _reload_problems(folder: Path, data: dict) -> tuple[list[str], dict | None]:
    """Load the folder in a clean process (plain transformers, ``effir_surgery`` not importable) as
    ``AutoModelForCausalLM`` and ``AutoModel``, run a tiny left-padded batch, and check the outputs are finite
    and the tokenizer appends EOS with left padding (last-token pooling depends on both)."""
    import torch

    from .fresh import reload_outputs

    dtype = str(data.get("dtype") or data.get("torch_dtype") or "float32")
    dtype = dtype if dtype in ("float32", "bfloat16", "float16") else "float32"
    pad = data.get("pad_token_id") if isinstance(data.get("pad_token_id"), int) else 0
    inputs = _reload_inputs(int(data["vocab_size"]), pad)
    try:
        outputs, report = reload_outputs(folder, inputs, dtype)
    except EffirError as exc:
        last = str(exc).strip().splitlines()[-1].strip()
        return [f"it does not load in a clean process with plain transformers: {last}"], None
    if report["toolkit_importable"]:
        raise AssertionError("the clean reload process could import effir_surgery")
    problems = []
    mask = inputs["attention_mask"].bool()
    if not all(torch.isfinite(outputs[key].float()[mask]).all() for key in ("hidden", "logits")):
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


def preflight(folder: str | Path, *, reload: bool = True) -> PreflightReport:
    """Check that ``folder`` is complete and self-consistent enough to publish. Nothing is written.

    Problems found (each one line): files missing or unusable (``save.check_folder_files``: config, remote code and
    ``auto_map``, weights, tokenizer, sentence-transformers files); weights that are truncated or do not match what
    the folder's config builds (names and shapes from safetensors headers against the class built on the meta
    device); unreadable metadata; an invalid ``surgery_plan.json`` or one that disagrees with the config; a model
    card that cannot be rendered. Only when all of that passes, and ``reload`` is set, the folder is loaded in a
    clean process (``_reload_problems``), since that loads the model twice; when twice the weights would not fit
    in the available RAM (``reload_memory_skip``) the reload is skipped and ``reload_skipped`` says why.

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
        data = json.loads((folder / "config.json").read_text())
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


def _write_card(folder: Path, card: str) -> None:
    """Replace ``README.md`` atomically (a symlinked README, as in a Hub cache snapshot, is replaced, not written
    through)."""
    tmp = folder / f".README.md.tmp-{os.getpid()}"
    tmp.write_text(card)
    os.replace(tmp, folder / "README.md")


def push(config: PushConfig) -> PushResult:
    """Publish ``config.folder`` on the Hub as model repo ``config.repo_id``.

    Steps: ``preflight`` (with the clean-process reload unless ``config.reload_check`` is False or the model would not
    fit twice in memory; the summary says when it was skipped); render the model card for the repo; unless
    ``dry_run``: ``create_repo`` (model, ``private``, ``exist_ok``), ``create_branch`` for a ``revision`` other
    than main, write the card to ``folder/README.md`` (so the folder and the repo stay identical), and one
    ``upload_folder`` whose ``allow_patterns`` are exactly the checked files. The token is whatever
    huggingface_hub resolves (``HF_TOKEN``, ``hf auth login``).

    Raises:
        EffirError: the folder fails the check (the message lists every problem), or a Hub call fails (the message
            says why and what reached the Hub).
    """
    folder = Path(config.folder)
    report = preflight(folder, reload=config.reload_check)
    if report.problems:
        raise EffirError(problems_message(folder, report.problems))
    skipped_reload = report.reload_skipped or (
        None if config.reload_check else "skipped on request (--no-reload-check)"
    )
    card = render_model_card(folder, config.repo_id, revision=config.revision)
    files = [f for f in report.files if f.path != "README.md"] + [
        FolderFile(path="README.md", size=len(card.encode()))
    ]
    result = PushResult(
        folder=folder,
        repo_id=config.repo_id,
        revision=config.revision,
        private=config.private,
        dry_run=config.dry_run,
        files=sorted(files, key=lambda f: f.path),
        skipped=report.skipped,
        notes=report.notes,
        model_class=report.model_class,
        reload_class=(report.reload or {}).get("causal_class"),
        reload_skipped=skipped_reload,
        card=card,
    )
    if config.dry_run:
        return result

    import huggingface_hub

    api = huggingface_hub.HfApi()
    # huggingface_hub reports failures as its own errors, as OSError subclasses and as raw transport errors of its
    # HTTP client; every one of them becomes one line that says what to do.
    try:
        repo_url = api.create_repo(config.repo_id, repo_type="model", private=config.private, exist_ok=True)
        if config.revision and config.revision != "main":
            api.create_branch(config.repo_id, branch=config.revision, repo_type="model", exist_ok=True)
    except Exception as exc:
        raise EffirError(
            f"Could not create or open the Hub repo '{config.repo_id}': {_hub_error(exc)}. Nothing was uploaded."
        ) from None
    _write_card(folder, card)
    try:
        commit = api.upload_folder(
            repo_id=config.repo_id,
            folder_path=folder,
            repo_type="model",
            revision=config.revision,
            commit_message=config.commit_message or f"Upload {folder.name} with effir-surgery {__version__}",
            allow_patterns=[glob.escape(f.path) for f in result.files],
        )
    except Exception as exc:
        raise EffirError(_upload_failure(api, config, result.files, exc)) from None
    return result.model_copy(
        update={"repo_url": str(repo_url), "commit_url": getattr(commit, "commit_url", None) or str(commit)}
    )


def push_saved(folder: str | Path, repo_id: str) -> PushResult:
    """``--push-to-hub`` of ``prune``, ``finetune`` and ``run`` (its push stage): ``push`` the folder just saved
    with default settings and log the outcome. A failure keeps the folder and says how to publish it later."""
    try:
        result = push(PushConfig(folder=folder, repo_id=repo_id))
    except EffirError as exc:
        raise EffirError(
            f"{exc}\nThe model folder '{folder}' is saved; publish it later with: "
            f"effir-surgery push {folder} --repo-id {repo_id}"
        ) from None
    info(result.summary())
    return result


def _git_blob_sha1(path: Path) -> str:
    """Git's object id of a file (what the Hub reports for files not stored in LFS)."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _upload_failure(api, config: PushConfig, files: list[FolderFile], exc: Exception) -> str:
    """The message for a failed ``upload_folder``: why, and which files are on the Hub with the local content.

    ``upload_folder`` may commit a large upload in several batches, so after a failure part of the folder can be
    on the Hub; one ``get_paths_info`` call compares content hashes (LFS sha256, git blob sha1) to say which.
    """
    head = f"Upload of '{config.folder}' to {config.repo_id} failed: {_hub_error(exc)}."
    retry = "Re-run the same command to finish; large files already on the Hub are not sent again."
    try:
        infos = api.get_paths_info(
            config.repo_id, [f.path for f in files], repo_type="model", revision=config.revision
        )
        remote = {i.path: i for i in infos if hasattr(i, "blob_id")}
    except Exception:
        return f"{head} Could not check what reached the Hub. {retry}"
    done = []
    for f in files:
        entry, local = remote.get(f.path), Path(config.folder) / f.path
        lfs = getattr(entry, "lfs", None)
        if entry is not None and (
            lfs.sha256 == file_sha256(local) if lfs is not None else entry.blob_id == _git_blob_sha1(local)
        ):
            done.append(f.path)
    missing = [f.path for f in files if f.path not in done]
    if not missing:
        return f"{head} All {len(files)} files are nevertheless on the Hub with the local content."
    return f"{head} On the Hub: {len(done)} of {len(files)} files; not uploaded: {', '.join(missing)}. {retry}"


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _hub_error(exc: Exception) -> str:
    """Why a huggingface_hub call failed, in words that say what to change."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        LocalTokenNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(exc, OfflineModeIsEnabled) or constants.is_offline_mode():
        return "huggingface_hub is in offline mode (HF_HUB_OFFLINE=1); unset it on a machine with network access"
    if isinstance(exc, LocalTokenNotFoundError):
        return "no Hugging Face token found; set HF_TOKEN or run `hf auth login`"
    if isinstance(exc, GatedRepoError):
        return "the repo is gated; accept its conditions on the Hub with this account"
    if isinstance(exc, RepositoryNotFoundError):
        return "the repo does not exist or this token cannot see it (check the id; log in for private repos)"
    if isinstance(exc, RevisionNotFoundError):
        return "that revision does not exist in the repo"
    if isinstance(exc, RemoteEntryNotFoundError):
        return "the file does not exist in the repo"
    if isinstance(exc, HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status == 401:
            return "the Hub rejected the credentials (HTTP 401); set HF_TOKEN or run `hf auth login`"
        if status == 403:
            return "this token may not write there (HTTP 403); use a token with write access to that namespace"
        return f"the Hub answered HTTP {status}: {_first_line(exc)}"
    if isinstance(exc, LocalEntryNotFoundError | ConnectionError | TimeoutError) or type(exc).__module__.startswith(
        "httpx"
    ):
        return f"the Hub is unreachable ({_first_line(exc)}); check the network connection and HF_ENDPOINT"
    return f"{type(exc).__name__}: {_first_line(exc)}"


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


def _verify_folder(folder: Path, target: str, revision: str | None) -> VerifyResult:
    try:
        data = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise EffirError(f"'{target}' has no readable config.json ({_first_line(exc)}).") from None
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


def _download_remote_code(repo_id: str, revision: str | None, into: Path) -> None:
    """Download what decides whether ``repo_id`` runs foreign code into ``into``: ``config.json``,
    ``tokenizer_config.json``, ``modules.json`` and every ``.py`` file of the repo.

    Downloads bypass the local Hub cache (a fresh ``local_dir``), so what is verified is what the Hub serves now;
    offline this fails instead of verifying a stale copy. A missing remote-code file is left for ``verify`` to
    report.
    """
    import huggingface_hub
    from huggingface_hub.errors import RemoteEntryNotFoundError

    def failed(name: str, exc: Exception) -> EffirError:
        return EffirError(f"Could not download {name} of '{repo_id}' from the Hugging Face Hub: {_hub_error(exc)}.")

    # One metadata request first (model_info, which lists the files): it is not retried, so an unreachable Hub fails
    # in about a second instead of after the download's five retries (listing the tree is retried too).
    with _quiet_hub_logging():
        try:
            repo = huggingface_hub.HfApi().model_info(repo_id, revision=revision)
        except Exception as exc:  # network and Hub errors, all mapped to one line (see push)
            raise failed("config.json", exc) from None
        present = {entry.rfilename for entry in repo.siblings or []}

        def fetch(name: str) -> bool:
            if name not in present:
                return False
            try:
                huggingface_hub.hf_hub_download(repo_id, name, revision=revision, local_dir=into)
            except RemoteEntryNotFoundError:
                return False
            except Exception as exc:
                raise failed(name, exc) from None
            return True

        if not fetch("config.json"):
            raise EffirError(f"'{repo_id}' has no config.json; it is not a model repo.")
        for name in sorted(present):
            if name in ("tokenizer_config.json", "modules.json") or name.endswith(".py"):
                fetch(name)


@contextlib.contextmanager
def _quiet_hub_logging():
    """Silence huggingface_hub's retry warnings (several lines per failed request): a failure is reported once,
    as one line, by the caller."""
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub_logger.setLevel(level)


def verify(config: VerifyConfig) -> VerifyResult:
    """Check that the remote code of a local folder or a Hub repo is exactly the code this toolkit version ships
    (``effir_surgery/hf``), and that ``auto_map`` points every auto class at it.

    For a repo id only ``config.json``, ``tokenizer_config.json``, ``modules.json`` and the ``.py`` files are
    downloaded. A stock config (no remote code)
    passes with nothing to compare.

    Raises:
        EffirError: a file differs (named, with the first differing line) or is missing, ``auto_map`` points
            elsewhere, or the repo cannot be read (one line with the reason).
    """
    path = Path(config.model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise EffirError(f"'{config.model}' is a file; pass a model folder or a Hub repo id.")
        if config.revision:
            raise EffirError("--revision applies to a Hub repo id, not to a local folder.")
        return _verify_folder(path, config.model, None)
    local = missing_local_path(config.model)
    if local is not None:
        raise EffirError(f"'{config.model}' not found: {local}. Pass a saved model folder or a Hub repo id.")
    try:
        check_repo_id(config.model)
    except ValueError:
        raise EffirError(f"'{config.model}' is neither an existing folder nor a Hub repo id (owner/name).") from None
    with scratch_folder("effir-verify") as tmp:
        _download_remote_code(config.model, config.revision, tmp)
        return _verify_folder(tmp, config.model, config.revision)

"""Publish a saved model folder on the Hugging Face Hub, and verify the remote code of a folder or a Hub repo.

``push`` runs ``check.preflight`` (files, weights against config, remote code, plan, card and, memory permitting, a
clean-process reload), renders the model card for the target repo and uploads exactly the checked files through
huggingface_hub (``create_repo``, then ``upload_folder``: large files take the library's own LFS/Xet path, and the
library retries transient failures); a failed Hub call becomes one line saying why and what reached the Hub.
``verify`` downloads a repo's remote code when given a repo id and compares it with the files in
``effir_surgery/hf`` (``check.verify_folder``). huggingface_hub is imported inside functions so that
``import effir_surgery`` stays light.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
from pathlib import Path

from pydantic import BaseModel

from . import __version__
from ._logging import info
from .card import file_sha256, render_model_card
from .card_results import eval_results_files, select_results
from .check import VerifyResult, preflight, problems_message, verify_folder
from .config import PushConfig, VerifyConfig
from .errors import EffirError
from .folder import CARD_FILE, CONFIG_FILE, RESULTS_FILE, ST_MODULES_FILE, TOKENIZER_CONFIG_FILE, FolderFile
from .load import missing_local_path
from .outputs import scratch_folder
from .validation import check_repo_id


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


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _write_card(folder: Path, card: str, eval_files: dict[str, str]) -> None:
    """Replace ``README.md`` and write the ``.eval_results`` files atomically, file by file (a symlinked README, as
    in a Hub cache snapshot, is replaced, not written through)."""
    for name, text in {CARD_FILE: card, **eval_files}.items():
        path = folder / name
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)


def _eval_results(folder: Path) -> dict[str, str]:
    """The ``.eval_results`` files of the folder's own scores in ``results.json`` (``card_results``)."""
    try:
        results = json.loads((folder / RESULTS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return eval_results_files(results, select_results(results, folder))


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
    # the only dot folder published: .eval_results, where the Hub reads benchmark scores (mteb 2.26 writes it too)
    eval_files = _eval_results(folder)
    written = {CARD_FILE: card, **eval_files}
    files = [f for f in report.files if f.path not in written]
    files += [FolderFile(path=name, size=len(text.encode())) for name, text in written.items()]
    result = PushResult(
        folder=folder,
        repo_id=config.repo_id,
        revision=config.revision,
        private=config.private,
        dry_run=config.dry_run,
        files=sorted(files, key=lambda f: f.path),
        skipped=[s for s in report.skipped if not (eval_files and s.startswith(".eval_results/"))],
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
    _write_card(folder, card, eval_files)
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
            raise failed(CONFIG_FILE, exc) from None
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

        if not fetch(CONFIG_FILE):
            raise EffirError(f"'{repo_id}' has no config.json; it is not a model repo.")
        for name in sorted(present):
            if name in (TOKENIZER_CONFIG_FILE, ST_MODULES_FILE) or name.endswith(".py"):
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
        return verify_folder(path, config.model, None)
    local = missing_local_path(config.model)
    if local is not None:
        raise EffirError(f"'{config.model}' not found: {local}. Pass a saved model folder or a Hub repo id.")
    try:
        check_repo_id(config.model)
    except ValueError:
        raise EffirError(f"'{config.model}' is neither an existing folder nor a Hub repo id (owner/name).") from None
    with scratch_folder("effir-verify") as tmp:
        _download_remote_code(config.model, config.revision, tmp)
        return verify_folder(tmp, config.model, config.revision)

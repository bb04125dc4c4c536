"""Where a command may write: the output guard every command runs before heavy work, and the lock it holds while
it writes.

An output is refused when it exists (without ``--overwrite``), is a file, or overlaps one of the command's inputs:
the output is an input, lies inside one, or contains one. ``--overwrite`` replaces an output; it never makes an
input writable. The lock makes a second command writing the same output fail at once instead of replacing the
first one's result.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import uuid
from pathlib import Path

from ._logging import info
from .errors import EffirError


def _overlap(out: Path, inputs) -> str | None:
    """How ``out`` overlaps one of ``inputs`` (folders or files, compared as resolved paths), or None."""
    target = out.expanduser().resolve()
    for item in inputs:
        if item is None:
            continue
        source = Path(item).expanduser().resolve()
        if target == source:
            return f"is the input '{item}'"
        if source in target.parents:
            return f"lies inside the input '{item}'"
        if target in source.parents:
            return f"contains the input '{item}'"
    return None


def check_disjoint(out: str | Path, inputs, what: str = "Output") -> None:
    """Refuse an output (or run folder: ``what``) that is, lies inside or contains one of ``inputs``."""
    overlap = _overlap(Path(out), inputs)
    if overlap:
        raise EffirError(f"{what} '{out}' {overlap}; choose one outside the model and data you read from.")


def check_output(out: str | Path, overwrite: bool, inputs=()) -> Path:
    """Refuse ``out`` before any heavy work: a file, an existing folder without ``overwrite``, or a path that is,
    lies inside or contains one of ``inputs`` (local paths the command reads; whatever ``overwrite`` says, so an
    input is never replaced or written into)."""
    out = Path(out)
    check_disjoint(out, inputs)
    if out.exists() and not out.is_dir():
        raise EffirError(f"Output '{out}' exists and is a file; choose a folder path with -o.")
    if out.exists() and not overwrite:
        raise EffirError(f"Output folder '{out}' already exists; pass --overwrite to replace it or choose another -o.")
    return out


@contextlib.contextmanager
def claimed_output(out: str | Path, overwrite: bool, inputs=()):
    """Lock ``out`` (``output_lock``), then check it (``check_output``) under the lock, so a second writer can
    neither pass the check meanwhile nor replace the result; yields ``out`` as a ``Path``."""
    with output_lock(out):
        yield check_output(out, overwrite, inputs)


def _lock_path(out: Path) -> Path:
    return out.parent / f".{out.name}.lock"


@contextlib.contextmanager
def output_lock(out: str | Path):
    """Hold an exclusive lock on output ``out`` for the duration of the block; a second holder fails at once with
    one line. The lock is a hidden file beside ``out`` (``.NAME.lock``), removed on exit; the kernel releases the
    lock itself when the process dies, so a killed command blocks nobody, and the next holder reuses the file.

    Raises:
        EffirError: another process holds the lock, or the folder beside ``out`` cannot be written.
    """
    import fcntl

    out = Path(out)
    path = _lock_path(out)
    created = [p for p in [out.parent, *out.parent.parents] if not p.exists()]  # removed again if left empty
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EffirError(f"Cannot create the folder of output '{out}': {exc.strerror or exc}.") from None
    while True:
        try:
            handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            for folder in created:
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise EffirError(f"Cannot write beside output '{out}' ({path}): {exc.strerror or exc}.") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(handle)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise EffirError(
                    f"Output '{out}' is being written by another effir-surgery process (lock {path}); wait for it "
                    "to finish or choose another -o."
                ) from None
            raise
        # the previous holder may have removed the file between our open and our lock: lock the file that is there
        try:
            same = os.path.samestat(os.fstat(handle), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(handle)
    try:
        yield out
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(handle)  # closing releases the lock
        for folder in created:  # deepest first; a folder the output now lives in is not empty and stays
            with contextlib.suppress(OSError):
                folder.rmdir()


# ------------------------------------------------------------------------------------------------------------
# Temporary siblings: written beside an output, renamed into place; what a killed process left is swept later
# ------------------------------------------------------------------------------------------------------------


def remove_tree(path: Path) -> None:
    """Delete ``path`` (if present), finishing even when another Ctrl-C or SIGTERM arrives meanwhile: cleanup runs
    while the first interrupt is already on its way up, and a second one must not leave half a folder behind."""
    interrupted = None
    while path.exists():
        try:
            shutil.rmtree(path, ignore_errors=True)
        except KeyboardInterrupt as exc:  # finish first, then stop as asked (never swallow the interrupt)
            interrupted = exc
            continue
        if path.exists():  # not removable (permissions): leave it rather than loop
            break
    if interrupted is not None:
        raise interrupted


def _host() -> str:
    """This host's name as it appears in a sibling's name (no ``-``, which separates the name's fields)."""
    return socket.gethostname().replace("-", "_") or "host"


def sibling(out: Path, kind: str) -> Path:
    """A hidden sibling of ``out`` named for this host and process (``.NAME.KIND-HOST-PID-RANDOM``), so a later save
    can tell a folder left by a killed process from one another process is still writing."""
    return out.parent / f".{out.name}.{kind}-{_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _owner_is_dead(folder: Path, kind: str, name: str) -> bool:
    """Whether ``folder`` (named by ``sibling``) was left by a process of this host that no longer runs."""
    parts = folder.name[len(f".{name}.{kind}-") :].split("-")
    if len(parts) != 3 or parts[0] != _host() or not parts[1].isdigit():
        return False  # another host's, or an older naming: its owner cannot be checked
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        pass
    return False


def remove_stale_siblings(out: Path) -> list[Path]:
    """Delete the temporary siblings of ``out`` that a killed process left (SIGKILL or a power cut skip every
    cleanup); folders of live processes and of other hosts are kept. Returns what was removed."""
    removed = []
    for kind in ("tmp", "old"):
        for folder in out.parent.glob(f".{out.name}.{kind}-*"):
            if folder.is_dir() and _owner_is_dead(folder, kind, out.name):
                remove_tree(folder)
                removed.append(folder)
    if removed:
        info(f"Removed {len(removed)} temporary folder(s) a killed run left beside {out}.")
    return removed


@contextlib.contextmanager
def scratch_folder(name: str):
    """A temporary folder of this process under the system temp dir (``.NAME.tmp-HOST-PID-RANDOM``), removed on
    exit; folders that killed processes left under the same name are swept first."""
    import tempfile

    anchor = Path(tempfile.gettempdir()) / name
    remove_stale_siblings(anchor)
    folder = sibling(anchor, "tmp")
    folder.mkdir()
    try:
        yield folder
    finally:
        remove_tree(folder)

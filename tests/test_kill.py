"""Nothing is left after a kill -9: the clean-process reload child dies with its parent, and the temporary folders
of the reload check and of the GGUF conversion are swept by the next run."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)


def _children(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


def _reload_children(pid: int) -> list[int]:
    """The children of ``pid`` running the clean-process reload script."""
    found = []
    for child in _children(pid):
        try:
            if "_fresh_process.py" in Path(f"/proc/{child}/cmdline").read_text():
                found.append(child)
        except OSError:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _scratch(name: str, pid: int) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f".{name}.tmp-*-{pid}-*"))


@pytest.mark.subprocess
def test_a_killed_prune_leaves_no_reload_child_and_the_next_run_sweeps(tmp_path):
    from conftest import build_tiny, save_tiny_source, tiny_tokenizer

    source = save_tiny_source(build_tiny("llama"), tiny_tokenizer(), tmp_path / "src")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    args = [sys.executable, "-m", "effir_surgery.cli", "prune", str(source), "--drop-mlp-layers", "1"]
    parent = subprocess.Popen(
        [*args, "-o", str(tmp_path / "a")],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        (child,) = _wait_for(lambda: _reload_children(parent.pid), 240, "the clean-process reload child")
        scratch = _wait_for(lambda: _scratch("effir-reload", parent.pid), 60, "the reload scratch folder")
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        _wait_for(lambda: not _alive(child), 60, "the orphaned reload child to die")
    finally:
        if parent.poll() is None:
            parent.kill()
    assert all(p.exists() for p in scratch)  # a SIGKILLed parent cleans nothing itself ...
    assert list(tmp_path.glob(".a.tmp-*"))  # the killed save's temporary sibling
    done = subprocess.run([*args, "-o", str(tmp_path / "a")], env=env, capture_output=True, text=True)  # the rerun
    assert done.returncode == 0, done.stderr
    assert not any(p.exists() for p in scratch)  # ... the next reload check sweeps what the killed one left
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # temp sibling and lock file gone


@pytest.mark.slow
def test_a_killed_gguf_conversion_is_swept_by_the_next_one(tmp_path, smollm2):
    """SIGKILL while the bundled GGUF is written to the cache, then the conversion again: no temporary folder."""
    cache = tmp_path / "cache"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "EFFIR_SURGERY_CACHE": str(cache)}
    # a real prune converts the GGUF (a dry run with explicit layers reads only its config)
    out = tmp_path / "out"
    args = [
        sys.executable,
        "-m",
        "effir_surgery.cli",
        "prune",
        "smollm2-135m",
        "--drop-mlp-layers",
        "1",
        "-o",
        str(out),
    ]
    first = subprocess.Popen(
        args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        (left,) = _wait_for(
            lambda: list((cache / "gguf").glob(".*.tmp-*")) or first.poll() is not None and [None],
            600,
            "the conversion's temp folder",
        )
        assert left is not None, "the first run ended before its conversion was caught writing"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert left.exists()
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not left.exists()
    assert [p.name for p in (cache / "gguf").iterdir() if p.name.startswith(".")] == []
    assert len([p for p in (cache / "gguf").iterdir() if (p / "config.json").is_file()]) == 1

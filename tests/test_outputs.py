"""Inputs are never damaged: an output that is the source, lies inside it or contains it is refused whatever
``--overwrite`` says, and two writers of one output cannot both succeed (the second fails at once)."""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from effir_surgery.cli import main
from effir_surgery.errors import EffirError
from effir_surgery.outputs import check_output, output_lock

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from conftest import build_tiny, save_tiny_source, tiny_tokenizer

    return save_tiny_source(build_tiny("llama"), tiny_tokenizer(), tmp_path_factory.mktemp("src") / "tiny-llama")


def tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize("where", ["same", "inside", "contains"])
def test_an_output_that_overlaps_the_source_is_refused_even_with_overwrite(source, tmp_path, where):
    before = tree_digest(source)
    out = {"same": source, "inside": source / "sub", "contains": source.parent}[where]
    result = CliRunner().invoke(main, ["prune", str(source), "--drop-mlp-layers", "1", "-o", str(out), "--overwrite"])
    assert result.exit_code == 2, result.output
    assert {"same": "is the input", "inside": "lies inside the input", "contains": "contains the input"}[where] in (
        result.output
    )
    assert len(result.output.strip().splitlines()) == 1
    assert tree_digest(source) == before
    assert not (source / "sub").exists()
    assert not list(source.parent.glob(".*.lock"))


def test_finetune_and_analyze_refuse_their_inputs_as_output(source, tmp_path):
    before = tree_digest(source)
    train = tmp_path / "train.jsonl"
    train.write_text('{"query": "q", "positive": "p"}\n')
    finetune = CliRunner().invoke(
        main, ["finetune", str(source), "--train", str(train), "-o", str(source / "ft"), "--overwrite"]
    )
    assert finetune.exit_code == 2 and "lies inside the input" in finetune.output, finetune.output
    analyze = CliRunner().invoke(main, ["analyze", str(source), "-o", str(source), "--overwrite"])
    assert analyze.exit_code == 2 and "is the input" in analyze.output, analyze.output
    data = CliRunner().invoke(main, ["finetune", str(source), "--train", str(train), "-o", str(train), "--overwrite"])
    assert data.exit_code == 2 and f"is the input '{train}'" in data.output, data.output
    assert tree_digest(source) == before


@pytest.mark.subprocess
def test_a_second_writer_of_the_same_output_fails_at_once(source, tmp_path):
    out = tmp_path / "out"
    with output_lock(out):
        result = CliRunner().invoke(main, ["prune", str(source), "--drop-mlp-layers", "1", "-o", str(out)])
        assert result.exit_code == 2, result.output
        assert "is being written by another effir-surgery process" in result.output
        assert not out.exists()
    assert not (tmp_path / ".out.lock").exists()  # removed with the lock
    result = CliRunner().invoke(main, ["prune", str(source), "--drop-mlp-layers", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / ".out.lock").exists()


def test_the_lock_of_a_killed_writer_is_released(tmp_path):
    """The kernel drops a dead process's lock: a kill -9 blocks nobody, and the next writer reuses the file."""
    out = tmp_path / "out"
    code = (
        "import sys, time; from effir_surgery.outputs import output_lock\n"
        f"with output_lock({str(out)!r}):\n    print('locked', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(EffirError, match="being written by another"), output_lock(out):
            pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    deadline = time.monotonic() + 10
    while True:
        try:
            with output_lock(out):
                break
        except EffirError:
            assert time.monotonic() < deadline, "the lock outlived its holder"
            time.sleep(0.1)
    assert not (tmp_path / ".out.lock").exists()


def test_a_refused_output_leaves_no_folders_behind(tmp_path):
    """The lock creates the output's parent folders; a refusal removes the ones it created."""
    existing = tmp_path / "file"
    existing.write_text("x")
    out = tmp_path / "a" / "b" / "out"
    with pytest.raises(EffirError, match="is the input"), output_lock(out):
        check_output(out, True, [out])
    assert not (tmp_path / "a").exists()
    with pytest.raises(EffirError, match="exists and is a file"):
        check_output(existing, True)

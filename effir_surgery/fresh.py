"""Run ``_fresh_process.py`` in a clean subprocess (isolated mode, ``effir_surgery`` blocked) and read its answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .errors import EffirError
from .outputs import scratch_folder

SCRIPT = Path(__file__).with_name("_fresh_process.py")


def die_with_parent() -> None:
    """In a child between fork and exec: have the kernel kill it when its parent dies (Linux ``PR_SET_PDEATHSIG``),
    so a parent killed with SIGKILL leaves no orphan loading a model for minutes. A no-op where unsupported."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the call above: nobody is waiting for this child
        os._exit(1)


def child_env(scratch: Path) -> dict:
    """The environment of a child that loads remote code: transformers copies that code into a modules cache, which
    here lives in the child's scratch folder and goes with it, instead of piling up in ~/.cache/huggingface."""
    return {**os.environ, "HF_MODULES_CACHE": str(scratch / "modules")}


def run_fresh(task: str, *args: str, scratch: Path, timeout: float = 3600) -> str:
    """Run ``task`` of the fresh-process script with ``scratch`` as its working folder (``outputs.scratch_folder``);
    return its stdout. The child dies with this process. Raises ``EffirError`` with its stderr tail."""
    proc = subprocess.run(
        [sys.executable, "-I", str(SCRIPT), task, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(scratch),
        preexec_fn=die_with_parent,
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
        raise EffirError(f"The saved folder failed to load in a clean process ({task}):\n{tail}")
    return proc.stdout


def reload_outputs(folder: str | Path, inputs: dict, dtype: str) -> tuple[dict, dict]:
    """Load ``folder`` in a clean process with plain transformers and run ``inputs`` through the causal LM and the
    base model. Returns ``(outputs, report)`` with ``outputs = {"logits", "hidden"}``."""
    import torch

    with scratch_folder("effir-reload") as tmp:
        inputs_path, outputs_path = tmp / "inputs.pt", tmp / "outputs.pt"
        torch.save(inputs, inputs_path)
        stdout = run_fresh("reload", str(folder), str(inputs_path), str(outputs_path), dtype, scratch=tmp)
        report = json.loads(stdout.strip().splitlines()[-1])
        outputs = torch.load(outputs_path, weights_only=True)
    return outputs, report


def compare_in_fresh_process(
    source: str, pruned: str | Path, texts: list[str], dtype: str, batch_size: int, trust_source: bool
) -> dict:
    """Encode ``texts`` with the source and the pruned folder in one clean process; throughput and agreement.
    ``trust_source`` is the source's ``trust_remote_code`` as decided in this process (``load.source_trust``); the
    pruned folder was just written and checked by this toolkit."""
    with scratch_folder("effir-compare") as tmp:
        texts_path, out_path = tmp / "texts.json", tmp / "out.json"
        texts_path.write_text(json.dumps(texts))
        trust = "1" if trust_source else "0"
        args = (str(source), str(pruned), str(texts_path), str(out_path), dtype, str(batch_size), trust)
        run_fresh("compare", *args, scratch=tmp)
        return json.loads(out_path.read_text())

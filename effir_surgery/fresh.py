"""Run ``_fresh_process.py`` in a clean subprocess (isolated mode, ``effir_surgery`` blocked) and read its answer."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import EffirError

SCRIPT = Path(__file__).with_name("_fresh_process.py")


def run_fresh(task: str, *args: str, timeout: float = 3600) -> str:
    """Run ``task`` of the fresh-process script; return its stdout. Raises ``EffirError`` with its stderr tail."""
    proc = subprocess.run(
        [sys.executable, "-I", str(SCRIPT), task, *args], capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
        raise EffirError(f"The saved folder failed to load in a clean process ({task}):\n{tail}")
    return proc.stdout


def reload_outputs(folder: str | Path, inputs: dict, dtype: str) -> tuple[dict, dict]:
    """Load ``folder`` in a clean process with plain transformers and run ``inputs`` through the causal LM and the
    base model. Returns ``(outputs, report)`` with ``outputs = {"logits", "hidden"}``."""
    import torch

    with tempfile.TemporaryDirectory(prefix="effir-reload-") as tmp:
        inputs_path, outputs_path = Path(tmp) / "inputs.pt", Path(tmp) / "outputs.pt"
        torch.save(inputs, inputs_path)
        stdout = run_fresh("reload", str(folder), str(inputs_path), str(outputs_path), dtype)
        report = json.loads(stdout.strip().splitlines()[-1])
        outputs = torch.load(outputs_path, weights_only=True)
    return outputs, report


def compare_in_fresh_process(source: str, pruned: str | Path, texts: list[str], dtype: str, batch_size: int) -> dict:
    """Encode ``texts`` with the source and the pruned folder in one clean process; throughput and agreement."""
    with tempfile.TemporaryDirectory(prefix="effir-compare-") as tmp:
        texts_path, out_path = Path(tmp) / "texts.json", Path(tmp) / "out.json"
        texts_path.write_text(json.dumps(texts))
        run_fresh("compare", str(source), str(pruned), str(texts_path), str(out_path), dtype, str(batch_size))
        return json.loads(out_path.read_text())

"""Benchmark: where a pruned SmolLM2 runs fastest on this CPU: PyTorch eager, ONNX Runtime float32, ONNX Runtime int8.

Prunes SmolLM2-135M (``--mlp-drop 0.5``, no fine-tuning), exports it with ``effir-surgery export --quantize int8``,
and encodes the same documents with the three runtimes side by side in one process, rounds interleaved, same
thread count. Reports documents per second, the ratios to PyTorch, and how close each runtime's embeddings are to
PyTorch's (cosine per document). The unpruned source in PyTorch is the reference for the pruning speed-up.
Writes benchmarks/results/onnx_runtime.{json,md}.

    python benchmarks/onnx_runtime.py [--texts 64] [--max-length 256] [--batch-size 16] [--rounds 3]

Texts are SciFact corpus documents from ../shared/data (title + text) when present, else the bundled passages.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from width_throughput import texts

from effir_surgery.config import ExportConfig, PruneConfig
from effir_surgery.encode import Encoder
from effir_surgery.export import export
from effir_surgery.folder import ONNX_FILE, ONNX_INT8_FILE
from effir_surgery.load import load_model, resolve_source
from effir_surgery.pipeline import prune

HERE = Path(__file__).resolve().parent


def _session(path: Path, threads: int):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _ort_encode(session, encoder: Encoder, docs: list[str], batch_size: int) -> np.ndarray:
    out = []
    for start in range(0, len(docs), batch_size):
        batch = encoder.tokenize(docs[start : start + batch_size])
        feed = {name: batch[name].numpy() for name in ("input_ids", "attention_mask")}
        out.append(session.run(["sentence_embedding"], feed)[0])
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    threads = torch.get_num_threads()
    docs, origin = texts(args.texts)
    work = Path(tempfile.mkdtemp(prefix="onnx-bench-"))

    pruned = work / "pruned"
    prune(PruneConfig(model="smollm2-135m", mlp_drop=0.5, output=pruned, verify_reload=False))
    exported = work / "onnx"
    result = export(ExportConfig(model=str(pruned), output=exported, quantize="int8"))

    source = load_model(resolve_source("smollm2-135m"))
    runs = {
        "PyTorch, unpruned source": Encoder(source.model, source.tokenizer),
        "PyTorch, pruned": Encoder.from_pretrained(str(pruned)),
    }
    for encoder in runs.values():
        encoder.config = encoder.config.model_copy(update={"max_length": args.max_length})
    pruned_encoder = runs["PyTorch, pruned"]
    sessions = {
        "ONNX Runtime float32, pruned": _session(exported / ONNX_FILE, threads),
        "ONNX Runtime int8, pruned": _session(exported / ONNX_INT8_FILE, threads),
    }

    def encode(name: str) -> np.ndarray:
        if name in runs:
            return runs[name].encode(docs, batch_size=args.batch_size).numpy()
        return _ort_encode(sessions[name], pruned_encoder, docs, args.batch_size)

    names = [*runs, *sessions]
    embeddings = {name: encode(name) for name in names}  # warm-up, and the embeddings compared below
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):  # interleaved, so drift on a noisy machine hits every runtime alike
        for name in names:
            started = time.perf_counter()
            encode(name)
            seconds[name].append(time.perf_counter() - started)

    reference = embeddings["PyTorch, pruned"]
    rows = []
    for name in names:
        median = statistics.median(seconds[name])
        cosine = (embeddings[name] * reference).sum(axis=1) if name != "PyTorch, unpruned source" else None
        rows.append(
            {
                "runtime": name,
                "docs_per_s": round(len(docs) / median, 2),
                "seconds_median": round(median, 3),
                "seconds_all": [round(s, 3) for s in seconds[name]],
                "cosine_to_pytorch_pruned_min": None if cosine is None else round(float(cosine.min()), 5),
                "cosine_to_pytorch_pruned_mean": None if cosine is None else round(float(cosine.mean()), 5),
            }
        )
    base = next(r for r in rows if r["runtime"] == "PyTorch, pruned")["docs_per_s"]
    for row in rows:
        row["ratio_to_pytorch_pruned"] = round(row["docs_per_s"] / base, 3)

    record = {
        "command": "python benchmarks/onnx_runtime.py "
        f"--texts {args.texts} --max-length {args.max_length} --batch-size {args.batch_size} --rounds {args.rounds}",
        "texts": origin,
        "machine": f"{platform.processor() or platform.machine()}, {threads} threads (torch and onnxruntime)",
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "export_check_max_abs_diff": result.max_abs_diff,
        "rows": rows,
    }
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "onnx_runtime.json").write_text(json.dumps(record, indent=1) + "\n")
    lines = [
        "# Pruned SmolLM2-135M (`--mlp-drop 0.5`, no fine-tuning): PyTorch against ONNX Runtime",
        "",
        f"`{record['command']}`; {origin}, batch {args.batch_size}, max length {args.max_length}, "
        f"{record['machine']}; median of {args.rounds} interleaved rounds.",
        "",
        "| runtime | docs/s | vs PyTorch pruned | cosine to PyTorch pruned (min / mean) |",
        "|---|---:|---:|---|",
    ]
    for row in rows:
        cos = (
            "–"
            if row["cosine_to_pytorch_pruned_min"] is None
            else f"{row['cosine_to_pytorch_pruned_min']:.5f} / {row['cosine_to_pytorch_pruned_mean']:.5f}"
        )
        lines.append(f"| {row['runtime']} | {row['docs_per_s']} | {row['ratio_to_pytorch_pruned']:.2f}x | {cos} |")
    (out / "onnx_runtime.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

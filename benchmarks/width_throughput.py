"""Benchmark: SmolLM2-135M at MLP width ratios 1.0 / 0.75 / 0.5 (one-shot activation scores, no fine-tuning).

Reports parameters, FLOPs per token and measured encode throughput, and compares the measured speed-up with the
FLOP ratio. Writes benchmarks/results/width_throughput.{json,md}.

    python benchmarks/width_throughput.py [--texts 96] [--max-length 256] [--batch-size 16]

Texts are SciFact corpus documents from ../shared/data (title + text) when present, else the bundled passages.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import platform
import time
from pathlib import Path

import torch

from effir_surgery.analyze import analyze_importance
from effir_surgery.calib import load_calibration
from effir_surgery.config import EncoderSettings, PlanSettings
from effir_surgery.costs import flops_per_token, param_count
from effir_surgery.encode import Encoder, measure_throughput
from effir_surgery.load import load_model, resolve_source
from effir_surgery.plan import make_plan
from effir_surgery.surgery import apply_plan

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"


def texts(n: int) -> tuple[list[str], str]:
    corpus = SHARED / "scifact" / "corpus.jsonl.gz"
    if corpus.is_file():
        with gzip.open(corpus, "rt", encoding="utf-8") as f:
            rows = [json.loads(line) for _, line in zip(range(n), f, strict=False)]
        return [f"{r['title']} {r['text']}" for r in rows], f"first {n} SciFact corpus documents"
    calib = load_calibration(None, 2 * n)
    docs = [t for t in calib.texts if not t.startswith("Instruct:")][:n]
    return docs, f"{len(docs)} bundled passages"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=96)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--ratios", default="1.0,0.75,0.5")
    args = parser.parse_args()

    loaded = load_model(resolve_source("smollm2-135m"))
    calibration = load_calibration(str(SHARED / "scifact") if SHARED.is_dir() else None, 128)
    report = analyze_importance(
        loaded.model,
        loaded.tokenizer,
        loaded.spec,
        loaded.shape,
        calibration,
        model_name="smollm2-135m",
        max_length=256,
        batch_size=8,
    )
    docs, where = texts(args.texts)
    encoder_config = EncoderSettings(max_length=args.max_length)
    rows = []
    for ratio in [float(r) for r in args.ratios.split(",")]:
        model = copy.deepcopy(loaded.model)
        plan = make_plan(loaded.shape, PlanSettings(mlp_width=ratio), report, model_name="smollm2-135m")
        apply_plan(model, plan)
        encoder = Encoder(model, loaded.tokenizer, encoder_config)
        measured = measure_throughput(encoder, docs, args.batch_size)
        mean_len = measured["tokens"] / measured["texts"]
        rows.append(
            {
                "mlp_width_ratio": ratio,
                "mlp_width": plan.mlp_widths[0],
                "params": param_count(loaded.shape, plan.mlp_widths).total,
                "params_measured": sum(p.numel() for p in model.parameters()),
                "flops_per_token": flops_per_token(loaded.shape, round(mean_len), plan.mlp_widths),
                **measured,
            }
        )
        del model, encoder
    ref = rows[0]
    for row in rows:
        row["speedup"] = row["tokens_per_s"] / ref["tokens_per_s"]
        row["flop_ratio"] = ref["flops_per_token"] / row["flops_per_token"]
    result = {
        "benchmark": "width_throughput",
        "model": "smollm2-135m",
        "texts": where,
        "max_length": args.max_length,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "rows": rows,
    }
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "width_throughput.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"SmolLM2-135M, one-shot MLP width reduction, no fine-tuning; {where}, max length {args.max_length}, "
        f"batch {args.batch_size}, fp32, {result['machine']}.",
        "",
        "| MLP width ratio | MLP width | params | FLOPs/token | tokens/s | docs/s | speed-up | FLOP ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mlp_width_ratio']:.2f} | {r['mlp_width']} | {r['params']:,} | {r['flops_per_token'] / 1e6:.1f}M | "
            f"{r['tokens_per_s']:,.0f} | {r['docs_per_s']:.2f} | {r['speedup']:.2f}x | {r['flop_ratio']:.2f}x |"
        )
    (out / "width_throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

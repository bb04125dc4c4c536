"""Build docs/results.md and docs/results.png from the study runs (recipes/study/*.yaml).

Reads runs/study/report/eval/results.json (quality + efficiency of every model, measured together) and each
variant's run.json / finetune.json / provenance.json (what was removed, training wall time). Every number in the
page comes from those files.

    python scripts/study_report.py [--runs runs/study] [--out docs]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

VARIANTS = ["ref", "mlp25", "mlp50", "attn25", "attn50", "width-oneshot", "width-learned"]
LABELS = {
    "ref": "full model (reference)",
    "mlp25": "drop 8 MLP",
    "mlp50": "drop 15 MLP",
    "attn25": "drop 8 attention",
    "attn50": "drop 15 attention",
    "width-oneshot": "drop 8 MLP + one-shot width",
    "width-learned": "drop 8 MLP + learned width",
}


def load(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", default="runs/study")
    parser.add_argument("--out", default="docs")
    args = parser.parse_args()
    runs, out = Path(args.runs), Path(args.out)
    report = load(runs / "report" / "eval" / "results.json")
    if report is None:
        raise SystemExit(f"{runs}/report/eval/results.json is missing: run recipes/study/report.yaml first")
    by_path = {str(Path(m["path"]).resolve()) if m.get("path") else m["name"]: m for m in report["models"]}
    rows = []
    for variant in VARIANTS:
        folder = (runs / variant / "finetuned").resolve()
        entry = by_path.get(str(folder))
        if entry is None:
            continue
        run = load(runs / variant / "run.json") or {"stages": {}}
        training = load(folder / "finetune.json") or {}
        provenance = load(folder / "provenance.json") or {}
        plan = load(folder / "surgery_plan.json") or {}
        width = load(folder / "width_plan.json")
        stages = run.get("stages", {})
        rows.append(
            {
                "variant": variant,
                "label": LABELS[variant],
                "entry": entry,
                "train_seconds": training.get("seconds"),
                "prune_seconds": stages.get("prune", {}).get("seconds"),
                "steps": training.get("steps"),
                "dropped_mlp": len(plan.get("drop_mlp_layers", [])) + (len(width["drop_mlp_layers"]) if width else 0),
                "dropped_attention": len(plan.get("drop_attention_layers", [])),
                "costs": provenance.get("costs"),
            }
        )
    ref = rows[0]["entry"] if rows and rows[0]["variant"] == "ref" else None
    lines = _table(rows, ref, report)
    (out / "results.md").write_text("\n".join(lines) + "\n")
    _plot(rows, report, out / "results.png")
    print("\n".join(lines))


def _scores(entry) -> dict:
    return entry["tasks"][0]["scores"]


def _table(rows, ref, report) -> list[str]:
    ref_ndcg = _scores(ref)["ndcg_at_10"] if ref else None
    ref_params = ref["efficiency"]["params_total"] if ref else None
    lines = [
        "| model | MLP / attn removed | nDCG@10 | Δ vs ref | Recall@100 | params | params removed | Δ nDCG@10 per "
        "10M params removed | FLOPs/token | tokens/s | speed-up | FLOP ratio | train time |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        e = row["entry"]
        s, eff = _scores(e), e["efficiency"]
        delta = s["ndcg_at_10"] - ref_ndcg if ref_ndcg is not None else None
        removed = ref_params - eff["params_total"] if ref_params else None
        per = f"{100 * delta / (removed / 1e7):+.2f}" if removed else "-"
        lines.append(
            f"| {row['label']} | {row['dropped_mlp']} / {row['dropped_attention']} | {s['ndcg_at_10']:.4f} | "
            f"{'-' if delta is None else f'{100 * delta:+.2f}'} | {s['recall_at_100']:.4f} | "
            f"{eff['params_total'] / 1e6:.1f}M | {'-' if not removed else f'{removed / 1e6:.1f}M'} | {per} | "
            f"{eff['flops_per_token'] / 1e6:.1f}M | {eff['tokens_per_s']:,.0f} | {eff['speedup']:.2f}x | "
            f"{eff['flop_ratio']:.2f}x | {_minutes(row['train_seconds'])} |"
        )
    for e in report["models"]:
        if any(e is row["entry"] for row in rows):
            continue
        s, eff = _scores(e), e.get("efficiency") or {}
        delta = s["ndcg_at_10"] - ref_ndcg if ref_ndcg is not None else None
        label = {"smollm2-135m": "SmolLM2-135M, not fine-tuned"}.get(e["name"], e["name"])
        lines.append(
            f"| {label} | - | {s['ndcg_at_10']:.4f} | {'-' if delta is None else f'{100 * delta:+.2f}'} | "
            f"{s['recall_at_100']:.4f} | {_m(eff.get('params_total'))} | - | - | "
            f"{_m(eff.get('flops_per_token'))} | {_n(eff.get('tokens_per_s'), ',.0f')} | "
            f"{_n(eff.get('speedup'), '.2f', 'x')} | {_n(eff.get('flop_ratio'), '.2f', 'x')} | - |"
        )
    return lines


def _m(value) -> str:
    return "-" if value is None else f"{value / 1e6:.1f}M"


def _n(value, spec, suffix="") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _minutes(seconds) -> str:
    return "-" if seconds is None else f"{seconds / 60:.0f} min"


def _plot(rows, report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    colors = {"ref": "black", "mlp": "#DD8452", "attn": "#4C72B0", "width": "#55A868"}
    for row in rows:
        eff, s = row["entry"]["efficiency"], _scores(row["entry"])
        kind = next((k for k in ("mlp", "attn", "width") if row["variant"].startswith(k)), "ref")
        ax.scatter(eff["tokens_per_s"], s["ndcg_at_10"], color=colors[kind], s=50, zorder=3)
        ax.annotate(
            row["label"], (eff["tokens_per_s"], s["ndcg_at_10"]), textcoords="offset points", xytext=(5, 4), fontsize=8
        )
    for e in report["models"]:
        if e["kind"] == "bm25" or e["name"] in ("all-MiniLM-L6-v2", "smollm2-135m"):
            s = _scores(e)
            ax.axhline(s["ndcg_at_10"], color="grey", linestyle="--", linewidth=0.8)
            ax.annotate(
                e["name"],
                (0.01, s["ndcg_at_10"]),
                xycoords=("axes fraction", "data"),
                fontsize=7,
                color="grey",
                textcoords="offset points",
                xytext=(0, 2),
            )
    ax.set_xlabel("encoding throughput (tokens/s, SmolLM2 variants, same documents, bf16, 2 CPU cores)")
    ax.set_ylabel("SciFact nDCG@10 (test, full corpus)")
    ax.set_title("SmolLM2-135M retrievers: quality against measured throughput")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()

"""The results of an evaluation: ``results.json``'s model (``EvalResults``), ``results.md`` and ``tradeoff.png``.

``results.json`` has the schema ``effir-surgery/results/v1`` (documented in docs/evaluation.md); ``add_ratios``
fills in each dense model's speed-up and FLOP ratio against the first, ``results_table`` renders the markdown and
``plot_tradeoff`` the quality/throughput plot.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from . import __version__
from .folder import RESULTS_SCHEMA


class EvalResults(BaseModel):
    """The content of ``results.json``."""

    model_config = ConfigDict(populate_by_name=True)

    schema_: str = Field(RESULTS_SCHEMA, alias="schema")
    tool_version: str = __version__
    created: str
    command: str
    models: list[dict]

    def dump(self) -> dict:
        return self.model_dump(by_alias=True)


def add_ratios(entries: list[dict]) -> None:
    """Speed-up and FLOP ratio of every dense model against the first dense model (the reference)."""
    dense = [e for e in entries if e["efficiency"]]
    if not dense:
        return
    ref = dense[0]["efficiency"]
    for entry in dense:
        eff = entry["efficiency"]
        eff["speedup"] = eff["tokens_per_s"] / ref["tokens_per_s"]
        eff["flop_ratio"] = ref["flops_per_token"] / eff["flops_per_token"]


def _fmt_params(n) -> str:
    return "-" if n is None else f"{n / 1e6:.1f}M"


def results_table(results: EvalResults) -> str:
    """Markdown: one row per model and task, with the efficiency columns of that model."""
    lines = [
        "| model | task | nDCG@10 | Recall@100 | MRR@10 | params | non-emb. params | FLOPs/token | tokens/s | docs/s "
        "| speed-up | FLOP ratio | peak mem (MB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for entry in results.models:
        eff = entry.get("efficiency") or {}
        for task in entry["tasks"]:
            s = task["scores"]
            flops = eff.get("flops_per_token")
            mark = "*" if task.get("subsample") else ""
            lines.append(
                f"| {entry['name']} | {task['task']}{mark} | {s['ndcg_at_10']:.4f} | {s['recall_at_100']:.4f} | "
                f"{s['mrr_at_10']:.4f} | {_fmt_params(eff.get('params_total'))} | "
                f"{_fmt_params(eff.get('params_non_embedding'))} | "
                f"{'-' if flops is None else f'{flops / 1e6:.1f}M'} | "
                f"{_num(eff.get('tokens_per_s'), ',.0f')} | {_num(eff.get('docs_per_s'), '.2f')} | "
                f"{_num(eff.get('speedup'), '.2f', 'x')} | {_num(eff.get('flop_ratio'), '.2f', 'x')} | "
                f"{_num(eff.get('peak_memory_mb'), ',.0f')} |"
            )
            if task.get("subsample") and task["subsample"]["note"] not in notes:
                notes.append(task["subsample"]["note"])
    dense = [e["efficiency"] for e in results.models if e.get("efficiency")]
    if dense:
        eff = dense[0]
        estimated = [
            e["name"] for e in results.models if (e.get("efficiency") or {}).get("flops_method") == "estimate"
        ]
        lines += [
            "",
            f"Throughput: {eff['texts']} corpus documents, mean {eff['seq_len']} tokens, batch "
            f"{eff['batch_size']}, {eff['dtype']}, {eff['device']}, {eff['threads']} threads, best of 2 "
            f"passes after warm-up, each model in a fresh process. Speed-up and FLOP ratio are against the "
            "first model. FLOPs/token exclude the LM head"
            + (f"; estimated for {', '.join(estimated)}, exact for the others." if estimated else " and are exact."),
        ]
    lines += [f"* subsampled: {note}" for note in notes]
    return "\n".join(lines)


def _num(value, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


SCORE_LABELS = {"ndcg_at_10": "nDCG@10", "recall_at_100": "Recall@100", "mrr_at_10": "MRR@10"}


def quality_label(results: EvalResults) -> str:
    """The plot's y-axis: the tasks' main score by name (``main_score_name``, e.g. nDCG@10) when they share one,
    else "main score"; then the task, or how many tasks are averaged."""
    tasks = sorted({t["task"] for e in results.models for t in e["tasks"]})
    names = {t.get("main_score_name") for e in results.models for t in e["tasks"]}
    name = names.pop() if len(names) == 1 else None
    label = SCORE_LABELS.get(name, name) if name else "main score"
    if not tasks:
        return label
    return label + (f" (mean of {len(tasks)} tasks)" if len(tasks) > 1 else f" ({tasks[0]})")


def plot_tradeoff(results: EvalResults, path: Path) -> None:
    """Quality (mean main score over tasks) against measured throughput (docs/s, log scale); BM25 as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for entry in results.models:
        quality = sum(t["scores"]["main_score"] for t in entry["tasks"]) / max(1, len(entry["tasks"]))
        eff = entry.get("efficiency")
        if eff:
            ax.scatter(eff["docs_per_s"], quality, s=40)
            ax.annotate(
                entry["name"], (eff["docs_per_s"], quality), textcoords="offset points", xytext=(5, 4), fontsize=8
            )
        else:
            ax.axhline(quality, linestyle="--", color="grey", linewidth=1)
            ax.annotate(
                entry["name"],
                (0.01, quality),
                xycoords=("axes fraction", "data"),
                textcoords="offset points",
                xytext=(0, 3),
                fontsize=8,
                color="grey",
            )
    ax.set_xscale("log")
    ax.set_xlabel("encoding throughput (documents/s, log scale)")
    ax.set_ylabel(quality_label(results))
    ax.set_title("Effectiveness-efficiency trade-off")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

"""Build docs/results.md and docs/results.png from the study's kept results (``studies/smollm2-effir/results/``).

The study (``recipes/*.yaml`` and ``scripts/run_study.sh`` in ``studies/smollm2-effir/``) is collected over several
sessions: each finished variant's small result files are kept in ``results/VARIANT/`` by ``scripts/study_archive.py``
(paths in the study's folder). This page reads
each variant's own scores (``eval/results.json``: its fine-tuned model, and for the second protocol the pruned
model before retraining), what was removed and how it trained (``finetuned/{surgery_plan,config,finetune}.json``,
``run.json``), the baselines (``baselines/``), ArguAna (``arguana/``, if run) and the throughput of every model
measured in one sitting (``speed.json``, ``scripts/study_speed.py``). Every number in the generated part of the page
comes from those files; variants not run yet are listed as such. Text under the page's "## Discussion" heading is
written by hand and kept when the page is regenerated. The defaults are found from this file, not the working
directory:

    python studies/smollm2-effir/scripts/study_report.py [--study studies/smollm2-effir/results] [--out docs]
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

STUDY = Path(__file__).resolve().parents[1]  # the study's folder, studies/smollm2-effir
REPO = STUDY.parents[1]
HOME = STUDY.relative_to(REPO).as_posix()  # how the page names the study's folder (paths from the repo root)
VARIANTS = [
    "ref",
    "mlp25",
    "mlp50",
    "attn25",
    "attn50",
    "width-oneshot",
    "width-learned",
    "width-learned-taylor",
    "width-learned-penalty01",
    "ft-mlp50",
    "ft-width-oneshot",
    "mlp50-long",
]
LABELS = {
    "ref": "full model (reference)",
    "mlp25": "drop 8 MLP",
    "mlp50": "drop 15 MLP",
    "attn25": "drop 8 attention",
    "attn50": "drop 15 attention",
    "width-oneshot": "drop 8 MLP + one-shot width",
    "width-learned": "drop 8 MLP + learned width",
    "width-learned-taylor": "drop 8 MLP + learned width, Taylor gate scores",
    "width-learned-penalty01": "drop 8 MLP + learned width, penalty 0.1",
    "ft-mlp50": "reference → drop 15 MLP → fine-tuned again",
    "ft-width-oneshot": "reference → drop 8 MLP + one-shot width → fine-tuned again",
    "mlp50-long": "drop 15 MLP, trained twice as long",
}
# The compressions that remove about half of the MLP parameters (the issue's 2-point question).
HALF_MLP = tuple(v for v in VARIANTS if v not in ("ref", "mlp25", "attn25", "attn50"))
# Second protocol: these start from the fine-tuned reference, so their training is the reference's plus their own.
SECOND_PROTOCOL = ("ft-mlp50", "ft-width-oneshot")
BASELINE_LABELS = {
    "smollm2-135m": "SmolLM2-135M, not fine-tuned",
    "BM25": "BM25",
    "all-MiniLM-L6-v2": "all-MiniLM-L6-v2",
}
DISCUSSION = "## Discussion"
# The paper's claim at one count, keyed by (MLP drop costs less than attention drop, ... per parameter removed).
FINDING = {
    (True, True): "The paper's finding holds at this count.",
    (False, False): "The paper's finding does not hold at this count.",
    (True, False): "The paper's finding holds by count but not per parameter.",
    (False, True): "The paper's finding holds per parameter but not by count.",
}


def load(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--study", default=str(STUDY / "results"))
    parser.add_argument("--out", default=str(REPO / "docs"))
    args = parser.parse_args()
    study, out = Path(args.study), Path(args.out)
    timing = load(study / "speed.json")
    speed = (timing or {}).get("models", {})
    rows = _rows(study, speed)
    if not rows or rows[0]["variant"] != "ref":
        raise SystemExit(f"the reference is not in {study}/ref: run bash {HOME}/scripts/run_study.sh ref")
    baselines = _baselines(load(study / "baselines" / "eval" / "results.json"), speed)
    second = _second_dataset(load(study / "arguana" / "eval" / "results.json"))
    page = out / "results.md"
    kept = ""
    if page.is_file() and DISCUSSION in page.read_text():
        kept = page.read_text().split(DISCUSSION, 1)[1]
    seeds = _seeds(study, rows)
    lines = _page(rows, baselines, out, second, timing, seeds)
    page.write_text("\n".join(lines) + "\n\n" + DISCUSSION + (kept or "\n\n(to be written)\n"))
    if any(row["entry"]["efficiency"] for row in rows):
        _plot(rows, baselines, out / "results.png", seeds)
    else:  # an empty plot would only mislead; the page says throughput is not measured yet
        (out / "results.png").unlink(missing_ok=True)
    print("\n".join(lines))


def _entry(results: dict, folder: str) -> dict | None:
    """The model of a run's results whose path is the run's ``folder`` (``finetuned`` or ``pruned``)."""
    for entry in results["models"]:
        if entry.get("path") and Path(entry["path"]).name == folder:
            return entry
    return None


def _rows(study: Path, speed: dict) -> list[dict]:
    rows = []
    for variant in VARIANTS:
        results = load(study / variant / "eval" / "results.json")
        entry = _entry(results, "finetuned") if results else None
        if entry is None:
            continue
        folder = study / variant / "finetuned"
        plan = load(folder / "surgery_plan.json") or {}
        widths = (load(folder / "config.json") or {}).get("mlp_intermediate_sizes")
        rows.append(
            {
                "variant": variant,
                "label": LABELS[variant],
                "entry": {**entry, "efficiency": speed.get(variant)},
                "pruned": _entry(results, "pruned"),
                "training": load(folder / "finetune.json") or {},
                "durations": (load(study / variant / "run.json") or {}).get("durations", {}),
                "time": _time(study / variant / "time.txt"),
                "dropped_mlp": len(plan.get("drop_mlp_layers", [])) or (widths.count(0) if widths else 0),
                "dropped_attention": len(plan.get("drop_attention_layers", [])),
                "widths": widths,
            }
        )
    return rows


def _time(path: Path) -> str | None:
    """The whole recipe's wall time from ``/usr/bin/time -v`` (``h:mm:ss`` or ``m:ss.ss``)."""
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        if line.startswith("Elapsed"):
            return line.rsplit(" ", 1)[-1]
    return None


def _baselines(results, speed: dict) -> list[dict]:
    """The un-fine-tuned model, BM25 and MiniLM (``recipes/baselines.yaml``), with their measured speed."""
    if results is None:
        return []
    out = []
    for entry in results["models"]:
        out.append({**entry, "efficiency": speed.get(entry["name"])})
    return out


def _scores(entry) -> dict:
    return entry["tasks"][0]["scores"]


def _key(entry) -> str:
    """A model's name across result files: the variant of a run folder (``.../VARIANT/finetuned``), else its name."""
    if entry.get("path") and Path(entry["path"]).name == "finetuned":
        return Path(entry["path"]).parent.name
    return entry["name"]


def _second_dataset(results) -> dict:
    """ArguAna (recipes/arguana.yaml): nDCG@10 by model key, and the subsample note."""
    if results is None:
        return {}
    task = results["models"][0]["tasks"][0]
    return {
        "task": task["task"],
        "note": (task.get("subsample") or {}).get("note", "full corpus"),
        "ndcg": {_key(e): _scores(e)["ndcg_at_10"] for e in results["models"]},
    }


def _page(rows, baselines, out, second, speed, seeds) -> list[str]:
    ref = rows[0]
    task = ref["entry"]["tasks"][0]
    cfg = ref["training"].get("config", {})
    sub = task.get("subsample")
    settings = (speed or {}).get("settings", {})
    missing = [v for v in VARIANTS if v not in {row["variant"] for row in rows}]
    readme = Path(os.path.relpath(STUDY / "README.md", out.resolve())).as_posix()  # a link from the page's folder
    run = f"bash {HOME}/scripts/run_study.sh"
    lines = [
        "# Results: the EffiR finding on SmolLM2-135M",
        "",
        f"Generated by `python {HOME}/scripts/study_report.py` from the [study's]({readme}) kept results in "
        f"`{HOME}/results/` (one folder per recipe of `{HOME}/recipes/`); do not edit the numbers by hand. Reproduce "
        "everything with:",
        "",
        "```bash",
        f"{run}   # effir-surgery run {HOME}/recipes/<variant>.yaml",
        f"{' ' * len(run)}   # per variant, the baselines, then study_speed.py and this page",
        "```",
        "",
        "One variant costs half an hour to an hour on the 2-core CPUs used here (wall times below), so the study is "
        f"collected over several sessions: `{HOME}/scripts/run_study.sh` keeps each finished variant in "
        f"`{HOME}/results/VARIANT/` and skips it later. `{run} VARIANT@SEED` repeats a variant with another "
        "fine-tuning seed.",
        "",
        "## Setup",
        "",
        "- Backbone: SmolLM2-135M-Instruct (bundled, `smollm2-135m`), 30 layers. Each compressed variant is pruned "
        "by importance (`1 - cos` on 128 SciFact texts); every model, the reference included, is then fine-tuned "
        f"with the same settings: SciFact train ({ref['training'].get('examples', '?')} pairs), "
        f"{cfg.get('hard_negatives')} BM25 hard negative "
        f"per query, batch {cfg.get('batch_size')}, {cfg.get('max_length')} tokens, {cfg.get('epochs', 1):g} epoch(s) "
        f"({ref['training'].get('steps')} steps), lr {cfg.get('learning_rate')}, InfoNCE scale {cfg.get('scale')}, "
        f"{'bf16 autocast' if cfg.get('bf16') else 'fp32'}, {'LoRA' if cfg.get('lora') else 'full fine-tuning'}, "
        + (f"query prompt `{cfg['query_prompt']!r}`" if cfg.get("query_prompt") else "no query instruction")
        + " (why: [finetune.md](finetune.md)).",
        f"- Evaluation: SciFact test through mteb {task.get('mteb_version')}, "
        + (f"{sub['note']}" if sub else "full corpus (300 queries, 5,183 documents)")
        + ", documents truncated to 128 tokens, float32, by each variant's own recipe.",
    ]
    if speed:
        lines.append(
            f"- Throughput (`python {HOME}/scripts/study_speed.py`, {speed['created'][:10]}): every model in a fresh "
            f"process on the same {settings.get('texts')} SciFact documents, batch {settings.get('batch_size')}, "
            f"{settings.get('dtype')}, {speed['models'][speed['reference']]['threads']} CPU threads, best of two "
            "passes after warm-up, one model after another in one sitting. Each variant is timed on its architecture "
            "rebuilt from its kept `config.json` (speed does not depend on the weight values). Speed-ups are "
            "against the unpruned architecture. FLOPs/token exclude the LM head (the retriever never uses it)."
        )
    else:
        lines.append(f"- Throughput: not measured yet (`python {HOME}/scripts/study_speed.py`).")
    if second:
        lines.append(
            f"- Second dataset, zero-shot: {second['task']} test through mteb (`{HOME}/recipes/arguana.yaml`), "
            f"{second['note']}, same length and dtype; no model was trained on it."
        )
    if missing:
        lines.append(
            "- **Not run yet:** " + ", ".join(f"{LABELS[v]} (`{HOME}/recipes/{v}.yaml`)" for v in missing) + "."
        )
    lines += ["", "## Quality and cost", ""]
    lines += _table(rows, baselines, second)
    timed = any(row["entry"]["efficiency"] for row in rows)
    lines += ["", "![quality against throughput](results.png)" if timed else "(Plot: once throughput is measured.)"]
    lines += ["", "## Does the finding hold here?", ""]
    lines += _findings(rows, second) or [
        "Not yet: the answer needs a pair of the same count, `mlp25` with `attn25` or `mlp50` with `attn50`."
    ]
    lines += _second_protocol(rows)
    lines += _spread(rows, seeds)
    lines += ["", "## Wall times", ""]
    lines += _times(rows)
    return lines


def _table(rows, baselines, second) -> list[str]:
    ref = rows[0]["entry"]
    ref_ndcg = _scores(ref)["ndcg_at_10"]
    ref_params = (ref["efficiency"] or {}).get("params_total")
    extra = f" {second['task']} nDCG@10 |" if second else ""

    def other(entry) -> str:
        if not second:
            return ""
        value = second["ndcg"].get(_key(entry))
        return f" {'-' if value is None else f'{value:.4f}'} |"

    lines = [
        "| model | MLP / attn removed | nDCG@10 | Δ vs ref (points) | Recall@100 | params | params removed | Δ points "
        "per 10M params removed | FLOPs/token | tokens/s | speed-up | FLOP ratio |" + extra,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if second else ""),
    ]
    for row in rows:
        e = row["entry"]
        s, eff = _scores(e), e["efficiency"] or {}
        delta = 100 * (s["ndcg_at_10"] - ref_ndcg)
        removed = ref_params - eff["params_total"] if ref_params and eff else None
        per = f"{delta / (removed / 1e7):+.2f}" if removed else "-"
        lines.append(
            f"| {row['label']} | {row['dropped_mlp']} / {row['dropped_attention']} | {s['ndcg_at_10']:.4f} | "
            f"{'-' if row is rows[0] else f'{delta:+.2f}'} | {s['recall_at_100']:.4f} | "
            f"{_m(eff.get('params_total'))} | {'-' if not removed else f'{removed / 1e6:.1f}M'} | {per} | "
            + _cost_cells(eff)
            + other(e)
        )
    for e in baselines:
        s, eff = _scores(e), e.get("efficiency") or {}
        lines.append(
            f"| {BASELINE_LABELS.get(e['name'], e['name'])} | - | {s['ndcg_at_10']:.4f} | "
            f"{100 * (s['ndcg_at_10'] - ref_ndcg):+.2f} | {s['recall_at_100']:.4f} | {_m(eff.get('params_total'))} | "
            "- | - | " + _cost_cells(eff) + other(e)
        )
    return lines


def _cost_cells(eff: dict) -> str:
    return (
        f"{_m(eff.get('flops_per_token'))} | {_n(eff.get('tokens_per_s'), ',.0f')} | "
        f"{_n(eff.get('speedup'), '.2f', 'x')} | {_n(eff.get('flop_ratio'), '.2f', 'x')} |"
    )


def _findings(rows, second) -> list[str]:
    by = {row["variant"]: row for row in rows}
    ref_ndcg = _scores(by["ref"]["entry"])["ndcg_at_10"]
    ref_params = (by["ref"]["entry"]["efficiency"] or {}).get("params_total")

    def delta(v):
        return 100 * (_scores(by[v]["entry"])["ndcg_at_10"] - ref_ndcg)

    def removed(v):
        eff = by[v]["entry"]["efficiency"]
        return ref_params - eff["params_total"] if eff and ref_params else None

    lines = []
    for mlp, attn in (("mlp25", "attn25"), ("mlp50", "attn50")):
        if mlp not in by or attn not in by:
            continue
        k = by[mlp]["dropped_mlp"]
        dm, da = delta(mlp), delta(attn)
        verdict = "costs less" if dm > da else "costs more"
        if removed(mlp) is None or removed(attn) is None:
            lines.append(
                f"- **Drop {k}:** removing {k} MLP sublayers changes nDCG@10 by {dm:+.2f} points; removing {k} "
                f"attention sublayers by {da:+.2f}. At the same count, the MLP drop {verdict} quality than the "
                f"attention drop (per parameter: run {HOME}/scripts/study_speed.py)."
            )
            continue
        pm, pa = dm / (removed(mlp) / 1e7), da / (removed(attn) / 1e7)
        if pm < 0 and pa < 0:  # both cost quality: how many times dearer one is per parameter
            ratio = max(abs(pa), abs(pm)) / max(min(abs(pa), abs(pm)), 1e-9)
            per = f"{'cheaper' if pm > pa else 'dearer'} by a factor of {ratio:.1f}"
        else:  # a drop that costs nothing has no meaningful ratio
            per = "cheaper" if pm > pa else "dearer"
        lines.append(
            f"- **Drop {k}:** removing {k} MLP sublayers changes nDCG@10 by {dm:+.2f} points "
            f"({removed(mlp) / 1e6:.1f}M parameters removed, {pm:+.2f} points per 10M); removing {k} attention "
            f"sublayers changes it by {da:+.2f} points ({removed(attn) / 1e6:.1f}M removed, {pa:+.2f} per 10M). "
            f"At the same count, the MLP drop {verdict} quality than the attention drop; per parameter removed it "
            f"is {per}. " + FINDING[(dm > da, pm > pa)]
        )
    if second:
        got = {v: second["ndcg"].get(v) for v in by}
        if got.get("ref") is not None:
            parts = [
                f"{by[v]['label']} {100 * (got[v] - got['ref']):+.2f}"
                for v in VARIANTS[1:]  # every variant but the reference, in the table's order
                if got.get(v) is not None
            ]
            lines.append(
                f"- **Zero-shot on {second['task']}** (points of nDCG@10 against the reference's "
                f"{got['ref']:.4f}): " + "; ".join(parts) + "."
            )
    half = [v for v in HALF_MLP if v in by]
    if half:
        parts = [
            f"{by[v]['label']}: {delta(v):+.2f} points"
            + ("" if removed(v) is None else f" at {removed(v) / 1e6:.1f}M removed")
            for v in half
        ]
        best = max(half, key=delta)
        within = delta(best) >= -2.0
        lines.append(
            "- **About 50% of MLP parameters removed** ("
            + "; ".join(parts)
            + f"). The best so far, {by[best]['label']}, is "
            + ("within" if within else "not within")
            + " 2 nDCG@10 points of the reference."
        )
    return lines


def _second_protocol(rows) -> list[str]:
    """Compress the fine-tuned reference, then fine-tune again: the score right after pruning (no retraining) and
    after retraining, against the reference and the first protocol's model of the same size."""
    by = {row["variant"]: row for row in rows}
    present = [v for v in SECOND_PROTOCOL if v in by]
    if not present or "ref" not in by:
        return []
    ref = _scores(by["ref"]["entry"])["ndcg_at_10"]
    steps = by["ref"]["training"].get("steps")
    first = {"ft-mlp50": "mlp50", "ft-width-oneshot": "width-oneshot"}
    lines = [
        "",
        "## Second protocol: compress the trained retriever, then fine-tune again",
        "",
        f"The same compressions applied to the fine-tuned reference instead of the base model, then fine-tuned again "
        f"with the same settings ({steps} more steps; {2 * steps} in all counting the reference's). The first column "
        "is the pruned retriever before any retraining.",
        "",
        "| model | nDCG@10 right after pruning | after fine-tuning again | Δ vs ref (points) | same compression "
        "from the base model (first protocol) |",
        "|---|---:|---:|---:|---:|",
    ]
    for v in present:
        after = _scores(by[v]["entry"])["ndcg_at_10"]
        before = _scores(by[v]["pruned"])["ndcg_at_10"] if by[v]["pruned"] else None
        base = by.get(first[v])
        lines.append(
            f"| {by[v]['label']} | {'-' if before is None else f'{before:.4f}'} | {after:.4f} | "
            f"{100 * (after - ref):+.2f} | "
            + (f"{_scores(base['entry'])['ndcg_at_10']:.4f} ({base['label']})" if base else "-")
            + " |"
        )
    return lines


def _seeds(study: Path, rows) -> dict[str, dict]:
    """nDCG@10 by fine-tuning seed for each variant that was repeated: its kept run (the recipe's own seed) and every
    ``results/VARIANT@SEED`` (``bash scripts/run_study.sh VARIANT@SEED``). Variants run once are left out."""
    out = {}
    for row in rows:
        runs = {row["training"].get("config", {}).get("seed", "recipe"): _scores(row["entry"])["ndcg_at_10"]}
        for folder in sorted(study.glob(f"{row['variant']}@*")):
            results = load(folder / "eval" / "results.json")
            entry = _entry(results, "finetuned") if results else None
            if entry is not None:
                runs[folder.name.split("@", 1)[1]] = _scores(entry)["ndcg_at_10"]
        if len(runs) > 1:
            out[row["variant"]] = runs
    return out


def _spread(rows, seeds: dict[str, dict]) -> list[str]:
    """The run-to-run spread: each repeated variant's scores by seed, mean and range, and the same-count MLP against
    attention contrast on the means, set against that range (the table above shows one run per variant)."""
    if not seeds:
        return []
    by = {row["variant"]: row for row in rows}
    ref = by["ref"]
    ref_scores = seeds.get("ref") or {"recipe": _scores(ref["entry"])["ndcg_at_10"]}
    ref_mean = sum(ref_scores.values()) / len(ref_scores)

    def mean(v):
        return sum(seeds[v].values()) / len(seeds[v])

    def spread(v):
        return 100 * (max(seeds[v].values()) - min(seeds[v].values()))

    lines = [
        "",
        "## Run-to-run spread (fine-tuning seed)",
        "",
        "The table above shows one run per variant, with the recipe's seed. These variants were also fine-tuned "
        f"with other seeds (`bash {HOME}/scripts/run_study.sh VARIANT@SEED`, kept in `{HOME}/results/VARIANT@SEED/`); "
        "the seed draws the BM25 hard negatives and orders the training batches, and nothing else changes. "
        "Δ is against "
        + ("the reference's mean over its seeds." if "ref" in seeds else "the reference's single run."),
        "",
        "| model | seeds | nDCG@10 by seed | mean | range (points) | Δ mean vs ref (points) |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for v, runs in seeds.items():
        cells = ", ".join(f"{seed}: {value:.4f}" for seed, value in runs.items())
        delta = "-" if v == "ref" else f"{100 * (mean(v) - ref_mean):+.2f}"
        lines.append(f"| {by[v]['label']} | {len(runs)} | {cells} | {mean(v):.4f} | {spread(v):.2f} | {delta} |")
    for mlp, attn in (("mlp25", "attn25"), ("mlp50", "attn50")):
        if mlp not in seeds or attn not in seeds:
            continue
        k = by[mlp]["dropped_mlp"]
        dm, da = 100 * (mean(mlp) - ref_mean), 100 * (mean(attn) - ref_mean)
        widest = max(spread(mlp), spread(attn))
        effs = [(by[v]["entry"].get("efficiency") or {}).get("params_total") for v in ("ref", mlp, attn)]
        per = ""
        if all(effs):  # the same points per 10M parameters removed (removed counts do not vary with the seed)
            pm, pa = dm / ((effs[0] - effs[1]) / 1e7), da / ((effs[0] - effs[2]) / 1e7)
            per = f" Per 10M parameters removed: MLP {pm:+.2f}, attention {pa:+.2f}."
        lines.append("")
        lines.append(
            f"- **Drop {k}, mean over seeds:** MLP {dm:+.2f} points, attention {da:+.2f}: the MLP drop "
            f"{'costs less' if dm > da else 'costs more'} by {abs(dm - da):.2f} points, "
            + (
                f"more than the widest seed range of the two ({widest:.2f}), so these runs order them."
                if abs(dm - da) > widest
                else f"within the widest seed range of the two ({widest:.2f}): these runs do not order them."
            )
            + per
        )
    return lines


def _times(rows) -> list[str]:
    cfg = rows[0]["training"].get("config", {})
    candidates = cfg.get("batch_size", 0) * (1 + cfg.get("hard_negatives", 0))
    chance = f"chance ln {candidates} = {math.log(candidates):.2f}" if candidates else "chance"
    lines = [
        "| model | whole recipe | prune stage | training loop (steps) | evaluate stage | s/step | training loss: "
        f"first log → mean of the last 3 ({chance}) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        d, t = row["durations"], row["training"]
        steps = t.get("steps")
        per = f"{t['seconds'] / steps:.1f}" if t.get("seconds") and steps else "-"
        losses = t.get("losses") or []
        curve = f"{losses[0]:.2f} → {sum(losses[-3:]) / len(losses[-3:]):.2f}" if losses else "-"
        lines.append(
            f"| {row['label']} | {row['time'] or '-'} | {_minutes(d.get('prune'))} | "
            f"{_minutes(t.get('seconds'))} ({steps}) | {_minutes(d.get('evaluate'))} | {per} | {curve} |"
        )
    return lines


def _m(value) -> str:
    return "-" if value is None else f"{value / 1e6:.1f}M"


def _n(value, spec, suffix="") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _minutes(seconds) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def _plot(rows, baselines, path: Path, seeds: dict[str, dict] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    colors = {"ref": "black", "mlp": "#DD8452", "attn": "#4C72B0", "width": "#55A868", "ft": "#8172B3"}
    timed = [row for row in rows if row["entry"]["efficiency"]]
    span = max(row["entry"]["efficiency"]["tokens_per_s"] for row in timed) if timed else 1.0
    placed: list[tuple[float, float]] = []
    for row in timed:
        eff, s = row["entry"]["efficiency"], _scores(row["entry"])
        x, y = eff["tokens_per_s"], s["ndcg_at_10"]
        kind = next((k for k in ("mlp", "attn", "width", "ft") if row["variant"].startswith(k)), "ref")
        ax.scatter(x, y, color=colors[kind], s=50, zorder=3)
        for value in (seeds or {}).get(row["variant"], {}).values():  # the same model fine-tuned with other seeds
            ax.scatter(x, value, facecolors="none", edgecolors=colors[kind], s=50, zorder=3)
        # a label near one already placed goes below its point instead of above
        crowded = any(abs(x - px) < 0.1 * span and abs(y - py) < 0.04 for px, py in placed)
        placed.append((x, y))
        ax.annotate(row["label"], (x, y), textcoords="offset points", xytext=(5, -11 if crowded else 4), fontsize=8)
    for e in baselines:
        s = _scores(e)
        ax.axhline(s["ndcg_at_10"], color="grey", linestyle="--", linewidth=0.8)
        ax.annotate(
            BASELINE_LABELS.get(e["name"], e["name"]),
            (0.01, s["ndcg_at_10"]),
            xycoords=("axes fraction", "data"),
            fontsize=7,
            color="grey",
            textcoords="offset points",
            xytext=(0, 2),
        )
    sub = rows[0]["entry"]["tasks"][0].get("subsample")
    corpus = f"{sub['documents']:,}-document subsample" if sub else "full corpus"
    eff = timed[0]["entry"]["efficiency"] if timed else None
    ax.set_xlabel(
        f"encoding throughput (tokens/s, same documents, {eff['dtype']}, {eff['threads']} CPU threads)"
        if eff
        else f"encoding throughput (not measured yet: {HOME}/scripts/study_speed.py)"
    )
    ax.set_ylabel(f"SciFact nDCG@10 (test, {corpus})")
    ax.set_title(
        "SmolLM2-135M retrievers: quality against measured throughput"
        + ("\n(hollow: the same variant fine-tuned with another seed)" if seeds else "")
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()

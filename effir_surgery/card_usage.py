"""The card's Usage section: how to load the model (sentence-transformers, transformers), evaluate it with MTEB
and adapt it with LoRA, with the model's own id, prompt and maximum length filled in."""

from __future__ import annotations

import json


def usage_section(model_id: str, st: dict, config: dict, remote_code: bool, max_length: int) -> list[str]:
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
        f"{config.get('transformers_version', '?')}; loading needs transformers 5 or newer."
        + (
            " Use `encode_query` for queries: `encode` applies no prompt, and a query encoded without it is a "
            "different vector."
            if query_prompt
            else ""
        ),
        "",
        "Evaluate with MTEB (`pip install mteb`), through sentence-transformers, which applies the prompts:",
        "",
        "```python",
        "import mteb",
        "from sentence_transformers import SentenceTransformer",
        "",
        f'model = SentenceTransformer("{model_id}"{trust})',
        'results = mteb.evaluate(model, tasks=mteb.get_tasks(tasks=["SciFact"]))',
        "```",
        "",
    ]
    targets = _lora_targets(config)
    if targets:
        lines += [
            "Adapt it further with LoRA (`pip install peft`); name the target modules, so the adapter wraps exactly "
            "the projections this model has:",
            "",
            "```python",
            "from peft import LoraConfig, get_peft_model",
            "from transformers import AutoModel",
            "",
            f'model = AutoModel.from_pretrained("{model_id}"{trust})',
            f"model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules={list(targets)!r}))",
            "```",
            "",
        ]
    lines += [
        'Serve it with ONNX Runtime (`pip install "effir-surgery[export]"`): `effir-surgery export MODEL_DIR -o '
        "MODEL_DIR-onnx` on a local copy of this model (from the Hub: `hf download REPO --local-dir MODEL_DIR`) "
        "writes `onnx/model.onnx` (inputs `input_ids`, `attention_mask`; output `sentence_embedding`, pooled and "
        "normalised), checked against PyTorch; `--quantize int8` adds int8 weights.",
        "",
    ]
    return lines


def _lora_targets(config: dict) -> tuple[str, ...]:
    """The linear modules a LoRA adapter wraps in this family (``arch.ArchSpec.lora_targets``); empty if unknown."""
    from .arch import ARCH_SPECS

    spec = ARCH_SPECS.get(str(config.get("model_type", "")).removeprefix("effir_"))
    return spec.lora_targets if spec else ()

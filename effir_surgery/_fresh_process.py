"""Checks run in a clean Python process where ``effir_surgery`` cannot be imported: plain transformers only.

Run as a script (``python -I _fresh_process.py TASK ...``); ``fresh.py`` is the in-package caller. Tasks:

- ``reload FOLDER INPUTS OUTPUTS DTYPE``: load FOLDER with ``AutoModelForCausalLM`` and ``AutoModel``
  (``trust_remote_code=True``), run the input ids/mask in INPUTS and save logits and last hidden states to OUTPUTS.
  Also reports the classes loaded and whether the tokenizer appends EOS with left padding.
- ``compare SOURCE PRUNED TEXTS OUT DTYPE BATCH``: encode the texts (last-token pooling, EOS appended by the
  pruned folder's tokenizer, left padding, L2 norm) with both models and report throughput and cosine agreement.

This file deliberately re-implements last-token pooling instead of importing it: it is the independent witness
that a saved folder works without the toolkit.
"""

import json
import sys
import time

sys.modules["effir_surgery"] = None  # any import of the toolkit now fails

import torch  # noqa: E402
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def reload(folder, inputs_path, outputs_path, dtype):
    inputs = torch.load(inputs_path, weights_only=True)
    dtype = DTYPES[dtype]
    causal = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, dtype=dtype).eval()
    base = AutoModel.from_pretrained(folder, trust_remote_code=True, dtype=dtype).eval()
    with torch.inference_mode():
        logits = causal(**inputs, use_cache=False).logits
        hidden = base(**inputs, use_cache=False).last_hidden_state
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    batch = tokenizer(["a short text", "a"], padding=True)
    eos_last = all(ids[-1] == tokenizer.eos_token_id for ids in batch["input_ids"])
    torch.save({"logits": logits, "hidden": hidden}, outputs_path)
    report = {
        "causal_class": type(causal).__name__,
        "base_class": type(base).__name__,
        "params": sum(p.numel() for p in causal.parameters()),
        "tokenizer_appends_eos": eos_last,
        "padding_side": tokenizer.padding_side,
        "toolkit_importable": _toolkit_importable(),
    }
    print(json.dumps(report))


def _toolkit_importable():
    try:
        import effir_surgery  # noqa: F401
    except ImportError:
        return False
    return True


def _embed(model, tokenizer, texts, batch_size):
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            texts[start : start + batch_size], padding=True, truncation=True, max_length=512, return_tensors="pt"
        )
        hidden = model(**batch, use_cache=False).last_hidden_state
        last = (
            hidden[:, -1]
            if bool(batch["attention_mask"][:, -1].all())
            else hidden[torch.arange(hidden.shape[0]), batch["attention_mask"].sum(1) - 1]
        )
        out.append(torch.nn.functional.normalize(last.float(), dim=-1))
    return torch.cat(out)


def compare(source, pruned, texts_path, out_path, dtype, batch_size, trust_source):
    texts = json.loads(open(texts_path, encoding="utf-8").read())
    batch_size = int(batch_size)
    tokenizer = AutoTokenizer.from_pretrained(pruned, trust_remote_code=True)
    n_tokens = int(sum(len(ids) for ids in tokenizer(texts)["input_ids"]))
    models = {
        "source": AutoModel.from_pretrained(source, trust_remote_code=trust_source == "1", dtype=DTYPES[dtype]).eval(),
        "pruned": AutoModel.from_pretrained(pruned, trust_remote_code=True, dtype=DTYPES[dtype]).eval(),
    }
    result = {
        "texts": len(texts),
        "tokens": n_tokens,
        "batch_size": batch_size,
        "dtype": dtype,
        "threads": torch.get_num_threads(),
    }
    embeddings, seconds = {}, {}
    with torch.inference_mode():
        for model in models.values():  # warm-up
            _embed(model, tokenizer, texts[:batch_size], batch_size)
        for _ in range(2):  # interleaved repeats; keep the best of each
            for name, model in models.items():
                start = time.perf_counter()
                embeddings[name] = _embed(model, tokenizer, texts, batch_size)
                seconds[name] = min(seconds.get(name, float("inf")), time.perf_counter() - start)
    cos = (embeddings["source"] * embeddings["pruned"]).sum(-1)
    for name, model in models.items():
        result[name] = {
            "params": sum(p.numel() for p in model.parameters()),
            "seconds": seconds[name],
            "tokens_per_s": n_tokens / seconds[name],
            "class": type(model).__name__,
        }
    result["speedup"] = seconds["source"] / seconds["pruned"]
    result["cosine_mean"] = float(cos.mean())
    result["cosine_min"] = float(cos.min())
    result["toolkit_importable"] = _toolkit_importable()
    with open(out_path, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1)


if __name__ == "__main__":
    task, *args = sys.argv[1:]
    {"reload": reload, "compare": compare}[task](*args)

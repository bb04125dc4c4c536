"""Benchmark: effir-surgery's encoder (base model, no LM head) against encoding through ``AutoModelForCausalLM`` with
``output_hidden_states=True`` (the approach of the EffiR authors' evaluation script), on the same texts.

Both take the last token's final hidden state. The causal-LM path also computes the LM head's logits over the
vocabulary for every token and keeps every layer's hidden states.
Writes benchmarks/results/encoder_vs_causal.{json,md}.

    python benchmarks/encoder_vs_causal.py [--model smollm2-135m] [--texts 64] [--max-length 256] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import time
from pathlib import Path

import torch

from effir_surgery.config import EncoderSettings
from effir_surgery.devices import torch_dtype
from effir_surgery.encode import Encoder, best_time, last_token_pool, prepare_tokenizer
from effir_surgery.load import ensure_local, resolve_source

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"


def scifact_docs(n: int) -> list[str]:
    corpus = SHARED / "scifact" / "corpus.jsonl.gz"
    if not corpus.is_file():
        raise SystemExit(f"{corpus} not found: this benchmark reads SciFact from ../shared/data")
    with gzip.open(corpus, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for _, line in zip(range(n), f, strict=False)]
    return [f"{r['title']} {r['text']}" for r in rows]


def main() -> None:
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()
    folder = ensure_local(resolve_source(args.model))
    dtype = torch_dtype(args.dtype)
    texts = scifact_docs(args.texts)
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(folder, trust_remote_code=True))

    base = AutoModel.from_pretrained(folder, dtype=dtype, trust_remote_code=True).eval()
    encoder = Encoder(base, tokenizer, EncoderSettings(max_length=args.max_length))
    causal = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, trust_remote_code=True).eval()

    def causal_encode() -> torch.Tensor:
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), args.batch_size):
                batch = encoder.tokenize(texts[start : start + args.batch_size])
                hidden = causal(**batch, output_hidden_states=True).hidden_states[-1]
                out.append(
                    torch.nn.functional.normalize(last_token_pool(hidden, batch["attention_mask"]).float(), dim=-1)
                )
        return torch.cat(out)

    same = torch.nn.functional.cosine_similarity(encoder.encode(texts, batch_size=args.batch_size), causal_encode())
    tokens = int(encoder.tokenize(texts)["attention_mask"].sum())
    encoder.encode(texts[: args.batch_size], batch_size=args.batch_size)  # warm-up both paths
    t_encoder = best_time(lambda: encoder.encode(texts, batch_size=args.batch_size), 3)
    t_causal = best_time(causal_encode, 3)
    result = {
        "benchmark": "encoder_vs_causal",
        "model": args.model,
        "texts": f"first {len(texts)} SciFact corpus documents",
        "tokens": tokens,
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        "dtype": args.dtype,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d"),
        "encoder_seconds": t_encoder,
        "causal_seconds": t_causal,
        "encoder_tokens_per_s": tokens / t_encoder,
        "causal_tokens_per_s": tokens / t_causal,
        "speedup": t_causal / t_encoder,
        "min_cosine_between_paths": float(same.min()),
    }
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "encoder_vs_causal.json").write_text(json.dumps(result, indent=1) + "\n")
    md = [
        f"{args.model}, {result['texts']} ({tokens:,} tokens), max length {args.max_length}, batch {args.batch_size}, "
        f"{args.dtype}, {result['machine']}; best of 3 passes after warm-up.",
        "",
        "| path | seconds | tokens/s |",
        "|---|---:|---:|",
        f"| effir-surgery encoder (`AutoModel`, last token) | {t_encoder:.2f} | {tokens / t_encoder:,.0f} |",
        f"| `AutoModelForCausalLM(output_hidden_states=True)` | {t_causal:.2f} | {tokens / t_causal:,.0f} |",
        "",
        f"Speed-up of the encoder: {result['speedup']:.2f}x. The two paths give the same embeddings (minimum cosine "
        f"{result['min_cosine_between_paths']:.6f}).",
    ]
    (out / "encoder_vs_causal.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()

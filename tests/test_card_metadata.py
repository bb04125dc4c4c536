"""The card's metadata survives what users do to a saved folder: a re-save by sentence-transformers drops
``provenance.json`` and writes its own README, but ``config.json`` keeps the source, base model and licence, and the
card ``push`` renders reads them from there."""

import json

import pytest
from huggingface_hub import ModelCard

from effir_surgery.arch import shape_from_config
from effir_surgery.card import render_model_card
from effir_surgery.config import PlanSettings
from effir_surgery.folder import CONFIG_FILE, PROVENANCE_FILE
from effir_surgery.plan import make_plan
from effir_surgery.save import save_model
from effir_surgery.surgery import apply_plan

ORIGIN = {
    "source_model": "tiny-llama",
    "base_model": "effir-test/tiny-llama",
    "license": "apache-2.0",
    "language": ["en"],
}


@pytest.mark.parametrize("drop", [[1], []], ids=["effir config", "stock config"])
def test_a_folder_re_saved_by_sentence_transformers_keeps_base_model_and_license(drop, tmp_path):
    from conftest import build_tiny, tiny_tokenizer
    from sentence_transformers import SentenceTransformer

    model = build_tiny("llama")
    plan = make_plan(shape_from_config(model.config), PlanSettings(drop_mlp_layers=drop), model_name="tiny-llama")
    apply_plan(model, plan)
    out = tmp_path / "pruned"
    save_model(model, tiny_tokenizer(), out, plan=plan, provenance=ORIGIN, verify=False)
    assert json.loads((out / CONFIG_FILE).read_text())["effir_surgery"].items() >= ORIGIN.items()

    again = tmp_path / "again"
    SentenceTransformer(str(out), trust_remote_code=True).save(str(again))
    assert not (again / PROVENANCE_FILE).exists()  # what the re-save drops
    card = ModelCard(render_model_card(again, "me/again"))
    assert card.data.base_model == "effir-test/tiny-llama" and card.data.license == "apache-2.0"
    assert card.data.language == ["en"]
    assert "built from [effir-test/tiny-llama](https://huggingface.co/effir-test/tiny-llama)" in card.text


def test_the_cards_lora_snippet_runs_on_the_folder(tmp_path):
    """The card's LoRA example, run as printed (model id replaced by the local folder)."""
    pytest.importorskip("peft")
    from conftest import build_tiny, tiny_tokenizer

    model = build_tiny("llama")
    plan = make_plan(shape_from_config(model.config), PlanSettings(drop_mlp_layers=[1]), model_name="tiny-llama")
    apply_plan(model, plan)
    out = tmp_path / "pruned"
    save_model(model, tiny_tokenizer(), out, plan=plan, provenance=ORIGIN, verify=False)
    card = render_model_card(out, "me/pruned")
    block = card.split("Adapt it further with LoRA")[1].split("```python\n")[1].split("```")[0]
    scope: dict = {}
    exec(block.replace('"me/pruned"', repr(str(out))), scope)
    trainable = [name for name, p in scope["model"].named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert "mteb.evaluate(model, tasks=mteb.get_tasks(" in card and "Use `encode_query` for queries" in card
    assert "`effir-surgery export MODEL_DIR -o MODEL_DIR-onnx`" in card

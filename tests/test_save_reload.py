"""Save -> reload in a clean process where effir_surgery cannot be imported: identical tensors and outputs."""

import hashlib
import json

import torch
from safetensors.torch import load_file

from effir_surgery.arch import shape_from_config
from effir_surgery.config import PlanConfig
from effir_surgery.fresh import reload_outputs
from effir_surgery.plan import make_plan
from effir_surgery.save import check_folder_files, save_model
from effir_surgery.surgery import apply_plan


def _prune_and_save(model, tokenizer, out, verify=False, **plan_kwargs):
    plan = make_plan(shape_from_config(model.config), PlanConfig(**plan_kwargs), model_name="tiny")
    if "mlp_width" not in plan_kwargs:
        # narrow layer 3 to a scattered subset so widths differ per layer
        plan = plan.model_copy(
            update={"mlp_widths": [*plan.mlp_widths[:3], 24], "kept_neurons": {"3": list(range(1, 64, 2))[:24]}}
        )
    apply_plan(model, plan)
    return save_model(model, tokenizer, out, plan=plan, provenance={"source_model": "tiny"}, verify=verify)


def test_save_reload_identical(tiny_model, tokenizer, input_batch, tmp_path):
    out = tmp_path / "pruned"
    _prune_and_save(tiny_model, tokenizer, out, drop_mlp_layers=[1], drop_attention_layers=[2])
    assert check_folder_files(out) == []
    config = json.loads((out / "config.json").read_text())
    assert config["mlp_intermediate_sizes"] == [64, 0, 64, 24]
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForCausalLM"}

    # every tensor on disk equals the in-memory one
    saved = load_file(out / "model.safetensors")
    state = {k: v for k, v in tiny_model.state_dict().items() if k in saved}
    assert set(saved) | {"lm_head.weight"} >= set(state)
    for name, tensor in state.items():
        assert torch.equal(saved[name], tensor), name

    # outputs in a fresh process equal the in-memory model's, for the causal LM and the base model
    outputs, report = reload_outputs(out, input_batch, "float32")
    assert report["causal_class"].startswith("Effir") and report["base_class"].startswith("Effir")
    assert report["toolkit_importable"] is False
    assert report["tokenizer_appends_eos"] and report["padding_side"] == "left"
    with torch.inference_mode():
        logits = tiny_model(**input_batch, use_cache=False).logits
        hidden = tiny_model.base_model(**input_batch, use_cache=False).last_hidden_state
    mask = input_batch["attention_mask"].bool()
    torch.testing.assert_close(outputs["logits"][mask], logits[mask], atol=1e-5, rtol=0)
    torch.testing.assert_close(outputs["hidden"][mask], hidden[mask], atol=1e-5, rtol=0)


def test_uniform_result_is_a_stock_checkpoint(tiny_model, tokenizer, tmp_path):
    out = tmp_path / "uniform"
    shape = shape_from_config(tiny_model.config)
    plan = make_plan(shape, PlanConfig(), model_name="tiny").model_copy(
        update={"mlp_widths": [32] * 4, "kept_neurons": {str(i): list(range(32)) for i in range(4)}}
    )
    apply_plan(tiny_model, plan)
    report = save_model(tiny_model, tokenizer, out, plan=plan)
    config = json.loads((out / "config.json").read_text())
    assert "auto_map" not in config and not config["model_type"].startswith("effir_")
    assert not (out / "modeling_effir.py").exists()
    assert not report["causal_class"].startswith("Effir")


def test_save_model_verifies_in_a_clean_process(tokenizer, tmp_path):
    from conftest import build_tiny

    report = _prune_and_save(build_tiny("qwen3"), tokenizer, tmp_path / "pruned", verify=True, drop_mlp_layers=[2])
    assert report["causal_class"] == "EffirQwen3ForCausalLM" and report["toolkit_importable"] is False


def test_remote_code_files_are_the_packaged_ones(tiny_model, tokenizer, tmp_path):
    out = tmp_path / "pruned"
    _prune_and_save(tiny_model, tokenizer, out, drop_mlp_layers=[0])
    from effir_surgery.save import HF_DIR

    for name in ("configuration_effir.py", "modeling_effir.py"):
        packaged = hashlib.sha256((HF_DIR / name).read_bytes()).hexdigest()
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == packaged


def test_no_temp_folder_left_behind(tiny_model, tokenizer, tmp_path):
    _prune_and_save(tiny_model, tokenizer, tmp_path / "pruned", drop_mlp_layers=[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pruned"]

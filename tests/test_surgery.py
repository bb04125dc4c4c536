"""apply_plan: the model's class and config describe the cut structure, and counts match the cost model."""

import pytest
import torch

from effir_surgery.arch import shape_from_config
from effir_surgery.config import PlanSettings
from effir_surgery.errors import EffirError
from effir_surgery.plan import make_plan
from effir_surgery.surgery import apply_plan


def _plan(model, **kwargs):
    return make_plan(shape_from_config(model.config), PlanSettings(**kwargs), model_name="tiny")


def test_heterogeneous_plan_gives_effir_class_and_config(tiny_model):
    plan = _plan(tiny_model, drop_mlp_layers=[1, 2], drop_attention_layers=[3])
    record = apply_plan(tiny_model, plan)
    config = tiny_model.config
    assert config.model_type == config.base_model_type and config.effir_format_version == 2  # stock type
    assert config.mlp_intermediate_sizes == [64, 0, 0, 64]
    assert config.dropped_attention_layers == [3]
    assert type(tiny_model).__name__.startswith("Effir")
    assert record.params_after == sum(p.numel() for p in tiny_model.parameters())
    assert record.params_after == plan.projection().params_after
    assert record.operations == ["drop_attention(3)", "drop_mlp(1)", "drop_mlp(2)"]


def test_uniform_slice_gives_a_stock_config(tiny_model, input_batch):
    shape = shape_from_config(tiny_model.config)
    plan = make_plan(shape, PlanSettings(), model_name="tiny").model_copy(
        update={"mlp_widths": [32] * 4, "kept_neurons": {str(i): list(range(0, 64, 2)) for i in range(4)}}
    )
    apply_plan(tiny_model, plan)
    assert not hasattr(tiny_model.config, "effir_format_version")
    assert tiny_model.config.intermediate_size == 32
    assert not type(tiny_model).__name__.startswith("Effir")
    with torch.inference_mode():
        assert torch.isfinite(tiny_model(**input_batch).logits).all()


def test_plan_for_another_shape_is_refused(tiny_model):
    plan = _plan(tiny_model, drop_mlp_layers=[1])
    apply_plan(tiny_model, plan)
    with pytest.raises(EffirError, match="re-plan on this model"):
        apply_plan(tiny_model, plan)


def test_pruning_a_pruned_model_again(tiny_model):
    apply_plan(tiny_model, _plan(tiny_model, drop_mlp_layers=[1]))
    apply_plan(tiny_model, _plan(tiny_model, drop_mlp_layers=[2]))
    assert tiny_model.config.mlp_intermediate_sizes == [64, 0, 0, 64]

"""The architecture table: every family resolves, unknown ones fail clearly, and the cost model is exact."""

import pytest
import torch

from effir_surgery.arch import ARCH_SPECS, check_remote_code_agrees, resolve_spec, shape_from_config
from effir_surgery.costs import flops_per_token, mean_context, param_count
from effir_surgery.errors import EffirError


def test_every_spec_resolves_on_its_tiny_model(tiny_model):
    spec = resolve_spec(tiny_model.config)
    layers = getattr(tiny_model.base_model, spec.layers)
    layer = layers[0]
    mlp = getattr(layer, spec.mlp)
    for name in (spec.gate, spec.up, spec.down):
        assert isinstance(getattr(mlp, name), torch.nn.Linear)
    assert getattr(layer, spec.attention) is not None
    for name in spec.mlp_norms + spec.attention_norms:
        assert isinstance(getattr(layer, name), torch.nn.Module)


def test_every_table_row_has_a_fixture():
    from conftest import tiny_configs

    covered = {c.model_type for c in tiny_configs().values()}
    assert set(ARCH_SPECS) <= covered


def test_unknown_architecture_lists_supported():
    with pytest.raises(EffirError) as err:
        resolve_spec("gpt2")
    message = str(err.value)
    assert "gpt2" in message
    for model_type in ARCH_SPECS:
        assert model_type in message


def test_multimodal_gemma3_gets_a_hint():
    with pytest.raises(EffirError, match="gemma3_text"):
        resolve_spec("gemma3")


def test_remote_code_norm_table_agrees_with_arch_specs():
    check_remote_code_agrees()


def test_param_count_is_exact(tiny_model):
    shape = shape_from_config(tiny_model.config)
    assert param_count(shape).total == sum(p.numel() for p in tiny_model.parameters())


def test_mean_context():
    assert mean_context(4, None) == 2.5  # (1 + 2 + 3 + 4) / 4
    assert mean_context(4, 2) == (1 + 2 + 2 + 2) / 4
    assert mean_context(4, 8) == 2.5


def test_flops_shrink_with_removed_sublayers(tiny_model):
    shape = shape_from_config(tiny_model.config)
    full = flops_per_token(shape, 64)
    widths = list(shape.mlp_widths)
    widths[1] = 0
    assert flops_per_token(shape, 64, widths) == pytest.approx(full - 2 * shape.mlp_widths[1] * 3 * shape.hidden_size)
    assert flops_per_token(shape, 64, dropped_attention=[0]) < full

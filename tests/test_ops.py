"""Operator equivalences on every family: each operator computes exactly what its description says."""

import pytest
import torch

from effir_surgery.arch import resolve_spec
from effir_surgery.hf.modeling_effir import RemovedNorm, ZeroAttention, ZeroMLP
from effir_surgery.ops import drop_attention, drop_mlp, slice_mlp


def _logits(model, batch):
    with torch.inference_mode():
        return model(**batch, use_cache=False).logits


def _layers(model):
    spec = resolve_spec(model.config)
    return spec, getattr(model.base_model, spec.layers)


def test_keep_all_slice_is_identical(tiny_model, input_batch):
    before = _logits(tiny_model, input_batch)
    spec, layers = _layers(tiny_model)
    for layer in layers:
        width = getattr(getattr(layer, spec.mlp), spec.gate).out_features
        slice_mlp(layer, spec, torch.arange(width))
    torch.testing.assert_close(_logits(tiny_model, input_batch), before, atol=1e-5, rtol=0)


def test_slice_equals_zeroing_the_removed_neurons(tiny_model, input_batch):
    """Slicing neuron set K away must equal the intact model with neurons outside K forced to zero."""
    spec, layers = _layers(tiny_model)
    mlp = getattr(layers[1], spec.mlp)
    width = getattr(mlp, spec.gate).out_features
    keep = torch.tensor(sorted(torch.randperm(width, generator=torch.Generator().manual_seed(0))[: width // 3]))
    mask = torch.zeros(width)
    mask[keep] = 1.0
    handle = getattr(mlp, spec.down).register_forward_pre_hook(lambda m, args: (args[0] * mask,))
    reference = _logits(tiny_model, input_batch)
    handle.remove()
    slice_mlp(layers[1], spec, keep)
    assert getattr(getattr(layers[1], spec.mlp), spec.down).in_features == len(keep)
    torch.testing.assert_close(_logits(tiny_model, input_batch), reference, atol=1e-5, rtol=0)


def test_slice_preserves_dtype_device_and_bias(tiny_model):
    spec, layers = _layers(tiny_model)
    tiny_model.to(torch.bfloat16)
    slice_mlp(layers[0], spec, [0, 5, 7])
    mlp = getattr(layers[0], spec.mlp)
    for name in (spec.gate, spec.up, spec.down):
        linear = getattr(mlp, name)
        assert linear.weight.dtype == torch.bfloat16 and linear.weight.device.type == "cpu"
        if linear.bias is not None:
            assert linear.bias.shape[0] == linear.out_features


def test_slice_rejects_bad_indices(tiny_model):
    spec, layers = _layers(tiny_model)
    with pytest.raises(ValueError, match="distinct neuron indices"):
        slice_mlp(layers[0], spec, [0, 0])
    with pytest.raises(ValueError, match="distinct neuron indices"):
        slice_mlp(layers[0], spec, [10_000])


@pytest.mark.parametrize("index", [0, 2])
def test_drop_mlp_matches_zeroed_mlp_output(tiny_model, input_batch, index):
    """The reference zeroes the MLP's *output* with a hook: the branch then adds nothing. drop_mlp must match."""
    spec, layers = _layers(tiny_model)
    handle = getattr(layers[index], spec.mlp).register_forward_hook(lambda m, args, out: torch.zeros_like(out))
    reference = _logits(tiny_model, input_batch)
    handle.remove()
    assert not torch.allclose(reference, _logits(tiny_model, input_batch)), "the MLP must matter in this model"
    drop_mlp(layers[index], spec)
    assert isinstance(getattr(layers[index], spec.mlp), ZeroMLP)
    assert all(isinstance(getattr(layers[index], n), RemovedNorm) for n in spec.mlp_norms)
    torch.testing.assert_close(_logits(tiny_model, input_batch), reference, atol=1e-5, rtol=0)


def test_identity_on_normed_input_would_be_wrong(tiny_model, input_batch):
    """Guards the naming rule: an nn.Identity MLP adds the normed stream, which is not a removed MLP."""
    spec, layers = _layers(tiny_model)
    handle = getattr(layers[1], spec.mlp).register_forward_hook(lambda m, args, out: torch.zeros_like(out))
    reference = _logits(tiny_model, input_batch)
    handle.remove()
    setattr(layers[1], spec.mlp, torch.nn.Identity())
    assert not torch.allclose(_logits(tiny_model, input_batch), reference, atol=1e-3)


@pytest.mark.parametrize("index", [0, 3])
def test_drop_attention_matches_zeroed_attention_output(tiny_model, input_batch, index):
    spec, layers = _layers(tiny_model)

    def zero(module, args, output):
        return (torch.zeros_like(output[0]), *output[1:])

    handle = getattr(layers[index], spec.attention).register_forward_hook(zero)
    reference = _logits(tiny_model, input_batch)
    handle.remove()
    drop_attention(layers[index], spec)
    assert isinstance(getattr(layers[index], spec.attention), ZeroAttention)
    torch.testing.assert_close(_logits(tiny_model, input_batch), reference, atol=1e-5, rtol=0)

"""Models of effir-surgery checkpoints: stock decoders whose layers carry their own MLP width, or skip a sublayer.

Sealed remote code: copied verbatim into every saved model folder and loaded with ``trust_remote_code=True``.
It imports only torch, transformers and ``configuration_effir``. Each class subclasses the stock transformers
class and only swaps per-layer modules after the stock ``__init__``; all forward code is the stock code.
"""

import copy

import torch
from torch import nn
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextModel,
    LlamaForCausalLM,
    LlamaModel,
    MistralForCausalLM,
    MistralModel,
    Qwen2ForCausalLM,
    Qwen2Model,
    Qwen3ForCausalLM,
    Qwen3Model,
)

from .configuration_effir import (
    EffirGemma3TextConfig,
    EffirLlamaConfig,
    EffirMistralConfig,
    EffirQwen2Config,
    EffirQwen3Config,
)

# Norms that exist only for one sublayer's branch, per stock model_type. When the sublayer is removed they are
# removed too: a pre-norm's output would feed nothing, and a post-norm (Gemma 3) would only see zeros.
SUBLAYER_NORMS = {
    "llama": {"mlp": ("post_attention_layernorm",), "attention": ("input_layernorm",)},
    "mistral": {"mlp": ("post_attention_layernorm",), "attention": ("input_layernorm",)},
    "qwen2": {"mlp": ("post_attention_layernorm",), "attention": ("input_layernorm",)},
    "qwen3": {"mlp": ("post_attention_layernorm",), "attention": ("input_layernorm",)},
    "gemma3_text": {
        "mlp": ("pre_feedforward_layernorm", "post_feedforward_layernorm"),
        "attention": ("input_layernorm", "post_attention_layernorm"),
    },
}


class ZeroMLP(nn.Module):
    """Stands in for a removed MLP sublayer: returns zeros, so the block's MLP branch adds nothing to the
    residual stream (``h + 0``) and that half of the block becomes the identity. Has no parameters.

    Shapes: ``(batch, seq, hidden) -> (batch, seq, hidden)`` of zeros.
    """

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(hidden_states)


class ZeroAttention(nn.Module):
    """Stands in for a removed attention sublayer: returns zeros and no attention weights, so the block's
    attention branch adds nothing to the residual stream. It writes nothing to a KV cache, so checkpoints with
    removed attention are for encoding, not for cached generation.

    Shapes: ``hidden_states (batch, seq, hidden) -> ((batch, seq, hidden) zeros, None)``.
    """

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        return torch.zeros_like(hidden_states), None


class RemovedNorm(nn.Identity):
    """Takes the place of a norm whose sublayer was removed. Its output feeds only a ``ZeroMLP`` or
    ``ZeroAttention``, which ignore their input, or (a post-norm) it receives only zeros, which any RMSNorm maps
    to zeros. So returning the input unchanged computes exactly what the stock layer would, without the norm."""


def _with_width(config, width: int):
    """A shallow copy of ``config`` whose ``intermediate_size`` is ``width`` (used to build one narrower MLP)."""
    narrow = copy.copy(config)
    narrow.intermediate_size = width
    return narrow


def reshape_layers(layers: nn.ModuleList, config) -> None:
    """Swap each decoder layer's modules to match ``config`` in place: a narrower MLP of width
    ``config.mlp_intermediate_sizes[i]``, a ``ZeroMLP`` where that width is 0, and a ``ZeroAttention`` for
    every index in ``config.dropped_attention_layers``. Norms used only by a removed sublayer become
    ``RemovedNorm``."""
    norms = SUBLAYER_NORMS[config.base_model_type]
    dropped_attention = set(config.dropped_attention_layers)
    for idx, layer in enumerate(layers):
        width = config.mlp_width(idx)
        if width == 0:
            layer.mlp = ZeroMLP()
            for name in norms["mlp"]:
                setattr(layer, name, RemovedNorm())
        elif width != config.intermediate_size:
            layer.mlp = type(layer.mlp)(_with_width(config, width))
        if idx in dropped_attention:
            layer.self_attn = ZeroAttention()
            for name in norms["attention"]:
                setattr(layer, name, RemovedNorm())


class EffirLlamaModel(LlamaModel):
    config_class = EffirLlamaConfig

    def __init__(self, config):
        super().__init__(config)
        reshape_layers(self.layers, config)


class EffirLlamaForCausalLM(LlamaForCausalLM):
    config_class = EffirLlamaConfig

    def __init__(self, config):
        super().__init__(config)
        reshape_layers(self.model.layers, config)


class EffirMistralModel(MistralModel):
    config_class = EffirMistralConfig

    def __init__(self, config):
        super().__init__(config)
        reshape_layers(self.layers, config)


class EffirMistralForCausalLM(MistralForCausalLM):
    config_class = EffirMistralConfig

    def __init__(self, config):
        super().__init__(config)
        reshape_layers(self.model.layers, config)


class EffirQwen2Model(Qwen2Model):
    config_class = EffirQwen2Config

    def __init__(self, config):
        super().__init__(config)
        reshape_layers(self.layers, config)


class EffirQwen2ForCausalLM(Qwen2ForCausalLM):
    config_class = EffirQwen2Config

    def __init__(self, config):
        super().__init__(config)
        reshape_layers(self.model.layers, config)


class EffirQwen3Model(Qwen3Model):
    config_class = EffirQwen3Config

    def __init__(self, config):
        super().__init__(config)
        reshape_layers(self.layers, config)


class EffirQwen3ForCausalLM(Qwen3ForCausalLM):
    config_class = EffirQwen3Config

    def __init__(self, config):
        super().__init__(config)
        reshape_layers(self.model.layers, config)


class EffirGemma3TextModel(Gemma3TextModel):
    config_class = EffirGemma3TextConfig

    def __init__(self, config):
        super().__init__(config)
        reshape_layers(self.layers, config)


class EffirGemma3ForCausalLM(Gemma3ForCausalLM):
    config_class = EffirGemma3TextConfig

    def __init__(self, config):
        super().__init__(config)
        reshape_layers(self.model.layers, config)


# Stock model_type -> (base model class, causal-LM class).
EFFIR_MODELS = {
    "llama": (EffirLlamaModel, EffirLlamaForCausalLM),
    "mistral": (EffirMistralModel, EffirMistralForCausalLM),
    "qwen2": (EffirQwen2Model, EffirQwen2ForCausalLM),
    "qwen3": (EffirQwen3Model, EffirQwen3ForCausalLM),
    "gemma3_text": (EffirGemma3TextModel, EffirGemma3ForCausalLM),
}

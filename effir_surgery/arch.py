"""Architecture knowledge in one table keyed by ``model_type``, and the ``ModelShape`` every later stage reads.

Adding a family means one ``ARCH_SPECS`` row, the matching classes in ``hf/`` and one tiny-model test fixture.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from .errors import EffirError


@dataclass(frozen=True)
class ArchSpec:
    """Where the surgery targets live in one family's decoder layer.

    Attributes:
        model_type: stock transformers ``model_type`` (pruned checkpoints keep it; format 1 wrote ``effir_<type>``).
        layers: attribute of the base model (``model.base_model``) holding the ``nn.ModuleList`` of decoder layers.
        attention / mlp: attribute names of the two sublayers inside a decoder layer.
        gate / up / down: the MLP projections; gate and up are sliced by rows, down by columns.
        act: the MLP's activation module (``down(act(gate(x)) * up(x))``).
        mlp_norms / attention_norms: norms that serve only that sublayer's branch. The first MLP norm's input is
            the residual stream between the attention and the MLP sublayer (a hook point of the analysis).
        lora_targets: linear modules a LoRA adapter wraps by default.
    """

    model_type: str
    layers: str = "layers"
    attention: str = "self_attn"
    mlp: str = "mlp"
    gate: str = "gate_proj"
    up: str = "up_proj"
    down: str = "down_proj"
    act: str = "act_fn"
    mlp_norms: tuple[str, ...] = ("post_attention_layernorm",)
    attention_norms: tuple[str, ...] = ("input_layernorm",)
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


ARCH_SPECS: dict[str, ArchSpec] = {
    "llama": ArchSpec("llama"),
    "mistral": ArchSpec("mistral"),
    "qwen2": ArchSpec("qwen2"),
    "qwen3": ArchSpec("qwen3"),
    "gemma3_text": ArchSpec(
        "gemma3_text",
        mlp_norms=("pre_feedforward_layernorm", "post_feedforward_layernorm"),
        attention_norms=("input_layernorm", "post_attention_layernorm"),
    ),
}

_HINTS = {
    "gemma3": "multimodal Gemma 3 is not supported; use a text-only Gemma 3 checkpoint (model_type 'gemma3_text').",
}


def base_model_type(config) -> str:
    """The stock family of ``config``: ``llama`` for a Llama config and for an effir config of that family."""
    return getattr(config, "base_model_type", None) or config.model_type


def resolve_spec(config_or_type) -> ArchSpec:
    """Return the ``ArchSpec`` of a config (or a ``model_type`` string); raise ``EffirError`` listing the
    supported families when it is unknown."""
    model_type = config_or_type if isinstance(config_or_type, str) else base_model_type(config_or_type)
    if model_type.startswith("effir_"):
        model_type = model_type[len("effir_") :]
    spec = ARCH_SPECS.get(model_type)
    if spec is None:
        hint = _HINTS.get(model_type, "")
        raise EffirError(
            f"Unsupported architecture model_type '{model_type}'. "
            f"Supported: {', '.join(sorted(ARCH_SPECS))}. {hint}".strip()
        )
    return spec


def check_remote_code_agrees() -> None:
    """The sealed remote code keeps its own copy of the sublayer norms; fail loudly if the two tables drift."""
    # imported here: the remote code imports every family's transformers modeling module (seconds), and the
    # rest of this module serves cheap checks that run before any model is loaded
    from .hf.modeling_effir import SUBLAYER_NORMS

    for model_type, spec in ARCH_SPECS.items():
        norms = SUBLAYER_NORMS[model_type]
        if norms["mlp"] != spec.mlp_norms or norms["attention"] != spec.attention_norms:
            raise AssertionError(f"hf/modeling_effir.py SUBLAYER_NORMS disagrees with ARCH_SPECS for {model_type}")


class ModelShape(BaseModel):
    """Everything the plan and the cost model need to know about a model, without its weights.

    Parameter counts per component are measured once from the config (one decoder layer built on the meta
    device), so the arithmetic in ``costs`` is exact for every family, biases and q/k norms included.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_type: str
    num_layers: int
    hidden_size: int
    intermediate_size: int
    mlp_widths: list[int]
    dropped_attention: list[int]
    num_attention_heads: int
    head_dim: int
    vocab_size: int
    attention_windows: list[int | None]
    embedding_params: int
    lm_head_params: int
    final_norm_params: int
    attention_params: int
    attention_linear_params: int
    attention_norm_params: int
    mlp_params_per_neuron: int
    mlp_linear_params_per_neuron: int
    mlp_fixed_params: int
    mlp_norm_params: int

    @property
    def kept_mlp_layers(self) -> list[int]:
        return [i for i, w in enumerate(self.mlp_widths) if w > 0]

    @property
    def kept_attention_layers(self) -> list[int]:
        dropped = set(self.dropped_attention)
        return [i for i in range(self.num_layers) if i not in dropped]


def _numel(module) -> int:
    return sum(p.numel() for p in module.parameters())


def shape_from_config(config) -> ModelShape:
    """Measure a ``ModelShape`` from a (stock or effir) config without allocating weights."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    spec = resolve_spec(config)
    n = config.num_hidden_layers
    widths = list(config.mlp_intermediate_sizes) if getattr(config, "mlp_intermediate_sizes", None) else None
    widths = widths or [config.intermediate_size] * n
    dropped_attention = sorted(getattr(config, "dropped_attention_layers", None) or [])

    # A two-layer stock model on the meta device: exact parameter counts per component at no memory cost.
    probe = stock_config(config)
    probe.num_hidden_layers = 2
    if getattr(probe, "layer_types", None):
        probe.layer_types = list(probe.layer_types[:2])
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(probe)
    base = model.base_model
    layer = getattr(base, spec.layers)[0]
    attention = getattr(layer, spec.attention)
    mlp = getattr(layer, spec.mlp)

    def mlp_params(width: int) -> tuple[int, int]:
        narrow = copy.copy(probe)
        narrow.intermediate_size = width
        with torch.device("meta"):
            m = type(mlp)(narrow)
        linear = sum(mod.weight.numel() for mod in m.modules() if isinstance(mod, torch.nn.Linear))
        return _numel(m), linear

    p1, l1 = mlp_params(1)
    p2, l2 = mlp_params(2)
    embedding = base.get_input_embeddings()
    tied = model.get_output_embeddings() is None or (
        model.get_output_embeddings().weight is embedding.weight or getattr(config, "tie_word_embeddings", False)
    )
    layer_types = getattr(config, "layer_types", None)
    window = getattr(config, "sliding_window", None)
    windows = [window if (layer_types and layer_types[i] == "sliding_attention") else None for i in range(n)]
    return ModelShape(
        model_type=spec.model_type,
        num_layers=n,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        mlp_widths=widths,
        dropped_attention=dropped_attention,
        num_attention_heads=config.num_attention_heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads,
        vocab_size=config.vocab_size,
        attention_windows=windows,
        embedding_params=_numel(embedding),
        lm_head_params=0 if tied else _numel(model.get_output_embeddings()),
        final_norm_params=_numel(base.norm),
        attention_params=_numel(attention),
        attention_linear_params=sum(m.weight.numel() for m in attention.modules() if isinstance(m, torch.nn.Linear)),
        attention_norm_params=sum(_numel(getattr(layer, name)) for name in spec.attention_norms),
        mlp_params_per_neuron=p2 - p1,
        mlp_linear_params_per_neuron=l2 - l1,
        mlp_fixed_params=p1 - (p2 - p1),
        mlp_norm_params=sum(_numel(getattr(layer, name)) for name in spec.mlp_norms),
    )


EFFIR_CONFIG_KEYS = (
    "mlp_intermediate_sizes",
    "dropped_attention_layers",
    "effir_format_version",
    "effir_surgery",
    "effir_activation",
)


def stock_config(config, **overrides):
    """A stock (non-effir) config of the same family with the same architecture fields, plus ``overrides``."""
    from transformers import AutoConfig

    model_type = base_model_type(config)
    fields = config.to_dict()
    if "effir_activation" in fields:  # an effir config serialises its activation guarded; the stock one must not
        fields[config.activation_field] = fields["effir_activation"]
    for key in (
        "model_type",
        "auto_map",
        "architectures",
        "transformers_version",
        "quantization_config",
        *EFFIR_CONFIG_KEYS,
    ):
        fields.pop(key, None)
    fields.update(overrides)
    return AutoConfig.for_model(model_type, **fields)

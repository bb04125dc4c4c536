"""Configurations of effir-surgery checkpoints: a stock decoder config plus per-layer MLP widths.

Sealed remote code: this file is copied verbatim into every saved model folder and is loaded by
``AutoConfig.from_pretrained(path, trust_remote_code=True)``. It imports only ``transformers`` so that
the checkpoint loads without effir-surgery installed. Edit it only together with ``EFFIR_FORMAT_VERSION``.

On disk (format 2) a checkpoint keeps its family's stock ``model_type`` (``llama``, ``gemma3_text``...), so code
that needs only the config or the tokenizer (``AutoTokenizer.from_pretrained(folder)``) reads it as a stock model,
with no remote code and no prompt. The stock *model* classes must not load it: they would build every layer at
full width and silently leave removed sublayers randomly initialised. So the activation field on disk holds
``TRUST_GUARD``, which no stock activation table knows (a stock model fails at construction with a ``KeyError``
naming it), and the real activation is kept in ``effir_activation``. These classes swap the two back on load.
"""

from transformers import Gemma3TextConfig, LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config
from transformers import __version__ as _transformers_version

# Bump when the meaning of a field changes; loaders refuse folders written by a newer format.
# 1: model_type ``effir_<family>``. 2: the stock model_type, with the activation field guarded (module docstring).
EFFIR_FORMAT_VERSION = 2
TRUST_GUARD = "effir-surgery checkpoint: load the model with trust_remote_code=True"
_MIN_TRANSFORMERS = (5, 0)

if tuple(int(p) for p in _transformers_version.split(".")[:2] if p.isdigit()) < _MIN_TRANSFORMERS:
    raise ImportError(
        f"This effir-surgery checkpoint needs transformers>=5.0, found {_transformers_version}. "
        "Upgrade with: pip install -U 'transformers>=5'"
    )


class _EffirConfigMixin:
    """Adds the surgery fields to a stock config.

    Fields:
        mlp_intermediate_sizes: one width per decoder layer; ``0`` means the MLP sublayer was removed and the
            layer adds nothing through its MLP branch. ``None`` means every layer keeps ``intermediate_size``.
        dropped_attention_layers: indices of layers whose attention sublayer was removed.
        effir_format_version: on-disk format version of these fields.
        effir_surgery: free-form provenance (source model, revision, tool version); not used for modeling.
        effir_activation: on disk only, the real value of the activation field (``activation_field``), which holds
            ``TRUST_GUARD`` there. In memory the activation field holds the real value.
    """

    activation_field = "hidden_act"

    def __init__(
        self,
        mlp_intermediate_sizes=None,
        dropped_attention_layers=None,
        effir_format_version=EFFIR_FORMAT_VERSION,
        effir_surgery=None,
        effir_activation=None,
        **kwargs,
    ):
        if kwargs.get(self.activation_field) == TRUST_GUARD:
            if effir_activation is None:
                raise ValueError(f"{self.activation_field} is guarded but effir_activation is missing.")
            kwargs[self.activation_field] = effir_activation
        self.mlp_intermediate_sizes = (
            None if mlp_intermediate_sizes is None else [int(w) for w in mlp_intermediate_sizes]
        )
        self.dropped_attention_layers = sorted(int(i) for i in (dropped_attention_layers or []))
        self.effir_format_version = int(effir_format_version)
        self.effir_surgery = dict(effir_surgery or {})
        super().__init__(**kwargs)
        self._check_effir_fields()

    def _check_effir_fields(self):
        if self.effir_format_version > EFFIR_FORMAT_VERSION:
            raise ValueError(
                f"This checkpoint uses effir format {self.effir_format_version}, but this configuration_effir.py only "
                f"knows format {EFFIR_FORMAT_VERSION}; re-download the checkpoint's remote code files."
            )
        n = self.num_hidden_layers
        if self.mlp_intermediate_sizes is not None:
            if len(self.mlp_intermediate_sizes) != n:
                raise ValueError(
                    f"mlp_intermediate_sizes has {len(self.mlp_intermediate_sizes)} entries; "
                    f"expected one per layer ({n})."
                )
            if any(w < 0 for w in self.mlp_intermediate_sizes):
                raise ValueError("mlp_intermediate_sizes entries must be >= 0 (0 marks a removed MLP).")
        bad = [i for i in self.dropped_attention_layers if not 0 <= i < n]
        if bad:
            raise ValueError(f"dropped_attention_layers {bad} are out of range for {n} layers.")

    def to_dict(self):
        """The stock serialisation with the activation field guarded (see the module docstring)."""
        output = super().to_dict()
        if self.activation_field in output:
            output["effir_activation"] = output[self.activation_field]
            output[self.activation_field] = TRUST_GUARD
        return output

    def mlp_width(self, layer_idx: int) -> int:
        """Width of layer ``layer_idx``'s MLP; 0 if it was removed."""
        if self.mlp_intermediate_sizes is None:
            return self.intermediate_size
        return self.mlp_intermediate_sizes[layer_idx]


# Each class names its ``__init__`` explicitly: transformers turns config subclasses into dataclasses and would
# otherwise generate an ``__init__`` that drops the surgery fields.
class EffirLlamaConfig(_EffirConfigMixin, LlamaConfig):
    model_type = "llama"
    base_model_type = "llama"
    __init__ = _EffirConfigMixin.__init__


class EffirMistralConfig(_EffirConfigMixin, MistralConfig):
    model_type = "mistral"
    base_model_type = "mistral"
    __init__ = _EffirConfigMixin.__init__


class EffirQwen2Config(_EffirConfigMixin, Qwen2Config):
    model_type = "qwen2"
    base_model_type = "qwen2"
    __init__ = _EffirConfigMixin.__init__


class EffirQwen3Config(_EffirConfigMixin, Qwen3Config):
    model_type = "qwen3"
    base_model_type = "qwen3"
    __init__ = _EffirConfigMixin.__init__


class EffirGemma3TextConfig(_EffirConfigMixin, Gemma3TextConfig):
    model_type = "gemma3_text"
    base_model_type = "gemma3_text"
    activation_field = "hidden_activation"
    __init__ = _EffirConfigMixin.__init__


EFFIR_CONFIGS = {
    cls.base_model_type: cls
    for cls in (EffirLlamaConfig, EffirMistralConfig, EffirQwen2Config, EffirQwen3Config, EffirGemma3TextConfig)
}

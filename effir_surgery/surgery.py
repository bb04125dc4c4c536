"""``apply_plan``: carry out a ``SurgeryPlan`` on a loaded model. The only code that changes model structure.

After the cut, the model's config becomes an effir config (per-layer widths, removed sublayers) and its class the
matching class from the sealed remote code, so what is saved is exactly what ``trust_remote_code`` rebuilds.
A plan that leaves every layer with the same width and nothing removed yields a plain stock config instead.
"""

from __future__ import annotations

from pydantic import BaseModel

from . import __version__
from .arch import EFFIR_CONFIG_KEYS, base_model_type, resolve_spec, shape_from_config, stock_config
from .costs import param_count
from .errors import EffirError
from .plan import SurgeryPlan

# torch, the operators and the sealed remote code (which imports every family's transformers modeling module,
# seconds) are imported where they are used: the commands import this module before their cheap argument checks.


class SurgeryRecord(BaseModel):
    """What ``apply_plan`` did: the operations in order and the measured parameter counts."""

    operations: list[str]
    params_before: int
    params_after: int
    config_class: str


def _numel(model) -> int:
    return sum(p.numel() for p in model.parameters())


def surgery_config(config, mlp_widths: list[int], dropped_attention: list[int], provenance: dict):
    """The config describing ``config``'s model after surgery: stock when uniform and nothing removed, else the
    family's effir config with ``mlp_intermediate_sizes`` and ``dropped_attention_layers``."""
    uniform = len(set(mlp_widths)) == 1 and mlp_widths[0] > 0 and not dropped_attention
    if uniform:
        return stock_config(config, intermediate_size=mlp_widths[0])
    from .hf.configuration_effir import EFFIR_CONFIGS

    fields = stock_config(config).to_dict()
    for key in ("model_type", "transformers_version", *EFFIR_CONFIG_KEYS):
        fields.pop(key, None)
    effir_cls = EFFIR_CONFIGS[base_model_type(config)]
    return effir_cls(
        **fields,
        mlp_intermediate_sizes=mlp_widths,
        dropped_attention_layers=dropped_attention,
        effir_surgery=provenance,
    )


def model_class(config, causal_lm: bool):
    """Class that rebuilds this structure from ``config``: an effir class, or the stock auto class."""
    if hasattr(config, "mlp_intermediate_sizes"):  # an effir config (hf/configuration_effir.py)
        from .hf.modeling_effir import EFFIR_MODELS

        base_cls, causal_cls = EFFIR_MODELS[config.base_model_type]
        return causal_cls if causal_lm else base_cls
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING, MODEL_MAPPING

    return (MODEL_FOR_CAUSAL_LM_MAPPING if causal_lm else MODEL_MAPPING)[type(config)]


def _check_structure(model, cls, config) -> None:
    """Every tensor name and shape of ``model`` must be what ``cls(config)`` builds (checked on the meta device)."""
    import torch

    with torch.device("meta"):
        reference = cls(config)
    want = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if want != have:
        diff = sorted(set(want.items()) ^ set(have.items()))[:5]
        raise AssertionError(f"surgery result does not match {cls.__name__}({config.model_type}): {diff}")


def _current_width(layer, spec) -> int:
    gate = getattr(getattr(layer, spec.mlp), spec.gate, None)
    return 0 if gate is None else gate.out_features


def planned_operations(plan: SurgeryPlan) -> list[str]:
    """The operations that carry out ``plan``, in the order ``apply_plan`` performs them (as recorded)."""
    operations = [f"drop_attention({i})" for i in plan.drop_attention_layers]
    operations += [f"drop_mlp({i})" for i in plan.drop_mlp_layers]
    for key, keep in sorted(plan.kept_neurons.items(), key=lambda kv: int(kv[0])):
        operations.append(f"slice_mlp({int(key)}, {plan.shape.mlp_widths[int(key)]}->{len(keep)})")
    return operations


def layer_operations(plan: SurgeryPlan) -> list[tuple[int, str, tuple]]:
    """The plan as operator calls ``(layer index, name in ops.OPERATORS, extra arguments)``, in the order
    ``apply_plan`` runs them: attention drops, MLP drops, then neuron slices. Each call touches one layer only, so
    the layer-by-layer executor (``streaming``) may run a layer's calls as soon as that layer is loaded."""
    calls = [(i, "drop_attention", ()) for i in plan.drop_attention_layers]
    calls += [(i, "drop_mlp", ()) for i in plan.drop_mlp_layers]
    calls += [
        (int(k), "slice_mlp", (keep,)) for k, keep in sorted(plan.kept_neurons.items(), key=lambda kv: int(kv[0]))
    ]
    return calls


def plan_provenance(plan: SurgeryPlan) -> dict:
    """The ``effir_surgery`` field of the post-surgery config."""
    return {"tool": "effir-surgery", "tool_version": __version__, "source_model": plan.model}


def apply_plan(model, plan: SurgeryPlan) -> SurgeryRecord:
    """Carry out ``plan`` on ``model`` **in place** (a causal LM or a base model of a supported family).

    Removes the planned attention and MLP sublayers, slices the planned neurons, replaces ``model.config`` by the
    post-surgery config and re-types ``model`` to the class that rebuilds it from that config.

    Raises:
        EffirError: if ``model`` does not have the shape the plan was made for.
    """
    spec = resolve_spec(model.config)
    base = model.base_model
    layers = getattr(base, spec.layers)
    shape = plan.shape
    actual = [_current_width(layer, spec) for layer in layers]
    if len(layers) != shape.num_layers or actual != shape.mlp_widths:
        raise EffirError(
            f"The plan was made for {plan.model} ({shape.num_layers} layers, MLP widths {shape.mlp_widths[:4]}...), "
            f"but this model has {len(layers)} layers with widths {actual[:4]}...; re-plan on this model."
        )
    from .ops import OPERATORS

    params_before = _numel(model)
    for i, name, args in layer_operations(plan):
        OPERATORS[name](layers[i], spec, *args)
    operations = planned_operations(plan)

    config = surgery_config(model.config, plan.mlp_widths, plan.dropped_attention_after, plan_provenance(plan))
    config._name_or_path = getattr(model.config, "_name_or_path", "")
    causal_lm = base is not model
    cls = model_class(config, causal_lm)
    model.config = config
    if causal_lm:
        base.config = config
    model.__class__ = cls
    _check_structure(model, cls, config)

    params_after = _numel(model)
    expected = param_count(shape_from_config(config))
    counted = expected.total if causal_lm else expected.total - expected.lm_head
    if params_after != counted:
        raise AssertionError(f"parameter count {params_after:,} differs from the cost model's {counted:,}")
    return SurgeryRecord(
        operations=operations, params_before=params_before, params_after=params_after, config_class=cls.__name__
    )

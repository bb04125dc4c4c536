"""Layer-by-layer execution of a model that does not fit in memory: the decoder layers stay on disk and enter
memory one at a time (sequential calibration, as in layer-wise pruning tools), with the stock forward code."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from .arch import resolve_spec, shape_from_config
from .checkpoint import CheckpointReader
from .devices import resolve_device, torch_dtype
from .errors import EffirError
from .load import (
    LoadedModel,
    ModelSource,
    check_source,
    load_config,
    load_tokenizer,
    local_checkpoint,
    source_trust,
)


@contextlib.contextmanager
def _parameters_on_meta():
    """Create every parameter on the meta device (no memory) while buffers, such as rotary frequencies, are
    computed for real, exactly as during ``from_pretrained`` (what accelerate's
    ``init_empty_weights(include_buffers=False)`` does)."""
    import torch

    register = torch.nn.Module.register_parameter

    def register_on_meta(module, name, param):
        register(module, name, param)
        if param is not None and param.device.type != "meta":
            module._parameters[name] = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    torch.nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register


@contextlib.contextmanager
def _patched_forwards(layers, make_forward):
    """Give each decoder layer ``i`` the forward ``make_forward(i)`` (an instance attribute, so the stock model
    code calls it with its usual arguments), and restore the class's forward afterwards."""
    for i, layer in enumerate(layers):
        layer.forward = make_forward(i)
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward


def _set_parameter(module, name: str, tensor) -> None:
    import torch

    owner_name, _, leaf = name.rpartition(".")
    owner = module.get_submodule(owner_name) if owner_name else module
    owner._parameters[leaf] = torch.nn.Parameter(tensor, requires_grad=False)


@dataclass
class LayerwiseModel(LoadedModel):
    """A causal LM whose decoder layers stay on disk and enter memory one at a time (sequential calibration as
    in layer-wise pruning tools), for models that do not fit in RAM.

    ``model`` is the stock (or effir) causal LM class built with every parameter on the meta device and its
    buffers real; the embeddings and every other parameter outside the decoder layers are loaded (the LM head
    only on demand). ``run`` pushes batches through the layers one layer at a time, keeping only the hidden
    states, and calls the stock layer forward with the arguments the stock model forward would pass (recorded
    once per batch), so hooks on a layer fire exactly as in a full forward pass.

    Attributes:
        reader: the checkpoint's tensors; ``layers_path`` is the state-dict prefix of the decoder layers in the
            causal LM (``model.layers``), found from the module tree, not assumed.
        dtype / device: what layers are loaded as (``torch.dtype``, ``torch.device``).
    """

    reader: CheckpointReader
    layers_path: str
    dtype: object
    device: object

    @property
    def layers(self):
        return getattr(self.model.base_model, self.spec.layers)

    def _load_parameters(self, module, prefix: str, skip: tuple[str, ...] = ()) -> None:
        """Replace each meta parameter of ``module`` by tensor ``prefix + name`` of the checkpoint (except names
        starting with one of ``skip``)."""
        for name, param in list(module.named_parameters()):
            if param.device.type != "meta" or name.startswith(skip):
                continue
            key = prefix + name
            info = self.reader.tensors.get(key)
            if info is None or info.shape != tuple(param.shape):
                found = "missing" if info is None else f"shape {list(info.shape)}"
                raise EffirError(
                    f"'{self.local_path}': tensor '{key}' is {found}, but its config builds {list(param.shape)}; "
                    "the checkpoint does not match its config.json."
                )
            _set_parameter(module, name, self.reader.read(key, dtype=self.dtype, device=self.device))

    def load_layer(self, i: int):
        """Load decoder layer ``i``'s weights from disk; returns the layer."""
        self._load_parameters(self.layers[i], f"{self.layers_path}.{i}.")
        return self.layers[i]

    def release_layer(self, i: int) -> None:
        """Send decoder layer ``i``'s weights back to the meta device, freeing their memory."""
        import torch

        from ._memory import return_freed_memory

        layer = self.layers[i]
        for name, param in list(layer.named_parameters()):
            _set_parameter(layer, name, torch.empty_like(param, device="meta"))
        return_freed_memory()

    def load_output_head(self) -> None:
        """Load the LM head (or tie it to the loaded input embeddings when the checkpoint stores none)."""
        head = self.model.get_output_embeddings()
        if head is None or head.weight.device.type != "meta":
            return
        if getattr(self.model.config, "tie_word_embeddings", False):
            head.weight = self.model.get_input_embeddings().weight  # tied: checkpoints store the embeddings only
        else:
            self._load_parameters(head, next(n for n, m in self.model.named_modules() if m is head) + ".")

    def _capture(self, batch) -> tuple[object, list[tuple[tuple, dict]]]:
        """Run ``batch`` through the model with every decoder layer replaced by a recorder that passes its input
        on unchanged: returns the first layer's input (the embeddings) and, per layer, the extra arguments the
        stock forward gives it (attention mask, position embeddings ... which may differ per layer)."""
        calls: dict[int, tuple[tuple, dict]] = {}
        first = {}

        def recorder(i):
            def forward(*args, **kwargs):
                hidden = args[0] if args else kwargs.pop("hidden_states")
                calls[i] = (tuple(args[1:]), kwargs)
                first.setdefault("hidden", hidden)
                return hidden

            return forward

        with _patched_forwards(self.layers, recorder):
            self.model.base_model(**batch, use_cache=False)
        return first["hidden"], [calls[i] for i in range(len(self.layers))]

    def run(self, batches: list, *, before_layer=None, after_layer=None, before_batch=None) -> list:
        """Push every batch (tokenizer outputs on ``device``) through all decoder layers, loading one layer at a
        time; returns each batch's hidden state after the last layer (before the final norm).

        ``before_layer(i, layer)`` runs once layer ``i`` is loaded (attach hooks, or change the layer),
        ``before_batch(b)`` before batch ``b`` enters a layer, ``after_layer(i, layer)`` before the layer is
        released (read its weights). Memory: one layer, the embeddings and the hidden states of all batches.
        """
        import torch

        from ._logging import progress

        with torch.inference_mode():
            captured = [self._capture(batch) for batch in batches]
            hidden = [h for h, _ in captured]
            for i in progress(range(len(self.layers)), desc="layers"):
                layer = self.load_layer(i)
                try:
                    if before_layer is not None:
                        before_layer(i, layer)
                    for b, (_, calls) in enumerate(captured):
                        if before_batch is not None:
                            before_batch(b)
                        args, kwargs = calls[i]
                        out = layer(hidden[b], *args, **kwargs)
                        hidden[b] = out[0] if isinstance(out, tuple) else out
                    if after_layer is not None:
                        after_layer(i, layer)
                finally:
                    self.release_layer(i)
        return hidden

    def outputs(self, batch, last_hidden) -> dict:
        """``{"logits", "hidden"}`` for ``batch`` given its hidden state after the last layer (from ``run``): what
        the causal LM's logits and the base model's ``last_hidden_state`` would be, computed by the stock forward
        code (final norm, LM head, any logit soft-capping) with the decoder layers replayed."""
        import torch

        self.load_output_head()
        last = len(self.layers) - 1

        def replay(i):
            def forward(*args, **kwargs):
                return last_hidden if i == last else (args[0] if args else kwargs["hidden_states"])

            return forward

        with torch.inference_mode(), _patched_forwards(self.layers, replay):
            logits = self.model(**batch, use_cache=False).logits
            hidden = self.model.base_model(**batch, use_cache=False).last_hidden_state
        return {"logits": logits, "hidden": hidden}


def load_layerwise(source: ModelSource, dtype: str = "float32", device: str = "auto") -> LayerwiseModel:
    """Prepare ``source`` for layer-by-layer execution: config, tokenizer, the embeddings and final norm in
    memory, decoder layers on disk. Needs a safetensors checkpoint (Hub and GGUF sources are made local first).

    Raises:
        EffirError: unsupported architecture, missing or corrupt weights, or tensors that do not match the config.
    """
    import torch
    from transformers import AutoModelForCausalLM

    target = torch.device(resolve_device(device))  # before anything is loaded: a missing GPU fails at once
    check_source(source)
    config = load_config(source)
    spec = resolve_spec(config)
    shape = shape_from_config(config)
    folder = local_checkpoint(source)
    reader = CheckpointReader(folder)
    tokenizer = load_tokenizer(source)
    with _parameters_on_meta():
        model = AutoModelForCausalLM.from_config(
            config, dtype=torch_dtype(dtype), trust_remote_code=source_trust(source)
        )
    model.eval()
    for module in model.modules():
        for name, buffer in module._buffers.items():
            if buffer is not None and buffer.device.type != "meta":
                module._buffers[name] = buffer.to(target)
    layers = getattr(model.base_model, spec.layers)
    layers_path = next(name for name, module in model.named_modules() if module is layers)
    loaded = LayerwiseModel(
        model, tokenizer, spec, shape, source, str(folder), reader, layers_path, torch_dtype(dtype), target
    )
    head = model.get_output_embeddings()
    skip = [f"{layers_path}."] + [f"{n}." for n, m in model.named_modules() if head is not None and m is head]
    loaded._load_parameters(model, "", skip=tuple(skip))  # embeddings, final norm: everything but layers and head
    return loaded

"""Read-only importance analysis: how much each attention and MLP sublayer changes the residual stream, and how
much each MLP neuron contributes. Produces an ``ImportanceReport``; never mutates the model.

Sublayer importance (LLM-Drop, He et al. 2024, arXiv 2406.15786; used by EffiR, arXiv 2512.20612):
``S = 1 - cos(x_in, x_out)``, where ``x_in`` is the residual stream before the sublayer (before its pre-norm) and
``x_out`` the residual stream after it, averaged over every real token of the calibration texts, in fp32. A low
``S`` means the sublayer barely turns the stream, so removing it changes the representation least.

Neuron importance (one-shot width reduction): neuron ``i`` of an MLP adds ``h_i * W_down[:, i]`` to the output, where
``h = act(gate(x)) * up(x)``. The root-mean-square size of that term over calibration tokens is
``sqrt(E[h_i^2]) * ||W_down[:, i]||_2``: the structured, column-wise form of Wanda's ``|W| * ||X||`` score (Sun et al.
2023, arXiv 2306.11695). Slicing neuron ``i`` away removes exactly that term, so low scores are the cheapest to cut.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from ._logging import progress
from .arch import ArchSpec, ModelShape
from .calib import CalibrationSet
from .errors import EffirError


class ProbeResult(BaseModel):
    """Drop-one retrieval probe: the metric with each sublayer removed alone, against the intact model."""

    model_config = ConfigDict(extra="forbid")

    metric: str
    baseline: float
    attention: list[float | None]
    mlp: list[float | None]
    description: str


class ImportanceReport(BaseModel):
    """Importance of every sublayer (and MLP neuron) of one model on one calibration set.

    Attributes:
        attention / mlp: ``1 - cos`` per layer; 0.0 for a sublayer that is already removed.
        neurons: layer index (as str, for JSON) -> per-neuron score of that MLP (``sqrt(E[h_i^2]) * ||W_down[:, i]||``,
            see ``neuron_scores``); only for layers whose MLP is present.
        tokens: number of real tokens averaged over.
    """

    model_config = ConfigDict(extra="forbid")

    model: str
    shape: ModelShape
    calibration: str
    max_length: int
    texts: int
    tokens: int
    attention: list[float]
    mlp: list[float]
    neurons: dict[str, list[float]] | None = None
    probe: ProbeResult | None = None
    seconds: float = 0.0

    def neuron_scores(self, layer: int) -> list[float]:
        if not self.neurons or str(layer) not in self.neurons:
            raise KeyError(f"no neuron scores for layer {layer}")
        return self.neurons[str(layer)]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.model_dump_json(indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ImportanceReport:
        """Read a report that ``save`` wrote. Raises ``EffirError`` (one line) for a file that cannot be read, is
        not JSON, or is not an importance report."""
        try:
            return cls.model_validate(json.loads(Path(path).read_text()))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            why = f"{where}: {first['msg']}" if where else first["msg"]
        except OSError as exc:
            why = exc.strerror or str(exc)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            why = f"not valid JSON: {exc}"
        raise EffirError(
            f"'{path}' is not an importance report ({why}); pass the importance.json that `effir-surgery analyze` "
            "wrote."
        )


def _hidden_from(args, kwargs):
    return args[0] if args else kwargs["hidden_states"]


class _ScoreSums:
    """Running sums of the analysis, fed by hooks on decoder layers; the activations themselves are never kept.

    The hooks read the current batch's token mask from ``state["mask"]`` (``(batch, seq)`` bool). They fire the
    same way whether a layer runs inside a full forward pass or on its own, so the in-memory and the layer-wise
    analysis share every line that computes a score, and add them up in the same order.
    """

    def __init__(self, n: int, spec: ArchSpec, neurons: bool):
        import torch

        self.spec = spec
        self.neurons = neurons
        self.attn_sum = torch.zeros(n, dtype=torch.float64)
        self.mlp_sum = torch.zeros(n, dtype=torch.float64)
        self.sq_sums: dict = {}
        self.column_norms: dict = {}
        self.state: dict = {}
        self.tokens = 0

    def _one_minus_cos(self, x_in, x_out):
        import torch

        mask = self.state["mask"]  # (batch, seq) bool
        cos = torch.nn.functional.cosine_similarity(x_in.float(), x_out.float(), dim=-1)  # (batch, seq)
        return (1.0 - cos)[mask].sum().double().cpu()

    def attach(self, i: int, layer) -> list:
        """Register the hooks of layer ``i``; returns their handles."""
        spec, state = self.spec, self.state

        def layer_in(module, args, kwargs):
            state[("in", i)] = _hidden_from(args, kwargs)

        def mid(module, args):
            x_mid = args[0]
            self.attn_sum[i] += self._one_minus_cos(state.pop(("in", i)), x_mid)
            state[("mid", i)] = x_mid

        def layer_out(module, args, kwargs, output):
            x_out = output[0] if isinstance(output, tuple) else output
            self.mlp_sum[i] += self._one_minus_cos(state.pop(("mid", i)), x_out)

        handles = [
            layer.register_forward_pre_hook(layer_in, with_kwargs=True),
            getattr(layer, spec.mlp_norms[0]).register_forward_pre_hook(mid),
            layer.register_forward_hook(layer_out, with_kwargs=True),
        ]
        down = getattr(getattr(layer, spec.mlp), spec.down, None)
        if self.neurons and down is not None:

            def down_in(module, args):
                h = args[0][state["mask"]].float()  # (real tokens, width): act(gate(x)) * up(x)
                self.sq_sums[i] = self.sq_sums.get(i, 0) + h.pow(2).sum(dim=0).double().cpu()

            handles.append(down.register_forward_pre_hook(down_in))
        return handles

    def read_weights(self, i: int, layer) -> None:
        """Keep what the scores need from layer ``i``'s weights (its ``down`` column norms), while it is loaded."""
        if self.neurons and i in self.sq_sums:
            down = getattr(getattr(layer, self.spec.mlp), self.spec.down)
            self.column_norms[i] = down.weight.detach().float().norm(dim=0).double().cpu()  # (width,)

    def report(self, **fields) -> ImportanceReport:
        tokens = max(self.tokens, 1)
        neuron_scores = None
        if self.neurons:
            neuron_scores = {
                str(i): ((sq / tokens).sqrt() * self.column_norms[i]).tolist() for i, sq in self.sq_sums.items()
            }
        return ImportanceReport(
            **fields,
            tokens=self.tokens,
            attention=(self.attn_sum / tokens).tolist(),
            mlp=(self.mlp_sum / tokens).tolist(),
            neurons=neuron_scores,
        )


def _batches(tokenizer, texts: list[str], batch_size: int, max_length: int, device):
    """Tokenized calibration batches, longest texts first (less padding), as the encoder formats them."""
    order = sorted(range(len(texts)), key=lambda k: -len(texts[k]))
    for start in range(0, len(texts), batch_size):
        yield tokenizer(
            [texts[k] for k in order[start : start + batch_size]],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        ).to(device)


def analyze_importance(
    model,
    tokenizer,
    spec: ArchSpec,
    shape: ModelShape,
    calibration: CalibrationSet,
    *,
    model_name: str,
    max_length: int = 256,
    batch_size: int = 8,
    neurons: bool = True,
) -> ImportanceReport:
    """Run the calibration texts through ``model`` once and score every sublayer (and neuron).

    Streams batches and keeps only running sums (one float per sublayer, one per neuron), never the activations.

    Args:
        model: causal LM or base model of the family described by ``spec``; left unchanged.
        tokenizer: its tokenizer; EOS is appended and padding is on the left, as for encoding.
        calibration: texts already formatted as the retriever sees them.
        neurons: also accumulate per-neuron scores for width reduction.
    """
    import torch

    from .encode import prepare_tokenizer

    started = time.perf_counter()
    tokenizer = prepare_tokenizer(tokenizer)
    base = model.base_model
    layers = getattr(base, spec.layers)
    device = next(model.parameters()).device
    sums = _ScoreSums(len(layers), spec, neurons)
    handles = [h for i, layer in enumerate(layers) for h in sums.attach(i, layer)]
    texts = calibration.texts
    try:
        with torch.inference_mode():
            for batch in progress(
                _batches(tokenizer, texts, batch_size, max_length, device),
                total=-(-len(texts) // batch_size),
                desc="calibration",
            ):
                sums.state["mask"] = batch["attention_mask"].bool()
                sums.tokens += int(sums.state["mask"].sum())
                base(**batch, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
        sums.state.clear()
    for i, layer in enumerate(layers):
        sums.read_weights(i, layer)
    return sums.report(
        model=model_name,
        shape=shape,
        calibration=calibration.description,
        max_length=max_length,
        texts=len(texts),
        seconds=round(time.perf_counter() - started, 2),
    )


def analyze_importance_layerwise(
    loaded,
    calibration: CalibrationSet,
    *,
    model_name: str,
    max_length: int = 256,
    batch_size: int = 8,
    neurons: bool = True,
) -> ImportanceReport:
    """``analyze_importance`` for a model that does not fit in memory: the same scores, computed one decoder
    layer at a time.

    Every calibration batch is embedded first; then each layer is loaded from disk, every batch's hidden state
    goes through it with the same hooks as the in-memory analysis, and the layer is released. Memory: one layer,
    the embeddings and the hidden states (``texts x tokens x hidden`` in the working dtype), not the model.

    Args:
        loaded: a ``layerwise.LayerwiseModel``.
    """
    from .encode import prepare_tokenizer

    started = time.perf_counter()
    tokenizer = prepare_tokenizer(loaded.tokenizer)
    texts = calibration.texts
    batches = list(_batches(tokenizer, texts, batch_size, max_length, loaded.device))
    masks = [batch["attention_mask"].bool() for batch in batches]
    sums = _ScoreSums(len(loaded.layers), loaded.spec, neurons)
    sums.tokens = sum(int(mask.sum()) for mask in masks)
    handles: list = []

    def before_layer(i, layer):
        handles.extend(sums.attach(i, layer))

    def before_batch(b):
        sums.state["mask"] = masks[b]

    def after_layer(i, layer):
        for handle in handles:
            handle.remove()
        handles.clear()
        sums.read_weights(i, layer)

    try:
        loaded.run(batches, before_layer=before_layer, before_batch=before_batch, after_layer=after_layer)
    finally:
        for handle in handles:
            handle.remove()
        sums.state.clear()
    return sums.report(
        model=model_name,
        shape=loaded.shape,
        calibration=calibration.description,
        max_length=max_length,
        texts=len(texts),
        seconds=round(time.perf_counter() - started, 2),
    )

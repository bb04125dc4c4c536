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

from pydantic import BaseModel, ConfigDict

from ._logging import progress
from .arch import ArchSpec, ModelShape
from .calib import CalibrationSet


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
        return cls.model_validate(json.loads(Path(path).read_text()))


def _hidden_from(args, kwargs):
    return args[0] if args else kwargs["hidden_states"]


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
    n = len(layers)
    device = next(model.parameters()).device
    attn_sum = torch.zeros(n, dtype=torch.float64)
    mlp_sum = torch.zeros(n, dtype=torch.float64)
    sq_sums: dict[int, torch.Tensor] = {}
    state: dict = {}
    handles = []

    def one_minus_cos(x_in, x_out):
        mask = state["mask"]  # (batch, seq) bool
        cos = torch.nn.functional.cosine_similarity(x_in.float(), x_out.float(), dim=-1)  # (batch, seq)
        return (1.0 - cos)[mask].sum().double().cpu()

    for i, layer in enumerate(layers):

        def layer_in(module, args, kwargs, i=i):
            state[("in", i)] = _hidden_from(args, kwargs)

        def mid(module, args, i=i):
            x_mid = args[0]
            attn_sum[i] += one_minus_cos(state.pop(("in", i)), x_mid)
            state[("mid", i)] = x_mid

        def layer_out(module, args, kwargs, output, i=i):
            x_out = output[0] if isinstance(output, tuple) else output
            mlp_sum[i] += one_minus_cos(state.pop(("mid", i)), x_out)

        handles.append(layer.register_forward_pre_hook(layer_in, with_kwargs=True))
        handles.append(getattr(layer, spec.mlp_norms[0]).register_forward_pre_hook(mid))
        handles.append(layer.register_forward_hook(layer_out, with_kwargs=True))
        down = getattr(getattr(layer, spec.mlp), spec.down, None)
        if neurons and down is not None:

            def down_in(module, args, i=i):
                h = args[0][state["mask"]].float()  # (real tokens, width): act(gate(x)) * up(x)
                sq_sums[i] = sq_sums.get(i, 0) + h.pow(2).sum(dim=0).double().cpu()

            handles.append(down.register_forward_pre_hook(down_in))

    texts = calibration.texts
    order = sorted(range(len(texts)), key=lambda k: -len(texts[k]))
    tokens = 0
    try:
        with torch.inference_mode():
            for start in progress(
                range(0, len(texts), batch_size), total=-(-len(texts) // batch_size), desc="calibration"
            ):
                batch = tokenizer(
                    [texts[k] for k in order[start : start + batch_size]],
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                    return_tensors="pt",
                ).to(device)
                state["mask"] = batch["attention_mask"].bool()
                tokens += int(state["mask"].sum())
                base(**batch, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
        state.clear()

    neuron_scores = None
    if neurons:
        neuron_scores = {}
        for i, sq in sq_sums.items():
            down = getattr(getattr(layers[i], spec.mlp), spec.down)
            column_norms = down.weight.detach().float().norm(dim=0).double().cpu()  # (width,)
            neuron_scores[str(i)] = ((sq / max(tokens, 1)).sqrt() * column_norms).tolist()
    return ImportanceReport(
        model=model_name,
        shape=shape,
        calibration=calibration.description,
        max_length=max_length,
        texts=len(texts),
        tokens=tokens,
        attention=(attn_sum / max(tokens, 1)).tolist(),
        mlp=(mlp_sum / max(tokens, 1)).tolist(),
        neurons=neuron_scores,
        seconds=round(time.perf_counter() - started, 2),
    )

"""Drop-one retrieval probe: remove one sublayer at a time (a hook zeroes its output) and measure nDCG@10 on a
small BEIR slice. Tests the EffiR finding directly (MLPs are more removable than attention for retrieval), not
only through cosine similarity. nDCG@10 comes from ``pytrec_eval`` (trec_eval), as in MTEB.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from ._logging import progress
from .analyze import ProbeResult
from .arch import ArchSpec
from .beir import BeirSplit, document_text, load_beir
from .config import EncoderSettings
from .encode import Encoder
from .errors import EffirError
from .folder import TRAINING_FILE


@dataclass
class ProbeSlice:
    """A small retrieval task: queries, a document pool containing their relevant documents, and qrels."""

    queries: dict[str, str]
    documents: dict[str, str]
    qrels: dict[str, dict[str, int]]
    description: str


def make_slice(data: BeirSplit, n_queries: int, n_docs: int, seed: int = 0) -> ProbeSlice:
    """Pick ``n_queries`` judged queries and a pool of ``n_docs`` documents holding all their relevant ones."""
    rng = random.Random(seed)
    judged = sorted(q for q in data.queries if any(d in data.corpus for d in data.qrels.get(q, {})))
    if not judged:
        raise EffirError(f"{data.name}/{data.split}: no judged query has its relevant document in the corpus.")
    picked = sorted(rng.sample(judged, min(n_queries, len(judged))))
    relevant = sorted({d for q in picked for d, s in data.qrels[q].items() if s > 0 and d in data.corpus})
    others = sorted(set(data.corpus) - set(relevant))
    pool = relevant + rng.sample(others, max(0, min(len(others), n_docs - len(relevant))))
    qrels = {q: {d: s for d, s in data.qrels[q].items() if d in set(pool)} for q in picked}
    return ProbeSlice(
        queries={q: data.queries[q] for q in picked},
        documents={d: document_text(data.corpus[d]) for d in pool},
        qrels=qrels,
        description=f"{data.name} {data.split}: {len(picked)} queries, {len(pool)} documents (seed {seed})",
    )


def ndcg_at_10(encoder: Encoder, data: ProbeSlice, batch_size: int) -> float:
    """Mean nDCG@10 of ``encoder`` on ``data`` (exhaustive dot-product search over the pool)."""
    import pytrec_eval

    qids, dids = list(data.queries), list(data.documents)
    q = encoder.encode([data.queries[i] for i in qids], kind="query", batch_size=batch_size)  # (queries, dim)
    d = encoder.encode([data.documents[i] for i in dids], kind="document", batch_size=batch_size)  # (docs, dim)
    scores = q @ d.T  # (queries, docs)
    run = {
        qid: {did: float(s) for did, s in zip(dids, row.tolist(), strict=True)}
        for qid, row in zip(qids, scores, strict=True)
    }
    evaluator = pytrec_eval.RelevanceEvaluator(data.qrels, {"ndcg_cut.10"})
    per_query = evaluator.evaluate(run)
    return sum(v["ndcg_cut_10"] for v in per_query.values()) / len(per_query)


def _zero_output(module, args, output):
    if isinstance(output, tuple):
        return (torch.zeros_like(output[0]), *output[1:])
    return torch.zeros_like(output)


def probe_sublayers(
    model,
    tokenizer,
    spec: ArchSpec,
    folder: str,
    split: str = "train",
    n_queries: int = 32,
    n_docs: int = 160,
    max_length: int = 128,
    batch_size: int = 16,
    encoder_config: EncoderSettings | None = None,
    model_state: str | None = None,
) -> ProbeResult:
    """nDCG@10 with each present sublayer removed alone (its output zeroed by a hook; the model is not changed).

    ``model_state`` (for example from ``model_state(folder)``) is added to the result's description; without it
    the description says nothing about how the model was trained.
    """
    try:
        import pytrec_eval  # noqa: F401
    except ImportError:
        raise EffirError("--probe needs pytrec_eval: pip install 'effir-surgery[eval]'") from None
    data = make_slice(load_beir(folder, split), n_queries, n_docs)
    config = (encoder_config or EncoderSettings()).model_copy(update={"max_length": max_length})
    encoder = Encoder(model, tokenizer, config)
    layers = getattr(model.base_model, spec.layers)
    baseline = ndcg_at_10(encoder, data, batch_size)
    results: dict[str, list[float | None]] = {"attention": [], "mlp": []}
    jobs = [(i, kind) for i in range(len(layers)) for kind in ("attention", "mlp")]
    for i, kind in progress(jobs, total=len(jobs), desc="drop-one probe"):
        module = getattr(layers[i], spec.attention if kind == "attention" else spec.mlp)
        present = any(True for _ in module.parameters())
        if not present:  # already removed: nothing to probe
            results[kind].append(None)
            continue
        handle = module.register_forward_hook(_zero_output)
        try:
            results[kind].append(ndcg_at_10(encoder, data, batch_size))
        finally:
            handle.remove()
    return ProbeResult(
        metric="nDCG@10",
        baseline=baseline,
        attention=results["attention"],
        mlp=results["mlp"],
        description=", ".join(
            [data.description, f"max length {max_length}", "each sublayer removed without retraining"]
            + ([model_state] if model_state else [])
        ),
    )


def model_state(folder: str | Path) -> str | None:
    """What a local model folder records about its training, for the probe's description: ``"fine-tuned (N steps
    on DATA)"`` when ``effir-surgery finetune`` saved it (its ``finetune.json``), else ``None`` (nothing known)."""
    path = Path(folder) / TRAINING_FILE
    if not path.is_file():
        return None
    try:
        training = json.loads(path.read_text())
        return f"fine-tuned ({int(training['steps'])} steps on {training['data']})"
    except (ValueError, KeyError, TypeError):
        return "fine-tuned (finetune.json)"

"""``evaluate``: retrieval quality through mteb and an efficiency report, for several models side by side.

This module runs the evaluation: it resolves the tasks (``eval_tasks``), loads each model, scores it on every task
through mteb (nDCG@10, Recall@100, MRR@10 all come from mteb) while timing the corpus encoding (``eval_timer``),
measures each dense model's speed in a fresh process, and writes the results (``eval_results``). Each model has its
own result cache keyed by a hash of its files.

Output: ``results.json`` (schema ``effir-surgery/results/v1``, documented in docs/evaluation.md), ``results.md``
and ``tradeoff.png`` (quality against throughput).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import random
import time
from pathlib import Path

from ._logging import info, warning
from .beir import BeirSplit, load_beir
from .config import EvalConfig
from .errors import EffirError
from .eval_results import EvalResults, add_ratios, plot_tradeoff, results_table
from .eval_tasks import local_task, local_task_record, mteb_task_size, resolve_tasks, subsample
from .eval_timer import CorpusTimer
from .folder import PROVENANCE_FILE, RESULTS_FILE
from .retrievers import (
    RetrieverSpec,
    load_dense,
    measure_in_fresh_process,
    require_eval_for,
    resolve_retriever,
)
from .save import invocation

METRICS = ("main_score", "ndcg_at_10", "recall_at_100", "mrr_at_10")


def _run_mteb(model, task, cache_dir: Path, batch_size: int, split: str, devices: list[str] = ()) -> dict:
    """Scores of one model on one task, from mteb. With several ``devices``, sentence-transformers encodes each
    call's texts in a multi-process pool, one process per device (mteb passes ``encode_kwargs`` through).
    Encoding shows progress bars when the toolkit's progress setting is on (stderr is a terminal and
    EFFIR_SURGERY_NO_PROGRESS is unset); mteb keeps ``show_progress_bar`` out of its result cache path."""
    import mteb
    from mteb.cache import ResultCache

    encode_kwargs = {"batch_size": batch_size, "show_progress_bar": _tty()}
    if len(devices) > 1:
        encode_kwargs["device"] = list(devices)
    try:
        result = mteb.evaluate(
            model,
            tasks=[task],
            cache=ResultCache(cache_path=str(cache_dir)),
            encode_kwargs=encode_kwargs,
            show_progress_bar=_tty(),
        )
    except (OSError, ConnectionError) as exc:
        raise EffirError(
            f"mteb could not load task {task.metadata.name} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:120]}); offline? Pass --data-dir BEIR_FOLDER."
        ) from None
    scores = result.task_results[0].scores[split][0]
    missing = [m for m in METRICS if m not in scores]
    if missing:
        raise AssertionError(f"mteb returned no {missing} for {task.metadata.name}")
    return {m: float(scores[m]) for m in METRICS}


def _corpus_timer(model, spec: RetrieverSpec, label: str, documents: int | None, devices=()):
    """A ``CorpusTimer`` around a dense model's mteb run; nothing for BM25 (its indexing is not timed) and nothing
    when several ``devices`` encode in worker processes (they get the model pickled, and the hook sees no batch)."""
    if spec.kind == "bm25" or len(devices) > 1 or not hasattr(model, "register_forward_hook"):
        return contextlib.nullcontext()
    return CorpusTimer(model, label, documents, _tty())


def encode_devices(config: EvalConfig) -> list[str]:
    """Devices to spread dense encoding over: ``config.devices``, or every GPU when ``device`` is ``auto`` and
    there is more than one. One device (or none) means ordinary single-process encoding."""
    if config.devices:
        return list(config.devices)
    import torch

    if config.device == "auto" and torch.cuda.device_count() > 1:
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return []


def encode_dtype(config: EvalConfig) -> str:
    """The dtype dense models are evaluated in: ``config.dtype`` when it was set (``--dtype``, or a recipe, whose
    ``dtype`` is always passed on); otherwise float32, except bfloat16 when every encoding device is a CUDA GPU
    that supports it. CPU runs therefore keep float32 (and their cache keys) unless asked otherwise."""
    if "dtype" in config.model_fields_set:
        return config.dtype
    import torch

    if not torch.cuda.is_available():
        return config.dtype
    devices = list(config.devices) or [config.device]
    on_cuda = all(d == "auto" or d.startswith("cuda") for d in devices)
    return "bfloat16" if on_cuda and torch.cuda.is_bf16_supported() else config.dtype


def _tty() -> bool:
    from ._logging import progress_enabled

    return progress_enabled()


def _load_model(spec: RetrieverSpec, config: EvalConfig):
    if spec.kind == "bm25":
        import mteb

        return mteb.get_model("mteb/baseline-bm25s")
    device = None if config.device == "auto" else config.device
    return load_dense(spec, config.dtype, device, config.max_length)


def evaluate(config: EvalConfig) -> EvalResults:
    """Evaluate every model of ``config`` on every task; write results.json, results.md and tradeoff.png. Code in a
    model folder that is not this toolkit's runs only with ``config.trust_remote_code`` (``trust.py``)."""
    from .outputs import claimed_output
    from .trust import allowing_foreign_code

    inputs = [*config.data_dir, *(m for m in config.models if Path(m).expanduser().exists())]
    # an existing output is refused without --overwrite, as every command does; with it the result files are
    # replaced and its mteb-cache is reused (keyed by model and task content, it cannot go stale)
    with allowing_foreign_code(config.trust_remote_code), claimed_output(config.output, config.overwrite, inputs):
        return _evaluate(config)


def _evaluate(config: EvalConfig) -> EvalResults:
    """The body of ``evaluate``, with the trust decision in force."""
    from .devices import require_device

    require_eval_for(config.models)
    for device in {config.device, *config.devices}:
        require_device(device)  # a GPU this machine lacks fails before anything is loaded or written
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    tasks = resolve_tasks(config)
    specs = _unique([resolve_retriever(name) for name in config.models])  # fails early on a bad model path
    dtype = encode_dtype(config)
    if dtype != config.dtype:
        info(f"CUDA with {dtype} support: dense models are evaluated in {dtype} (--dtype float32 keeps fp32).")
        config = config.model_copy(update={"dtype": dtype})
    if config.measure and not config.data_dir and any(spec.kind != "bm25" for spec in specs):
        warning(
            "no efficiency report (parameters, FLOPs, throughput, memory): it times documents "
            "of a local BEIR folder, and only Hub tasks were given. Pair the task with its folder "
            "(--task NAME --data-dir FOLDER), or pass --no-measure to silence this."
        )
    local: dict[str, tuple[BeirSplit, dict | None, str]] = {}
    for source in tasks:
        if source.folder is not None:
            data = load_beir(source.folder, config.split)
            if data.unknown_qrels:
                warning(
                    f"{len(data.unknown_qrels)} qrels of {source.folder} name ids missing from "
                    "the files; kept, as BEIR does (they count as unretrievable)."
                )
            data, sub = subsample(data, config.max_queries, config.max_docs, config.seed)
            key = hashlib.sha256(json.dumps([sorted(data.queries), sorted(data.corpus)]).encode()).hexdigest()[:12]
            local[source.name] = (data, sub, key)
            if sub:
                info(f"{source.name}: subsampled to {sub['note']}")
    out = Path(config.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file of that name, a folder that cannot be written
        raise EffirError(f"Cannot create the output folder '{out}': {exc.strerror or exc}; use another -o.") from None
    speed_texts = _speed_texts(local, config)
    devices = encode_devices(config)
    if len(devices) > 1:
        info(f"encoding on {len(devices)} devices in parallel: {', '.join(devices)}")
    entries = []
    for spec in specs:
        entry = {
            "name": spec.name,
            "path": spec.path,
            "kind": "bm25" if spec.kind == "bm25" else "dense",
            "efficiency": None,
            "tasks": [],
        }
        model = _load_model(spec, config)
        for source in tasks:
            started = time.perf_counter()
            if source.folder is not None:
                data, sub, key = local[source.name]
                task = local_task(source, config.split, data, key)
                dataset = f"local:{source.folder.resolve()}"
            else:
                import mteb

                task, sub, dataset, key = mteb.get_task(source.name), None, f"mteb:{source.name}", "hub"
            # what the card may publish as this MTEB task: only the task's own queries, corpus and qrels, in full
            if source.folder is not None:
                record = local_task_record(source.name, config.split, data, sub)
            else:
                record = {"size": mteb_task_size(source.name, config.split), "full_mteb_task": True}
            unknown = len(local[source.name][0].unknown_qrels) if source.folder is not None else None
            sizes = f": {len(data.queries):,} queries, {len(data.corpus):,} documents" if source.folder else ""
            info(f"Evaluating {spec.name} on {source.name}{sizes} ...")
            # one cache per model content, task content and encoding settings: results can never be mixed up
            cache = (
                (config.cache_dir or out / "mteb-cache")
                / f"{_slug(spec.name)}-{spec.key}"
                / f"{_slug(source.name)}-{key}-{_settings_key(spec, config)}"
            )
            pool = devices if spec.kind != "bm25" else ()
            with _corpus_timer(model, spec, source.name, len(data.corpus) if source.folder else None, pool):
                scores = _run_mteb(model, task, cache, config.batch_size, config.split, pool)
            import mteb

            entry["tasks"].append(
                {
                    "task": source.name,
                    "dataset": dataset,
                    "split": config.split,
                    "subsample": sub,
                    **record,
                    "scores": scores,
                    "mteb_version": mteb.__version__,
                    "seconds": round(time.perf_counter() - started, 1),
                    "main_score_name": task.metadata.main_score,
                    "unknown_qrels": unknown,
                }
            )
        del model
        if config.measure and spec.kind != "bm25" and speed_texts:
            info(f"Measuring {spec.name}: {len(speed_texts)} documents, fresh process ...")
            device = None if config.device == "auto" else config.device
            entry["efficiency"] = measure_in_fresh_process(
                spec, speed_texts, config.batch_size, config.dtype, device, config.max_length
            )
        entries.append(entry)
    add_ratios(entries)
    results = EvalResults(
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        command=invocation(),
        models=entries,
    )
    (out / RESULTS_FILE).write_text(json.dumps(results.dump(), indent=1) + "\n")
    if config.attach:
        attach_results(results)
    (out / "results.md").write_text(results_table(results) + "\n")
    plot_tradeoff(results, out / "tradeoff.png")
    return results


def attach_results(results: EvalResults) -> list[Path]:
    """Write each evaluated model folder's own entry into ``FOLDER/results.json`` (same schema, one model), where
    the model card and ``push`` read it. Only folders saved by effir-surgery (with ``provenance.json``) are touched;
    their card is re-rendered. Returns the folders written."""
    from .card import write_model_card

    written = []
    for entry in results.models:
        folder = Path(entry["path"]) if entry.get("path") else None
        if entry["kind"] != "dense" or folder is None or not (folder / PROVENANCE_FILE).is_file():
            continue
        own = results.model_copy(update={"models": [entry]})
        (folder / RESULTS_FILE).write_text(json.dumps(own.dump(), indent=1) + "\n")
        write_model_card(folder)
        written.append(folder)
    return written


def _unique(specs: list[RetrieverSpec]) -> list[RetrieverSpec]:
    seen: dict[str, int] = {}
    out = []
    for spec in specs:
        count = seen.get(spec.name, 0)
        seen[spec.name] = count + 1
        out.append(spec if count == 0 else RetrieverSpec(f"{spec.name} ({count + 1})", spec.kind, spec.path, spec.key))
    return out


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[-60:]


def _settings_key(spec, config: EvalConfig) -> str:
    """The settings that change a model's scores on fixed data: truncation length and dtype (BM25 has neither)."""
    if spec.kind == "bm25":
        return "bm25"
    return f"len{config.max_length or 'model'}-{config.dtype}"


def _speed_texts(local: dict, config: EvalConfig) -> list[str]:
    """The documents every model is timed on: a seeded sample of the first local task's corpus."""
    if not local:
        return []
    return speed_sample(next(iter(local.values()))[0].corpus, config.speed_docs, config.seed)


def speed_sample(corpus: dict, n: int, seed: int) -> list[str]:
    """``n`` documents of a BEIR ``corpus`` (id -> document) drawn with ``seed``, as texts: the sample an
    evaluation times every model on."""
    from .beir import document_text

    ids = sorted(corpus)
    picked = random.Random(seed).sample(ids, min(n, len(ids)))
    return [document_text(corpus[i]) for i in picked]

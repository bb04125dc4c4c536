"""``evaluate``: retrieval quality through mteb and an efficiency report, for several models side by side.

Tasks are MTEB tasks loaded from the Hub, or local BEIR folders wrapped in an ``AbsTaskRetrieval`` subclass that
reads the files offline (``local_task``), keeps the official task's metadata and ``ignore_identical_ids`` when the
folder is a known MTEB dataset, and can subsample queries and documents. All metrics (nDCG@10, Recall@100,
MRR@10) come from mteb. Each model has its own result cache keyed by a hash of its files.

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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from . import __version__
from ._logging import Every, estimate_line, format_rate, info, info_line, progress_line
from .beir import BeirSplit, load_beir
from .config import EvalConfig
from .errors import EffirError
from .retrievers import (
    RetrieverSpec,
    load_dense,
    measure_in_fresh_process,
    require_eval_for,
    resolve_retriever,
)
from .save import invocation

RESULTS_SCHEMA = "effir-surgery/results/v1"
METRICS = ("main_score", "ndcg_at_10", "recall_at_100", "mrr_at_10")


class EvalResults(BaseModel):
    """The content of ``results.json``."""

    model_config = ConfigDict(populate_by_name=True)

    schema_: str = Field(RESULTS_SCHEMA, alias="schema")
    tool_version: str = __version__
    created: str
    command: str
    models: list[dict]

    def dump(self) -> dict:
        return self.model_dump(by_alias=True)


@dataclass
class TaskSource:
    """One task to run: its MTEB name, and the local BEIR folder or None (Hub)."""

    name: str
    folder: Path | None


def _mteb_task_names() -> dict[str, str]:
    """Every MTEB retrieval task name, lowercased -> as registered.

    Importing mteb to read its registry takes several seconds, so the names are kept in the toolkit's cache, keyed
    by the installed mteb version: a mistyped ``--task`` then answers at once from the second call on.
    """
    import importlib.metadata

    from .load import cache_dir

    try:
        version = importlib.metadata.version("mteb")
    except importlib.metadata.PackageNotFoundError:
        version = "none"
    path = cache_dir() / "mteb" / f"retrieval-tasks-{version}.json"
    try:
        names = json.loads(path.read_text())
    except (OSError, ValueError):
        import mteb

        names = sorted(t.metadata.name for t in mteb.get_tasks(task_types=["Retrieval"]))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(names) + "\n")
            os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the whole new one
        except OSError:  # a read-only cache only costs the next call the import again
            pass
    return {name.lower(): name for name in names}


def unknown_task(name: str, known: dict[str, str], close: list[str]) -> EffirError:
    """The one-line refusal of a task name mteb does not know, with the closest registered names (``close``,
    lowercased keys of ``known``)."""
    hint = f"; did you mean {' or '.join(known[c] for c in close)}?" if close else "."
    return EffirError(
        f"Unknown MTEB retrieval task '{name}'{hint} For your own BEIR folder, drop --task: --data-dir FOLDER "
        "alone names the task after the folder."
    )


def resolve_tasks(config: EvalConfig) -> list[TaskSource]:
    """Pair task names and folders, checking folders and names before any model is loaded.

    A ``--task`` name for the Hub must be an MTEB retrieval task, and one paired with a folder must not be a near
    miss of one (both refused with the closest names). A folder's task (``--task``, else the folder's name) that is
    not a known MTEB retrieval task is scored with generic metadata (main score nDCG@10, ``ignore_identical_ids``
    off) and a warning that says so. ``--max-queries``/``--max-docs`` subsample local folders only, so with Hub
    tasks alone they are refused rather than silently ignored.
    """
    if not config.data_dir and (config.max_queries is not None or config.max_docs is not None):
        raise EffirError(
            "--max-queries/--max-docs subsample a local BEIR folder; a Hub task (--task without --data-dir) is "
            "always scored in full. Pass --data-dir FOLDER with the task, or drop them."
        )
    import difflib

    known = _mteb_task_names()
    for name in config.task:
        if name.lower() in known:
            continue
        # A Hub task must exist. With a local folder an unknown name may be the user's own dataset, but one within
        # a letter or two of a registered task (SciFakt) is a typo that would otherwise run for many minutes.
        close = difflib.get_close_matches(name.lower(), list(known), n=3, cutoff=0.8 if config.data_dir else 0.6)
        if not config.data_dir or close:
            raise unknown_task(name, known, close)
    sources = []
    if config.data_dir:
        names = config.task or [Path(d).name for d in config.data_dir]
        for name, folder in zip(names, config.data_dir, strict=True):
            folder = Path(folder)
            if not folder.is_dir():
                raise EffirError(f"--data-dir '{folder}' does not exist.")
            if name.lower() not in known:
                how = "--task" if config.task else "the folder name"
                info(
                    f"[yellow]warning[/]: '{name}' (from {how}) is not a known MTEB retrieval task, so "
                    f"{folder} is scored with generic metadata: main score nDCG@10, ignore_identical_ids off (a "
                    "query may retrieve a document with its own id). If it is an MTEB dataset, name it, e.g. "
                    f"--task ArguAna --data-dir {folder}."
                )
            sources.append(TaskSource(known.get(name.lower(), name), folder))
    else:
        sources = [TaskSource(known[name.lower()], None) for name in config.task]
    return sources


def subsample(data: BeirSplit, max_queries: int | None, max_docs: int | None, seed: int) -> tuple[BeirSplit, dict]:
    """Keep ``max_queries`` judged queries and at most ``max_docs`` documents, always including every relevant
    document of the kept queries (so recall stays meaningful; scores are then higher than on the full corpus)."""
    if max_queries is None and max_docs is None:
        return data, None
    rng = random.Random(seed)
    queries = sorted(data.queries)
    if max_queries is not None and max_queries < len(queries):
        queries = sorted(rng.sample(queries, max_queries))
    relevant = sorted({d for q in queries for d in data.qrels[q] if d in data.corpus})
    others = sorted(set(data.corpus) - set(relevant))
    budget = max(0, (max_docs if max_docs is not None else len(data.corpus)) - len(relevant))
    pool = set(relevant) | set(rng.sample(others, min(budget, len(others))))
    corpus = {d: doc for d, doc in data.corpus.items() if d in pool}
    note = (
        f"{len(queries)} of {len(data.queries)} queries, {len(corpus)} of {len(data.corpus)} documents "
        f"(all {len(relevant)} relevant documents of those queries kept; seed {seed})"
    )
    if max_docs is not None and len(relevant) > max_docs:
        note += f"; --max-docs {max_docs} was raised to keep the relevant documents"
    small = BeirSplit(
        data.name,
        data.split,
        corpus,
        {q: data.queries[q] for q in queries},
        {q: data.qrels[q] for q in queries},
        data.unknown_qrels,
    )
    return small, {"queries": len(queries), "documents": len(corpus), "note": note}


def local_task(source: TaskSource, split: str, data: BeirSplit, content_key: str):
    """An mteb retrieval task over an already-read BEIR split (offline). Known MTEB datasets keep their official
    metadata (main score, ``ignore_identical_ids``); others get generic English retrieval metadata."""
    import mteb
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.task_metadata import TaskMetadata

    try:
        official = mteb.get_task(source.name)
        metadata = official.metadata.model_copy(
            update={
                "dataset": {"path": f"local/{source.folder.name}", "revision": content_key},
                "eval_splits": [split],
            }
        )
        ignore_identical = bool(getattr(official, "ignore_identical_ids", False))
    except KeyError:
        metadata = TaskMetadata(
            name=source.name,
            description=f"Local BEIR folder {source.folder}",
            reference=None,
            dataset={"path": f"local/{source.folder.name}", "revision": content_key},
            type="Retrieval",
            category="t2t",
            modalities=["text"],
            eval_splits=[split],
            eval_langs=["eng-Latn"],
            main_score="ndcg_at_10",
            date=None,
            domains=None,
            task_subtypes=None,
            license=None,
            annotations_creators=None,
            dialect=None,
            sample_creation=None,
            bibtex_citation="",
        )
        ignore_identical = False

    class LocalBeirRetrieval(AbsTaskRetrieval):
        ignore_identical_ids = ignore_identical

        def load_data(self, num_proc=None, **kwargs):
            if self.data_loaded:
                return
            corpus = Dataset.from_dict(
                {
                    "id": list(data.corpus),
                    "title": [d["title"] for d in data.corpus.values()],
                    "text": [d["text"] for d in data.corpus.values()],
                }
            )
            queries = Dataset.from_dict({"id": list(data.queries), "text": list(data.queries.values())})
            self.dataset = {
                "default": {
                    split: {"corpus": corpus, "queries": queries, "relevant_docs": data.qrels, "top_ranked": None}
                }
            }
            self.data_loaded = True

    LocalBeirRetrieval.metadata = metadata
    return LocalBeirRetrieval()


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


# Corpus encoding is timed over at least this long after its first (warm-up) batch before an estimate is printed;
# progress lines (runs without progress bars) follow at most this often.
MEASURE_SECONDS = 2.0
PROGRESS_SECONDS = 30.0


class CorpusTimer:
    """While entered, times the corpus (document) encoding of a sentence-transformers ``model``, batch by batch,
    without changing what is encoded.

    ``model.encode_document`` (what mteb calls for the corpus, once per chunk of up to 50,000 documents) is
    wrapped to know when documents are encoded and to tokenize a seeded sample of them (their mean truncated
    length); a forward hook counts each batch's documents and tokens. The first batch is warm-up; once
    ``MEASURE_SECONDS`` more have passed and documents remain, one line gives the corpus size and an estimate,
    ``SciFact: 5,183 documents, ~295 tokens each; about 1,730 tokens/s on cpu: estimated total 14 min (ETA 14:05)``,
    from the tokens/s measured so far. sentence-transformers encodes the longest documents first, so the first
    rate is the slowest per token and the estimate errs long; the ETA of later lines (runs without progress bars
    only, at most every ``PROGRESS_SECONDS``) uses the rate over all batches since the first.

    Nothing is printed when the corpus is encoded before the measurement ends (small corpora) or when mteb's cache
    holds the scores (nothing is encoded); with several devices no timer is made (``_corpus_timer``).
    ``documents`` is the corpus size when known (a local folder); otherwise the sizes of the chunks seen so far.
    """

    def __init__(self, model, label: str, documents: int | None, interactive: bool, clock=time.monotonic):
        self.model, self.label, self.total, self.interactive, self.clock = model, label, documents, interactive, clock
        self.active = False
        self.done = self.tokens = 0
        self.mean_tokens: float | None = None
        self.started: float | None = None  # when the first encode_document call began
        self.mark: tuple[float, int, int] | None = None  # (time, tokens, documents) after the first batch
        self.estimated = False
        self.every: Every | None = None

    def __enter__(self) -> CorpusTimer:
        original = self.model.encode_document

        def encode_document(inputs, *args, **kwargs):
            self._begin(inputs, kwargs.get("prompt"))
            self.active = True
            try:
                return original(inputs, *args, **kwargs)
            finally:
                self.active = False

        self.model.encode_document = encode_document  # an instance attribute: only this model object, until exit
        self.hook = self.model.register_forward_hook(self._batch_done)
        return self

    def __exit__(self, *exc) -> None:
        self.hook.remove()
        del self.model.encode_document

    def _begin(self, inputs, prompt: str | None) -> None:
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        if self.total is None or self.done + len(texts) > self.total:
            self.total = self.done + len(texts)
        if self.started is None:
            self.started = self.clock()
        if self.mean_tokens is None and texts and all(isinstance(t, str) for t in texts):
            sample = random.Random(0).sample(texts, min(256, len(texts)))
            try:
                lengths = self.model.tokenizer(
                    [(prompt or "") + t for t in sample], truncation=True, max_length=self.model.max_seq_length
                )["input_ids"]
            except Exception:  # an estimate must never stop an evaluation: fall back on documents/s
                return
            self.mean_tokens = sum(len(ids) for ids in lengths) / len(lengths)

    def _batch_done(self, module, args, output) -> None:
        if not self.active:
            return
        features = args[0] if args else None  # a dict or a tokenizer's BatchEncoding (a Mapping)
        mask = features.get("attention_mask") if isinstance(features, Mapping) else None
        if mask is None:
            return
        self.done += int(mask.shape[0])
        self.tokens += int(mask.sum())
        now = self.clock()
        if self.mark is None:
            self.mark = (now, self.tokens, self.done)
            return
        if self.done >= self.total or now <= self.mark[0]:
            return
        rate, unit = self.rate(now)
        if rate <= 0:
            return
        left = self.seconds_left(rate)
        if not self.estimated:
            if now - self.mark[0] < MEASURE_SECONDS:
                return
            self.estimated = True
            self.every = Every(PROGRESS_SECONDS, self.clock)
            what = f"{self.label}: {self.total:,} documents"
            if self.mean_tokens is not None:
                what += f", ~{self.mean_tokens:.0f} tokens each"
            where = str(self.model.device)
            info_line(estimate_line(what, f"{format_rate(rate)} {unit}", where, now - self.started + left, left))
        elif not self.interactive and self.every.due():
            info_line(progress_line(f"{self.label}: encoded {self.done:,}/{self.total:,} documents", left))

    def rate(self, now: float) -> tuple[float, str]:
        """Tokens per second since the end of the first batch, or documents per second when the documents were
        not tokenized (not text)."""
        elapsed = now - self.mark[0]
        if self.mean_tokens is not None:
            return (self.tokens - self.mark[1]) / elapsed, "tokens/s"
        return (self.done - self.mark[2]) / elapsed, "documents/s"

    def seconds_left(self, rate: float) -> float:
        """The time the rest of the corpus takes at ``rate``: the expected tokens (documents x the sample's mean)
        less those encoded, at least one per document left; or the documents left at a document rate."""
        left_docs = self.total - self.done
        if self.mean_tokens is None:
            return left_docs / rate
        return max(self.total * self.mean_tokens - self.tokens, left_docs) / rate


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
    from .load import require_device

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
        info(
            "[yellow]warning[/]: no efficiency report (parameters, FLOPs, throughput, memory): it times documents "
            "of a local BEIR folder, and only Hub tasks were given. Pair the task with its folder "
            "(--task NAME --data-dir FOLDER), or pass --no-measure to silence this."
        )
    local: dict[str, tuple[BeirSplit, dict | None, str]] = {}
    for source in tasks:
        if source.folder is not None:
            data = load_beir(source.folder, config.split)
            if data.unknown_qrels:
                info(
                    f"[yellow]warning[/]: {len(data.unknown_qrels)} qrels of {source.folder} name ids missing from "
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
    (out / "results.json").write_text(json.dumps(results.dump(), indent=1) + "\n")
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
        if entry["kind"] != "dense" or folder is None or not (folder / "provenance.json").is_file():
            continue
        own = results.model_copy(update={"models": [entry]})
        (folder / "results.json").write_text(json.dumps(own.dump(), indent=1) + "\n")
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


def add_ratios(entries: list[dict]) -> None:
    """Speed-up and FLOP ratio of every dense model against the first dense model (the reference)."""
    dense = [e for e in entries if e["efficiency"]]
    if not dense:
        return
    ref = dense[0]["efficiency"]
    for entry in dense:
        eff = entry["efficiency"]
        eff["speedup"] = eff["tokens_per_s"] / ref["tokens_per_s"]
        eff["flop_ratio"] = ref["flops_per_token"] / eff["flops_per_token"]


def _fmt_params(n) -> str:
    return "-" if n is None else f"{n / 1e6:.1f}M"


def results_table(results: EvalResults) -> str:
    """Markdown: one row per model and task, with the efficiency columns of that model."""
    lines = [
        "| model | task | nDCG@10 | Recall@100 | MRR@10 | params | non-emb. params | FLOPs/token | tokens/s | docs/s "
        "| speed-up | FLOP ratio | peak mem (MB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for entry in results.models:
        eff = entry.get("efficiency") or {}
        for task in entry["tasks"]:
            s = task["scores"]
            flops = eff.get("flops_per_token")
            mark = "*" if task.get("subsample") else ""
            lines.append(
                f"| {entry['name']} | {task['task']}{mark} | {s['ndcg_at_10']:.4f} | {s['recall_at_100']:.4f} | "
                f"{s['mrr_at_10']:.4f} | {_fmt_params(eff.get('params_total'))} | "
                f"{_fmt_params(eff.get('params_non_embedding'))} | "
                f"{'-' if flops is None else f'{flops / 1e6:.1f}M'} | "
                f"{_num(eff.get('tokens_per_s'), ',.0f')} | {_num(eff.get('docs_per_s'), '.2f')} | "
                f"{_num(eff.get('speedup'), '.2f', 'x')} | {_num(eff.get('flop_ratio'), '.2f', 'x')} | "
                f"{_num(eff.get('peak_memory_mb'), ',.0f')} |"
            )
            if task.get("subsample") and task["subsample"]["note"] not in notes:
                notes.append(task["subsample"]["note"])
    dense = [e["efficiency"] for e in results.models if e.get("efficiency")]
    if dense:
        eff = dense[0]
        estimated = [
            e["name"] for e in results.models if (e.get("efficiency") or {}).get("flops_method") == "estimate"
        ]
        lines += [
            "",
            f"Throughput: {eff['texts']} corpus documents, mean {eff['seq_len']} tokens, batch "
            f"{eff['batch_size']}, {eff['dtype']}, {eff['device']}, {eff['threads']} threads, best of 2 "
            f"passes after warm-up, each model in a fresh process. Speed-up and FLOP ratio are against the "
            "first model. FLOPs/token exclude the LM head"
            + (f"; estimated for {', '.join(estimated)}, exact for the others." if estimated else " and are exact."),
        ]
    lines += [f"* subsampled: {note}" for note in notes]
    return "\n".join(lines)


def _num(value, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


SCORE_LABELS = {"ndcg_at_10": "nDCG@10", "recall_at_100": "Recall@100", "mrr_at_10": "MRR@10"}


def quality_label(results: EvalResults) -> str:
    """The plot's y-axis: the tasks' main score by name (``main_score_name``, e.g. nDCG@10) when they share one,
    else "main score"; then the task, or how many tasks are averaged."""
    tasks = sorted({t["task"] for e in results.models for t in e["tasks"]})
    names = {t.get("main_score_name") for e in results.models for t in e["tasks"]}
    name = names.pop() if len(names) == 1 else None
    label = SCORE_LABELS.get(name, name) if name else "main score"
    if not tasks:
        return label
    return label + (f" (mean of {len(tasks)} tasks)" if len(tasks) > 1 else f" ({tasks[0]})")


def plot_tradeoff(results: EvalResults, path: Path) -> None:
    """Quality (mean main score over tasks) against measured throughput (docs/s, log scale); BM25 as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for entry in results.models:
        quality = sum(t["scores"]["main_score"] for t in entry["tasks"]) / max(1, len(entry["tasks"]))
        eff = entry.get("efficiency")
        if eff:
            ax.scatter(eff["docs_per_s"], quality, s=40)
            ax.annotate(
                entry["name"], (eff["docs_per_s"], quality), textcoords="offset points", xytext=(5, 4), fontsize=8
            )
        else:
            ax.axhline(quality, linestyle="--", color="grey", linewidth=1)
            ax.annotate(
                entry["name"],
                (0.01, quality),
                xycoords=("axes fraction", "data"),
                textcoords="offset points",
                xytext=(0, 3),
                fontsize=8,
                color="grey",
            )
    ax.set_xscale("log")
    ax.set_xlabel("encoding throughput (documents/s, log scale)")
    ax.set_ylabel(quality_label(results))
    ax.set_title("Effectiveness-efficiency trade-off")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

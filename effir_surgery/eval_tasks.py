"""Which tasks an evaluation runs, and local BEIR folders as mteb tasks.

``resolve_tasks`` pairs ``--task`` names with ``--data-dir`` folders and refuses unknown names before any model
is loaded (``_mteb_task_names`` keeps the registry's retrieval task names in the toolkit's cache). A local BEIR
folder is wrapped in an ``AbsTaskRetrieval`` subclass that reads the files offline (``local_task``), keeps the
official task's metadata and ``ignore_identical_ids`` when the folder is a known MTEB dataset, and can be
subsampled (``subsample``).
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

from ._logging import warning
from .beir import BeirSplit
from .config import EvalConfig
from .errors import EffirError


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
                warning(
                    f"'{name}' (from {how}) is not a known MTEB retrieval task, so "
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


def task_size(data: BeirSplit) -> dict[str, int]:
    """The counts that identify a BEIR split's content: queries, documents, qrels (query-document pairs) and the
    queries' characters. Compared with ``mteb_task_size`` to decide whether a local copy is the MTEB task itself."""
    return {
        "queries": len(data.queries),
        "documents": len(data.corpus),
        "qrels": sum(len(docs) for docs in data.qrels.values()),
        "query_chars": sum(len(text) for text in data.queries.values()),
    }


def mteb_task_size(name: str, split: str) -> dict[str, int] | None:
    """``task_size`` of the MTEB task ``name`` on ``split``, from the descriptive statistics mteb ships (offline).
    ``None`` when mteb does not know the task or has no statistics for the split."""
    try:
        import mteb

        stats = (mteb.get_task(name).metadata.descriptive_stats or {}).get(split)
        return {
            "queries": stats["num_queries"],
            "documents": stats["num_documents"],
            "qrels": stats["relevant_docs_statistics"]["num_relevant_docs"],
            "query_chars": stats["queries_text_statistics"]["total_text_length"],
        }
    except (ImportError, KeyError, ValueError, TypeError):
        return None


def local_task_record(name: str, split: str, data: BeirSplit, sub: dict | None) -> dict:
    """What ``results.json`` records about a local task's data: its ``size`` and whether it is the MTEB task
    ``name`` itself, in full (``full_mteb_task``: not subsampled, and every count equal to mteb's). Only such a
    result may be published as the MTEB task's score."""
    size = task_size(data)
    official = mteb_task_size(name, split)
    return {"size": size, "full_mteb_task": sub is None and official is not None and size == official}

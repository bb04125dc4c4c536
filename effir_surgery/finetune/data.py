"""Training data for retrieval fine-tuning: read, validate (errors name the file and line), mine hard negatives.

Accepted inputs:

- a jsonl file with one query per line: ``{"query", "positive" | "positives", "negatives"?}``; a row that has
  ``text`` (and ``title``) instead of ``positive`` uses that document as its positive (BEIR GenQ files);
- a BEIR folder with ``qrels/<split>.tsv`` (default ``train``): every judged (query, document) pair.

Every example becomes one row per (query, positive) pair; hard negatives fill columns ``negative_1..n``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from ..beir import document_text, is_beir_folder, iter_jsonl, load_beir
from ..errors import EffirError

JSONL_KEYS = {"query", "positive", "positives", "negative", "negatives", "text", "title", "_id", "id"}


@dataclass
class TrainExample:
    """One query with its relevant documents and (optionally) given hard negatives."""

    query: str
    positives: list[str]
    negatives: list[str] = field(default_factory=list)


@dataclass
class TrainData:
    """Examples plus the document pool that hard negatives are mined from."""

    examples: list[TrainExample]
    corpus: list[str]
    description: str


def _as_list(value, path, number, key) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise EffirError(f"{path}:{number}: '{key}' must be a string or a list of strings.")


def read_jsonl_pairs(path: str | Path) -> TrainData:
    """Read training rows from a jsonl file, refusing blank lines, unknown keys and queries without a positive."""
    path = Path(path)
    examples = []
    for number, row in iter_jsonl(path, allow_blank=False):
        unknown = sorted(set(row) - JSONL_KEYS)
        if unknown:
            raise EffirError(
                f"{path}:{number}: unknown column(s) {unknown}; expected query, positive(s), negative(s) "
                "(or query + title/text)."
            )
        query = row.get("query")
        if not isinstance(query, str) or not query.strip():
            raise EffirError(f"{path}:{number}: missing or empty 'query'.")
        positives = _as_list(row.get("positive"), path, number, "positive") + _as_list(
            row.get("positives"), path, number, "positives"
        )
        if not positives and isinstance(row.get("text"), str):
            positives = [document_text({"title": str(row.get("title") or ""), "text": row["text"]})]
        positives = [p for p in positives if p.strip()]
        if not positives:
            raise EffirError(f"{path}:{number}: query has no positive; add 'positive' (or 'text').")
        negatives = _as_list(row.get("negative"), path, number, "negative") + _as_list(
            row.get("negatives"), path, number, "negatives"
        )
        examples.append(TrainExample(query, positives, [n for n in negatives if n.strip()]))
    if not examples:
        raise EffirError(f"{path} has no training rows.")
    corpus = sorted({d for e in examples for d in e.positives + e.negatives})
    return TrainData(examples, corpus, f"{path.name}: {len(examples)} queries")


def read_beir_pairs(folder: str | Path, split: str = "train") -> TrainData:
    """Every judged (query, relevant document) pair of a BEIR split; the corpus is the mining pool."""
    data = load_beir(folder, split)
    examples = []
    for qid, query in data.queries.items():
        positives = [document_text(data.corpus[d]) for d, s in data.qrels[qid].items() if s > 0 and d in data.corpus]
        if positives:
            examples.append(TrainExample(query, positives))
    if not examples:
        raise EffirError(f"{folder}/qrels/{split}.tsv has no query with a relevant document in the corpus.")
    corpus = [document_text(d) for d in data.corpus.values()]
    pairs = sum(len(e.positives) for e in examples)
    return TrainData(examples, corpus, f"BEIR {Path(folder).name} {split}: {len(examples)} queries, {pairs} pairs")


def read_train_data(source: str | Path, split: str = "train") -> TrainData:
    source = Path(source)
    if source.is_dir():
        if not is_beir_folder(source):
            raise EffirError(f"'{source}' is a folder but not a BEIR folder (no corpus.jsonl[.gz]).")
        return read_beir_pairs(source, split)
    if not source.is_file():
        raise EffirError(f"Training data '{source}' does not exist; pass a jsonl file or a BEIR folder.")
    return read_jsonl_pairs(source)


def check_given_negatives(data: TrainData, count: int) -> None:
    """With mining off (``--mine none``) hard negatives come from the data alone: a jsonl row's ``negatives`` (a
    BEIR folder brings none). Refuse data in which a query has fewer than ``count``, the rule ``build_rows``
    applies, before a model is loaded or a work folder made."""
    short = [e for e in data.examples if len(e.negatives) < count]
    if short:
        first = short[0]
        raise EffirError(
            f"--mine none takes hard negatives from the training data only, but {len(short)} of "
            f"{len(data.examples)} queries have fewer than --hard-negatives {count} (the first, {first.query[:60]!r}, "
            f"has {len(first.negatives)}); mine them (--mine bm25 or model), add 'negatives' to the data, or pass "
            "--hard-negatives 0 (in-batch negatives only)."
        )


def bm25_negatives(
    data: TrainData, count: int, range_min: int = 2, range_max: int = 30, seed: int = 0
) -> list[list[str]]:
    """For each example, ``count`` BM25 hard negatives sampled from ranks ``[range_min, range_max)`` of the
    documents that are not its positives (skipping the very top lowers the risk of unjudged positives).

    Uses bm25s with the PyStemmer English stemmer and English stop words (the data README's BM25 setting).
    """
    import bm25s
    import Stemmer

    from .._logging import progress_enabled

    bars = progress_enabled()  # bm25s's own bars (with ETA) on a terminal: indexing a large corpus takes minutes
    stemmer = Stemmer.Stemmer("english")
    corpus = data.corpus
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(corpus, stopwords="en", stemmer=stemmer, show_progress=bars), show_progress=bars)
    k = min(len(corpus), range_max + max(len(e.positives) for e in data.examples))
    queries = bm25s.tokenize([e.query for e in data.examples], stopwords="en", stemmer=stemmer, show_progress=bars)
    hits, _ = retriever.retrieve(queries, k=k, show_progress=bars)
    rng = random.Random(seed)
    out = []
    for example, row in zip(data.examples, hits, strict=True):
        positives = set(example.positives)
        ranked = [corpus[int(i)] for i in row if corpus[int(i)] not in positives]
        window = ranked[range_min:range_max] or ranked
        out.append(rng.sample(window, min(count, len(window))))
    return out


def build_rows(
    data: TrainData, negatives: list[list[str]] | None, count: int, max_rows: int | None = None, seed: int = 0
) -> dict[str, list[str]]:
    """Columns ``query, positive, negative_1..count``: one row per (query, positive) pair, shuffled."""
    rows = []
    for i, example in enumerate(data.examples):
        pool = list(example.negatives) + [n for n in (negatives[i] if negatives else []) if n not in example.negatives]
        if len(pool) < count:
            raise EffirError(
                f"query {example.query[:60]!r} has {len(pool)} hard negative(s) but --hard-negatives is {count}; "
                "lower it or mine negatives (--mine bm25)."
            )
        for positive in example.positives:
            rows.append([example.query, positive, *pool[:count]])
    random.Random(seed).shuffle(rows)
    rows = rows[:max_rows] if max_rows else rows
    columns = ["query", "positive"] + [f"negative_{j + 1}" for j in range(count)]
    return {name: [row[j] for row in rows] for j, name in enumerate(columns)}

"""Readers for BEIR folders and jsonl files, with errors that name the file, line and fix.

A BEIR folder holds ``corpus.jsonl[.gz]``, ``queries.jsonl[.gz]`` and ``qrels/<split>.tsv``
(header ``query-id<TAB>corpus-id<TAB>score``). Used by calibration, fine-tuning data and evaluation.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .errors import EffirError


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


def iter_jsonl(path: str | Path, allow_blank: bool = True) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-empty line; raise ``EffirError`` naming the bad line (and any
    blank line when ``allow_blank`` is False)."""
    path = Path(path)
    if not path.is_file():
        raise EffirError(f"File '{path}' does not exist.")
    try:
        with _open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    if allow_blank:
                        continue
                    raise EffirError(f"{path}:{number}: empty line; remove it (one JSON object per line).")
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise EffirError(
                        f"{path}:{number}: not valid JSON ({exc.msg}); fix or remove that line."
                    ) from None
                if not isinstance(obj, dict):
                    raise EffirError(f"{path}:{number}: expected a JSON object per line, got {type(obj).__name__}.")
                yield number, obj
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise EffirError(f"Could not read '{path}': {exc}. Is it a valid (gzipped) UTF-8 jsonl file?") from None


def find_file(folder: Path, stem: str) -> Path | None:
    """``folder/stem.jsonl`` or ``folder/stem.jsonl.gz``, whichever exists."""
    for name in (f"{stem}.jsonl", f"{stem}.jsonl.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def is_beir_folder(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and find_file(path, "corpus") is not None


@dataclass
class BeirSplit:
    """One split of a BEIR dataset.

    Attributes:
        corpus: doc id -> ``{"title", "text"}``.
        queries: query id -> text, only queries that have judgements in this split.
        qrels: query id -> {doc id -> relevance}.
        unknown_qrels: judgements naming a query or document absent from the files (BEIR keeps and counts them).
    """

    name: str
    split: str
    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    unknown_qrels: list[tuple[str, str]] = field(default_factory=list)


def read_corpus(folder: str | Path) -> dict[str, dict[str, str]]:
    folder = Path(folder)
    path = find_file(folder, "corpus")
    if path is None:
        raise EffirError(f"'{folder}' has no corpus.jsonl or corpus.jsonl.gz; is it a BEIR folder?")
    corpus = {}
    for number, row in iter_jsonl(path):
        if "_id" not in row or "text" not in row:
            raise EffirError(f"{path}:{number}: a corpus row needs '_id' and 'text' (and optionally 'title').")
        corpus[str(row["_id"])] = {"title": str(row.get("title") or ""), "text": str(row["text"])}
    if not corpus:
        raise EffirError(f"{path} is empty.")
    return corpus


def read_queries(folder: str | Path) -> dict[str, str]:
    folder = Path(folder)
    path = find_file(folder, "queries")
    if path is None:
        raise EffirError(f"'{folder}' has no queries.jsonl or queries.jsonl.gz; is it a BEIR folder?")
    queries = {}
    for number, row in iter_jsonl(path):
        if "_id" not in row or "text" not in row:
            raise EffirError(f"{path}:{number}: a query row needs '_id' and 'text'.")
        queries[str(row["_id"])] = str(row["text"])
    return queries


def read_qrels(folder: str | Path, split: str) -> dict[str, dict[str, int]]:
    folder = Path(folder)
    path = folder / "qrels" / f"{split}.tsv"
    if not path.is_file():
        available = sorted(p.stem for p in (folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
        raise EffirError(f"'{folder}' has no qrels/{split}.tsv (available splits: {', '.join(available) or 'none'}).")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            parts = line.rstrip("\n").split("\t")
            if number == 1 and parts[0] in ("query-id", "query_id", "qid"):
                continue
            if not line.strip():
                continue
            if len(parts) < 3:
                raise EffirError(f"{path}:{number}: expected 'query-id<TAB>corpus-id<TAB>score'.")
            try:
                score = int(float(parts[2]))
            except ValueError:
                raise EffirError(f"{path}:{number}: score '{parts[2]}' is not a number.") from None
            qrels.setdefault(parts[0], {})[parts[1]] = score
    return qrels


def load_beir(folder: str | Path, split: str = "test") -> BeirSplit:
    """Read a BEIR split: corpus, the queries judged in ``split``, and its qrels (unknown ids counted, not fatal)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EffirError(f"BEIR folder '{folder}' does not exist.")
    qrels = read_qrels(folder, split)
    corpus = read_corpus(folder)
    all_queries = read_queries(folder)
    unknown = [(q, d) for q, docs in qrels.items() for d in docs if q not in all_queries or d not in corpus]
    queries = {q: all_queries[q] for q in qrels if q in all_queries}
    if not queries:
        raise EffirError(f"No query in {folder}/qrels/{split}.tsv appears in the queries file.")
    return BeirSplit(folder.name, split, corpus, queries, qrels, unknown)


def document_text(doc: dict[str, str]) -> str:
    """How a corpus document is shown to an encoder: title and text joined by a space (BEIR/MTEB convention)."""
    title = doc.get("title") or ""
    return f"{title} {doc['text']}".strip() if title else doc["text"]

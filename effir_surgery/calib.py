"""Calibration texts for importance analysis, formatted the way the retriever will see them.

Queries carry the query prompt and documents are ``title text``, so importance is measured on retrieval inputs.
Sources: the bundled texts (64 queries and 64 passages written for this project, CC0), a BEIR folder (queries and
corpus documents) or a jsonl file (``text``/``title`` rows, or ``query``/``positive``/``negatives`` rows).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from .beir import document_text, is_beir_folder, iter_jsonl, read_corpus, read_queries
from .config import DEFAULT_QUERY_PROMPT
from .errors import EffirError

BUNDLED = "bundled"


@dataclass(frozen=True)
class CalibrationSet:
    """Texts to run through the model, and a one-line description of where they came from."""

    texts: list[str]
    description: str


def _bundled_path() -> Path:
    return Path(str(files("effir_surgery").joinpath("data/calibration.jsonl")))


def _from_rows(path: Path) -> tuple[list[str], list[str]]:
    queries, documents = [], []
    for number, row in iter_jsonl(path):
        if "query" in row:
            queries.append(str(row["query"]))
            for key in ("positive", "positives", "negatives", "negative"):
                value = row.get(key)
                documents.extend(str(v) for v in (value if isinstance(value, list) else [value] if value else []))
        elif "text" in row:
            if row.get("kind") == "query":
                queries.append(str(row["text"]))
            else:
                documents.append(document_text({"title": str(row.get("title") or ""), "text": str(row["text"])}))
        else:
            raise EffirError(
                f"{path}:{number}: a calibration row needs 'text' (optionally 'title'/'kind') or 'query' "
                f"(optionally 'positive'/'negatives'); found keys {sorted(row)}."
            )
    return queries, documents


def load_calibration(
    source: str | None, samples: int, query_prompt: str = DEFAULT_QUERY_PROMPT, seed: int = 0
) -> CalibrationSet:
    """Pick ``samples`` calibration texts, half queries and half documents when both exist, deterministically.

    Args:
        source: ``None`` for the bundled texts, a BEIR folder, or a jsonl file.
        samples: how many texts to return (fewer if the source has fewer).
        query_prompt: prepended to queries, as at retrieval time.
    """
    if source is None or source == BUNDLED:
        queries, documents = _from_rows(_bundled_path())
        where = "bundled calibration texts"
    else:
        path = Path(source)
        if is_beir_folder(path):
            queries = list(read_queries(path).values())
            documents = [document_text(d) for d in read_corpus(path).values()]
            where = f"BEIR folder {path}"
        elif path.is_file():
            queries, documents = _from_rows(path)
            where = f"jsonl {path}"
        else:
            raise EffirError(
                f"Calibration source '{source}' is neither a BEIR folder (with corpus.jsonl[.gz]) nor a jsonl file."
            )
    if not queries and not documents:
        raise EffirError(f"Calibration source '{source}' has no texts.")
    rng = random.Random(seed)
    n_queries = min(len(queries), samples // 2 if documents else samples)
    n_documents = min(len(documents), samples - n_queries)
    n_queries = min(len(queries), samples - n_documents)
    picked = [query_prompt + q for q in rng.sample(queries, n_queries)] + rng.sample(documents, n_documents)
    return CalibrationSet(picked, f"{where}: {n_queries} queries + {n_documents} documents")

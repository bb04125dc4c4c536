"""Timing of corpus encoding during an evaluation: a corpus-size line, an estimate of the total time, and progress.

``CorpusTimer`` watches a sentence-transformers model's document batches while mteb encodes the corpus; it never
changes what is encoded.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping

from ._logging import Every, estimate_line, format_rate, info_line, progress_line

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
    holds the scores (nothing is encoded); with several devices no timer is made (``evaluate._corpus_timer``).
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

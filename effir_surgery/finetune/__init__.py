"""Retrieval fine-tuning: data reading and mining (``data``), the training run (``train``), the model it trains
(``model``), checkpoints and resume (``checkpoints``), learned width (``width``) and progress lines (``progress``)."""

from .train import FinetuneResult, finetune

__all__ = ["FinetuneResult", "finetune"]

"""Retrieval fine-tuning: data reading and mining (``data``), the training run (``train``)."""

from .train import FinetuneResult, finetune

__all__ = ["FinetuneResult", "finetune"]

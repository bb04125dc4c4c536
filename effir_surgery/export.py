"""Export a saved retriever for ONNX Runtime: ``onnx/model.onnx`` computes the embeddings, pooling included.

The graph comes from ``torch.onnx.export`` (the dynamo exporter, through onnxscript) run on the model the folder's
own classes build, so every layer keeps its own MLP width and removed sublayers stay removed. optimum's exporter is
not used: it pins transformers < 5 (checked on 2026-12-03) and knows only stock architectures.

Graph contract: inputs ``input_ids`` and ``attention_mask`` (int64, ``(batch, sequence)``, both axes dynamic), as
the folder's tokenizer makes them (EOS appended, left padding); outputs ``last_hidden_state`` ``(batch, sequence,
hidden)`` (for runtimes that pool themselves) and ``sentence_embedding`` ``(batch, hidden)``: the last token's
hidden state, L2-normalised, exactly the encoder of training, evaluation and the sentence-transformers files.
Queries carry the query prompt as text, as with sentence-transformers' ``encode_query``.

Every export is checked before it is kept: the ONNX Runtime embeddings of a left-padded batch of texts of
different lengths must equal PyTorch's (max abs difference below ``TOLERANCE``); the int8 variant's agreement is
measured and recorded. The output folder also holds the tokenizer, ``config.json`` and the sentence-transformers
files, so runtimes that read them (text-embeddings-inference) find the pooling and the prompt.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
import warnings
from pathlib import Path

from pydantic import BaseModel

from . import __version__
from ._logging import info
from .config import ExportConfig
from .errors import EffirError
from .extras import EXPORT, require
from .folder import CONFIG_FILE, EXPORT_FILE, ONNX_FILE, ONNX_INT8_FILE, ST_CONFIG_FILE, WEIGHTS_INDEX_FILE
from .outputs import claimed_output
from .save import atomic_folder, load_saved
from .trust import allowing_foreign_code

TOLERANCE = 1e-4  # float32 graph against float32 PyTorch, on the check batch
CHECK_TEXTS = [
    "Photosynthesis turns light into chemical energy.",
    "how do plants make energy?",
    "Dense retrievers encode queries and documents into vectors and rank documents by cosine similarity to the "
    "query; pruning sublayers makes the encoder cheaper to run.",
]


class ExportResult(BaseModel):
    """What ``export`` wrote and how close its graphs are to the PyTorch model (``export.json``)."""

    source: str
    output: Path
    format: str
    files: list[str]
    max_abs_diff: float  # float32 graph vs PyTorch embeddings, check batch
    int8_cosine_min: float | None = None  # int8 graph vs PyTorch embeddings (cosine per text), check batch
    int8_cosine_mean: float | None = None
    tool_version: str = __version__
    torch_version: str
    onnxruntime_version: str
    seconds: float


def _embedder(model):
    """``model`` (a base decoder) wrapped to return ``(last_hidden_state, sentence_embedding)``."""
    import torch

    class Embedder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
            # left padding: the last position is every row's last real token (the EOS the tokenizer appends)
            return hidden, torch.nn.functional.normalize(hidden[:, -1], dim=-1)

    return Embedder().eval()


def _check_batch(tokenizer, folder: Path) -> dict:
    """The check texts as the folder's tokenizer encodes them, the first with the query prompt."""
    prompts = (
        (json.loads((folder / ST_CONFIG_FILE).read_text()).get("prompts") or {})
        if (folder / ST_CONFIG_FILE).is_file()
        else {}
    )
    texts = [prompts.get("query", "") + CHECK_TEXTS[1], CHECK_TEXTS[0], CHECK_TEXTS[2]]
    if tokenizer.padding_side != "left":
        raise EffirError(
            f"'{folder}' has a tokenizer that pads on the {tokenizer.padding_side}; export a folder saved by "
            "effir-surgery (its tokenizer pads on the left and appends EOS)."
        )
    return tokenizer(texts, padding=True, return_tensors="pt")


@contextlib.contextmanager
def _quiet_libraries():
    """The exporter's and the quantizer's chatter (optional torchvision ops, deprecations inside torch.export, a
    pre-processing hint logged on the root logger) says nothing about the result, which is checked below."""
    names = ("", "torch.onnx", "torch._export", "onnxruntime", "onnxruntime.quantization.matmul_nbits_quantizer")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def _quantize_weights(graph: Path, out: Path) -> None:
    """int8 weight-only quantization of every MatMul (onnxruntime's ``MatMulNBits``, symmetric, blocks of 32 along
    the input dimension; activations stay float32). Dynamic quantization, which also quantizes the activations
    per tensor, is not used: on the pruned SmolLM2 its embeddings kept a mean cosine of 0.62 to the float32 ones
    (outlier activations, as in every LLM; benchmarks/onnx_runtime.py at commit 9004025), where weight-only int8
    keeps 0.993 (benchmarks/results/onnx_runtime.md)."""
    import onnx
    from onnxruntime.quantization import matmul_nbits_quantizer as nbits

    settings = nbits.DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True, bits=8)
    quantizer = nbits.MatMulNBitsQuantizer(onnx.load(str(graph)), algo_config=settings)
    quantizer.process()
    quantizer.model.save_model_to_file(str(out), use_external_data_format=True)


def _run(path: Path, batch: dict):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {name: batch[name].numpy() for name in ("input_ids", "attention_mask")}
    return session.run(["sentence_embedding"], feed)[0]


def _copy_support_files(folder: Path, out: Path) -> list[str]:
    """Everything of ``folder`` but the weights: tokenizer, config, sentence-transformers files, card, records."""
    copied = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if (
            path.is_dir()
            or rel.parts[0].startswith(".")
            or path.suffix == ".safetensors"
            or rel.name == WEIGHTS_INDEX_FILE
        ):
            continue
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out / rel)
        copied.append(rel.as_posix())
    return copied


def export(config: ExportConfig) -> ExportResult:
    """Write ``config.output`` for ONNX Runtime from the saved folder ``config.model`` (see the module docstring).

    Raises:
        EffirError: the folder is missing or not a model folder, an extra is missing, or the graph does not
            reproduce the PyTorch embeddings (nothing is written then).
    """
    require("export", "export", EXPORT)
    folder = Path(config.model)
    if not (folder / CONFIG_FILE).is_file():
        raise EffirError(
            f"'{folder}' is not a saved model folder (no {CONFIG_FILE}); give what prune, finetune or run wrote."
        )
    started = time.perf_counter()
    import numpy as np
    import onnxruntime
    import torch

    with (
        claimed_output(config.output, config.overwrite, [str(folder)]) as out,
        allowing_foreign_code(config.trust_remote_code),
        atomic_folder(out, config.overwrite) as tmp,
    ):
        info(f"Loading {folder} ...")
        model, tokenizer = load_saved(folder, dtype=torch.float32, causal_lm=False)
        embedder = _embedder(model)
        batch = _check_batch(tokenizer, folder)
        with torch.inference_mode():
            reference = embedder(batch["input_ids"], batch["attention_mask"])[1].numpy()
        graph = tmp / ONNX_FILE
        graph.parent.mkdir(parents=True)
        info(f"Exporting the graph to {ONNX_FILE} (torch.onnx, dynamic batch and sequence) ...")
        sequence, rows = torch.export.Dim("sequence"), torch.export.Dim("batch")
        with _quiet_libraries():
            torch.onnx.export(
                embedder,
                (batch["input_ids"], batch["attention_mask"]),
                str(graph),
                input_names=["input_ids", "attention_mask"],
                output_names=["last_hidden_state", "sentence_embedding"],
                dynamic_shapes={"input_ids": {0: rows, 1: sequence}, "attention_mask": {0: rows, 1: sequence}},
                dynamo=True,
                verbose=False,
            )
        difference = float(np.abs(_run(graph, batch) - reference).max())
        if not difference < TOLERANCE:
            raise EffirError(
                f"The exported graph's embeddings differ from PyTorch's by up to {difference:.2e} (tolerance "
                f"{TOLERANCE:.0e}); nothing was written. Please report it with the folder's config.json."
            )
        cosine = None
        if config.quantize == "int8":
            info(f"Quantizing the weights to int8 ({ONNX_INT8_FILE}) ...")
            with _quiet_libraries():
                _quantize_weights(graph, tmp / ONNX_INT8_FILE)
            quantized = _run(tmp / ONNX_INT8_FILE, batch)
            cosine = (quantized * reference).sum(axis=1) / np.linalg.norm(quantized, axis=1)
        files = [p.relative_to(tmp).as_posix() for p in graph.parent.iterdir()]  # graphs and their weight files
        files += _copy_support_files(folder, tmp)
        result = ExportResult(
            source=str(folder),
            output=out,
            format=config.format,
            files=sorted(files),
            max_abs_diff=difference,
            int8_cosine_min=None if cosine is None else round(float(cosine.min()), 6),
            int8_cosine_mean=None if cosine is None else round(float(cosine.mean()), 6),
            torch_version=torch.__version__,
            onnxruntime_version=onnxruntime.__version__,
            seconds=round(time.perf_counter() - started, 1),
        )
        (tmp / EXPORT_FILE).write_text(result.model_dump_json(indent=1) + "\n")
    return result

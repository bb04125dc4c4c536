"""Benchmark: streaming `prune` of a Mistral-7B-shaped checkpoint on one ordinary machine.

Builds a checkpoint with the shapes of Mistral-7B-v0.1 (hidden 4096, MLP 14336, 32 layers, 32 heads, 8 KV heads,
vocab 32000, untied LM head) and random bf16 weights, written tensor by tensor (the model is never in memory) as
safetensors shards of at most ``--shard-size`` (default 10GB: two shards of 9.9 GB and 4.6 GB, like the Hub
release), with a 32000-token word-level tokenizer. Then, each as a subprocess under ``/usr/bin/time -v``:

1. ``effir-surgery prune CKPT --mlp-drop 0.5 --mlp-width 0.75 --streaming --dtype bfloat16 --calib-samples 8
   --calib-max-length 64 -o OUT``: layer-wise analysis, plan, streaming surgery, checks; wall time and peak RSS.
2. The surgery step alone (``StreamingSurgery(...).write`` with the plan from step 1, no reload check): wall time
   and peak RSS; its weights must be byte-identical to step 1's.

Sizes in the table are one measure for every row: the bytes of the ``*.safetensors`` files on disk (tensor data
plus each file's header), ``file_bytes``. The JSON also keeps the tensor data alone that ``StreamingSurgery``
reports (``output_tensor_bytes``, ``source_tensor_bytes``: headers excluded).

Writes ``benchmarks/results/streaming_7b.{json,md}`` and deletes the checkpoint and outputs (also on failure).

    python benchmarks/streaming_7b.py [--workdir /tmp/effir-7b] [--shard-size 10GB] [--keep]

Needs about 30 GB of free disk (checkpoint 14.5 GB plus two 7.4 GB outputs) and a few GB of RAM.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PRUNE_FLAGS = ["--mlp-drop", "0.5", "--mlp-width", "0.75", "--streaming", "--dtype", "bfloat16"]
CALIB_FLAGS = ["--calib-samples", "8", "--calib-max-length", "64"]
SIZE_COLUMN = "safetensors files written (bytes on disk, headers included)"

SURGERY_ONLY = """
import sys
from effir_surgery.load import load_tokenizer, resolve_source
from effir_surgery.plan import SurgeryPlan
from effir_surgery.streaming import StreamingSurgery

ckpt, plan_path, out = sys.argv[1:]
job = StreamingSurgery(ckpt, SurgeryPlan.load(plan_path), dtype="bfloat16")
result = job.write(out, tokenizer=load_tokenizer(resolve_source(ckpt)), provenance={}, verify=False)
print(result.model_dump_json())
"""


def mistral_7b_config(layers: int = 32):
    from transformers import MistralConfig

    # Mistral-7B-v0.1's config.json (the transformers defaults differ in context length and norm epsilon)
    return MistralConfig(
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=layers,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=32768,
        rms_norm_eps=1e-5,
        sliding_window=4096,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
        architectures=["MistralForCausalLM"],
        dtype="bfloat16",
    )


def build_tokenizer(folder: Path, vocab_size: int) -> None:
    """A word-level tokenizer with exactly ``vocab_size`` tokens: specials, the words of the bundled calibration
    texts, then filler tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    import effir_surgery

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    texts = Path(effir_surgery.__file__).with_name("data") / "calibration.jsonl"
    for line in texts.read_text().splitlines():
        row = json.loads(line)
        for word in re.findall(r"\w+|[^\w\s]", f"{row.get('title', '')} {row['text']}"):
            if len(vocab) < vocab_size:
                vocab.setdefault(word, len(vocab))
    while len(vocab) < vocab_size:
        vocab[f"<tok{len(vocab)}>"] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tokenizer.save_pretrained(folder)


def build_checkpoint(folder: Path, shard_size: str, layers: int = 32) -> dict:
    """Write the random bf16 checkpoint shard by shard; at most one tensor is in memory at a time."""
    import torch
    from huggingface_hub import split_state_dict_into_shards_factory
    from transformers import MistralForCausalLM

    from effir_surgery.streaming import _Entry, write_safetensors

    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    config = mistral_7b_config(layers)
    with torch.device("meta"):
        model = MistralForCausalLM(config)
    names = sorted(model.state_dict(), key=_natural_key)  # the order save_pretrained writes
    shapes = {name: tuple(model.state_dict()[name].shape) for name in names}
    sizes = {name: 2 * _numel(shape) for name, shape in shapes.items()}
    split = split_state_dict_into_shards_factory(
        sizes, get_storage_size=lambda n: n, filename_pattern="model{suffix}.safetensors", max_shard_size=shard_size
    )
    generator = torch.Generator().manual_seed(0)

    def produce(entry):
        if entry.name.endswith("norm.weight"):
            return (1.0 + 0.1 * torch.randn(entry.shape, generator=generator)).to(torch.bfloat16)
        return (0.02 * torch.randn(entry.shape, generator=generator)).to(torch.bfloat16)

    for filename, tensor_names in split.filename_to_tensors.items():
        entries = [_Entry(name, shapes[name]) for name in tensor_names]
        write_safetensors(folder / filename, entries, torch.bfloat16, produce, {"format": "pt"})
        print(f"  wrote {filename} ({_gb((folder / filename).stat().st_size)})", flush=True)
    if split.is_sharded:
        index = {"metadata": {"total_size": split.metadata["total_size"]}, "weight_map": split.tensor_to_filename}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    config.save_pretrained(folder)
    build_tokenizer(folder, config.vocab_size)
    return {
        "params": sum(_numel(s) for s in shapes.values()),
        "tensors": len(shapes),
        "shards": {f: (folder / f).stat().st_size for f in split.filename_to_tensors},
        "seconds": round(time.perf_counter() - started, 1),
    }


def _natural_key(name: str):
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in name.split(".")]


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def file_bytes(folder: Path) -> int:
    """Bytes on disk of ``folder``'s safetensors files: tensor data plus each file's header (the table's measure)."""
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))


def timed(command: list[str], log: Path) -> dict:
    """Run ``command`` under ``/usr/bin/time -v``; its stdout/stderr go to ``log``. Returns wall seconds, peak RSS
    (the largest of the process and its waited-for children) and the exit code."""
    started = time.perf_counter()
    with log.open("w") as handle:
        env = dict(os.environ, EFFIR_SURGERY_NO_PROGRESS="1")
        proc = subprocess.run(["/usr/bin/time", "-v", *command], stdout=handle, stderr=subprocess.STDOUT, env=env)
    text = log.read_text()
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if proc.returncode != 0:
        tail = "\n".join(text.strip().splitlines()[-25:])
        raise RuntimeError(f"{' '.join(command[:3])} ... failed ({proc.returncode}):\n{tail}")
    return {
        "wall_s": round(time.perf_counter() - started, 1),
        "peak_rss_bytes": int(rss.group(1)) * 1024 if rss else None,
        "log": str(log),
    }


def file_hashes(folder: Path) -> dict[str, str]:
    hashes = {}
    for path in sorted(folder.glob("*.safetensors")):
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 24), b""):
                digest.update(block)
        hashes[path.name] = digest.hexdigest()
    return hashes


def machine() -> dict:
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    total = next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemTotal:"))
    return {
        "cpus": os.cpu_count(),
        "ram_bytes": total,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": os.getloadavg(),
    }


def other_jobs() -> list[str]:
    """Other processes using CPU right now (the benchmark shares the machine with training jobs)."""
    out = subprocess.run(["ps", "-eo", "pcpu,rss,args", "--sort=-pcpu"], capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines()[1:8]:
        cpu, rss, *args = line.split(None, 2)
        if float(cpu) >= 20 and "streaming_7b" not in line and "effir-surgery prune" not in line:
            rows.append(f"{cpu}% CPU, {int(rss) // 1024} MB RSS: {' '.join(args)[:100]}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/effir-streaming-7b"))
    parser.add_argument("--shard-size", default="10GB")
    parser.add_argument("--keep", action="store_true", help="Keep the checkpoint and outputs (about 30 GB).")
    parser.add_argument("--layers", type=int, default=32, help="Fewer layers for a quick trial run (default 32).")
    parser.add_argument("--results", type=Path, default=RESULTS, help="Folder for streaming_7b.{json,md}.")
    args = parser.parse_args()

    work = args.workdir
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ckpt, out, out_surgery = work / "mistral-7b-shaped", work / "pruned", work / "pruned-surgery-only"
    result: dict = {"machine": machine(), "other_jobs_at_start": other_jobs(), "shard_size": args.shard_size}
    result["layers"] = args.layers
    try:
        print(f"Building the Mistral-7B-shaped checkpoint in {ckpt} ...", flush=True)
        result["checkpoint"] = build_checkpoint(ckpt, args.shard_size, args.layers)
        result["checkpoint"]["file_bytes"] = file_bytes(ckpt)
        print(f"  {result['checkpoint']['params']:,} params in {result['checkpoint']['seconds']} s", flush=True)

        prune = [shutil.which("effir-surgery") or "effir-surgery", "prune", str(ckpt), *PRUNE_FLAGS, *CALIB_FLAGS]
        prune += ["-o", str(out)]
        print("Running: " + " ".join(prune), flush=True)
        result["prune"] = timed(prune, work / "prune.log")
        result["prune"]["command"] = " ".join(["effir-surgery", *prune[1:]])
        output = (work / "prune.log").read_text()
        result["prune"]["summary"] = [
            line
            for line in output.splitlines()
            if line.startswith(("drop MLP", "MLP widths", "params", "FLOPs", "clean-process", "peak memory", "time"))
        ]
        result["prune"]["output_file_bytes"] = file_bytes(out)
        result["prune"]["output_files"] = sorted(p.name for p in out.iterdir())
        hashes = file_hashes(out)

        print("Running the surgery step alone ...", flush=True)
        surgery = [sys.executable, "-c", SURGERY_ONLY, str(ckpt), str(out / "surgery_plan.json"), str(out_surgery)]
        result["surgery"] = timed(surgery, work / "surgery.log")
        log = (work / "surgery.log").read_text().splitlines()
        streamed = json.loads(next(line for line in reversed(log) if line.startswith('{"record"')))
        result["surgery"].update(
            output_file_bytes=file_bytes(out_surgery),
            output_tensor_bytes=streamed["output_bytes"],
            source_tensor_bytes=streamed["source_bytes"],
            shards=streamed["shards"],
            identical_to_prune_output=file_hashes(out_surgery) == hashes,
        )
        result["other_jobs_at_end"] = other_jobs()
        result["load_average_at_end"] = os.getloadavg()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
            print(f"Deleted {work}", flush=True)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "streaming_7b.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.results / "streaming_7b.md").write_text(markdown(result) + "\n")
    print(markdown(result))


def markdown(r: dict) -> str:
    ckpt, prune, surgery = r["checkpoint"], r["prune"], r["surgery"]
    gib = 2**30
    lines = [
        f"| step | wall time | peak RSS | {SIZE_COLUMN} |",
        "|---|---|---|---|",
        f"| build the checkpoint (random bf16, {len(ckpt['shards'])} shards) | {ckpt['seconds']:.0f} s | - | "
        f"{_gb(ckpt['file_bytes'])} |",
        f"| `prune` (layer-wise analysis, plan, streaming surgery, checks) | {prune['wall_s']:.0f} s | "
        f"{prune['peak_rss_bytes'] / gib:.2f} GiB | {_gb(prune['output_file_bytes'])} |",
        f"| surgery step alone | {surgery['wall_s']:.0f} s | {surgery['peak_rss_bytes'] / gib:.2f} GiB | "
        f"{_gb(surgery['output_file_bytes'])} ({surgery['shards']} shards) |",
        "",
        f"Checkpoint: {ckpt['params']:,} parameters, {ckpt['tensors']} tensors, shards "
        + ", ".join(f"{name} {_gb(size)}" for name, size in ckpt["shards"].items())
        + f". Output / checkpoint size (file bytes): {prune['output_file_bytes'] / ckpt['file_bytes']:.3f}."
        + f" Tensor data alone (headers excluded): {_gb(surgery['source_tensor_bytes'])} read, "
        + f"{_gb(surgery['output_tensor_bytes'])} written.",
        f"Surgery-only output byte-identical to the prune output: {surgery['identical_to_prune_output']}.",
        f"Machine: {r['machine']['cpus']} CPUs, {r['machine']['ram_bytes'] / gib:.1f} GiB RAM; load average at start "
        f"{', '.join(f'{x:.1f}' for x in r['machine']['load_average'])}, at end "
        f"{', '.join(f'{x:.1f}' for x in r['load_average_at_end'])}.",
    ]
    jobs = r["other_jobs_at_start"] + r["other_jobs_at_end"]
    if jobs:
        lines.append("Other jobs running meanwhile (wall times include their contention): " + "; ".join(jobs[:4]))
    lines += ["", "prune output:", "", "```text", *prune["summary"], "```"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

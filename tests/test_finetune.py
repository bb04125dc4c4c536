"""Retrieval fine-tuning on a tiny in-process model: the loss goes down, the merged model reloads identically in
sentence-transformers and effir-surgery's encoder, interrupted runs resume, bad data is refused early."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from effir_surgery.config import FinetuneConfig
from effir_surgery.errors import EffirError
from effir_surgery.finetune import finetune
from effir_surgery.finetune.data import bm25_negatives, read_jsonl_pairs, read_train_data

ST_ENCODE = """
import json, sys
sys.modules["effir_surgery"] = None
import torch
from sentence_transformers import SentenceTransformer
folder, texts_path, out_path = sys.argv[1:]
texts = json.load(open(texts_path))
model = SentenceTransformer(folder, trust_remote_code=True, device="cpu")
q = model.encode_query(texts, convert_to_tensor=True)
d = model.encode_document(texts, convert_to_tensor=True)
torch.save({"query": q, "document": d}, out_path)
"""


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from conftest import build_tiny, save_tiny_source, tiny_tokenizer

    return save_tiny_source(build_tiny("qwen3"), tiny_tokenizer(), tmp_path_factory.mktemp("src") / "tiny-qwen3")


@pytest.fixture(scope="module")
def beir(tmp_path_factory):
    from conftest import make_beir

    return make_beir(tmp_path_factory.mktemp("data") / "beir", n_docs=40, n_queries=16)


def _config(source, train, out, **overrides):
    values = dict(
        model=str(source),
        train=str(train),
        output=out,
        batch_size=8,
        mini_batch_size=4,
        max_length=32,
        device="cpu",
        logging_steps=1,
        warmup_ratio=0.0,
    )
    values.update(overrides)
    return FinetuneConfig(**values)


def test_loss_goes_down_on_a_repeated_batch(source, beir, tmp_path):
    """Eight rows and a batch of eight: every step sees the same batch, so a working step lowers the loss."""
    config = _config(
        source,
        beir,
        tmp_path / "full",
        lora=False,
        learning_rate=3e-4,
        max_steps=4,
        max_examples=8,
        hard_negatives=0,
        verify_reload=False,
    )
    result = finetune(config)
    assert result.steps == 4 and len(result.losses) == 4
    assert all(torch.isfinite(torch.tensor(result.losses)))
    assert result.losses[-1] < result.losses[0]
    saved = json.loads((tmp_path / "full" / "finetune.json").read_text())
    assert saved["losses"] == result.losses and saved["examples"] == 8


def test_plain_loss_when_one_mini_batch_holds_the_batch(source):
    """GradCache only saves memory when it splits a batch; unsplit, the plain loss must give the same value and the
    same gradients, so switching to it changes nothing but speed."""
    from effir_surgery.encode import sentence_transformer
    from effir_surgery.finetune.train import contrastive_loss

    model = sentence_transformer(str(source), _config(source, "x", "o").encoder(), device="cpu")
    model.train()
    queries = ["alpha river", "beta law", "gamma cell", "delta court"]
    documents = ["river water flow", "court law judge", "cell protein brain", "judge city law"]
    features = [model.preprocess(queries, prompt="query: "), model.preprocess(documents)]
    outcome = {}
    for mini in (2, 4):
        loss = contrastive_loss(model, _config(source, "x", "o", batch_size=4, mini_batch_size=mini))
        model.zero_grad()
        value = loss(features, None)
        value.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        outcome[type(loss).__name__] = (value.detach(), grads)
    (cached_loss, cached_grad), (plain_loss, plain_grad) = (
        outcome["CachedMultipleNegativesRankingLoss"],
        outcome["MultipleNegativesRankingLoss"],
    )
    assert bool(plain_grad.abs().sum() > 0)
    torch.testing.assert_close(plain_loss, cached_loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(plain_grad, cached_grad, atol=1e-5, rtol=1e-4)


def test_lora_merged_model_agrees_with_sentence_transformers(source, beir, tmp_path):
    out = tmp_path / "lora"
    result = finetune(_config(source, beir, out, max_steps=2, learning_rate=1e-3))
    assert result.steps == 2
    assert not (tmp_path / ".lora.work").exists(), "the work folder is removed after success"
    config = json.loads((out / "config.json").read_text())
    assert "auto_map" not in config or "lora" not in json.dumps(config).lower()
    texts = ["the cells of the brain", "court law city river water", "what is the risk of cancer"]
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    proc = subprocess.run(
        [sys.executable, "-I", "-c", ST_ENCODE, str(out), str(tmp_path / "texts.json"), str(tmp_path / "st.pt")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    st = torch.load(tmp_path / "st.pt", weights_only=True)

    from effir_surgery.encode import Encoder, read_encoder_config

    assert read_encoder_config(out).max_length == 512, "training length (32) must not become the inference length"
    encoder = Encoder.from_pretrained(str(out), read_encoder_config(out))
    for kind in ("query", "document"):
        ours = encoder.encode(texts, kind=kind)
        cosine = (ours * st[kind].float()).sum(-1)
        assert bool((cosine > 0.9999).all()), (kind, cosine)


def test_learned_width_slices_and_reloads(source, beir, tmp_path):
    out = tmp_path / "width"
    result = finetune(_config(source, beir, out, max_steps=10, learn_width=True, mlp_width=0.5, width_multiple=4))
    # the schedule keeps every gate open during the first 10% of steps and reaches the target at 70%
    assert result.open_gates[0] == 1.0 and result.open_gates[-1] == 0.5 and len(result.open_gates) == 10
    assert all(a >= b for a, b in zip(result.open_gates, result.open_gates[1:], strict=False))
    plan = result.width_plan
    assert plan is not None and sum(plan.mlp_widths) <= 0.5 * 4 * 64 + 4 * 4
    config = json.loads((out / "config.json").read_text())
    assert config["mlp_intermediate_sizes"] == plan.mlp_widths
    assert (out / "width_plan.json").is_file()


def test_resume_after_kill(source, beir, tmp_path):
    out = tmp_path / "resumed"
    command = [
        sys.executable,
        "-m",
        "effir_surgery.cli",
        "finetune",
        str(source),
        "--train",
        str(beir),
        "-o",
        str(out),
        "--batch-size",
        "8",
        "--mini-batch-size",
        "4",
        "--max-length",
        "32",
        "--max-steps",
        "40",
        "--save-steps",
        "2",
        "--device",
        "cpu",
        "--no-verify-reload",
        "--full",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoints = out.parent / f".{out.name}.work" / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        done = [p for p in checkpoints.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
        if any(int(p.name.split("-")[1]) >= 4 for p in done):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert not out.exists(), "an interrupted run must not leave an output folder"
    saved = max(
        int(p.name.split("-")[1]) for p in checkpoints.glob("checkpoint-*") if (p / "trainer_state.json").is_file()
    )
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"resumed from step {saved}" in rerun.stdout
    assert "steps: 40" in rerun.stdout
    assert json.loads((out / "finetune.json").read_text())["resumed_from_step"] == saved


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"query": "a", "positive": "b"}\n\n{"query": "c", "positive": "d"}\n', "train.jsonl:2: empty line"),
        ('{"query": "a", "positive": "b"}\n{"query": "c", positive\n', "train.jsonl:2: not valid JSON"),
        ('{"query": "a"}\n', "train.jsonl:1: query has no positive"),
        ('{"query": "a", "positive": "b", "label": 1}\n', "train.jsonl:1: unknown column(s) ['label']"),
        ('{"positive": "b"}\n', "train.jsonl:1: missing or empty 'query'"),
        ('{"query": "a", "positive": ["b", 3]}\n', "'positive' must be a string or a list of strings"),
        ("", "has no training rows"),
    ],
)
def test_bad_jsonl_is_refused_with_its_line(tmp_path, content, message):
    path = tmp_path / "train.jsonl"
    path.write_text(content)
    with pytest.raises(EffirError) as err:
        read_jsonl_pairs(path)
    assert message in str(err.value)


def test_beir_without_train_split(tmp_path):
    from conftest import make_beir

    folder = make_beir(tmp_path / "b", splits=("test",))
    with pytest.raises(EffirError, match=r"no qrels/train.tsv \(available splits: test\)"):
        read_train_data(folder)


def test_bad_data_fails_before_the_model_loads(tmp_path):
    """The model path does not even exist: the data error must come first."""
    bad = tmp_path / "train.jsonl"
    bad.write_text('{"query": "a"}\n')
    from click.testing import CliRunner

    from effir_surgery.cli import main

    result = CliRunner().invoke(
        main, ["finetune", str(tmp_path / "no-model"), "--train", str(bad), "-o", str(tmp_path / "out")]
    )
    assert result.exit_code == 2 and "query has no positive" in result.output
    assert not (tmp_path / "out").exists()


def test_bm25_negatives_exclude_positives(beir):
    data = read_train_data(beir)
    negatives = bm25_negatives(data, 2, range_min=0, range_max=10)
    for example, negs in zip(data.examples, negatives, strict=True):
        assert len(negs) == 2 and not set(negs) & set(example.positives)


def test_config_errors():
    with pytest.raises(ValueError, match="needs exactly one target"):
        FinetuneConfig(model="m", train="t", output="o", learn_width=True)
    with pytest.raises(ValueError, match="add --learn-width"):
        FinetuneConfig(model="m", train="t", output="o", mlp_width=0.5)
    with pytest.raises(ValueError, match="cannot exceed --batch-size"):
        FinetuneConfig(model="m", train="t", output="o", batch_size=4, mini_batch_size=8)


def test_other_runs_checkpoints_are_not_mixed(source, beir, tmp_path):
    out = tmp_path / "o"
    work = tmp_path / ".o.work"
    work.mkdir()
    (work / "run.json").write_text(json.dumps({"key": "another-run"}))
    with pytest.raises(EffirError, match="different fine-tuning run; pass --overwrite"):
        finetune(_config(source, beir, out, max_steps=1))
    assert Path(work / "run.json").is_file()


@pytest.mark.slow
def test_two_process_ddp(source, beir, tmp_path):
    """torchrun with two CPU processes (gloo): both train with negatives gathered across them; one writes."""
    out = tmp_path / "ddp"
    # Rendezvous on loopback with a free port, so the test depends neither on the machine's hostname
    # resolving nor on port 29500 being free; gloo binds to the loopback interface for the same reason.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(port),
            "-m",
            "effir_surgery.cli",
            "finetune",
            str(source),
            "--train",
            str(beir),
            "-o",
            str(out),
            "--batch-size",
            "4",
            "--mini-batch-size",
            "2",
            "--max-length",
            "32",
            "--max-steps",
            "3",
            "--full",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    # The launcher's own summary hides why a worker died; put the workers' error lines first.
    errors = [line for line in proc.stderr.splitlines() if re.search(r"Error|error:|terminate|what\(\)|enforce", line)]
    assert proc.returncode == 0, "\n".join(errors[:40]) + "\n...\n" + proc.stderr[-1500:]
    training = json.loads((out / "finetune.json").read_text())
    assert training["processes"] == 2 and training["steps"] == 3
    assert proc.stdout.count("saved: ") == 1

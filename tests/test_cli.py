"""The CLI: every flag documented and mapped to a config field; prune end to end; every bad input refused with
exit code 2, a message that says what to change, and nothing left on disk."""

import json
import os

import click
import pytest
from click.testing import CliRunner

from effir_surgery.cli import main
from effir_surgery.config import AnalyzeConfig, PruneConfig, PushConfig, VerifyConfig


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from conftest import build_tiny, save_tiny_source, tiny_tokenizer

    return save_tiny_source(build_tiny("llama"), tiny_tokenizer(), tmp_path_factory.mktemp("src") / "tiny-llama")


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


COMMAND_CONFIGS = {"prune": PruneConfig, "analyze": AnalyzeConfig, "push": PushConfig, "verify": VerifyConfig}
CONSOLE_FLAGS = {"quiet", "verbose"}  # every command's; they change what is printed, not what is done


@pytest.mark.parametrize("name", sorted(COMMAND_CONFIGS))
def test_every_flag_is_documented_and_is_a_config_field(name):
    command = main.commands[name]
    fields = set(COMMAND_CONFIGS[name].model_fields)
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "help":
            assert param.help, f"{name} --{param.name} has no help"
            config = COMMAND_CONFIGS[name].__name__
            assert param.name in fields | CONSOLE_FLAGS, f"{name} --{param.name} is not a field of {config}"
    assert run(name, "--help").exit_code == 0


def test_top_level_help_lists_commands():
    result = run("--help")
    assert result.exit_code == 0
    for name in COMMAND_CONFIGS:
        assert name in result.output


def test_dry_run_prints_plan_and_writes_nothing(source, tmp_path):
    out = tmp_path / "out"
    result = run("prune", source, "--drop-mlp-layers", "1,2", "-o", out, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "drop MLP layers (2): [1, 2]" in result.output
    assert "params:" in result.output and "FLOPs/token" in result.output
    assert "dry run" in result.output
    assert not out.exists()


def test_dry_run_with_scored_selection(source, tmp_path):
    result = run("prune", source, "--mlp-drop", "0.5", "--mlp-width", "0.5", "--dry-run", "--calib-samples", "8")
    assert result.exit_code == 0, result.output
    assert "drop MLP layers (2):" in result.output and "MLP widths: 32-32" in result.output


@pytest.mark.subprocess
def test_prune_end_to_end(source, tmp_path):
    from effir_surgery import __version__

    out = tmp_path / "pruned"
    result = run("prune", source, "--mlp-drop", "0.5", "-o", out, "--calib-samples", "16")
    assert result.exit_code == 0, result.output
    assert "clean-process reload: OK" in result.output
    plan = json.loads((out / "surgery_plan.json").read_text())
    # source and tool version recorded; a local folder has no Hub revision (a Hub one: test_save_reload)
    assert plan["model"] == str(source) and plan["tool_version"] == __version__
    assert "revision" in plan and plan["revision"] is None
    assert len(plan["drop_mlp_layers"]) == 2 and len(plan["scores"]["mlp"]) == 4
    assert (out / "importance.json").is_file() and (out / "README.md").is_file()
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["tool_version"] and provenance["record"]["params_after"] < provenance["record"]["params_before"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pruned"]


def test_reuse_importance_report(source, tmp_path):
    analysis = tmp_path / "analysis"
    result = run("analyze", source, "-o", analysis, "--calib-samples", "8")
    assert result.exit_code == 0, result.output
    assert (analysis / "importance.png").stat().st_size > 1000
    result = run("prune", source, "--mlp-drop", "0.25", "--importance", analysis / "importance.json", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "drop MLP layers (1)" in result.output


def _assert_refused(result, message, out):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), f"expected exactly one line of error: {result.output!r}"
    assert message in lines[0]
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.tmp-*"))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--mlp-drop", "1.2"], "--mlp-drop: must be in [0, 1)"),
        (["--mlp-drop", "0.9"], "would remove all 4 MLP sublayers of this model; use at most 0.87"),
        (["--drop-mlp-layers", "1,9"], "layer 9 is out of range; this model has 4 layers (0-3)"),
        (["--drop-mlp-layers", "0,1,2,3"], "would remove every MLP sublayer"),
        (["--drop-attention-layers", "4"], "layer 4 is out of range"),
        (["--mlp-width", "0"], "--mlp-width: must be in (0, 1]"),
        (["--calib", "/nonexistent/calib.jsonl", "--mlp-drop", "0.5"], "neither a BEIR folder"),
        (["--revision", "v1", "--mlp-drop", "0.5"], "pins a Hub repo id, but"),
    ],
)
def test_bad_options_are_refused(source, tmp_path, flags, message):
    out = tmp_path / "out"
    _assert_refused(run("prune", source, *flags, "-o", out), message, out)


def test_prune_offers_no_learned_width_method(tmp_path):
    """Learned widths are trained by `finetune --learn-width`; prune has no --width-method to ask for them."""
    out = tmp_path / "out"
    result = run("prune", "smollm2-135m", "--mlp-width", "0.5", "--width-method", "learned", "-o", out)
    assert result.exit_code == 2, result.output
    assert "--width-method" in result.output and not out.exists()
    assert "--width-method" not in run("prune", "--help").output


def test_missing_model_folder(tmp_path):
    out = tmp_path / "out"
    _assert_refused(run("prune", tmp_path / "no-such-model", "--mlp-drop", "0.5", "-o", out), "not found", out)


def test_folder_without_config(tmp_path):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    _assert_refused(run("prune", tmp_path / "empty", "--mlp-drop", "0.5", "-o", out), "has no config.json", out)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_weights(source, tmp_path, damage):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(source, broken)
    weights = broken / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:-100] if damage == "truncate" else b"\xff" * 64 + data[64:])
    out = tmp_path / "out"
    _assert_refused(run("prune", broken, "--mlp-drop", "0.5", "-o", out), "Corrupt or truncated weights file", out)


@pytest.fixture
def weights_never_load(monkeypatch):
    """Make any weight loading in ``prune`` fail loudly: refusals must come from the config and shape alone."""

    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded before the bad input was refused")

    monkeypatch.setattr("effir_surgery.pipeline.load_model", refuse)
    monkeypatch.setattr("effir_surgery.pipeline.load_layerwise", refuse)


@pytest.mark.parametrize("streaming", ["--no-streaming", "--streaming"])
@pytest.mark.parametrize(
    "flags, message",
    [
        (["--mlp-drop", "1.2"], "--mlp-drop: must be in [0, 1)"),
        (["--mlp-drop", "0.9"], "would remove all 4 MLP sublayers of this model"),
        (["--drop-mlp-layers", "1,9", "--mlp-width", "0.5"], "layer 9 is out of range; this model has 4 layers"),
        (["--mlp-drop", "0.5", "--param-budget", "1000"], "--param-budget 1,000 is below the smallest model"),
        (["--drop-mlp-layers", "1", "--param-budget", "10M"], "is above the model's size after the depth cuts"),
    ],
)
def test_bad_input_is_refused_before_weights_load(source, tmp_path, weights_never_load, streaming, flags, message):
    out = tmp_path / "out"
    _assert_refused(run("prune", source, *flags, "-o", out, streaming), message, out)


def test_existing_output_is_refused_before_weights_load(source, tmp_path, weights_never_load):
    out = tmp_path / "out"
    out.mkdir()
    result = run("prune", source, "--mlp-drop", "0.5", "-o", out)
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (
        f"Error: Output folder '{out}' already exists; pass --overwrite to replace it or choose another -o."
    )
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("streaming", ["--no-streaming", "--streaming"])
def test_weights_never_load_fixture_is_effective(source, tmp_path, weights_never_load, streaming):
    """Control for the tests above: valid input does reach the patched loaders."""
    result = run("prune", source, "--mlp-drop", "0.5", "-o", tmp_path / "out", streaming)
    assert isinstance(result.exception, AssertionError)
    assert "weights were loaded" in str(result.exception)


def test_existing_output_needs_overwrite(source, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run("prune", source, "--drop-mlp-layers", "1", "-o", out)
    assert result.exit_code == 2 and "already exists; pass --overwrite" in result.output
    assert (out / "keep.txt").read_text() == "mine"


def test_overwrite_replaces_atomically(source, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    result = run("prune", source, "--drop-mlp-layers", "1", "-o", out, "--overwrite", "--no-verify-reload")
    assert result.exit_code == 0, result.output
    assert not (out / "stale.txt").exists() and (out / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_unknown_architecture(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=64)).save_pretrained(folder)
    out = tmp_path / "out"
    result = run("prune", folder, "--mlp-drop", "0.5", "-o", out)
    _assert_refused(result, "Unsupported architecture model_type 'gpt2'. Supported: gemma3_text, llama", out)


def test_offline_hub_id_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "out"
    _assert_refused(
        run("prune", "example-org/not-cached-model", "--mlp-drop", "0.5", "-o", out),
        "Could not fetch 'example-org/not-cached-model' from the Hugging Face Hub",
        out,
    )


@pytest.mark.parametrize(
    "name, hint",
    [
        ("models/missing", "no local folder 'models/missing' ('models' exists in {cwd} but has no 'missing')"),
        ("nomodels/missing", "no local folder 'nomodels/missing' (relative to {cwd})"),
    ],
)
def test_missing_relative_path_says_there_is_no_such_folder(tmp_path, monkeypatch, name, hint):
    """A mistyped relative path a/b has the shape of a repo id: the Hub error must also say no folder exists."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    out = tmp_path / "out"
    result = run("prune", name, "--mlp-drop", "0.5", "-o", out)
    _assert_refused(result, hint.format(cwd=tmp_path), out)
    assert "Fix the path" in result.output


@pytest.mark.parametrize(
    "content",
    [bytes(range(256)) * 16, b"GGUF\x03\x00\x00\x00truncated", b""],
    ids=["garbage", "truncated-header", "empty"],
)
def test_unreadable_gguf_is_refused(tmp_path, monkeypatch, content):
    monkeypatch.setenv("EFFIR_SURGERY_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "x.gguf"
    gguf.write_bytes(content)
    out = tmp_path / "out"
    result = run("prune", gguf, "--mlp-drop", "0.5", "-o", out)
    _assert_refused(result, f"'{gguf}' is not a readable GGUF file (", out)
    assert result.output.rstrip().endswith("; re-download it.")
    assert not (tmp_path / "cache").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.gguf"]


@pytest.mark.subprocess
def test_prune_compare_in_a_clean_process(source, tmp_path, monkeypatch):
    """The README demo path: `prune --compare` encodes with source and pruned model in one clean process."""
    from conftest import build_tiny

    import effir_surgery.fresh as fresh

    results = []

    def recording(*args, **kwargs):
        results.append(real(*args, **kwargs))
        return results[-1]

    real = fresh.compare_in_fresh_process
    monkeypatch.setattr(fresh, "compare_in_fresh_process", recording)
    out = tmp_path / "pruned"
    result = run("prune", source, "--drop-mlp-layers", "1,2", "-o", out, "--compare", "--no-verify-reload")
    assert result.exit_code == 0, result.output
    [c] = results
    assert c["toolkit_importable"] is False
    assert c["texts"] == 64 and c["tokens"] > c["texts"] and c["dtype"] == "float32" and c["batch_size"] == 8
    assert c["source"]["class"] == "LlamaModel" and c["pruned"]["class"] == "EffirLlamaModel"
    full = sum(p.numel() for p in build_tiny("llama").parameters())
    after = json.loads((out / "provenance.json").read_text())["record"]["params_after"]
    assert c["source"]["params"] == full and c["pruned"]["params"] == after < full
    for side in ("source", "pruned"):
        assert c[side]["tokens_per_s"] == pytest.approx(c["tokens"] / c[side]["seconds"])
    assert c["speedup"] == pytest.approx(c["source"]["seconds"] / c["pruned"]["seconds"]) and c["speedup"] > 0
    # two of four MLPs gone without fine-tuning: the embeddings move, but stay unit vectors compared by cosine
    assert -1 <= c["cosine_min"] <= c["cosine_mean"] < 0.9999
    assert f"encode ({c['texts']} texts, {c['tokens']:,} tokens, float32, batch 8" in result.output
    assert f"-> speed-up {c['speedup']:.2f}x (FLOP ratio" in result.output
    assert f"embedding cosine, source vs pruned (no fine-tuning yet): mean {c['cosine_mean']:.3f}" in result.output


def _stopped_mid_save(command, tmp_path):
    """Start ``command`` and freeze it (SIGSTOP) while its save is under way: the weights are in the temp folder.
    Returns the frozen process, or None when the save finished before it could be frozen (a loaded machine can
    deschedule this test for longer than a tiny save takes; the caller runs again)."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not list(tmp_path.glob(".out.tmp-*/*.safetensors")):
        assert proc.poll() is None, f"prune ended before its save could be interrupted: {proc.communicate()}"
        assert time.monotonic() < deadline, "the save never started"
        time.sleep(0.02)
    proc.send_signal(signal.SIGSTOP)
    if list(tmp_path.glob(".out.tmp-*/*.safetensors")):  # frozen before the save could finish
        return proc
    proc.send_signal(signal.SIGCONT)
    proc.communicate(timeout=300)
    return None


@pytest.mark.subprocess
def test_sigterm_during_save_leaves_nothing_behind(source, tmp_path):
    """SIGTERM (kill, timeout, a scheduler) stops prune like Ctrl-C: the atomic save's temp folder is removed."""
    import shutil
    import signal
    import sys

    out = tmp_path / "out"
    command = [sys.executable, "-m", "effir_surgery.cli", "prune", str(source), "--drop-mlp-layers", "1", "-o", out]
    for _ in range(5):
        proc = _stopped_mid_save(command, tmp_path)
        if proc is not None:
            break
        shutil.rmtree(out)
    assert proc is not None, "five saves finished before they could be frozen"
    try:
        proc.send_signal(signal.SIGTERM)  # delivered when the process runs again
        proc.send_signal(signal.SIGCONT)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode not in (0, None), stdout + stderr
    assert proc.returncode != -signal.SIGTERM, "SIGTERM killed prune without running its cleanup"
    assert proc.returncode == 143 and stderr.splitlines()[-1] == "Stopped by SIGTERM."
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [], "a temporary folder was left behind"


@pytest.mark.subprocess
def test_param_budget_gives_per_layer_widths_that_reload(source, tmp_path):
    from transformers import AutoConfig

    from effir_surgery.arch import shape_from_config
    from effir_surgery.costs import param_count

    shape = shape_from_config(AutoConfig.from_pretrained(source))
    full = param_count(shape).total
    budget = full - 90 * shape.mlp_params_per_neuron
    out = tmp_path / "budget"
    result = run(
        "prune", source, "--param-budget", budget, "--width-multiple", "4", "-o", out, "--calib-samples", "16"
    )
    assert result.exit_code == 0, result.output
    assert "clean-process reload: OK" in result.output
    config = json.loads((out / "config.json").read_text())
    widths = config["mlp_intermediate_sizes"]
    assert len(set(widths)) > 1 and all(w % 4 == 0 for w in widths)
    params = json.loads((out / "provenance.json").read_text())["record"]["params_after"]
    assert abs(params - budget) < 4 * shape.mlp_params_per_neuron
    plan = json.loads((out / "surgery_plan.json").read_text())
    assert {k: len(v) for k, v in plan["kept_neurons"].items()} == {str(i): w for i, w in enumerate(widths) if w < 64}


def test_analyze_with_probe(source, tmp_path):
    from conftest import make_beir

    beir = make_beir(tmp_path / "beir", n_docs=10, n_queries=4)
    out = tmp_path / "analysis"
    result = run(
        "analyze", source, "-o", out, "--calib", beir, "--probe", beir, "--probe-queries", "4", "--probe-docs", "10"
    )
    assert result.exit_code == 0, result.output
    assert "Drop-one probe (nDCG@10" in result.output
    report = json.loads((out / "importance.json").read_text())
    assert len(report["probe"]["mlp"]) == 4 and len(report["attention"]) == 4
    assert (out / "importance.png").stat().st_size > 1000


def test_analyze_refuses_bad_probe_folder(source, tmp_path):
    (tmp_path / "notbeir").mkdir()
    result = run("analyze", source, "-o", tmp_path / "a", "--probe", tmp_path / "notbeir")
    assert result.exit_code == 2 and "qrels/train.tsv" in result.output


def test_gguf_cache_is_keyed_by_the_converting_versions(tmp_path, monkeypatch):
    """A GGUF file converted by one transformers (or gguf) version is not reused by another: the folder differs."""
    import importlib.metadata

    from effir_surgery.load import _gguf_cache_folder, resolve_source

    monkeypatch.setenv("EFFIR_SURGERY_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "x.gguf"
    gguf.write_bytes(b"GGUF")
    source = resolve_source(str(gguf))
    before = _gguf_cache_folder(source)
    assert before == _gguf_cache_folder(source)  # stable while nothing changes
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda pkg: "0.0.1" if pkg == "transformers" else real(pkg))
    after = _gguf_cache_folder(source)
    assert after != before and after.parent == before.parent == tmp_path / "cache" / "gguf"


def _prune_in_a_process(source, out, *flags, columns="40"):
    import subprocess
    import sys

    command = [sys.executable, "-m", "effir_surgery.cli", "prune", str(source), "--drop-mlp-layers", "1", "-o", out]
    env = {**os.environ, "COLUMNS": columns}
    return subprocess.run([*command, *flags], capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.subprocess
def test_quiet_prints_only_the_results(source, tmp_path):
    done = _prune_in_a_process(source, tmp_path / "out", "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no status lines and no progress bars, ours or the libraries'
    lines = done.stdout.splitlines()
    assert lines[0].startswith("model: ") and lines[-1].startswith("time: ")
    assert any(line.startswith("clean-process reload: OK") for line in lines)


@pytest.mark.subprocess
def test_status_lines_are_not_wrapped_in_a_pipe(source, tmp_path):
    done = _prune_in_a_process(source, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    status = "Checking the saved folder in a clean process (plain transformers, no effir_surgery) ..."
    assert status in done.stderr.splitlines()  # one line although COLUMNS=40
    assert "Loading weights" not in done.stderr  # transformers' bar is off where ours are (not a terminal)
    assert "--quiet" in _prune_in_a_process(source, tmp_path / "x", "--quiet", "--verbose").stderr

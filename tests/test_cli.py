"""The CLI: every flag documented and mapped to a config field; prune end to end; every bad input refused with
exit code 2, a message that says what to change, and nothing left on disk."""

import json

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


@pytest.mark.parametrize("name", sorted(COMMAND_CONFIGS))
def test_every_flag_is_documented_and_is_a_config_field(name):
    command = main.commands[name]
    fields = set(COMMAND_CONFIGS[name].model_fields)
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "help":
            assert param.help, f"{name} --{param.name} has no help"
            assert param.name in fields, f"{name} --{param.name} is not a field of {COMMAND_CONFIGS[name].__name__}"
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


def test_prune_end_to_end(source, tmp_path):
    out = tmp_path / "pruned"
    result = run("prune", source, "--mlp-drop", "0.5", "-o", out, "--calib-samples", "16")
    assert result.exit_code == 0, result.output
    assert "clean-process reload: OK" in result.output
    plan = json.loads((out / "surgery_plan.json").read_text())
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
    assert message in result.output
    assert result.output.count("\n") <= 2, "the error should be one line"
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
    ],
)
def test_bad_options_are_refused(source, tmp_path, flags, message):
    out = tmp_path / "out"
    _assert_refused(run("prune", source, *flags, "-o", out), message, out)


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

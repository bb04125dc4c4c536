"""Publishing: the pre-flight check refuses every kind of broken folder with a specific message, the model card's
metadata parses (model-index included), push makes exactly the expected huggingface_hub calls and uploads exactly
the checked files, offline use fails in one clear line, and verify names the remote-code file that differs.

No test touches the network: HfApi is replaced by a recorder, huggingface_hub is in offline mode, or HF_ENDPOINT
points at a closed local port."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner
from conftest import FAMILIES

from effir_surgery.cli import main
from effir_surgery.config import PushConfig
from effir_surgery.errors import EffirError
from effir_surgery.save import HF_DIR

REPO_ID = "effir-test/tiny-llama-effir"
COMMAND = "effir-surgery prune tiny-llama --drop-mlp-layers 1 -o out/tiny"
# The files save_model writes for a pruned tiny Llama; push must upload exactly these (README.md regenerated).
SAVED_FILES = {
    "1_Pooling/config.json",
    "README.md",
    "config.json",
    "config_sentence_transformers.json",
    "configuration_effir.py",
    "generation_config.json",
    "model.safetensors",
    "modeling_effir.py",
    "modules.json",
    "provenance.json",
    "sentence_bert_config.json",
    "surgery_plan.json",
    "tokenizer.json",
    "tokenizer_config.json",
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A real saved folder: tiny Llama, MLP of layer 1 removed, layer 3 narrowed to 24 neurons."""
    from conftest import build_tiny, tiny_tokenizer

    from effir_surgery.arch import shape_from_config
    from effir_surgery.config import PlanSettings
    from effir_surgery.plan import make_plan
    from effir_surgery.save import save_model
    from effir_surgery.surgery import apply_plan

    model = build_tiny("llama")
    plan = make_plan(shape_from_config(model.config), PlanSettings(drop_mlp_layers=[1]), model_name="tiny-llama")
    plan = plan.model_copy(update={"mlp_widths": [64, 0, 64, 24], "kept_neurons": {"3": list(range(1, 64, 2))[:24]}})
    apply_plan(model, plan)
    provenance = {
        "source_model": "tiny-llama",
        "base_model": "effir-test/tiny-llama",
        "license": "apache-2.0",
        "command": COMMAND,
        "source_shape": plan.shape.model_dump(),
        "costs": plan.projection().model_dump(),
    }
    out = tmp_path_factory.mktemp("saved") / "tiny"
    save_model(model, tiny_tokenizer(), out, plan=plan, provenance=provenance, verify=False)
    return out


@pytest.fixture
def folder(saved, tmp_path):
    """A private copy of the saved folder that a test may damage."""
    return Path(shutil.copytree(saved, tmp_path / "tiny"))


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n", 2)[1])


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


# --------------------------------------------------------------------------------------------- pre-flight check


def _drop(name):
    return lambda folder: (folder / name).unlink()


def _auto_map(auto, ref):
    return lambda folder: _edit_json(folder / "config.json", lambda d: d["auto_map"].__setitem__(auto, ref))


def _truncate(folder):
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])


def _narrow_config(folder):
    # config.json claims layer 3 is 16 wide; the weights are 24 wide
    _edit_json(folder / "config.json", lambda d: d.__setitem__("mlp_intermediate_sizes", [64, 0, 64, 16]))


def _extra_tensor(folder):
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    tensors["model.layers.1.mlp.gate_proj.weight"] = tensors["model.layers.0.mlp.gate_proj.weight"].clone()
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            _drop("modeling_effir.py"),
            "modeling_effir.py is missing (remote code that this effir 'llama' checkpoint needs)",
        ),
        (
            _auto_map("AutoModel", "modeling_effir.EffirQwen2Model"),
            "auto_map.AutoModel is 'modeling_effir.EffirQwen2Model'; an effir 'llama' checkpoint needs "
            "'modeling_effir.EffirLlamaModel'",
        ),
        (
            _auto_map("AutoModelForCausalLM", "someone/else--modeling_effir.EffirLlamaForCausalLM"),
            "auto_map.AutoModelForCausalLM is 'someone/else--modeling_effir.EffirLlamaForCausalLM'",
        ),
        (_truncate, "Corrupt or truncated weights file"),
        (_drop("tokenizer.json"), "tokenizer.json is missing (tokenizer)"),
        (_drop("1_Pooling/config.json"), "1_Pooling/config.json is missing (sentence-transformers module Pooling)"),
        (_drop("modules.json"), "modules.json is missing (sentence-transformers)"),
        (
            _narrow_config,
            "3 tensor shape(s) do not match what config.json builds (EffirLlamaForCausalLM): "
            "'model.layers.3.mlp.gate_proj.weight' is [24, 32] in model.safetensors, expected [16, 32]",
        ),
        (
            _extra_tensor,
            "the weights hold 1 tensor(s) that EffirLlamaForCausalLM does not have: "
            "'model.layers.1.mlp.gate_proj.weight'",
        ),
        (
            lambda folder: (folder / "surgery_plan.json").write_text('{"model": "x"}'),
            "surgery_plan.json is invalid",
        ),
        (lambda folder: (folder / "provenance.json").write_text("{"), "provenance.json is not valid JSON"),
    ],
    ids=[
        "missing-modeling-file",
        "wrong-auto-map-class",
        "auto-map-to-other-repo",
        "truncated-weights",
        "missing-tokenizer",
        "missing-pooling-config",
        "missing-modules-json",
        "weights-do-not-match-config",
        "tensor-config-does-not-build",
        "invalid-plan",
        "invalid-provenance",
    ],
)
def test_preflight_catches_broken_folder(folder, damage, message):
    from effir_surgery.check import preflight

    damage(folder)
    report = preflight(folder)
    assert any(message in problem for problem in report.problems), report.problems
    assert report.reload is None, "a folder with problems must not be loaded"


@pytest.mark.parametrize("family", FAMILIES)
def test_preflight_accepts_a_saved_folder_of_every_family(family, tmp_path):
    """The header-vs-meta-model comparison holds for tied and untied embeddings, biases, q/k norms, Gemma's
    four norms per layer, a removed MLP, a removed attention and a narrowed MLP."""
    from conftest import build_tiny, tiny_tokenizer

    from effir_surgery.arch import shape_from_config
    from effir_surgery.check import preflight
    from effir_surgery.config import PlanSettings
    from effir_surgery.plan import make_plan
    from effir_surgery.save import save_model
    from effir_surgery.surgery import apply_plan

    model = build_tiny(family)
    config = PlanSettings(drop_mlp_layers=[1], drop_attention_layers=[2])
    plan = make_plan(shape_from_config(model.config), config, model_name=family)
    plan = plan.model_copy(update={"mlp_widths": [*plan.mlp_widths[:3], 24], "kept_neurons": {"3": list(range(24))}})
    apply_plan(model, plan)
    save_model(model, tiny_tokenizer(), tmp_path / family, plan=plan, verify=False)
    report = preflight(tmp_path / family, reload=False)
    assert report.problems == []
    assert report.model_class == type(model).__name__
    assert {f.path for f in report.files} == SAVED_FILES


def test_push_refuses_a_broken_folder_listing_every_problem(folder, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", _unexpected_api)
    (folder / "modeling_effir.py").unlink()
    (folder / "tokenizer.json").unlink()
    result = run("push", folder, "--repo-id", REPO_ID)
    assert result.exit_code == 2, result.output
    assert f"'{folder}' cannot be published (2 problems" in result.output
    assert "  - modeling_effir.py is missing" in result.output
    assert "  - tokenizer.json is missing" in result.output


def _unexpected_api(*args, **kwargs):
    raise AssertionError("HfApi must not be used here")


# ------------------------------------------------------------------------------------------------------ card


def test_card_renders_from_the_folder_and_its_metadata_parses(saved):
    from effir_surgery.card import render_model_card

    card = render_model_card(saved, REPO_ID)
    meta = _front_matter(card)
    assert meta["library_name"] == "sentence-transformers"
    assert meta["pipeline_tag"] == "sentence-similarity"
    assert meta["base_model"] == "effir-test/tiny-llama"
    assert meta["license"] == "apache-2.0"
    assert {"effir", "mteb"} <= set(meta["tags"])
    assert "model-index" not in meta  # no results.json
    body = card.split("---\n", 2)[2]
    assert body.lstrip().startswith("# tiny-llama-effir")
    assert "- MLP sublayers removed: 1 of 4 (layers 1)" in body
    assert "- MLP width per layer (0 = removed): `[64, 0, 64, 24]`" in body
    costs = json.loads((saved / "provenance.json").read_text())["costs"]
    assert f"| parameters | {costs['params_before']:,} | {costs['params_after']:,} |" in body
    assert "FLOPs per token (512 tokens)" in body
    assert f'SentenceTransformer("{REPO_ID}", trust_remote_code=True)' in body
    assert "Instruct: Given a query, retrieve relevant passages" in body
    assert COMMAND in body
    for name in ("configuration_effir.py", "modeling_effir.py"):
        assert hashlib.sha256((saved / name).read_bytes()).hexdigest() in body
    assert f"effir-surgery verify {REPO_ID}" in body
    assert "@inproceedings{lei2026effir" in body
    # the card written at save time names the final folder, not the temporary one it was written in
    saved_card = (saved / "README.md").read_text()
    assert saved_card.split("---\n", 2)[2].lstrip().startswith("# tiny\n") and ".tmp-" not in saved_card


def test_card_usage_follows_the_folders_encoder(folder):
    """The usage snippets show the folder's own prompt and length: no empty prompt pasted in front of a query."""
    from effir_surgery.card import render_model_card

    st = json.loads((folder / "config_sentence_transformers.json").read_text())
    st["prompts"]["query"] = ""
    (folder / "config_sentence_transformers.json").write_text(json.dumps(st))
    bert = json.loads((folder / "sentence_bert_config.json").read_text())
    bert["max_seq_length"] = 128
    (folder / "sentence_bert_config.json").write_text(json.dumps(bert))
    usage = render_model_card(folder, REPO_ID).split("## Usage", 1)[1].split("\n## ", 1)[0]
    assert 'texts = ["how do plants make energy?"]' in usage and '"" +' not in usage
    assert "adds the query prompt" not in usage and "without a prompt" in usage
    assert "max_length=128" in usage and "truncated to 128 tokens" in usage


def _results(folder: Path) -> dict:
    def task(name, dataset, ndcg, subsample=None):
        return {
            "task": name,
            "dataset": dataset,
            "split": "test",
            "subsample": subsample,
            "scores": {"main_score": ndcg, "ndcg_at_10": ndcg, "recall_at_100": 0.9, "mrr_at_10": 0.5},
            "mteb_version": "2.26.24",
            "seconds": 1.0,
        }

    efficiency = {
        "params_total": 35_000,
        "params_non_embedding": 31_000,
        "flops_per_token": 1.9e5,
        "seq_len": 128,
        "tokens_per_s": 1200.0,
        "docs_per_s": 40.0,
        "batch_size": 16,
        "dtype": "float32",
        "device": "cpu",
        "peak_memory_mb": 300.0,
        "speedup": 1.4,
        "flop_ratio": 1.5,
    }
    sub = {"queries": 50, "documents": 500, "note": "50 queries, 500 documents"}
    return {
        "schema": "effir-surgery/results/v1",
        "tool_version": "0.1.0",
        "created": "2026-11-22T00:00:00",
        "command": "effir-surgery evaluate smollm2-135m out/tiny bm25 --task SciFact",
        "models": [
            {
                "name": "smollm2-135m",
                "path": None,
                "kind": "dense",
                "efficiency": {**efficiency, "speedup": 1.0, "flop_ratio": 1.0},
                "tasks": [task("SciFact", "mteb:SciFact", 0.70)],
            },
            {
                "name": "out/tiny",
                "path": str(folder),
                "kind": "dense",
                "efficiency": efficiency,
                "tasks": [
                    task("SciFact", "mteb:SciFact", 0.65432),
                    task("ArguAna", "local:/data/arguana", 0.4, subsample=sub),
                    task("MyPrivateTask", "local:/data/private", 0.8),
                ],
            },
            {"name": "bm25", "path": None, "kind": "bm25", "efficiency": efficiency, "tasks": []},
        ],
    }


def test_card_with_results_has_a_table_and_mteb_model_index(folder):
    pytest.importorskip("mteb")
    from effir_surgery.card import render_model_card

    (folder / "results.json").write_text(json.dumps(_results(folder)))
    card = render_model_card(folder, REPO_ID)
    index = _front_matter(card)["model-index"]
    assert [entry["name"] for entry in index] == [REPO_ID]
    # only the full run of a registered MTEB task; the subsample and the unknown task stay out
    (result,) = index[0]["results"]
    assert result["task"] == {"type": "Retrieval"}
    assert result["dataset"]["type"] == "mteb/scifact"
    assert result["dataset"]["name"] == "MTEB SciFact (default)"
    assert result["dataset"]["config"] == "default" and result["dataset"]["split"] == "test"
    assert result["dataset"]["revision"]  # registry revision of the Hub dataset
    metrics = {m["type"]: m["value"] for m in result["metrics"]}
    assert metrics["main_score"] == pytest.approx(65.432) and metrics["ndcg_at_10"] == pytest.approx(65.432)
    assert metrics["recall_at_100"] == pytest.approx(90.0)
    # the table shows this model's entry (selected by path), subsample marked, local paths reduced to names
    assert "| SciFact | test | 65.43 | 90.00 | 50.00 | full split, MTEB dataset |" in card
    assert "| ArguAna | test | 40.00 | 90.00 | 50.00 | **subsample**: 50 queries, 500 documents |" in card
    assert "| MyPrivateTask | test | 80.00 | 90.00 | 50.00 | full split, local copy (private) |" in card
    assert "/data/private" not in card
    assert "1.40x the speed of smollm2-135m" in card
    assert "| *out/tiny* | dense |" in card and "| bm25 | bm25 |" in card
    assert "effir-surgery evaluate smollm2-135m out/tiny bm25 --task SciFact" in card


def test_card_of_a_finetuned_folder_shows_both_steps(folder):
    from effir_surgery.card import render_model_card

    parent = json.loads((folder / "provenance.json").read_text())
    finetune_command = "effir-surgery finetune out/tiny --train data/train.jsonl -o out/tiny-ft"
    child = {**parent, "tool_version": "0.1.0", "command": finetune_command, "parent": parent}
    (folder / "provenance.json").write_text(json.dumps(child))
    training = {
        "config": {"lora": True, "lora_r": 16, "lora_alpha": 32, "batch_size": 32, "learning_rate": 1e-4},
        "data": "data/train.jsonl (1,000 rows)",
        "steps": 30,
        "examples": 1000,
        "train_loss": 0.8123,
    }
    (folder / "finetune.json").write_text(json.dumps(training))
    card = render_model_card(folder)
    _front_matter(card)
    history = card.split("## How it was made", 1)[1]
    assert history.index("1. Pruned") < history.index(COMMAND) < history.index("2. Fine-tuned")
    assert history.index("2. Fine-tuned") < history.index(finetune_command)
    assert "30 steps over 1,000 training rows from data/train.jsonl (1,000 rows)" in history
    assert "LoRA r=16, alpha=32 (merged)" in history and "mean training loss 0.8123" in history
    assert "It was fine-tuned as a retriever on data/train.jsonl" in card


def test_card_of_a_recipe_run_shows_its_command_once(folder):
    from effir_surgery.card import render_model_card

    parent = json.loads((folder / "provenance.json").read_text())
    recipe = "effir-surgery run studies/smollm2-effir/recipes/mlp50.yaml"
    parent["command"] = recipe
    child = {**parent, "tool_version": "0.1.0", "command": recipe, "parent": parent}
    (folder / "provenance.json").write_text(json.dumps(child))
    history = render_model_card(folder).split("## How it was made", 1)[1].split("\n## ", 1)[0]
    assert history.count(recipe) == 1
    assert "Pruned, then fine-tuned by one recipe run of effir-surgery 0.1.0" in history


# ------------------------------------------------------------------------------------------------------ push


class RecordingApi:
    """Stands in for ``huggingface_hub.HfApi``: records every call; ``upload_folder`` applies huggingface_hub's
    own pattern filter to the folder, so the record holds exactly the files the real call would upload."""

    calls: list = []

    def __init__(self, *args, **kwargs):
        assert not args and not kwargs, "the token and endpoint must be left to huggingface_hub"

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return f"https://huggingface.co/{repo_id}"

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        from huggingface_hub.hf_api import DEFAULT_IGNORE_PATTERNS
        from huggingface_hub.utils import filter_repo_objects

        root = Path(kwargs["folder_path"])
        present = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
        uploaded = filter_repo_objects(
            present, allow_patterns=kwargs["allow_patterns"], ignore_patterns=DEFAULT_IGNORE_PATTERNS
        )
        self.calls.append(("upload_folder", kwargs, sorted(uploaded)))
        return SimpleNamespace(commit_url=f"https://huggingface.co/{kwargs['repo_id']}/commit/0123abc")


@pytest.fixture
def recorder(monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    RecordingApi.calls = []
    return RecordingApi


def _add_clutter(folder: Path) -> None:
    """What must never reach the Hub: dot folders, run state, pickles, hidden files."""
    for path in (".cache/huggingface/upload/model.safetensors.metadata", ".git/HEAD", ".notes.txt"):
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text("local only")
    (folder / "checkpoints" / "checkpoint-5").mkdir(parents=True)
    (folder / "checkpoints" / "checkpoint-5" / "trainable.safetensors").write_bytes(b"x")
    (folder / "training_args.bin").write_bytes(b"pickle")


@pytest.mark.subprocess
def test_push_makes_exactly_the_expected_calls(folder, recorder):
    _add_clutter(folder)
    result = run(
        "push", folder, "--repo-id", REPO_ID, "--private", "--revision", "v1", "--commit-message", "first release"
    )
    assert result.exit_code == 0, result.output
    (create, branch, upload) = recorder.calls
    assert create == ("create_repo", REPO_ID, {"repo_type": "model", "private": True, "exist_ok": True})
    assert branch == ("create_branch", REPO_ID, {"branch": "v1", "repo_type": "model", "exist_ok": True})
    name, kwargs, uploaded = upload
    assert name == "upload_folder"
    assert kwargs["repo_id"] == REPO_ID and kwargs["repo_type"] == "model"
    assert Path(kwargs["folder_path"]) == folder
    assert kwargs["revision"] == "v1" and kwargs["commit_message"] == "first release"
    assert set(uploaded) == SAVED_FILES
    # the uploaded card is the one rendered for the repo, and the output says what was left out
    assert f'SentenceTransformer("{REPO_ID}"' in (folder / "README.md").read_text()
    assert f"uploaded {len(SAVED_FILES)} files" in result.output
    assert f"https://huggingface.co/{REPO_ID}/commit/0123abc" in result.output
    for left_out in (".cache/", ".git/", "checkpoints/", ".notes.txt", "training_args.bin"):
        assert f"not uploaded: {left_out}" in result.output


@pytest.mark.subprocess
def test_prune_push_to_hub_publishes_with_defaults(tmp_path, recorder):
    from conftest import build_tiny, save_tiny_source, tiny_tokenizer

    source = save_tiny_source(build_tiny("llama"), tiny_tokenizer(), tmp_path / "src")
    out = tmp_path / "pruned"
    result = run("prune", source, "--drop-mlp-layers", "1", "-o", out, "--no-verify-reload", "--push-to-hub", REPO_ID)
    assert result.exit_code == 0, result.output
    (create, upload) = recorder.calls  # main branch: no create_branch
    assert create == ("create_repo", REPO_ID, {"repo_type": "model", "private": False, "exist_ok": True})
    assert upload[1]["revision"] is None and Path(upload[1]["folder_path"]) == out
    assert "README.md" in upload[2] and "model.safetensors" in upload[2]


def test_finetune_push_to_hub_keeps_the_resume_key(tmp_path):
    """Adding --push-to-hub to a rerun of an interrupted fine-tuning must resume it, not start over."""
    from effir_surgery.config import FinetuneConfig
    from effir_surgery.finetune.checkpoints import _run_key

    settings = {"model": "m", "train": "t.jsonl", "output": tmp_path / "out"}
    assert _run_key(FinetuneConfig(**settings)) == _run_key(FinetuneConfig(**settings, push_to_hub=REPO_ID))


@pytest.mark.subprocess
def test_dry_run_checks_and_prints_files_and_card_without_uploading(folder, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", _unexpected_api)
    _add_clutter(folder)
    before = (folder / "README.md").read_text()
    result = run("push", folder, "--repo-id", REPO_ID, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "pre-flight check" in result.output and "weights match EffirLlamaForCausalLM" in result.output
    assert "clean-process reload OK (EffirLlamaForCausalLM)" in result.output
    size = (folder / "model.safetensors").stat().st_size
    assert re.search(rf"^  model\.safetensors +{size / 1e3:.1f} kB$", result.output, re.MULTILINE)
    assert "dry run: nothing uploaded" in result.output and "not uploaded: training_args.bin" in result.output
    card = result.output.split("--- README.md (model card) ---\n", 1)[1]
    assert _front_matter(card)["library_name"] == "sentence-transformers"
    assert f'AutoModel.from_pretrained("{REPO_ID}", trust_remote_code=True)' in card
    assert (folder / "README.md").read_text() == before, "a dry run writes nothing"


@pytest.mark.subprocess
def test_push_offline_fails_in_one_clear_line(folder, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    result = run("push", folder, "--repo-id", REPO_ID)
    assert result.exit_code == 2, result.output
    error = result.output.strip().splitlines()[-1]
    assert error.startswith(f"Error: Could not create or open the Hub repo '{REPO_ID}'")
    assert "offline mode (HF_HUB_OFFLINE=1)" in error and "Nothing was uploaded." in error


@pytest.mark.subprocess
def test_failed_upload_reports_what_reached_the_hub(folder, recorder, monkeypatch):
    from huggingface_hub.hf_api import RepoFile

    config_sha1 = hashlib.sha1(b"blob %d\0" % (folder / "config.json").stat().st_size)
    config_sha1.update((folder / "config.json").read_bytes())

    class FlakyApi(RecordingApi):
        def upload_folder(self, **kwargs):
            raise ConnectionError("connection reset by peer")

        def get_paths_info(self, repo_id, paths, **kwargs):
            # only config.json made it, with the local content; tokenizer.json is there with stale content
            return [
                RepoFile(path="config.json", size=1, oid=config_sha1.hexdigest()),
                RepoFile(path="tokenizer.json", size=1, oid="0" * 40),
            ]

    import huggingface_hub

    from effir_surgery.hub import push

    monkeypatch.setattr(huggingface_hub, "HfApi", FlakyApi)
    with pytest.raises(EffirError) as error:
        push(PushConfig(folder=folder, repo_id=REPO_ID))
    message = str(error.value)
    assert "failed: the Hub is unreachable (connection reset by peer)" in message
    assert f"On the Hub: 1 of {len(SAVED_FILES)} files; not uploaded: " in message
    not_uploaded = message.split("not uploaded: ", 1)[1].split(". Re-run the same command", 1)[0]
    assert set(not_uploaded.split(", ")) == SAVED_FILES - {"config.json"}  # stale tokenizer.json included


@pytest.mark.parametrize(
    "args, message",
    [
        (["push", "{folder}", "--repo-id", "no-namespace"], "--repo-id: 'no-namespace' is not a Hub repo id"),
        (["push", "{folder}", "--repo-id", "a/b--c"], "'a/b--c' is not a Hub repo id"),
        (["prune", "src", "--drop-mlp-layers", "1", "--dry-run", "--push-to-hub", REPO_ID], "a --dry-run saves"),
        (["prune", "src", "--drop-mlp-layers", "1", "-o", "out", "--push-to-hub", "x y/z"], "is not a Hub repo id"),
    ],
)
def test_bad_repo_ids_are_refused_before_any_work(tmp_path, args, message):
    result = run(*[a.replace("{folder}", str(tmp_path)) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.output


# ---------------------------------------------------------------------------------------------------- verify


def test_verify_passes_on_a_fresh_folder(saved):
    result = run("verify", saved)
    assert result.exit_code == 0, result.output
    assert "remote code identical to the files shipped with effir-surgery" in result.output
    for name in ("configuration_effir.py", "modeling_effir.py"):
        assert hashlib.sha256((HF_DIR / name).read_bytes()).hexdigest() in result.output


def test_verify_names_the_file_that_differs(folder):
    path = folder / "modeling_effir.py"
    data = bytearray(path.read_bytes())
    line = data[: len(data) // 2].count(b"\n") + 1
    data[len(data) // 2] ^= 0x01  # one byte, one bit
    path.write_bytes(bytes(data))
    result = run("verify", folder)
    assert result.exit_code == 2, result.output
    error = result.output.strip()
    assert error.count("\n") == 0, "the error should be one line"
    assert "modeling_effir.py differs from the copy shipped with effir-surgery" in error
    assert f"first difference at line {line}" in error
    assert "configuration_effir.py" not in error


def test_verify_repo_id_offline_fails_in_one_clear_line(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    result = run("verify", "effir-test/not-cached-anywhere")
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0, result.output
    assert "Could not download config.json of 'effir-test/not-cached-anywhere' from the Hugging Face Hub" in (
        result.output
    )
    assert "offline mode (HF_HUB_OFFLINE=1)" in result.output


# ---------------------------------------------------------------------------------------- no network at all
#
# A real huggingface_hub, not in offline mode, aimed at a local port where nothing listens (connection refused),
# in a fresh process so that HF_ENDPOINT is read the way a user sets it. A throwaway HF_HOME keeps any stored token
# and cache out; the fake HF_TOKEN lets the calls get as far as the network.


def _cli_without_network(tmp_path: Path, *args) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_TOKEN": "hf_not_a_real_token",
        "HF_HOME": str(tmp_path / "hf-home"),
        "OMP_NUM_THREADS": "1",
    }
    command = [sys.executable, "-m", "effir_surgery.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.subprocess
def test_push_without_network_fails_in_one_clear_line(folder, tmp_path):
    before = (folder / "README.md").read_text()
    proc = _cli_without_network(tmp_path, "push", folder, "--repo-id", REPO_ID)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # no retry chatter, no traceback
    assert lines[0].startswith(f"Error: Could not create or open the Hub repo '{REPO_ID}': the Hub is unreachable")
    assert "Connection refused" in lines[0] and "HF_ENDPOINT" in lines[0] and "Nothing was uploaded." in lines[0]
    assert (folder / "README.md").read_text() == before, "the card is written only once the repo is open"


def test_verify_repo_id_without_network_fails_in_one_line_without_retries(tmp_path):
    proc = _cli_without_network(tmp_path, "verify", REPO_ID)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Retrying" not in proc.stderr and "thrown while requesting" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0] == (
        f"Error: Could not download config.json of '{REPO_ID}' from the Hugging Face Hub: the Hub is unreachable "
        "([Errno 111] Connection refused); check the network connection and HF_ENDPOINT."
    )


# ------------------------------------------------------------------------------- pre-flight: reload and memory


def test_push_refuses_a_folder_that_does_not_reload(folder, recorder, monkeypatch):
    """Every file is present, the code is ours and the weights match, but the clean-process load fails."""
    import effir_surgery.fresh as fresh

    def fails(task, *args, **kwargs):
        raise EffirError("The saved folder failed to load in a clean process (reload):\nRuntimeError: boom")

    monkeypatch.setattr(fresh, "run_fresh", fails)
    result = run("push", folder, "--repo-id", REPO_ID)
    assert result.exit_code == 2, result.output
    assert f"'{folder}' cannot be published (1 problem" in result.output
    assert "  - it does not load in a clean process with plain transformers: RuntimeError: boom" in result.output
    assert recorder.calls == [], "nothing may be uploaded"


def test_push_refuses_edited_remote_code_without_running_it(folder, recorder, tmp_path):
    """Remote code that is not byte for byte ours is refused before the reload check could run it."""
    marker = tmp_path / "ran"
    with (folder / "modeling_effir.py").open("a") as handle:
        handle.write(f"\nopen({str(marker)!r}, 'w').write('x')\n")
    result = run("push", folder, "--repo-id", REPO_ID, "--dry-run")
    assert result.exit_code == 2, result.output
    assert "remote code: modeling_effir.py differs from the copy effir-surgery ships" in result.output
    assert not marker.exists(), "the planted code ran"
    assert recorder.calls == [], "nothing may be uploaded"


def test_push_skips_the_reload_when_the_model_would_not_fit_twice(folder, recorder, monkeypatch):
    import effir_surgery.check as check

    def no_reload(*args, **kwargs):
        raise AssertionError("the clean-process reload must not run")

    weights = (folder / "model.safetensors").stat().st_size
    monkeypatch.setattr(check, "_reload_problems", no_reload)
    monkeypatch.setattr(check, "available_memory", lambda: 3 * weights)  # 2x weights > 50% of 3x weights
    result = run("push", folder, "--repo-id", REPO_ID)
    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[0]
    assert "weights match EffirLlamaForCausalLM; clean-process reload NOT checked: loading it needs about" in header
    assert "more than 50% of the" in header and "checked without loading it" in header
    assert [call[0] for call in recorder.calls] == ["create_repo", "upload_folder"]
    # with enough memory the same rule lets the reload run
    assert check.reload_memory_skip(folder, 0.5) is not None
    monkeypatch.setattr(check, "available_memory", lambda: 4 * weights + 1)
    assert check.reload_memory_skip(folder, 0.5) is None


def test_push_reload_check_can_be_turned_off(folder, recorder, monkeypatch):
    import effir_surgery.check as check
    import effir_surgery.hub as hub

    monkeypatch.setattr(check, "_reload_problems", lambda *a, **k: pytest.fail("the reload must not run"))
    result = hub.push(PushConfig(folder=folder, repo_id=REPO_ID, dry_run=True, reload_check=False))
    assert result.reload_class is None
    assert "clean-process reload NOT checked: skipped on request (--no-reload-check)" in result.summary()

    from click.testing import CliRunner

    from effir_surgery.cli import main

    cli = CliRunner().invoke(main, ["push", str(folder), "--repo-id", REPO_ID, "--dry-run", "--no-reload-check"])
    assert cli.exit_code == 0, cli.output
    assert "clean-process reload NOT checked: skipped on request (--no-reload-check)" in cli.output


# ------------------------------------------------------------------------- licence and base model inheritance


def _write_card(folder: Path, front_matter: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text(f"---\n{front_matter}---\n\n# a model\n")


@pytest.mark.parametrize(
    "layout, expected",
    [
        ("front-matter", {"license": "mit", "base_model": "acme/tiny-base"}),
        ("no-card", {"license": None, "base_model": None}),
        ("hf-cache", {"license": "llama3.1", "base_model": "acme/tiny-7b-instruct"}),
        ("effir-folder", {"license": "apache-2.0", "base_model": "effir-test/tiny-llama"}),
    ],
)
def test_source_licence_and_base_model(layout, expected, tmp_path, saved):
    from effir_surgery.load import resolve_source
    from effir_surgery.pipeline import _source_license

    if layout == "front-matter":
        source = tmp_path / "my-model"
        _write_card(source, "license: mit\nbase_model: acme/tiny-base\ntags: [text-generation]\n")
    elif layout == "no-card":
        source = tmp_path / "my-model"
        source.mkdir()
    elif layout == "hf-cache":
        # a snapshot is the repo itself; its card's base_model names the repo it was made from
        source = tmp_path / "hub" / "models--acme--tiny-7b-instruct" / "snapshots" / "0123456789abcdef"
        _write_card(source, "license: llama3.1\nbase_model:\n- acme/tiny-7b\n")
    else:
        source = saved  # pruned by effir-surgery: passes on its own source's licence and base model
    assert _source_license(resolve_source(str(source))) == expected


def test_hub_source_card_is_downloaded_with_the_snapshot(tmp_path, monkeypatch):
    """A Hub source: the base model is the repo id, the licence comes from its README.md, which the streaming
    snapshot now downloads with the weights."""
    import huggingface_hub
    from conftest import build_tiny, save_tiny_source, tiny_tokenizer
    from huggingface_hub.utils import filter_repo_objects

    import effir_surgery.load as load
    from effir_surgery.pipeline import _source_license
    from effir_surgery.source_card import _hub_readme

    snapshot = save_tiny_source(build_tiny("llama"), tiny_tokenizer(), tmp_path / "snapshot")
    _write_card(snapshot, "license: gemma\nbase_model: acme/grandparent\n")
    requested = {}

    def fake_snapshot_download(repo_id, revision=None, allow_patterns=None):
        requested["patterns"] = allow_patterns
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, name, revision=None: str(snapshot / name))
    monkeypatch.setattr(load, "load_config", lambda source: None)
    _hub_readme.cache_clear()
    try:
        source = load.resolve_source("acme/tiny-7b")
        assert load.local_checkpoint(source) == snapshot
        repo_files = ["README.md", "config.json", "model.safetensors", "tokenizer.json", "original/consolidated.pth"]
        assert "README.md" in list(filter_repo_objects(repo_files, allow_patterns=requested["patterns"]))
        assert _source_license(source) == {"license": "gemma", "base_model": "acme/tiny-7b"}
    finally:
        _hub_readme.cache_clear()


def test_prune_records_the_source_cards_licence_and_base_model(tmp_path):
    from conftest import build_tiny, save_tiny_source, tiny_tokenizer

    source = save_tiny_source(build_tiny("llama"), tiny_tokenizer(), tmp_path / "src")
    _write_card(source, "license: apache-2.0\nbase_model: acme/tiny-llama\n")
    out = tmp_path / "pruned"
    result = run("prune", source, "--drop-mlp-layers", "1", "-o", out, "--no-verify-reload")
    assert result.exit_code == 0, result.output
    provenance = json.loads((out / "provenance.json").read_text())
    assert (provenance["license"], provenance["base_model"]) == ("apache-2.0", "acme/tiny-llama")
    meta = _front_matter((out / "README.md").read_text())
    assert (meta["license"], meta["base_model"]) == ("apache-2.0", "acme/tiny-llama")


def test_finetune_of_a_plain_folder_records_its_cards_licence_and_base_model(tmp_path):
    """Fine-tuning a folder that effir-surgery did not write inherits from its card, as prune does."""
    from conftest import build_tiny, make_beir, save_tiny_source, tiny_tokenizer

    source = save_tiny_source(build_tiny("qwen3"), tiny_tokenizer(), tmp_path / "src")
    _write_card(source, "license: mit\nbase_model: acme/tiny-qwen\n")
    beir = make_beir(tmp_path / "beir", n_docs=24, n_queries=8)
    out = tmp_path / "ft"
    flags = [
        "--train",
        beir,
        "-o",
        out,
        "--batch-size",
        "4",
        "--mini-batch-size",
        "4",
        "--max-length",
        "16",
        "--max-steps",
        "1",
    ]
    result = run("finetune", source, *flags, "--full", "--device", "cpu", "--no-verify-reload")
    assert result.exit_code == 0, result.output
    provenance = json.loads((out / "provenance.json").read_text())
    assert (provenance["license"], provenance["base_model"]) == ("mit", "acme/tiny-qwen")
    meta = _front_matter((out / "README.md").read_text())
    assert (meta["license"], meta["base_model"]) == ("mit", "acme/tiny-qwen")


# ----------------------------------------------------------------------- run and finetune: one push function


@pytest.fixture
def push_spy(monkeypatch):
    """Records every call of ``hub.push`` (the one function behind push and every --push-to-hub) and runs it."""
    import effir_surgery.hub as hub

    calls, real_push = [], hub.push

    def spy(config, **kwargs):
        calls.append((config, kwargs))
        return real_push(config, **kwargs)

    monkeypatch.setattr(hub, "push", spy)
    return calls


# A fine-tuned pruned folder: the saved files, plus the training summary
FINETUNED_FILES = SAVED_FILES | {"finetune.json"}


def _recipe_fragment(card: str) -> dict:
    history = card.split("## How it was made", 1)[1].split("\n## ", 1)[0]
    return yaml.safe_load(history.split("```yaml\n", 1)[1].split("```", 1)[0])


@pytest.mark.subprocess
def test_run_push_stage_and_finetune_push_to_hub_use_the_same_push(tmp_path, recorder, push_spy, monkeypatch):
    from conftest import build_tiny, make_beir, save_tiny_source, tiny_tokenizer

    from effir_surgery.config import FinetuneSettings, PruneSettings, RunConfig

    source = save_tiny_source(build_tiny("llama"), tiny_tokenizer(), tmp_path / "src")
    beir = make_beir(tmp_path / "beir", n_docs=16, n_queries=8)
    finetune = {
        "train": str(beir),
        "batch_size": 4,
        "mini_batch_size": 4,
        "max_length": 16,
        "hard_negatives": 0,
        "max_steps": 1,
        "lora": False,
    }
    recipe = {
        "name": "tiny",
        "model": str(source),
        "run_dir": str(tmp_path / "run"),
        "prune": {"drop_mlp_layers": [1], "verify_reload": False},
        "finetune": finetune,
        "push_to_hub": "effir-test/overridden-by-the-flag",
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    args = ["run", str(tmp_path / "recipe.yaml"), "--set", "device=cpu", "--push-to-hub", REPO_ID]
    monkeypatch.setattr(sys, "argv", ["/usr/bin/effir-surgery", *args])  # what provenance records as the command
    result = run(*args)
    assert result.exit_code == 0, result.output
    finetuned = tmp_path / "run" / "finetuned"
    (config, kwargs) = push_spy[0]
    assert (Path(config.folder), config.repo_id, kwargs) == (finetuned, REPO_ID, {})
    assert config == PushConfig(folder=finetuned, repo_id=REPO_ID)
    (create, upload) = recorder.calls
    assert create == ("create_repo", REPO_ID, {"repo_type": "model", "private": False, "exist_ok": True})
    assert Path(upload[1]["folder_path"]) == finetuned and upload[1]["revision"] is None
    assert set(upload[2]) == FINETUNED_FILES
    assert json.loads((tmp_path / "run" / "push.json").read_text()) == {"repo_id": REPO_ID, "folder": str(finetuned)}
    # the published card rebuilds the recipe from the settings stored in the folder
    fragment = _recipe_fragment((finetuned / "README.md").read_text())
    assert fragment["model"] == str(source) and fragment["dtype"] == "float32"
    rebuilt = RunConfig(**fragment)
    assert rebuilt.prune == PruneSettings(**recipe["prune"])
    assert rebuilt.finetune == FinetuneSettings(**finetune)

    # finetune --push-to-hub of the run's pruned folder ends in the same function with the same calls
    recorder.calls.clear()
    out = tmp_path / "ft"
    args = [f"--{k.replace('_', '-')}={v}" for k, v in finetune.items() if k not in ("train", "lora")]
    result = run(
        "finetune", tmp_path / "run" / "pruned", "--train", beir, "-o", out, *args, "--full", "--device", "cpu",
        "--no-verify-reload", "--push-to-hub", REPO_ID,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (config, kwargs) = push_spy[1]
    assert config == PushConfig(folder=out, repo_id=REPO_ID) and kwargs == {}
    (create, upload) = recorder.calls
    assert create == ("create_repo", REPO_ID, {"repo_type": "model", "private": False, "exist_ok": True})
    assert Path(upload[1]["folder_path"]) == out and upload[1]["revision"] is None
    assert set(upload[2]) == FINETUNED_FILES


def test_run_push_to_hub_flag_refuses_a_bad_repo_id(tmp_path):
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump({"model": "m", "run_dir": str(tmp_path / "r")}))
    result = run("run", tmp_path / "recipe.yaml", "--push-to-hub", "no-namespace")
    assert result.exit_code == 2, result.output
    assert "--push-to-hub: 'no-namespace' is not a Hub repo id" in result.output
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- card: recipe and verification


def _recipe_run_folder(folder: Path) -> tuple[dict, dict]:
    """Make ``folder`` look like the output of `effir-surgery run`: prune and finetune provenance sharing the run's
    command, with the stage configs the pipeline stores. Returns the prune and finetune stage settings."""
    from effir_surgery.config import FinetuneConfig, PruneConfig

    prune = {"mlp_drop": 0.25, "calib": "../shared/data/scifact", "calib_samples": 64}
    finetune = {"train": "../shared/data/scifact", "max_length": 64, "query_prompt": "", "epochs": 2, "lora": False}
    pruned = PruneConfig(
        model="smollm2-135m", output="runs/x/pruned", overwrite=True, device="cpu", verify_reload=False, **prune
    )
    tuned = FinetuneConfig(model="runs/x/pruned", output="runs/x/finetuned", device="cpu", overwrite=True, **finetune)
    recipe = "effir-surgery run studies/smollm2-effir/recipes/mlp25.yaml --set device=cpu"
    parent = json.loads((folder / "provenance.json").read_text())
    parent.update(command=recipe, config=pruned.model_dump(mode="json"))
    child = {**parent, "command": recipe, "parent": parent}
    child.pop("config")
    (folder / "provenance.json").write_text(json.dumps(child))
    training = {"config": tuned.model_dump(mode="json"), "data": "scifact", "steps": 10, "examples": 100}
    (folder / "finetune.json").write_text(json.dumps(training))
    return {**prune, "verify_reload": False}, finetune


def test_card_of_a_recipe_run_shows_a_recipe_that_rebuilds_it(folder):
    from effir_surgery.card import render_model_card
    from effir_surgery.config import FinetuneSettings, PruneSettings, RunConfig

    prune, finetune = _recipe_run_folder(folder)
    card = render_model_card(folder, REPO_ID)
    fragment = _recipe_fragment(card)
    assert list(fragment)[:4] == ["name", "model", "dtype", "run_dir"]
    assert fragment["model"] == "smollm2-135m" and "device" not in fragment
    assert "output" not in fragment["prune"] and "model" not in fragment["finetune"]
    # every stored setting is written out, so it reproduces even if the toolkit's defaults change
    assert fragment["finetune"]["learning_rate"] == 1e-4 and fragment["prune"]["width_multiple"] == 8
    rebuilt = RunConfig(**fragment)
    assert rebuilt.prune == PruneSettings(**prune)
    assert rebuilt.finetune == FinetuneSettings(**finetune)
    assert rebuilt.evaluate is None and rebuilt.push_to_hub is None


def test_card_without_stored_stage_settings_has_no_recipe(folder):
    from effir_surgery.card import render_model_card

    _edit_json(folder / "provenance.json", lambda d: d.__setitem__("command", "effir-surgery run r.yaml"))
    history = render_model_card(folder).split("## How it was made", 1)[1]
    assert "effir-surgery run r.yaml" in history and "```yaml" not in history


@pytest.mark.parametrize("revision", [None, "v1"])
def test_card_verification_needs_no_package_index(saved, revision):
    from effir_surgery.card import render_model_card

    card = render_model_card(saved, REPO_ID, revision=revision)
    remote = card.split("## Remote code", 1)[1].split("\n## ", 1)[0]
    assert "pip install effir-surgery==0.1.0 &&" not in card and "pypi.org/project" not in card
    ref = revision or "main"
    assert f'curl -fsSL "https://huggingface.co/{REPO_ID}/resolve/{ref}/$f" | sha256sum' in remote
    assert "sha256sum effir_surgery/hf/*_effir.py" in remote and "otherwise from that version's source" in remote
    option = f" --revision {revision}" if revision else ""
    assert f"effir-surgery verify {REPO_ID}{option}\n" in remote


def test_card_sha256sum_command_checks_a_local_folder(saved):
    """The sha256sum line of a folder's card, run as printed, gives the sums in its table and the toolkit's own."""
    from effir_surgery.card import render_model_card

    remote = render_model_card(saved).split("## Remote code", 1)[1]
    command = next(line for line in remote.splitlines() if line.startswith("sha256sum "))
    output = subprocess.run(command, shell=True, capture_output=True, text=True, check=True).stdout
    sums = {Path(line.split()[1]).name: line.split()[0] for line in output.splitlines()}
    for name in ("configuration_effir.py", "modeling_effir.py"):
        assert sums[name] == hashlib.sha256((HF_DIR / name).read_bytes()).hexdigest()
        assert f"| `{name}` | `{sums[name]}` |" in remote


# ------------------------------------------------------------------------------- scripts/render_card.py

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_CARD = REPO / "docs" / "example_model_card.md"


def test_render_card_script_writes_the_push_card(saved, tmp_path):
    from effir_surgery.card import render_model_card

    out = tmp_path / "docs" / "card.md"
    command = [sys.executable, str(REPO / "scripts" / "render_card.py"), str(saved), "--repo-id", REPO_ID, "-o", out]
    proc = subprocess.run(list(map(str, command)), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == render_model_card(saved, REPO_ID)
    assert f"wrote {out}" in proc.stderr


def _section_headings(card: str) -> set[str]:
    return {line[3:].strip() for line in card.splitlines() if line.startswith("## ")}


def test_example_card_in_docs_has_the_sections_of_a_full_card(folder):
    """docs/example_model_card.md is rendered by scripts/render_card.py from a real SmolLM2 run (pruned, fine-tuned,
    evaluated); a tiny folder with the same history must render the same sections."""
    if not EXAMPLE_CARD.is_file():
        pytest.skip(
            f"{EXAMPLE_CARD.relative_to(REPO)} does not exist yet; generate it from a real SmolLM2 run folder with "
            "`python scripts/render_card.py FOLDER --repo-id OWNER/NAME -o docs/example_model_card.md`"
        )
    from effir_surgery.card import render_model_card

    _recipe_run_folder(folder)
    (folder / "results.json").write_text(json.dumps(_results(folder)))
    expected = _section_headings(render_model_card(folder, REPO_ID))
    assert expected >= {"What was removed", "Evaluation", "Usage", "How it was made", "Remote code", "Citation"}
    assert _section_headings(EXAMPLE_CARD.read_text()) == expected


@pytest.mark.subprocess
def test_push_uploads_the_eval_results_folder_and_no_other_dot_folder(folder, recorder):
    (folder / "results.json").write_text(json.dumps(_results(folder)))
    _add_clutter(folder)
    (folder / ".eval_results").mkdir()
    (folder / ".eval_results" / "Stale.yaml").write_text("- value: 1\n")  # not ours: never uploaded
    result = run("push", folder, "--repo-id", REPO_ID)
    assert result.exit_code == 0, result.output
    (_, _, uploaded) = recorder.calls[-1]
    assert set(uploaded) == SAVED_FILES | {"results.json", ".eval_results/SciFact.yaml"}
    assert (folder / ".eval_results" / "SciFact.yaml").read_text().startswith("- dataset:\n    id: mteb/scifact")

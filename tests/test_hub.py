"""Publishing: the pre-flight check refuses every kind of broken folder with a specific message, the model card's
metadata parses (model-index included), push makes exactly the expected huggingface_hub calls and uploads exactly
the checked files, offline use fails in one clear line, and verify names the remote-code file that differs.

No test touches the network: HfApi is replaced by a recorder, or huggingface_hub is in offline mode."""

import hashlib
import json
import re
import shutil
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
    from effir_surgery.config import PlanConfig
    from effir_surgery.plan import make_plan
    from effir_surgery.save import save_model
    from effir_surgery.surgery import apply_plan

    model = build_tiny("llama")
    plan = make_plan(shape_from_config(model.config), PlanConfig(drop_mlp_layers=[1]), model_name="tiny-llama")
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
        (_drop("modeling_effir.py"), "modeling_effir.py is missing (remote code that model_type 'effir_llama' needs)"),
        (
            _auto_map("AutoModel", "modeling_effir.EffirQwen2Model"),
            "auto_map.AutoModel is 'modeling_effir.EffirQwen2Model'; model_type 'effir_llama' needs "
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
    from effir_surgery.hub import preflight

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
    from effir_surgery.config import PlanConfig
    from effir_surgery.hub import preflight
    from effir_surgery.plan import make_plan
    from effir_surgery.save import save_model
    from effir_surgery.surgery import apply_plan

    model = build_tiny(family)
    config = PlanConfig(drop_mlp_layers=[1], drop_attention_layers=[2])
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
    recipe = "effir-surgery run recipes/study/mlp50.yaml"
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
    from effir_surgery.finetune.train import _run_key

    settings = {"model": "m", "train": "t.jsonl", "output": tmp_path / "out"}
    assert _run_key(FinetuneConfig(**settings)) == _run_key(FinetuneConfig(**settings, push_to_hub=REPO_ID))


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


def test_push_offline_fails_in_one_clear_line(folder, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    result = run("push", folder, "--repo-id", REPO_ID)
    assert result.exit_code == 2, result.output
    error = result.output.strip().splitlines()[-1]
    assert error.startswith(f"Error: Could not create or open the Hub repo '{REPO_ID}'")
    assert "offline mode (HF_HUB_OFFLINE=1)" in error and "Nothing was uploaded." in error


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

"""A score is published as an MTEB task's (the card's ``model-index``, which the Hub shows as the benchmark score)
only when it was measured on that task's own queries, corpus and qrels, in full. A slice, a subsample and a renamed
local copy stay in the card's body with their size. Every card must parse with huggingface_hub."""

import json
import shutil

import pytest
from click.testing import CliRunner
from huggingface_hub import ModelCard, metadata_load
from huggingface_hub.repocard_data import model_index_to_eval_results

from effir_surgery.beir import load_beir
from effir_surgery.card import write_model_card
from effir_surgery.cli import main
from effir_surgery.eval_tasks import local_task_record, mteb_task_size, subsample, task_size
from effir_surgery.folder import CARD_FILE, RESULTS_FILE, RESULTS_SCHEMA

SCORES = {"main_score": 0.61, "ndcg_at_10": 0.61, "recall_at_100": 0.9, "mrr_at_10": 0.55}


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    from conftest import build_tiny, save_tiny_source, tiny_tokenizer

    return save_tiny_source(build_tiny("llama"), tiny_tokenizer(), tmp_path_factory.mktemp("m") / "tiny")


@pytest.fixture
def scifact(shared_data):
    return load_beir(shared_data / "scifact", "test")


def _card_for(folder, tmp_path, task: str, dataset: str, sub, record: dict):
    """Write a results.json with one task entry into a copy of ``folder``, render its card, and return the card's
    metadata (through huggingface_hub) and its text."""
    own = shutil.copytree(folder, tmp_path / "model")
    entry = {"name": "tiny", "path": str(own), "kind": "dense", "efficiency": None}
    entry["tasks"] = [
        {"task": task, "dataset": dataset, "split": "test", "subsample": sub, **record, "scores": SCORES}
    ]
    results = {
        "schema": RESULTS_SCHEMA,
        "tool_version": "0",
        "created": "2026-12-03",
        "command": "",
        "models": [entry],
    }
    (own / RESULTS_FILE).write_text(json.dumps(results))
    write_model_card(own, "effir-test/tiny")
    card = ModelCard.load(own / CARD_FILE)
    assert metadata_load(own / CARD_FILE) == card.data.to_dict()
    return card.data.to_dict(), card.text


def test_the_full_local_scifact_is_the_mteb_task(scifact, model_folder, tmp_path):
    assert task_size(scifact) == mteb_task_size("SciFact", "test")  # 300 queries, 5,183 documents, 339 qrels
    record = local_task_record("SciFact", "test", scifact, None)
    assert record["full_mteb_task"] is True
    meta, text = _card_for(model_folder, tmp_path, "SciFact", "local:/data/scifact", None, record)
    _, results = model_index_to_eval_results(meta["model-index"])
    assert {(r.dataset_type, r.dataset_name, r.dataset_split) for r in results} == {
        ("mteb/scifact", "MTEB SciFact (default)", "test")
    }
    assert {r.metric_type: r.metric_value for r in results}["ndcg_at_10"] == 61.0
    assert "300 queries, 5,183 documents; the MTEB task's own data" in text


@pytest.mark.parametrize("case", ["slice", "subsample", "renamed copy"])
def test_other_data_is_kept_out_of_the_metadata(case, scifact, model_folder, tmp_path):
    sliced, sub = subsample(scifact, 20, 201, seed=0)
    if case == "slice":  # a folder that holds only a slice, passed as --task SciFact --data-dir SLICE
        task, data, sub = "SciFact", sliced, None
    elif case == "subsample":  # the full folder with --max-queries 20 --max-docs 201
        task, data = "SciFact", sliced
    else:  # the full data under a name mteb does not know
        task, data, sub = "scifact-copy", scifact, None
    record = local_task_record(task, "test", data, sub)
    assert record["full_mteb_task"] is False and record["size"]["queries"] == len(data.queries)
    meta, text = _card_for(model_folder, tmp_path, task, "local:/data/x", sub, record)
    assert "model-index" not in meta
    if sub:
        assert f"**subsample**: {sub['note']}" in text
    else:
        size = record["size"]
        assert (
            f"{size['queries']:,} queries, {size['documents']:,} documents; not the MTEB task's data, so not in "
            "model-index" in text
        )


@pytest.mark.integration
def test_evaluate_records_that_a_slice_named_scifact_is_not_scifact(model_folder, tmp_path):
    """The reported case, end to end: a small local folder evaluated as ``--task SciFact`` is recorded as not the
    MTEB task, so its card publishes no MTEB SciFact score."""
    from conftest import make_beir

    beir = make_beir(tmp_path / "slice", n_docs=20, n_queries=6)
    out = tmp_path / "eval"
    args = ["evaluate", model_folder, "--task", "SciFact", "--data-dir", beir, "-o", out, "--no-measure"]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    (task,) = json.loads((out / RESULTS_FILE).read_text())["models"][0]["tasks"]
    assert task["task"] == "SciFact" and task["full_mteb_task"] is False
    assert task["size"]["queries"] == 6 and task["size"]["documents"] == 20
    record = {key: task[key] for key in ("size", "full_mteb_task")}
    meta, _ = _card_for(model_folder, tmp_path, "SciFact", task["dataset"], None, record)
    assert "model-index" not in meta


def test_push_publishes_eval_results_only_for_the_mteb_task_itself(scifact, model_folder, tmp_path):
    """``.eval_results/<Task>.yaml`` in the layout mteb 2.26 writes, for the full task only; a slice gets none."""
    import yaml

    from effir_surgery.card_results import eval_results_files

    full = local_task_record("SciFact", "test", scifact, None)
    sliced, _ = subsample(scifact, 20, 201, seed=0)
    entry = {"name": "tiny", "path": None, "kind": "dense"}
    task = {
        "task": "SciFact",
        "dataset": "mteb:SciFact",
        "split": "test",
        "subsample": None,
        "mteb_version": "2.26.24",
    }
    results = {"created": "2026-12-03T10:00:00"}
    files = eval_results_files(results, {**entry, "tasks": [{**task, **full, "scores": SCORES}]})
    assert list(files) == [".eval_results/SciFact.yaml"]
    rows = yaml.safe_load(files[".eval_results/SciFact.yaml"])
    assert [row["dataset"]["task_id"] for row in rows] == ["SciFact_default_test", "SciFact"]
    assert {row["dataset"]["id"] for row in rows} == {"mteb/scifact"} and {row["value"] for row in rows} == {61.0}
    assert rows[0]["date"] == "2026-12-03" and rows[0]["source"]["name"] == "Obtained using MTEB v2.26.24"
    slice_record = local_task_record("SciFact", "test", sliced, None)
    local = {**task, "dataset": "local:/data/slice", **slice_record, "scores": SCORES}
    assert eval_results_files(results, {**entry, "tasks": [local]}) == {}

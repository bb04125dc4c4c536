"""Evaluation: the local BEIR task runs through mteb offline and scores a hand-computed case exactly;
subsampling keeps relevant documents; outputs and bad inputs behave as documented."""

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from effir_surgery.beir import load_beir
from effir_surgery.cli import main
from effir_surgery.errors import EffirError
from effir_surgery.evaluate import TaskSource, _run_mteb, local_task, subsample

# 2-d embeddings chosen so the rankings are known: q1 ranks d2, d1, d3, d4; q2 ranks d3, d1, d2, d4.
VECTORS = {
    "alpha": [1.0, 0.0],
    "beta": [0.0, 1.0],  # queries
    "one": [0.6, 0.8],
    "two": [0.8, 0.6],
    "three": [0.0, 1.0],
    "four": [-1.0, 0.0],  # documents
}


def write_beir(folder, docs, queries, qrels, split="test"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": i, "title": "", "text": t}) + "\n" for i, t in docs.items())
    )
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in queries.items())
    )
    (folder / "qrels").mkdir(exist_ok=True)
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, docs in qrels.items() for d, s in docs.items()]
    (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return folder


class FakeEncoder:
    """An mteb encoder whose embedding of a text is looked up in VECTORS."""

    def __init__(self):
        from mteb.models.model_meta import ModelMeta

        self.mteb_model_meta = ModelMeta.create_empty(overwrites={"name": "test/fake", "revision": "1"})

    def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs):
        rows = []
        for batch in inputs:
            for text in batch["text"]:
                rows.append(VECTORS[text.strip()])
        return np.asarray(rows, dtype=np.float32)

    def similarity(self, a, b):
        import torch

        return torch.as_tensor(np.asarray(a)) @ torch.as_tensor(np.asarray(b)).T

    def similarity_pairwise(self, a, b):
        import torch

        return (torch.as_tensor(np.asarray(a)) * torch.as_tensor(np.asarray(b))).sum(-1)


@pytest.fixture
def hand_case(tmp_path):
    docs = {"d1": "one", "d2": "two", "d3": "three", "d4": "four"}
    return write_beir(
        tmp_path / "hand", docs, {"q1": "alpha", "q2": "beta"}, {"q1": {"d1": 1}, "q2": {"d3": 1, "d2": 1}}
    )


def test_ndcg_matches_a_hand_computed_case(hand_case, tmp_path):
    data = load_beir(hand_case, "test")
    task = local_task(TaskSource("HandCase", hand_case), "test", data, "k1")
    scores = _run_mteb(FakeEncoder(), task, tmp_path / "cache", batch_size=2, split="test")
    # q1: relevant d1 at rank 2 -> 1/log2(3). q2: relevant d3 at rank 1, d2 at rank 3 -> (1 + 1/log2(4)) / IDCG,
    # IDCG = 1 + 1/log2(3).
    q1 = 1 / math.log2(3)
    q2 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert scores["ndcg_at_10"] == pytest.approx((q1 + q2) / 2, abs=1e-4)
    assert scores["mrr_at_10"] == pytest.approx((1 / 2 + 1) / 2, abs=1e-4)
    assert scores["recall_at_100"] == pytest.approx(1.0)
    assert scores["main_score"] == scores["ndcg_at_10"]


def test_known_datasets_keep_official_metadata(hand_case):
    data = load_beir(hand_case, "test")
    arguana = local_task(TaskSource("ArguAna", hand_case), "test", data, "k")
    scifact = local_task(TaskSource("SciFact", hand_case), "test", data, "k")
    assert arguana.ignore_identical_ids is True and scifact.ignore_identical_ids is False
    assert scifact.metadata.main_score == "ndcg_at_10" and scifact.metadata.dataset["path"] == "local/hand"


def test_ignore_identical_ids_removes_the_query_itself(tmp_path):
    """ArguAna-style: query q has id 'd2' and d2 is in the corpus; with ignore_identical_ids d2 cannot be retrieved
    for it, so the relevant d1 moves from rank 2 to rank 1."""
    folder = write_beir(
        tmp_path / "arg", {"d1": "one", "d2": "two", "d3": "three"}, {"d2": "alpha"}, {"d2": {"d1": 1}}
    )
    data = load_beir(folder, "test")
    plain = _run_mteb(
        FakeEncoder(), local_task(TaskSource("Custom", folder), "test", data, "a"), tmp_path / "c1", 2, "test"
    )
    ignoring = _run_mteb(
        FakeEncoder(), local_task(TaskSource("ArguAna", folder), "test", data, "a"), tmp_path / "c2", 2, "test"
    )
    assert plain["ndcg_at_10"] == pytest.approx(1 / math.log2(3), abs=1e-4)
    assert ignoring["ndcg_at_10"] == pytest.approx(1.0, abs=1e-4)


def test_subsample_keeps_relevant_documents(tmp_path):
    from conftest import make_beir

    data = load_beir(make_beir(tmp_path / "b", n_docs=30, n_queries=10), "test")
    small, info = subsample(data, max_queries=4, max_docs=8, seed=0)
    assert len(small.queries) == 4 and len(small.corpus) == 8
    for q in small.queries:
        assert all(d in small.corpus for d in small.qrels[q])
    assert "all 4 relevant documents" in info["note"]
    same, _ = subsample(data, max_queries=4, max_docs=8, seed=0)
    assert same.corpus.keys() == small.corpus.keys()
    assert subsample(data, None, None, 0) == (data, None)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from conftest import build_tiny, save_tiny_source, tiny_tokenizer

    return save_tiny_source(build_tiny("llama"), tiny_tokenizer(), tmp_path_factory.mktemp("m") / "tiny")


def test_cli_end_to_end(tiny_folder, tmp_path):
    from conftest import make_beir

    beir = make_beir(tmp_path / "beir", n_docs=20, n_queries=6)
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            str(tiny_folder),
            "bm25",
            "--data-dir",
            str(beir),
            "-o",
            str(out),
            "--speed-docs",
            "8",
            "--max-queries",
            "4",
            "--max-docs",
            "10",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    assert data["schema"] == "effir-surgery/results/v1"
    dense, bm25 = data["models"]
    assert dense["kind"] == "dense" and bm25["kind"] == "bm25" and bm25["efficiency"] is None
    task = dense["tasks"][0]
    assert task["subsample"]["queries"] == 4 and task["dataset"].startswith("local:")
    assert set(task["scores"]) == {"main_score", "ndcg_at_10", "recall_at_100", "mrr_at_10"}
    assert 0 <= task["scores"]["ndcg_at_10"] <= 1
    eff = dense["efficiency"]
    assert eff["speedup"] == 1.0 and eff["flop_ratio"] == 1.0 and eff["tokens_per_s"] > 0
    from transformers import AutoConfig

    from effir_surgery.arch import shape_from_config
    from effir_surgery.costs import param_count

    counts = param_count(shape_from_config(AutoConfig.from_pretrained(tiny_folder)))
    assert eff["params_total"] == counts.total - counts.lm_head  # the encoder has no LM head
    assert eff["params_non_embedding"] == counts.non_embedding
    assert (out / "results.md").read_text().count("|") > 20 and (out / "tradeoff.png").stat().st_size > 1000
    assert "subsampled" in result.output


@pytest.mark.parametrize(
    "remove, message", [("corpus.jsonl", "has no corpus.jsonl"), ("qrels/test.tsv", "has no qrels/test.tsv")]
)
def test_broken_beir_folder(tiny_folder, tmp_path, remove, message):
    from conftest import make_beir

    beir = make_beir(tmp_path / "beir")
    (beir / remove).unlink()
    result = CliRunner().invoke(
        main, ["evaluate", str(tiny_folder), "--data-dir", str(beir), "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and message in result.output


def test_unknown_qrels_ids_are_counted(tiny_folder, tmp_path):
    from conftest import make_beir

    beir = make_beir(tmp_path / "beir", n_docs=10, n_queries=3)
    with (beir / "qrels" / "test.tsv").open("a") as f:
        f.write("q0\tno-such-doc\t1\n")
    result = CliRunner().invoke(main, ["evaluate", "bm25", "--data-dir", str(beir), "-o", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "1 qrels" in result.output and "missing from the files" in result.output


def test_unknown_task_name():
    with pytest.raises(EffirError, match="Unknown MTEB retrieval task 'SciFakt'"):
        from effir_surgery.config import EvalConfig
        from effir_surgery.evaluate import resolve_tasks

        resolve_tasks(EvalConfig(models=["bm25"], task=["SciFakt"]))


def test_model_that_does_not_load(tmp_path):
    from conftest import make_beir

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    (broken / "model.safetensors").write_bytes(b"\x00" * 10)
    beir = make_beir(tmp_path / "beir")
    result = CliRunner().invoke(main, ["evaluate", str(broken), "--data-dir", str(beir), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "Corrupt or truncated weights file" in result.output


def test_offline_hub_task_fails_clearly(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    result = CliRunner().invoke(main, ["evaluate", "bm25", "--task", "SciFact", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "Pass --data-dir" in result.output


@pytest.mark.slow
def test_bm25_on_scifact_matches_the_data_readme(shared_data, tmp_path):
    result = CliRunner().invoke(
        main, ["evaluate", "bm25", "--data-dir", str(shared_data / "scifact"), "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    ndcg = json.loads((tmp_path / "o" / "results.json").read_text())["models"][0]["tasks"][0]["scores"]["ndcg_at_10"]
    assert 0.66 <= ndcg <= 0.70  # data README sanity value 0.6863 (bm25s, stemmed, stop words)


@pytest.mark.slow
def test_encoding_on_several_devices_gives_the_same_scores(tiny_folder, tmp_path, monkeypatch):
    """Several devices (here two CPU processes, as two GPUs would be) go through sentence-transformers'
    multi-process pool and must score exactly what one process scores."""
    from conftest import make_beir
    from sentence_transformers import SentenceTransformer

    pools = []
    start = SentenceTransformer.start_multi_process_pool

    def counting_start(self, *args, **kwargs):
        pool = start(self, *args, **kwargs)
        pools.append(len(pool["processes"]))
        return pool

    monkeypatch.setattr(SentenceTransformer, "start_multi_process_pool", counting_start)

    from effir_surgery.config import EvalConfig
    from effir_surgery.evaluate import evaluate

    beir = make_beir(tmp_path / "beir", n_docs=20, n_queries=6)
    scores = {}
    for name, devices in (("one", []), ("two", ["cpu", "cpu"])):
        config = EvalConfig(
            models=[str(tiny_folder)], data_dir=[str(beir)], output=tmp_path / name, devices=devices, measure=False
        )
        scores[name] = evaluate(config).models[0]["tasks"][0]["scores"]
        assert bool(pools) == bool(devices) and all(n == 2 for n in pools)
    assert scores["one"] == pytest.approx(scores["two"], abs=1e-6)


def test_cache_key_sees_every_weight(tiny_folder, tmp_path):
    """A LoRA merge changes projection weights deep inside the file but no name, shape or size: the model key
    must still change, or two fine-tunings of one pruned model would share cached scores."""
    import shutil

    from safetensors.torch import load_file, save_file

    from effir_surgery.retrievers import resolve_retriever

    copy = tmp_path / "copy"
    shutil.copytree(tiny_folder, copy)
    assert resolve_retriever(str(copy)).key == resolve_retriever(str(tiny_folder)).key
    weights = load_file(copy / "model.safetensors")
    last = sorted(weights)[-1]
    weights[last] = weights[last].clone()
    weights[last].view(-1)[-1] += 1.0
    save_file(weights, copy / "model.safetensors", metadata={"format": "pt"})
    assert (copy / "model.safetensors").stat().st_size == (tiny_folder / "model.safetensors").stat().st_size
    assert resolve_retriever(str(copy)).key != resolve_retriever(str(tiny_folder)).key


def test_cached_scores_are_not_reused_across_encoding_settings(tiny_folder, tmp_path):
    """The same model on the same data with another truncation length is scored afresh, not read from the cache."""
    from conftest import make_beir

    from effir_surgery.config import EvalConfig
    from effir_surgery.evaluate import evaluate

    beir = make_beir(tmp_path / "beir", n_docs=20, n_queries=6)
    cache = tmp_path / "shared-cache"

    def run(max_length):
        config = EvalConfig(
            models=[str(tiny_folder)],
            data_dir=[str(beir)],
            output=tmp_path / f"out{max_length}",
            cache_dir=cache,
            max_length=max_length,
            measure=False,
        )
        evaluate(config)
        return sorted(p.relative_to(cache) for p in cache.glob("*/*") if p.is_dir())

    assert len(run(8)) == 1
    assert len(run(64)) == 2  # a second cache entry, not a hit on the first
    assert len(run(8)) == 2  # the same settings again: a hit

"""Evaluation: the local BEIR task runs through mteb offline and scores a hand-computed case exactly;
subsampling keeps relevant documents; outputs and bad inputs behave as documented."""

import gzip
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from effir_surgery.beir import load_beir
from effir_surgery.cli import main
from effir_surgery.errors import EffirError
from effir_surgery.eval_tasks import TaskSource, local_task, subsample
from effir_surgery.evaluate import _run_mteb

# 2-d embeddings chosen so the rankings are known: q1 ranks d2, d1, d3, d4; q2 ranks d3, d1, d2, d4.
VECTORS = {
    "alpha": [1.0, 0.0],
    "beta": [0.0, 1.0],  # queries
    "one": [0.6, 0.8],
    "two": [0.8, 0.6],
    "three": [0.0, 1.0],
    "four": [-1.0, 0.0],  # documents
}


def write_beir(folder, docs, queries, qrels, split="test", gz=False):
    """A BEIR folder; ``docs`` maps ids to a text or to ``{"title", "text"}``. ``gz`` writes ``*.jsonl.gz``."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"_id": i, **(d if isinstance(d, dict) else {"title": "", "text": d})} for i, d in docs.items()]

    def write(stem, lines):
        text = "".join(json.dumps(row) + "\n" for row in lines)
        if gz:
            with gzip.open(folder / f"{stem}.jsonl.gz", "wt", encoding="utf-8") as handle:
                handle.write(text)
        else:
            (folder / f"{stem}.jsonl").write_text(text)

    write("corpus", rows)
    write("queries", [{"_id": i, "text": t} for i, t in queries.items()])
    (folder / "qrels").mkdir(exist_ok=True)
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, docs in qrels.items() for d, s in docs.items()]
    (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return folder


class FakeEncoder:
    """An mteb encoder whose embedding of a text is looked up in VECTORS; ``calls`` records each call's kwargs."""

    def __init__(self):
        from mteb.models.model_meta import ModelMeta

        self.mteb_model_meta = ModelMeta.create_empty(overwrites={"name": "test/fake", "revision": "1"})
        self.calls = []

    def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs):
        self.calls.append(kwargs)
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


def test_encoding_progress_bars_follow_the_progress_setting(hand_case, tmp_path, monkeypatch):
    """mteb gets ``show_progress_bar`` in the encode kwargs (on only when progress is enabled), and the setting is
    not part of the result cache: a second run with progress on is a cache hit."""
    import effir_surgery._logging as logging_

    data = load_beir(hand_case, "test")
    task = local_task(TaskSource("HandCase", hand_case), "test", data, "k1")
    quiet = FakeEncoder()
    first = _run_mteb(quiet, task, tmp_path / "cache", batch_size=2, split="test")
    assert quiet.calls and all(call["show_progress_bar"] is False for call in quiet.calls)  # conftest: no progress

    monkeypatch.setattr(logging_, "progress_enabled", lambda: True)
    fresh = FakeEncoder()
    _run_mteb(fresh, task, tmp_path / "other-cache", batch_size=2, split="test")
    assert fresh.calls and all(call["show_progress_bar"] is True for call in fresh.calls)
    cached = FakeEncoder()
    assert _run_mteb(cached, task, tmp_path / "cache", batch_size=2, split="test") == first
    assert cached.calls == []


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


def salad_case(n_docs=16, n_queries=5, seed=3):
    """Word-salad documents (with titles) and queries; query i is judged relevant to documents i and i + n_queries,
    so each query has two relevant documents and the ideal DCG is not 1."""
    import random

    from conftest import WORDS

    rng = random.Random(seed)
    docs = {
        f"d{i}": {"title": rng.choice(WORDS), "text": " ".join(rng.choice(WORDS) for _ in range(10))}
        for i in range(n_docs)
    }
    queries = {f"q{i}": " ".join(docs[f"d{i}"]["text"].split()[:4]) for i in range(n_queries)}
    qrels = {f"q{i}": {f"d{i}": 1, f"d{i + n_queries}": 1} for i in range(n_queries)}
    return docs, queries, qrels


def textbook_ndcg_at_10(ranking: list[str], relevant: dict[str, int]) -> float:
    """nDCG@10 = DCG@10 / IDCG@10 with DCG = sum over ranks r = 1..10 of rel_r / log2(r + 1) (linear gain)."""
    dcg = sum(relevant.get(doc, 0) / math.log2(rank + 1) for rank, doc in enumerate(ranking[:10], start=1))
    ideal = sorted(relevant.values(), reverse=True)[:10]
    return dcg / sum(gain / math.log2(rank + 1) for rank, gain in enumerate(ideal, start=1))


def evaluate_scores(model, folder, out, task="TinyCase", **settings):
    from effir_surgery.config import EvalConfig
    from effir_surgery.evaluate import evaluate

    config = EvalConfig(models=[str(model)], task=[task], data_dir=[str(folder)], output=out, **settings)
    return evaluate(config)


def test_tiny_model_through_mteb_matches_a_hand_computed_ndcg(tiny_folder, tmp_path):
    """A real (tiny, random) decoder through the local task and mteb; then the same queries and documents encoded
    with the toolkit's Encoder, ranked by dot product in numpy and scored with the textbook nDCG@10 formula."""
    from effir_surgery.beir import document_text
    from effir_surgery.encode import Encoder

    folder = write_beir(tmp_path / "tinycase", *salad_case())
    results = evaluate_scores(tiny_folder, folder, tmp_path / "o", measure=False)
    mteb_ndcg = results.models[0]["tasks"][0]["scores"]["ndcg_at_10"]

    data = load_beir(folder, "test")
    encoder = Encoder.from_pretrained(str(tiny_folder))
    doc_ids = list(data.corpus)
    queries = encoder.encode(list(data.queries.values()), "query").numpy()
    docs = encoder.encode([document_text(data.corpus[d]) for d in doc_ids], "document").numpy()
    similarity = queries @ docs.T
    per_query = []
    for row, qid in zip(similarity, data.queries, strict=True):
        order = np.argsort(-row, kind="stable")
        gaps = np.diff(np.sort(row)[::-1][:11])
        assert np.all(np.abs(gaps) > 1e-5), "near-tie in the top 10: the ranking is not well defined"
        per_query.append(textbook_ndcg_at_10([doc_ids[i] for i in order], data.qrels[qid]))
    hand = sum(per_query) / len(per_query)
    assert 0 < hand < 1  # neither trivial case
    assert mteb_ndcg == round(hand, 5)  # mteb reports metrics rounded to 5 decimals


def test_gzipped_beir_folder_gives_identical_scores(tiny_folder, tmp_path):
    case = salad_case()
    plain = write_beir(tmp_path / "plain" / "tinycase", *case)
    zipped = write_beir(tmp_path / "gz" / "tinycase", *case, gz=True)
    assert (zipped / "corpus.jsonl.gz").is_file() and not (zipped / "corpus.jsonl").exists()
    scores = [
        evaluate_scores(tiny_folder, folder, tmp_path / f"out{i}", measure=False).models[0]["tasks"][0]["scores"]
        for i, folder in enumerate((plain, zipped))  # separate outputs: separate caches, both really encoded
    ]
    assert scores[0] == scores[1]


@pytest.mark.integration
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
    task = json.loads((tmp_path / "o" / "results.json").read_text())["models"][0]["tasks"][0]
    assert task["unknown_qrels"] == 1 and task["main_score_name"] == "ndcg_at_10"


def test_unknown_folder_name_warns_about_generic_metadata(tmp_path, capsys):
    from effir_surgery.config import EvalConfig
    from effir_surgery.eval_tasks import resolve_tasks

    misnamed = write_beir(tmp_path / "my-arguana-copy", {"d1": "one"}, {"q1": "alpha"}, {"q1": {"d1": 1}})
    named = write_beir(tmp_path / "arguana", {"d1": "one"}, {"q1": "alpha"}, {"q1": {"d1": 1}})
    (source,) = resolve_tasks(EvalConfig(models=["bm25"], data_dir=[str(misnamed)]))
    warning = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert source.name == "my-arguana-copy"
    assert "'my-arguana-copy' (from the folder name) is not a known MTEB retrieval task" in warning
    assert "ignore_identical_ids off" in warning and "--task ArguAna --data-dir" in warning
    # a known name, from the folder or from --task, is quiet
    assert resolve_tasks(EvalConfig(models=["bm25"], data_dir=[str(named)]))[0].name == "ArguAna"
    assert resolve_tasks(EvalConfig(models=["bm25"], task=["ArguAna"], data_dir=[str(misnamed)]))[0].name == "ArguAna"
    assert capsys.readouterr().err == ""


def test_hub_task_refuses_subsampling_before_loading_models(tmp_path, monkeypatch):
    import effir_surgery.evaluate as evaluate_module

    monkeypatch.setattr(evaluate_module, "_load_model", lambda *a: pytest.fail("a model was loaded"))
    result = CliRunner().invoke(
        main, ["evaluate", "bm25", "--task", "SciFact", "--max-docs", "100", "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 2, result.output
    assert "--max-queries/--max-docs subsample a local BEIR folder" in result.output
    assert "--data-dir FOLDER" in result.output


def test_hub_task_warns_that_efficiency_needs_a_folder(tiny_folder, tmp_path, monkeypatch):
    """With Hub tasks only there are no local documents to time: the run says so instead of silently writing
    efficiency null. (mteb's scoring is replaced here: the Hub is offline in tests.)"""
    import effir_surgery.evaluate as evaluate_module

    scores = {"main_score": 0.5, "ndcg_at_10": 0.5, "recall_at_100": 0.9, "mrr_at_10": 0.4}
    monkeypatch.setattr(evaluate_module, "_run_mteb", lambda *a, **k: dict(scores))
    result = CliRunner().invoke(main, ["evaluate", str(tiny_folder), "--task", "SciFact", "-o", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "no efficiency report" in output and "--task NAME --data-dir FOLDER" in output
    entry = json.loads((tmp_path / "o" / "results.json").read_text())["models"][0]
    assert entry["efficiency"] is None and entry["tasks"][0]["unknown_qrels"] is None
    quiet = CliRunner().invoke(
        main, ["evaluate", str(tiny_folder), "--task", "SciFact", "--no-measure", "-o", str(tmp_path / "q")]
    )
    assert quiet.exit_code == 0 and "no efficiency report" not in quiet.output


def test_plot_names_the_main_score(monkeypatch, tmp_path):
    import matplotlib.axes

    from effir_surgery.eval_results import EvalResults, plot_tradeoff, quality_label

    def results(*names):
        tasks = [
            {"task": f"T{i}", "scores": {"main_score": 0.5}, "main_score_name": name} for i, name in enumerate(names)
        ]
        return EvalResults(created="now", command="x", models=[{"name": "m", "efficiency": None, "tasks": tasks}])

    labels = []
    monkeypatch.setattr(matplotlib.axes.Axes, "set_ylabel", lambda self, label, **k: labels.append(label))
    plot_tradeoff(results("map_at_100"), tmp_path / "p.png")
    assert labels == ["map_at_100 (T0)"]
    assert quality_label(results("ndcg_at_10")) == "nDCG@10 (T0)"
    assert quality_label(results("ndcg_at_10", "ndcg_at_10")) == "nDCG@10 (mean of 2 tasks)"
    assert quality_label(results("ndcg_at_10", "recall_at_100")) == "main score (mean of 2 tasks)"


def test_cuda_with_bf16_defaults_to_bfloat16_only_when_dtype_is_unset(monkeypatch):
    import torch

    from effir_surgery.config import EvalConfig
    from effir_surgery.evaluate import encode_dtype

    def config(**kw):
        return EvalConfig(models=["bm25"], data_dir=["x"], **kw)

    assert encode_dtype(config()) == "float32"  # this CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert encode_dtype(config()) == "bfloat16"
    assert encode_dtype(config(device="cuda:1")) == "bfloat16"
    assert encode_dtype(config(devices=["cuda:0", "cuda:1"])) == "bfloat16"
    assert encode_dtype(config(dtype="float32")) == "float32"  # asked for explicitly (a recipe always is)
    assert encode_dtype(config(device="cpu")) == "float32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert encode_dtype(config()) == "float32"


@pytest.mark.integration
def test_pruned_model_next_to_its_source_reports_exact_costs(tiny_folder, tmp_path):
    """A tiny Llama with two MLP sublayers removed through the library, evaluated after its source: the FLOP
    ratio is the ratio of the measured FLOPs/token, and the parameter count is the cost model's for the pruned
    shape (encoder only: no LM head)."""
    from conftest import make_beir, tiny_tokenizer
    from transformers import AutoConfig, AutoModelForCausalLM

    from effir_surgery.arch import shape_from_config
    from effir_surgery.config import PlanSettings
    from effir_surgery.costs import param_count
    from effir_surgery.plan import make_plan
    from effir_surgery.save import save_model
    from effir_surgery.surgery import apply_plan

    model = AutoModelForCausalLM.from_pretrained(tiny_folder).eval()
    plan = make_plan(shape_from_config(model.config), PlanSettings(drop_mlp_layers=[1, 2]), model_name="tiny")
    apply_plan(model, plan)
    pruned = tmp_path / "pruned"
    save_model(model, tiny_tokenizer(), pruned, plan=plan, verify=False)

    beir = make_beir(tmp_path / "beir", n_docs=12, n_queries=4)
    config_kw = dict(data_dir=[str(beir)], output=tmp_path / "o", speed_docs=6)
    from effir_surgery.config import EvalConfig
    from effir_surgery.evaluate import evaluate

    source_entry, pruned_entry = evaluate(EvalConfig(models=[str(tiny_folder), str(pruned)], **config_kw)).models
    src, cut = source_entry["efficiency"], pruned_entry["efficiency"]
    assert src["flop_ratio"] == 1.0
    assert cut["flop_ratio"] == pytest.approx(src["flops_per_token"] / cut["flops_per_token"], rel=1e-12)
    assert cut["flop_ratio"] > 1 and cut["flops_method"] == "exact"
    shape = shape_from_config(AutoConfig.from_pretrained(pruned, trust_remote_code=True))
    assert shape.mlp_widths[1] == shape.mlp_widths[2] == 0
    counts = param_count(shape)
    assert cut["params_total"] == counts.total - counts.lm_head
    assert cut["params_non_embedding"] == counts.non_embedding
    assert cut["params_total"] < src["params_total"]


def test_minilm_baseline_resolves_offline_and_encodes():
    from effir_surgery.retrievers import load_dense, resolve_retriever

    spec = resolve_retriever("all-MiniLM-L6-v2")
    assert spec.kind == "minilm" and spec.name == "all-MiniLM-L6-v2"
    model = load_dense(spec)
    vectors = model.encode(["the cells of the brain", "a river runs through the city"])
    assert vectors.shape == (2, 384)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0, 1.0], abs=1e-4)
    assert abs(float(vectors[0] @ vectors[1])) < 0.9


def test_unknown_task_name():
    with pytest.raises(EffirError, match="Unknown MTEB retrieval task 'SciFakt'"):
        from effir_surgery.config import EvalConfig
        from effir_surgery.eval_tasks import resolve_tasks

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
            overwrite=True,  # the third run writes into the first one's output again
        )
        evaluate(config)
        return sorted(p.relative_to(cache) for p in cache.glob("*/*") if p.is_dir())

    assert len(run(8)) == 1
    assert len(run(64)) == 2  # a second cache entry, not a hit on the first
    assert len(run(8)) == 2  # the same settings again: a hit


def test_fresh_process_peak_memory_is_its_own():
    """The efficiency measurement's clean process reports its own peak RSS, not its parent's: Linux keeps
    ``ru_maxrss`` across ``execve``, so a child spawned by a large evaluation used to inherit the parent's peak."""
    import subprocess
    import sys
    from pathlib import Path

    from effir_surgery._memory import process_peak_rss

    ballast = bytearray(400 * 2**20)  # make this (parent) process clearly larger than the child will be
    ballast[::4096] = b"x" * len(ballast[::4096])  # touch every page so it is resident
    code = "import sys; sys.path.insert(0, sys.argv[1]); from effir_surgery._memory import process_peak_rss; " + (
        "print(process_peak_rss())"
    )
    repo = str(Path(__file__).resolve().parents[1])
    child = subprocess.run([sys.executable, "-c", code, repo], capture_output=True, text=True, check=True)
    assert process_peak_rss() >= 400 * 2**20
    assert int(child.stdout) < 200 * 2**20  # a bare interpreter: tens of MB
    del ballast

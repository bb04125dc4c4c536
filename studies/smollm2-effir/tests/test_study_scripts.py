"""The study's bookkeeping scripts (in ``studies/smollm2-effir/scripts/``): keeping a finished run's results
(study_archive.py), rebuilding a kept variant's architecture for timing (study_speed.py) and the page built from
what is kept (study_report.py). Run folders here are small fakes with the files those scripts read."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.study

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
REPO = Path(__file__).resolve().parents[3]


def product_helpers():
    """The product tests' helpers (tiny models, tokenizer, BEIR folders) from ``tests/conftest.py``, loaded by path
    under a name of their own: a conftest.py in this folder would shadow it for the product tests."""
    name = "effir_product_test_helpers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "tests" / "conftest.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def script(name: str):
    spec = importlib.util.spec_from_file_location(f"study_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def results(models: list[tuple[str, Path | None, float]]) -> dict:
    """An eval results.json as ``effir-surgery evaluate`` writes it (only the fields the scripts read)."""
    return {
        "models": [
            {
                "name": name,
                "path": None if path is None else str(path),
                "kind": "dense" if path is not None or name == "smollm2-135m" else "bm25",
                "efficiency": None,
                "tasks": [
                    {
                        "task": "SciFact",
                        "subsample": None,
                        "mteb_version": "2.26",
                        "scores": {"ndcg_at_10": ndcg, "recall_at_100": min(1.0, ndcg + 0.3)},
                    }
                ],
            }
            for name, path, ndcg in models
        ]
    }


def fake_run(runs: Path, variant: str, ndcg: float, widths: list[int] | None, pruned_ndcg: float | None = None):
    """A finished run folder: fine-tuned model files, run.json, then (last, as the recipe writes it) its scores."""
    run = runs / variant
    folder = run / "finetuned"
    folder.mkdir(parents=True)
    drops = [i for i, w in enumerate(widths or []) if w == 0]
    (folder / "config.json").write_text(json.dumps({"mlp_intermediate_sizes": widths} if widths else {}))
    (folder / "surgery_plan.json").write_text(json.dumps({"drop_mlp_layers": drops, "drop_attention_layers": []}))
    (folder / "finetune.json").write_text(
        json.dumps(
            {
                "config": {"batch_size": 16, "hard_negatives": 1},
                "steps": 10,
                "seconds": 60.0,
                "losses": [4.0, 3.0, 2.0],
                "examples": 20,
            }
        )
    )
    (folder / "model.safetensors").write_bytes(b"weights are not kept")
    (run / "run.json").write_text(json.dumps({"durations": {"finetune": 60.0, "evaluate": 30.0}}))
    models = [(f"runs/study/{variant}/finetuned", folder, ndcg)]
    if pruned_ndcg is not None:
        (run / "pruned").mkdir()
        models.append((f"runs/study/{variant}/pruned", run / "pruned", pruned_ndcg))
    (run / "eval").mkdir()
    stamp = (folder.stat().st_mtime or 0) + 5
    (run / "eval" / "results.json").write_text(json.dumps(results(models)))
    os.utime(run / "eval" / "results.json", (stamp, stamp))
    return run


def test_archive_keeps_small_files_only_and_refuses_unfinished_runs(tmp_path):
    archive = script("study_archive").archive
    runs, kept = tmp_path / "runs", tmp_path / "kept"
    fake_run(runs, "mlp50", 0.3, [64, 0, 64, 0])
    (runs / "logs").mkdir()
    (runs / "logs" / "mlp50.err").write_text(
        "noise\n\tElapsed (wall clock) time (h:mm:ss or m:ss): 25:01.50\n\tMaximum resident set size (kbytes): 9\n"
    )
    dest = archive("mlp50", runs, kept)
    got = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert got == [
        "eval/results.json",
        "finetuned/config.json",
        "finetuned/finetune.json",
        "finetuned/surgery_plan.json",
        "run.json",
        "time.txt",
    ]
    assert (dest / "time.txt").read_text().splitlines()[0].endswith("25:01.50")

    # a run whose scores are missing, or older than its model (retrained, evaluation interrupted), is not kept
    fake_run(runs, "attn50", 0.5, None)
    (runs / "attn50" / "eval" / "results.json").unlink()
    with pytest.raises(SystemExit, match="has not finished"):
        archive("attn50", runs, kept)
    fake_run(runs, "mlp25", 0.5, None)
    later = (runs / "mlp25" / "eval" / "results.json").stat().st_mtime + 60
    os.utime(runs / "mlp25" / "finetuned", (later, later))
    with pytest.raises(SystemExit, match="older than"):
        archive("mlp25", runs, kept)
    assert sorted(p.name for p in kept.iterdir()) == ["mlp50"]  # nothing half-written beside it


def test_architecture_plan_rebuilds_the_kept_shape():
    from effir_surgery.arch import shape_from_config

    plan_for = script("study_speed").architecture_plan
    config = product_helpers().tiny_configs()["llama"]
    shape = shape_from_config(config)
    full = shape.mlp_widths[0]
    widths = [full, 0, full // 2, 0]
    plan = plan_for({"mlp_intermediate_sizes": widths, "dropped_attention_layers": [3]}, shape, "x")
    assert plan.mlp_widths == widths
    assert plan.drop_mlp_layers == [1, 3]
    assert plan.drop_attention_layers == [3]
    assert plan.kept_neurons == {"2": list(range(full // 2))}

    # carried out on a model, it gives exactly the architecture the kept config describes
    from transformers import AutoModelForCausalLM

    from effir_surgery.surgery import apply_plan

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    apply_plan(model, plan)
    assert model.config.mlp_intermediate_sizes == widths
    assert model.config.dropped_attention_layers == [3]
    # a stock config (nothing removed) rebuilds the unpruned architecture
    assert script("study_speed").architecture_plan({}, shape, "ref").mlp_widths == shape.mlp_widths


def test_report_from_kept_results(tmp_path, monkeypatch):
    archive = script("study_archive").archive
    report = script("study_report")
    runs, kept, out = tmp_path / "runs", tmp_path / "kept", tmp_path / "docs"
    out.mkdir()
    fake_run(runs, "ref", 0.60, None)
    fake_run(runs, "mlp50", 0.45, [64, 0, 64, 0])
    fake_run(runs, "attn50", 0.30, None)
    fake_run(runs, "ft-mlp50", 0.50, [64, 0, 64, 0], pruned_ndcg=0.20)
    for variant in ("ref", "mlp50", "attn50", "ft-mlp50"):
        archive(variant, runs, kept)
    speed = {"ref": 100e6, "mlp50": 80e6, "attn50": 95e6, "ft-mlp50": 80e6, "smollm2-135m": 100e6}
    (kept / "speed.json").write_text(
        json.dumps(
            {
                "created": "2026-12-02T00:00:00+00:00",
                "reference": "smollm2-135m",
                "settings": {"texts": 8, "batch_size": 4, "dtype": "float32"},
                "models": {
                    name: {
                        "params_total": p,
                        "flops_per_token": p,
                        "tokens_per_s": 1e9 / p,
                        "speedup": 1e8 / p,
                        "flop_ratio": 1e8 / p,
                        "dtype": "float32",
                        "threads": 2,
                    }
                    for name, p in speed.items()
                },
            }
        )
    )
    (out / "results.md").write_text("old page\n\n## Discussion\n\nwritten by hand\n")
    monkeypatch.setattr(sys, "argv", ["study_report.py", "--study", str(kept), "--out", str(out)])
    report.main()
    page = (out / "results.md").read_text()
    assert page.endswith("## Discussion\n\nwritten by hand\n")  # the hand-written part survives
    assert "old page" not in page
    rows: dict[str, str] = {}  # the first table's row of each model (the quality table)
    for line in page.splitlines():
        if line.startswith("| "):
            rows.setdefault(line.split(" | ")[0].lstrip("| "), line)
    # Δ vs ref and Δ per 10M parameters removed, from the kept scores and the timed parameter counts
    assert " | 0.4500 | -15.00 | " in rows["drop 15 MLP"]
    assert " | 20.0M | -7.50 | " in rows["drop 15 MLP"]
    assert " | 0.3000 | -30.00 | " in rows["drop 15 attention"]
    assert " | 5.0M | -60.00 | " in rows["drop 15 attention"]
    assert "the MLP drop costs less quality than the attention drop; per parameter removed it is cheaper" in page
    assert "The paper's finding holds at this count." in page
    # second protocol: the pruned retriever's score before retraining comes from the same run's results
    assert "| 0.2000 | 0.5000 | -10.00 | 0.4500 (drop 15 MLP) |" in page
    # variants not run yet are named, with their recipes
    assert "drop 8 attention (`studies/smollm2-effir/recipes/attn25.yaml`)" in page
    assert (out / "results.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("mlp", "attn", "verdict"),
    [
        (0.45, 0.30, "The paper's finding holds at this count."),
        (0.10, 0.61, "The paper's finding does not hold at this count."),  # what SmolLM2 gave at 15
        # by count the MLP drop is worse, but it removed 4x the parameters: per parameter it is cheaper
        (0.40, 0.50, "The paper's finding holds per parameter but not by count."),
    ],
)
def test_finding_verdict_follows_the_numbers(mlp, attn, verdict):
    """The sentence answering the issue's question follows the signs and sizes of both costs, including a drop
    that costs nothing (no ratio of costs is printed for it)."""
    findings = script("study_report")._findings

    def row(variant, ndcg, params, dropped_mlp=0, dropped_attention=0):
        entry = {"tasks": [{"scores": {"ndcg_at_10": ndcg}}], "efficiency": {"params_total": params}}
        return {
            "variant": variant,
            "label": variant,
            "entry": entry,
            "dropped_mlp": dropped_mlp,
            "dropped_attention": dropped_attention,
        }

    rows = [
        row("ref", 0.60, 100e6),
        row("mlp50", mlp, 80e6, dropped_mlp=15),
        row("attn50", attn, 95e6, dropped_attention=15),
    ]
    text = "\n".join(findings(rows, {}))
    assert verdict in text
    assert ("by a factor of" in text) == (mlp < 0.60 and attn < 0.60)


def test_seed_repeats_give_the_spread_and_decide_the_contrast_on_means():
    """Repeats of a variant with other seeds (kept as VARIANT@SEED) are shown by seed with mean and range, and the
    same-count contrast on the means is called ordered only when it exceeds the seed range of both variants."""
    report = script("study_report")

    def row(variant, ndcg, dropped_mlp=0):
        entry = {"tasks": [{"scores": {"ndcg_at_10": ndcg}}], "efficiency": None}
        training = {"config": {"seed": 42}}
        return {"variant": variant, "label": variant, "entry": entry, "dropped_mlp": dropped_mlp, "training": training}

    rows = [row("ref", 0.60), row("mlp50", 0.40, dropped_mlp=15), row("attn50", 0.50)]
    seeds = {"ref": {42: 0.60, "1": 0.62}, "mlp50": {42: 0.40, "1": 0.44}, "attn50": {42: 0.50, "1": 0.54}}
    text = "\n".join(report._spread(rows, seeds))
    # means 0.61, 0.42, 0.52; ranges 2, 4, 4 points
    assert "| mlp50 | 2 | 42: 0.4000, 1: 0.4400 | 0.4200 | 4.00 | -19.00 |" in text
    assert "MLP -19.00 points, attention -9.00: the MLP drop costs more by 10.00 points, more than" in text
    assert "Per 10M" not in text  # no parameter counts timed yet
    for r, params in zip(rows, (100e6, 80e6, 95e6), strict=True):
        r["entry"]["efficiency"] = {"params_total": params}
    text = "\n".join(report._spread(rows, seeds))
    assert "Per 10M parameters removed: MLP -9.50, attention -18.00." in text
    # the same means with a seed range wider than their difference are not ordered
    seeds["attn50"] = {42: 0.40, "1": 0.64}
    text = "\n".join(report._spread(rows, seeds))
    assert "within the widest seed range of the two (24.00): these runs do not order them." in text
    assert report._spread(rows, {}) == []  # nothing repeated: no section


def test_seeds_are_read_from_kept_repeat_folders(tmp_path):
    archive, report = script("study_archive").archive, script("study_report")
    runs, kept = tmp_path / "runs", tmp_path / "kept"
    for variant, ndcg in (("mlp50", 0.45), ("mlp50@7", 0.41), ("attn50", 0.30)):
        fake_run(runs, variant, ndcg, [64, 0, 64, 0])
        archive(variant, runs, kept)
    rows = [r for r in report._rows(kept, {}) if r["variant"] in ("mlp50", "attn50")]
    assert [r["variant"] for r in rows] == ["mlp50", "attn50"]  # a repeat is not a row of its own
    assert report._seeds(kept, rows) == {"mlp50": {"recipe": 0.45, "7": 0.41}}


@pytest.mark.slow  # three fresh measuring processes, all-MiniLM-L6-v2 among them
def test_speed_times_each_kept_architecture_once(tmp_path, monkeypatch):
    """study_speed.py end to end on a tiny source: every kept variant is rebuilt and timed in its own
    process (a seed repeat is not: it has its variant's architecture), with the source and all-MiniLM-L6-v2, and
    the parameter count of a rebuilt variant is the one its kept widths describe."""
    from effir_surgery.arch import shape_from_config

    helpers = product_helpers()
    build_tiny, make_beir = helpers.build_tiny, helpers.make_beir
    save_tiny_source, tiny_tokenizer = helpers.save_tiny_source, helpers.tiny_tokenizer

    speed = script("study_speed")
    model = build_tiny("llama")
    source = save_tiny_source(model, tiny_tokenizer(), tmp_path / "source")
    data = make_beir(tmp_path / "beir")
    study = tmp_path / "study"
    full = shape_from_config(model.config).mlp_widths[0]
    widths = [full, 0, full // 2, 0]
    for variant in ("mlp50", "mlp50@7"):
        (study / variant / "finetuned").mkdir(parents=True)
        (study / variant / "finetuned" / "config.json").write_text(json.dumps({"mlp_intermediate_sizes": widths}))
    monkeypatch.setattr(speed, "SOURCE", str(source))
    monkeypatch.setattr(
        speed, "SETTINGS", {"texts": 8, "batch_size": 4, "dtype": "float32", "max_length": 16, "seed": 0}
    )
    argv = ["study_speed.py", "--study", str(study), "--data", str(data), "--work", str(tmp_path / "work")]
    monkeypatch.setattr(sys, "argv", argv)
    speed.main()

    result = json.loads((study / "speed.json").read_text())
    assert list(result["models"]) == [str(source), "mlp50", "all-MiniLM-L6-v2"]
    entries = result["models"]
    assert entries[str(source)]["speedup"] == 1.0
    # the encoder's parameters (no LM head) of the tiny model with those widths: two MLPs gone, one halved
    per_neuron = sum(p[0].numel() for n, p in model.model.layers[0].mlp.named_parameters() if "down" not in n)
    per_neuron += model.model.layers[0].mlp.down_proj.weight.shape[0]
    mlp_norm = model.model.layers[0].post_attention_layernorm.weight.numel()
    unpruned = sum(p.numel() for p in model.model.parameters())
    expected = unpruned - 2 * (full * per_neuron + mlp_norm) - (full - full // 2) * per_neuron
    assert entries["mlp50"]["params_total"] == expected
    assert entries["mlp50"]["params_total"] < entries[str(source)]["params_total"]
    assert all(e["tokens_per_s"] > 0 for e in entries.values())
    assert (study / "speed.md").read_text().count("\n| ") == 1 + 3  # header row and one row per model

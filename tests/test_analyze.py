"""Importance analysis: read-only, scores match an independent reference, the probe and the outputs work."""

import pytest
import torch

from effir_surgery.analyze import ImportanceReport, analyze_importance
from effir_surgery.arch import resolve_spec, shape_from_config
from effir_surgery.calib import CalibrationSet, load_calibration
from effir_surgery.encode import prepare_tokenizer
from effir_surgery.ops import drop_mlp

TEXTS = CalibrationSet(
    ["the cells of the brain energy", "what is the risk of cancer", "court law city river", "a b c d e f g h"],
    "test texts",
)


def _analyze(model, tokenizer, **kwargs):
    spec = resolve_spec(model.config)
    return analyze_importance(
        model,
        tokenizer,
        spec,
        shape_from_config(model.config),
        TEXTS,
        model_name="tiny",
        max_length=32,
        batch_size=kwargs.pop("batch_size", 2),
        **kwargs,
    )


def test_read_only(tiny_model, tokenizer):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    _analyze(tiny_model, tokenizer)
    after = tiny_model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not tiny_model._forward_hooks and all(not m._forward_pre_hooks for m in tiny_model.modules())


def test_scores_match_an_independent_reference(tiny_model, tokenizer):
    """Reference: the residual stream before layer i and after it come from output_hidden_states; the stream
    between attention and MLP is layer i's output when its MLP output is zeroed by a hook."""
    report = _analyze(tiny_model, tokenizer, batch_size=4)
    spec = resolve_spec(tiny_model.config)
    layers = getattr(tiny_model.base_model, spec.layers)
    batch = prepare_tokenizer(tokenizer)(
        TEXTS.texts, padding=True, truncation=True, max_length=32, return_tensors="pt"
    )
    mask = batch["attention_mask"].bool()
    with torch.inference_mode():
        hs = tiny_model.base_model(**batch, output_hidden_states=True).hidden_states
    for i in range(len(layers) - 1):  # the last entry of hidden_states has the final norm applied
        handle = getattr(layers[i], spec.mlp).register_forward_hook(lambda m, a, out: torch.zeros_like(out))
        with torch.inference_mode():
            mid = tiny_model.base_model(**batch, output_hidden_states=True).hidden_states[i + 1]
        handle.remove()

        def score(a, b):
            return float((1 - torch.nn.functional.cosine_similarity(a, b, dim=-1))[mask].mean())

        assert report.attention[i] == pytest.approx(score(hs[i], mid), abs=1e-5)
        assert report.mlp[i] == pytest.approx(score(mid, hs[i + 1]), abs=1e-5)


def test_batching_does_not_change_scores(tiny_model, tokenizer):
    one, four = _analyze(tiny_model, tokenizer, batch_size=1), _analyze(tiny_model, tokenizer, batch_size=4)
    assert one.tokens == four.tokens
    assert one.mlp == pytest.approx(four.mlp, abs=1e-5) and one.attention == pytest.approx(four.attention, abs=1e-5)
    for key in one.neurons:
        assert one.neurons[key] == pytest.approx(four.neurons[key], rel=1e-4, abs=1e-6)


def test_removed_mlp_scores_zero_and_has_no_neuron_scores(tiny_model, tokenizer):
    spec = resolve_spec(tiny_model.config)
    drop_mlp(getattr(tiny_model.base_model, spec.layers)[1], spec)
    report = _analyze(tiny_model, tokenizer)
    assert report.mlp[1] == pytest.approx(0.0, abs=1e-6)
    assert "1" not in report.neurons and len(report.neurons["0"]) == 64


def test_a_silenced_neuron_scores_zero(tiny_model, tokenizer):
    spec = resolve_spec(tiny_model.config)
    mlp = getattr(getattr(tiny_model.base_model, spec.layers)[2], spec.mlp)
    with torch.no_grad():
        getattr(mlp, spec.down).weight[:, 5] = 0  # neuron 5 no longer reaches the output
    scores = _analyze(tiny_model, tokenizer).neuron_scores(2)
    assert scores[5] == 0.0 and min(scores[:5] + scores[6:]) > 0


def test_report_round_trip(tiny_model, tokenizer, tmp_path):
    report = _analyze(tiny_model, tokenizer)
    report.save(tmp_path / "r.json")
    assert ImportanceReport.load(tmp_path / "r.json") == report


def test_calibration_sources(tmp_path):
    from conftest import make_beir

    bundled = load_calibration(None, 10)
    assert len(bundled.texts) == 10 and sum(t.startswith("Instruct:") for t in bundled.texts) == 5
    beir = load_calibration(str(make_beir(tmp_path / "b")), 6)
    assert len(beir.texts) == 6 and "BEIR" in beir.description
    rows = tmp_path / "pairs.jsonl"
    rows.write_text('{"query": "q one", "positive": "p one", "negatives": ["n one"]}\n')
    from effir_surgery.config import DEFAULT_QUERY_PROMPT

    assert sorted(load_calibration(str(rows), 10).texts) == sorted([DEFAULT_QUERY_PROMPT + "q one", "p one", "n one"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{oops\n')
    from effir_surgery.errors import EffirError

    with pytest.raises(EffirError, match="bad.jsonl:2: not valid JSON"):
        load_calibration(str(bad), 4)


def test_probe(tiny_model, tokenizer, tmp_path):
    from conftest import make_beir

    from effir_surgery.probe import probe_sublayers

    spec = resolve_spec(tiny_model.config)
    drop_mlp(getattr(tiny_model.base_model, spec.layers)[3], spec)
    folder = make_beir(tmp_path / "beir", n_docs=12, n_queries=6)
    probe = probe_sublayers(
        tiny_model, tokenizer, spec, str(folder), "train", n_queries=6, n_docs=12, max_length=32, batch_size=4
    )
    assert 0 < probe.baseline <= 1
    assert len(probe.attention) == len(probe.mlp) == 4 and probe.mlp[3] is None
    assert all(0 <= v <= 1 for v in probe.attention + probe.mlp[:3])
    assert "without retraining" in probe.description and "fine-tun" not in probe.description  # nothing known


def test_probe_description_states_the_models_training(tmp_path):
    """The probe's description says a folder saved by ``finetune`` is fine-tuned (its finetune.json), and says
    nothing about fine-tuning for any other model (it used to claim "no fine-tuning" for every model)."""
    import json

    from conftest import build_tiny, make_beir, save_tiny_source, tiny_tokenizer

    from effir_surgery.config import AnalyzeConfig
    from effir_surgery.pipeline import analyze

    beir = make_beir(tmp_path / "beir", n_docs=12, n_queries=4)
    tuned = save_tiny_source(build_tiny("llama"), tiny_tokenizer(), tmp_path / "tuned")
    (tuned / "finetune.json").write_text(json.dumps({"steps": 12, "data": "pairs.jsonl: 40 rows"}))
    plain = save_tiny_source(build_tiny("llama"), tiny_tokenizer(), tmp_path / "plain")
    descriptions = {}
    for folder in (tuned, plain):
        config = AnalyzeConfig(
            model=str(folder),
            calib_samples=4,
            calib_max_length=16,
            probe=str(beir),
            probe_queries=2,
            probe_docs=6,
            output=tmp_path / f"out-{folder.name}",
            device="cpu",
        )
        descriptions[folder.name] = analyze(config).probe.description
        assert descriptions[folder.name] in (config.output / "importance.md").read_text()
    assert descriptions["tuned"].endswith("fine-tuned (12 steps on pairs.jsonl: 40 rows)")
    assert "fine-tun" not in descriptions["plain"]


def test_a_saved_retrievers_own_prompt_formats_calibration_and_probe(tmp_path, monkeypatch):
    """A fine-tuned folder carries its query prompt in its sentence-transformers files; analyze (calibration and
    probe) must format queries with it, not with the toolkit's default instruction."""
    from conftest import build_tiny, make_beir, save_tiny_source, tiny_tokenizer

    from effir_surgery import pipeline, probe
    from effir_surgery.config import DEFAULT_QUERY_PROMPT, AnalyzeConfig, EncoderSettings
    from effir_surgery.encode import write_st_files

    model = build_tiny("llama")
    folder = save_tiny_source(model, tiny_tokenizer(), tmp_path / "retriever")
    write_st_files(folder, EncoderSettings(query_prompt="search: "), model.config.hidden_size)
    plain = save_tiny_source(build_tiny("llama"), tiny_tokenizer(), tmp_path / "plain")
    beir = make_beir(tmp_path / "beir", n_docs=12, n_queries=4)
    seen = {}
    real_calibration, real_probe = pipeline.load_calibration, probe.probe_sublayers

    def calibration(*args, **kwargs):
        seen["calibration"] = kwargs["query_prompt"]
        return real_calibration(*args, **kwargs)

    def probing(*args, **kwargs):
        seen["probe"] = kwargs["encoder_config"].query_prompt
        return real_probe(*args, **kwargs)

    monkeypatch.setattr(pipeline, "load_calibration", calibration)
    monkeypatch.setattr(probe, "probe_sublayers", probing)
    for source, expected in ((folder, "search: "), (plain, DEFAULT_QUERY_PROMPT)):
        config = AnalyzeConfig(
            model=str(source),
            calib=str(beir),
            calib_samples=8,
            probe=str(beir),
            probe_split="test",
            probe_queries=2,
            probe_docs=6,
            output=tmp_path / f"out-{source.name}",
            device="cpu",
        )
        pipeline.analyze(config)
        assert seen == {"calibration": expected, "probe": expected}


def test_plot_title_names_the_calibration_set(tiny_model, tokenizer, tmp_path, monkeypatch):
    """The plot's title says which texts the scores come from, wrapped to the figure's width."""
    from matplotlib.figure import Figure

    from effir_surgery.report import plot_importance

    titles = []
    real_savefig = Figure.savefig

    def savefig(self, *args, **kwargs):
        titles.extend(ax.get_title() for ax in self.axes)
        return real_savefig(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    calibration = "BEIR folder ../shared/data/scifact-with-a-rather-long-name: 64 queries + 64 documents"
    report = _analyze(tiny_model, tokenizer).model_copy(update={"calibration": calibration})
    plot_importance(report, tmp_path / "importance.png")
    assert (tmp_path / "importance.png").stat().st_size > 0
    title = titles[0]
    assert calibration in " ".join(title.split()) and f"{report.tokens:,} tokens" in title
    assert max(len(line) for line in title.splitlines()) <= 8 * 11  # the 8-inch figure's width at 11 pt

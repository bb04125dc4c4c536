"""Scale: streaming surgery writes the folder in-memory surgery writes, byte for byte, from a sharded checkpoint;
layer-wise calibration gives the in-memory importance scores; ``prune --streaming`` works end to end; a plan for
another model is refused before anything is written."""

import json
import random
import struct

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from effir_surgery.analyze import analyze_importance, analyze_importance_layerwise
from effir_surgery.arch import shape_from_config
from effir_surgery.calib import load_calibration
from effir_surgery.cli import main
from effir_surgery.config import PlanSettings, PruneConfig
from effir_surgery.errors import EffirError
from effir_surgery.layerwise import load_layerwise
from effir_surgery.load import load_model, resolve_source
from effir_surgery.plan import make_plan
from effir_surgery.save import save_model
from effir_surgery.streaming import StreamingSurgery, _Entry, apply_plan_streaming, write_safetensors
from effir_surgery.surgery import apply_plan

SHARD = "30KB"  # the tiny models are about 130-200 KB in float32, so every folder here has several shards


def _source(family, folder, seed=0):
    from conftest import build_tiny, tiny_tokenizer

    model = build_tiny(family, seed)
    model.save_pretrained(folder, max_shard_size="20KB")
    tiny_tokenizer().save_pretrained(folder)
    assert len(list(folder.glob("model-*.safetensors"))) > 3
    return folder


def _plan(shape):
    """Drop MLP 1 and attention 2, narrow layers 0 and 3 to scattered neurons (every kind of cut in one plan)."""
    plan = make_plan(shape, PlanSettings(drop_mlp_layers=[1], drop_attention_layers=[2]), model_name="tiny")
    return plan.model_copy(
        update={
            "mlp_widths": [40, 0, 64, 24],
            "kept_neurons": {"0": sorted(random.Random(0).sample(range(64), 40)), "3": list(range(1, 64, 2))[:24]},
        }
    )


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _tensors(folder):
    tensors = {}
    for file in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(file))
    return tensors


def _assert_same_folder(a, b):
    assert _files(a) == _files(b)
    for name in _files(a):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def _in_memory(src, plan, out, provenance, **kwargs):
    loaded = load_model(resolve_source(str(src)), "float32", "cpu")
    record = apply_plan(loaded.model, plan)
    save_model(loaded.model, loaded.tokenizer, out, plan=plan, provenance=provenance, **kwargs)
    return record


@pytest.fixture
def chdir_to(monkeypatch):
    # Outputs are written under the same relative name from two directories: the model card names the folder.
    def go(path):
        path.mkdir(parents=True, exist_ok=True)
        monkeypatch.chdir(path)
        return path

    return go


def test_streaming_equals_in_memory(family, tmp_path, chdir_to):
    src = _source(family, tmp_path / "src")
    plan = _plan(shape_from_config(load_model(resolve_source(str(src)), "float32", "cpu").model.config))
    provenance = {"source_model": "tiny"}

    chdir_to(tmp_path / "a")
    record = _in_memory(src, plan, "pruned", provenance, verify=False, max_shard_size=SHARD)
    chdir_to(tmp_path / "b")
    streamed = apply_plan_streaming(src, plan, "pruned", provenance=provenance, verify=False, max_shard_size=SHARD)
    a, b = tmp_path / "a" / "pruned", tmp_path / "b" / "pruned"

    assert streamed.record == record and streamed.shards > 1
    assert (b / "model.safetensors.index.json").is_file()
    expected, actual = _tensors(a), _tensors(b)
    assert sorted(actual) == sorted(expected)
    assert all(actual[name].dtype == t.dtype and torch.equal(actual[name], t) for name, t in expected.items())
    assert json.loads((b / "config.json").read_text()) == json.loads((a / "config.json").read_text())
    _assert_same_folder(a, b)  # everything else too: index, tokenizer, ST files, plan, provenance, card

    names = set(actual)
    assert "model.layers.1.mlp.gate_proj.weight" not in names and "model.layers.2.self_attn.q_proj.weight" not in names
    assert ("lm_head.weight" in names) == (not actual_config_tied(b))
    source = _tensors(src)
    keep = torch.tensor(plan.kept_neurons["3"])
    assert torch.equal(
        actual["model.layers.3.mlp.down_proj.weight"], source["model.layers.3.mlp.down_proj.weight"][:, keep]
    )
    assert torch.equal(actual["model.layers.3.mlp.up_proj.weight"], source["model.layers.3.mlp.up_proj.weight"][keep])


def actual_config_tied(folder):
    return json.loads((folder / "config.json").read_text()).get("tie_word_embeddings", False)


@pytest.mark.subprocess
@pytest.mark.parametrize("family", ["llama_bias", "gemma3_text"])
def test_streaming_reload_check_and_unsharded_output(family, tmp_path, chdir_to):
    """Biases (sliced rows, down bias whole) and Gemma 3's extra norms, checked in a clean process against the
    source run layer by layer through the surgery operators; with the default shard size the output is one file."""
    src = _source(family, tmp_path / "src")
    plan = _plan(shape_from_config(load_model(resolve_source(str(src)), "float32", "cpu").model.config))
    chdir_to(tmp_path / "a")
    _in_memory(src, plan, "pruned", {}, verify=False)
    chdir_to(tmp_path / "b")
    streamed = apply_plan_streaming(src, plan, "pruned", provenance={})
    assert streamed.reload and streamed.reload["toolkit_importable"] is False and streamed.reload_skipped is None
    assert streamed.shards == 1
    _assert_same_folder(tmp_path / "a" / "pruned", tmp_path / "b" / "pruned")


def test_shards_out_of_layer_order(tmp_path, chdir_to):
    """A checkpoint whose shards hold layers in shuffled order, mixed with the embeddings."""
    ordered = _source("mistral", tmp_path / "ordered")
    state = _tensors(ordered)
    names = sorted(state)
    random.Random(1).shuffle(names)
    src = tmp_path / "src"
    src.mkdir()
    for file in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        (src / file).write_bytes((ordered / file).read_bytes())
    groups = [names[i::3] for i in range(3)]
    weight_map = {}
    for k, group in enumerate(groups):
        filename = f"model-{k + 1:05d}-of-00003.safetensors"
        save_file({n: state[n] for n in group}, src / filename, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(group, filename))
    (src / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))

    plan = _plan(shape_from_config(load_model(resolve_source(str(src)), "float32", "cpu").model.config))
    chdir_to(tmp_path / "a")
    _in_memory(src, plan, "pruned", {}, verify=False, max_shard_size=SHARD)
    chdir_to(tmp_path / "b")
    apply_plan_streaming(src, plan, "pruned", provenance={}, verify=False, max_shard_size=SHARD)
    _assert_same_folder(tmp_path / "a" / "pruned", tmp_path / "b" / "pruned")


def test_write_safetensors_matches_save_file(tmp_path):
    tensors = {
        "b.weight": torch.randn(3, 5),
        "a.weight": torch.randn(4).to(torch.bfloat16),
        "c.half": torch.randn(2, 2).to(torch.float16),
        "a.scalar": torch.tensor(1.5),
        "z.empty": torch.zeros(0, 3),
    }
    save_file(tensors, tmp_path / "reference.safetensors", metadata={"format": "pt"})
    by_dtype: dict = {}
    for name, tensor in tensors.items():
        by_dtype.setdefault(tensor.dtype, []).append(_Entry(name, tuple(tensor.shape)))
    # one dtype per call (as streaming writes), then mixed: the header's dtype-then-name order must match
    for dtype, entries in by_dtype.items():
        subset = {e.name: tensors[e.name] for e in entries}
        save_file(subset, tmp_path / "ref.safetensors", metadata={"format": "pt"})
        write_safetensors(tmp_path / "ours.safetensors", entries, dtype, lambda e: tensors[e.name], {"format": "pt"})
        assert (tmp_path / "ours.safetensors").read_bytes() == (tmp_path / "ref.safetensors").read_bytes()
    data = (tmp_path / "reference.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    assert [header[k]["dtype"] for k in header if k != "__metadata__"] == ["F32", "F32", "F32", "BF16", "F16"]


def test_plan_for_another_model_is_refused_before_writing(tmp_path):
    src = _source("qwen3", tmp_path / "src")
    other = _source("qwen2", tmp_path / "other")  # same layer count and widths, other head_dim
    plan = _plan(shape_from_config(load_model(resolve_source(str(other)), "float32", "cpu").model.config))
    out = tmp_path / "out"
    with pytest.raises(EffirError, match="re-plan on this model"):
        apply_plan_streaming(src, plan, out, provenance={})
    own = _plan(shape_from_config(resolve_config(src)))
    narrower = own.model_copy(update={"shape": own.shape.model_copy(update={"num_layers": 5})})
    with pytest.raises(EffirError, match="num_layers is 5 in the plan, 4 in this checkpoint"):
        StreamingSurgery(src, narrower)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["other", "src"]


def test_missing_tensor_is_refused_before_writing(tmp_path):
    src = _source("mistral", tmp_path / "src")
    index = json.loads((src / "model.safetensors.index.json").read_text())
    victim = "model.layers.2.self_attn.k_proj.weight"
    shard = src / index["weight_map"][victim]
    tensors = load_file(shard)
    del tensors[victim]
    save_file(tensors, shard, metadata={"format": "pt"})
    del index["weight_map"][victim]
    (src / "model.safetensors.index.json").write_text(json.dumps(index))
    plan = make_plan(shape_from_config(resolve_config(src)), PlanSettings(drop_mlp_layers=[1]), model_name="tiny")
    with pytest.raises(EffirError, match="do not match its config.json: 'model.layers.2.self_attn.k_proj.weight'"):
        apply_plan_streaming(src, plan, tmp_path / "out", provenance={})
    assert not (tmp_path / "out").exists()


def resolve_config(folder):
    from effir_surgery.load import load_config

    return load_config(resolve_source(str(folder)))


def test_layerwise_analysis_matches_in_memory(family, tmp_path):
    src = resolve_source(str(_source(family, tmp_path / "src")))
    calibration = load_calibration(None, 20)
    loaded = load_model(src, "float32", "cpu")
    options = {"model_name": "tiny", "max_length": 32, "batch_size": 6, "neurons": True}
    full = analyze_importance(loaded.model, loaded.tokenizer, loaded.spec, loaded.shape, calibration, **options)
    layerwise = analyze_importance_layerwise(load_layerwise(src, "float32", "cpu"), calibration, **options)
    assert layerwise.tokens == full.tokens and layerwise.shape == full.shape
    torch.testing.assert_close(torch.tensor(layerwise.attention), torch.tensor(full.attention), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(layerwise.mlp), torch.tensor(full.mlp), atol=1e-5, rtol=0)
    assert layerwise.neurons.keys() == full.neurons.keys()
    for layer, scores in full.neurons.items():
        torch.testing.assert_close(torch.tensor(layerwise.neurons[layer]), torch.tensor(scores), atol=1e-5, rtol=0)


def test_layerwise_outputs_match_the_full_model(tmp_path, input_batch):
    src = resolve_source(str(_source("gemma3_text", tmp_path / "src")))
    full = load_model(src, "float32", "cpu").model
    layerwise = load_layerwise(src, "float32", "cpu")
    (hidden,) = layerwise.run([input_batch])
    outputs = layerwise.outputs(input_batch, hidden)
    with torch.inference_mode():
        logits = full(**input_batch, use_cache=False).logits
        last = full.base_model(**input_batch, use_cache=False).last_hidden_state
    assert torch.equal(outputs["logits"], logits) and torch.equal(outputs["hidden"], last)
    assert all(p.device.type == "meta" for p in layerwise.layers.parameters())  # every layer released again


@pytest.mark.subprocess
def test_prune_streaming_cli_reloads(tmp_path):
    from effir_surgery.save import load_saved

    src = _source("llama", tmp_path / "src")
    out = tmp_path / "out"
    args = ["prune", str(src), "--mlp-drop", "0.5", "--mlp-width", "0.75", "--streaming", "-o", str(out)]
    result = CliRunner().invoke(main, [*args, "--calib-samples", "8", "--calib-max-length", "32"])
    assert result.exit_code == 0, result.output
    assert "clean-process reload: OK" in result.output
    assert "peak memory (streaming, layer-wise analysis):" in result.output
    model, tokenizer = load_saved(out)
    assert sum(w == 0 for w in model.config.mlp_intermediate_sizes) == 2
    assert json.loads((out / "provenance.json").read_text())["config"]["streaming"] is True


def test_prune_streaming_and_in_memory_write_the_same_folder(tmp_path, chdir_to):
    from effir_surgery.pipeline import prune

    src = _source("qwen2", tmp_path / "src")
    options = {"mlp_drop": 0.5, "mlp_width": 0.75, "calib_samples": 8, "calib_max_length": 32, "output": "pruned"}
    results = {}
    for mode in (False, True):
        chdir_to(tmp_path / str(mode))
        results[mode] = prune(PruneConfig(model=str(src), streaming=mode, verify_reload=False, **options))
    assert results[True].streaming and not results[False].streaming
    assert results[True].peak_memory["process"] > 0
    a, b = tmp_path / "False" / "pruned", tmp_path / "True" / "pruned"
    assert results[True].record == results[False].record
    provenance = [json.loads((folder / "provenance.json").read_text()) for folder in (a, b)]
    for record in provenance:
        record["config"].pop("streaming")
    assert provenance[0] == provenance[1]
    reports = [json.loads((folder / "importance.json").read_text()) for folder in (a, b)]
    for report in reports:
        assert report.pop("seconds") >= 0  # the only field that may differ: how long the analysis took
    assert reports[0] == reports[1]
    assert _files(a) == _files(b)
    for name in _files(a):
        if name not in ("provenance.json", "README.md", "importance.json"):
            assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.subprocess
def test_streaming_is_chosen_automatically_and_reload_skipped_when_memory_is_short(tmp_path, monkeypatch, capsys):
    import effir_surgery.pipeline as pipeline
    import effir_surgery.streaming as streaming

    src = _source("llama", tmp_path / "src")
    monkeypatch.setattr(pipeline, "available_memory", lambda: 100_000)
    monkeypatch.setattr(streaming, "available_memory", lambda: 100_000)
    result = pipeline.prune(PruneConfig(model=str(src), drop_mlp_layers=[1], output=tmp_path / "out"))
    assert result.streaming and result.reload is None
    assert "more than 50% of the 100.0 kB of RAM available" in result.reload_skipped
    assert "analysing layer by layer and streaming the surgery" in capsys.readouterr().err
    monkeypatch.setattr(pipeline, "available_memory", lambda: 10**12)
    result = pipeline.prune(PruneConfig(model=str(src), drop_mlp_layers=[1], output=tmp_path / "out2"))
    assert not result.streaming


def _scores(folder):
    report = json.loads((folder / "importance.json").read_text())
    return report["attention"], report["mlp"], report["neurons"]


def test_analyze_streaming_cli_matches_in_memory(tmp_path, monkeypatch):
    """``analyze --streaming`` never loads the whole model and writes the scores ``analyze --no-streaming`` does."""
    import effir_surgery.pipeline as pipeline

    src = _source("llama", tmp_path / "src")
    args = ["analyze", str(src), "--calib-samples", "8", "--calib-max-length", "32", "--device", "cpu"]
    whole = CliRunner().invoke(main, [*args, "--no-streaming", "-o", str(tmp_path / "whole")])
    assert whole.exit_code == 0, whole.output

    def no_whole_model(*args, **kwargs):
        raise AssertionError("analyze --streaming loaded the whole model")

    monkeypatch.setattr(pipeline, "load_model", no_whole_model)
    layerwise = CliRunner().invoke(main, [*args, "--streaming", "-o", str(tmp_path / "layerwise")])
    assert layerwise.exit_code == 0, layerwise.output
    (att_a, mlp_a, neurons_a), (att_b, mlp_b, neurons_b) = _scores(tmp_path / "whole"), _scores(tmp_path / "layerwise")
    torch.testing.assert_close(torch.tensor(att_b), torch.tensor(att_a), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(mlp_b), torch.tensor(mlp_a), atol=1e-5, rtol=0)
    assert neurons_a.keys() == neurons_b.keys() and len(neurons_a) == 4
    for layer, scores in neurons_a.items():
        torch.testing.assert_close(torch.tensor(neurons_b[layer]), torch.tensor(scores), atol=1e-5, rtol=0)
    assert (tmp_path / "layerwise" / "importance.png").is_file()


def test_analyze_streaming_is_automatic_and_refuses_the_probe(tmp_path, monkeypatch, capsys):
    """The probe needs the whole model: refused with --streaming, and when streaming is chosen automatically
    (memory short), before anything is loaded; without --probe the automatic choice analyses layer by layer."""
    from conftest import make_beir

    import effir_surgery.pipeline as pipeline
    from effir_surgery.config import AnalyzeConfig

    src = _source("llama", tmp_path / "src")
    beir = make_beir(tmp_path / "beir", n_docs=12, n_queries=4)

    def no_loading(*args, **kwargs):
        raise AssertionError("loaded a model before refusing")

    monkeypatch.setattr(pipeline, "load_model", no_loading)
    monkeypatch.setattr(pipeline, "load_layerwise", no_loading)
    out = tmp_path / "out"
    args = ["analyze", str(src), "--probe", str(beir), "--streaming", "-o", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "--probe needs the whole model in memory" in result.output
    assert "--no-streaming" in result.output and not out.exists()

    monkeypatch.setattr(pipeline, "available_memory", lambda: 100_000)
    options = {"model": str(src), "calib_samples": 8, "calib_max_length": 32, "device": "cpu", "output": out}
    with pytest.raises(EffirError, match="analyze would run layer by layer, but --probe needs the whole model"):
        pipeline.analyze(AnalyzeConfig(probe=str(beir), **options))
    assert not out.exists()

    monkeypatch.undo()
    monkeypatch.setattr(pipeline, "available_memory", lambda: 100_000)
    monkeypatch.setattr(pipeline, "load_model", no_loading)
    capsys.readouterr()
    report = pipeline.analyze(AnalyzeConfig(**options))
    assert "analysing layer by layer." in " ".join(capsys.readouterr().err.split())
    assert len(report.mlp) == 4 and (out / "importance.json").is_file()


def test_benchmark_table_reports_one_size_measure(tmp_path):
    """benchmarks/streaming_7b.py: every row of its table is safetensors file bytes (headers included), which is
    more than the tensor data ``StreamingSurgery`` reports; the tensor bytes stay in the JSON, labelled as such."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "streaming_7b.py"
    spec = importlib.util.spec_from_file_location("streaming_7b", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    src = _source("llama", tmp_path / "src")
    plan = _plan(shape_from_config(resolve_config(src)))
    streamed = apply_plan_streaming(src, plan, tmp_path / "out", provenance={}, verify=False, max_shard_size=SHARD)
    on_disk = bench.file_bytes(tmp_path / "out")
    assert on_disk == sum(p.stat().st_size for p in (tmp_path / "out").glob("*.safetensors")) > streamed.output_bytes

    gb = 10**9
    result = {
        "checkpoint": {
            "params": 7,
            "tensors": 3,
            "shards": {"a": 3 * gb, "b": gb},
            "seconds": 9.0,
            "file_bytes": 4 * gb,
        },
        "prune": {"wall_s": 5.0, "peak_rss_bytes": 2**30, "output_file_bytes": 2 * gb, "summary": []},
        "surgery": {
            "wall_s": 2.0,
            "peak_rss_bytes": 2**30,
            "output_file_bytes": 2 * gb,
            "output_tensor_bytes": 1.5 * gb,
            "source_tensor_bytes": 3.5 * gb,
            "shards": 1,
            "identical_to_prune_output": True,
        },
        "machine": {"cpus": 2, "ram_bytes": 2**34, "load_average": [1.0, 1.0, 1.0]},
        "load_average_at_end": [1.0, 1.0, 1.0],
        "other_jobs_at_start": [],
        "other_jobs_at_end": [],
    }
    table = bench.markdown(result).splitlines()
    assert table[0] == "| step | wall time | peak RSS | safetensors files written (bytes on disk, headers included) |"
    assert table[2].endswith("| 4.00 GB |") and table[3].endswith("| 2.00 GB |")
    assert table[4].endswith("| 2.00 GB (1 shards) |")  # the surgery row: file bytes too, not the 1.50 GB of tensors
    assert "Tensor data alone (headers excluded): 3.50 GB read, 1.50 GB written." in table[6]

"""Bad input of every kind ends the same way: exit code 2, one line that says what to change, no traceback, and
nothing left on disk (no output, no ``.NAME.work`` folder, no ``.NAME.lock``, no temporary sibling, no run folder).

Each refusal must come before heavy work: where it matters, loading weights is made to fail loudly, so a test
passes only if the refusal comes first.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from effir_surgery.cli import main

# Writes to a folder below /proc fail with a real OSError even for root (chmod-based read-only folders do not).
UNWRITABLE = Path("/proc/effir-nope/out")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A tiny Llama source folder and damaged copies of it, by name: ``src`` (intact), ``not-json``, ``json-list``
    and ``no-model-type`` (config.json), ``narrower-config`` (intermediate_size 48 over weights of width 64) and
    ``no-tokenizer``; ``beir`` is a small BEIR folder."""
    import shutil

    from conftest import build_tiny, make_beir, save_tiny_source, tiny_tokenizer

    root = tmp_path_factory.mktemp("bad-inputs")
    src = save_tiny_source(build_tiny("llama"), tiny_tokenizer(), root / "src")
    config = json.loads((src / "config.json").read_text())

    def damaged(name: str, config_text: str | None = None, drop_tokenizer: bool = False) -> Path:
        folder = root / name
        shutil.copytree(src, folder)
        if config_text is not None:
            (folder / "config.json").write_text(config_text)
        if drop_tokenizer:
            for path in folder.iterdir():
                if path.name.startswith(("tokenizer", "special_tokens")):
                    path.unlink()
        return folder

    return {
        "src": src,
        "not-json": damaged("not-json", "{not json"),
        "json-list": damaged("json-list", json.dumps([config])),
        "no-model-type": damaged("no-model-type", json.dumps({k: v for k, v in config.items() if k != "model_type"})),
        "narrower-config": damaged("narrower-config", json.dumps({**config, "intermediate_size": 48})),
        "no-tokenizer": damaged("no-tokenizer", drop_tokenizer=True),
        "beir": make_beir(root / "beir"),
    }


@pytest.fixture
def weights_never_load(monkeypatch):
    """Make loading any model or tokenizer through transformers fail loudly: the refusal must come first."""
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("a model or tokenizer was loaded before the bad input was refused")

    for cls in (transformers.AutoModelForCausalLM, transformers.AutoModel, transformers.AutoTokenizer):
        monkeypatch.setattr(cls, "from_pretrained", refuse)


@pytest.fixture
def no_library_progress_bars(monkeypatch):
    """Silence transformers' own progress bars (loading and writing weights): a save that fails midway has printed
    them, and they are not part of the error report this file checks."""
    import transformers

    monkeypatch.setattr(transformers.utils.logging, "_tqdm_active", False)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def leftovers(out: Path) -> list[Path]:
    """What a refused command must not leave beside output ``out``: the output itself, its work folder and lock,
    and temporary siblings of an atomic save."""
    beside = [out, out.parent / f".{out.name}.work", out.parent / f".{out.name}.lock"]
    siblings = [*out.parent.glob(f".{out.name}.tmp-*"), *out.parent.glob(f".{out.name}.old-*")]
    return [p for p in beside if p.exists()] + sorted(siblings)


def assert_refused(result, phrase: str, out: Path | None = None, status: tuple[str, ...] = ()) -> str:
    """Exit code 2, exactly one non-empty line (``Error: ...`` with ``phrase``), no traceback, and nothing left
    beside ``out``. Returns the line. ``status``: beginnings of status lines that work begun before the failure
    prints, allowed before the error line (a failure during a save, not a refusal of bad input)."""
    assert result.exit_code == 2, f"exit code {result.exit_code}: {result.output}"
    lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith(status)]
    assert len(lines) == 1, f"expected one line: {result.output!r}"
    assert result.output.rstrip().endswith(lines[0]), "the error is the last line"
    assert lines[0].startswith("Error: ") and "Traceback" not in result.output, result.output
    assert phrase in lines[0], lines[0]
    if out is not None:
        assert leftovers(out) == [], f"left behind: {leftovers(out)}"
    return lines[0]


def command(name: str, model: Path, out: Path, beir: Path) -> list:
    """Arguments of a cheap, otherwise valid run of ``name`` on ``model`` writing to ``out``."""
    return {
        "prune": ["prune", model, "--drop-mlp-layers", "1", "-o", out],
        "analyze": ["analyze", model, "--calib-samples", "4", "-o", out],
        "finetune": ["finetune", model, "--train", beir, "-o", out, "--max-steps", "1", "--device", "cpu"],
        "evaluate": ["evaluate", model, "--task", "SciFact", "--data-dir", beir, "-o", out, "--no-measure"],
    }[name]


# 1. An output below a folder that cannot be written
@pytest.mark.parametrize(
    "name, phrase",
    [
        ("prune", "Cannot create the folder of output"),
        ("analyze", "Cannot create the folder of output"),
        ("finetune", "Cannot create the folder of output"),
        ("evaluate", "Cannot create the folder of output"),
    ],
)
def test_unwritable_output(models, tmp_path, monkeypatch, name, phrase):
    monkeypatch.chdir(tmp_path)
    line = assert_refused(run(*command(name, models["src"], UNWRITABLE, models["beir"])), phrase)
    assert "No such file or directory" in line
    assert not UNWRITABLE.parent.exists() and list(tmp_path.iterdir()) == []


# 2. config.json that is not JSON, a JSON list, or has no model_type
@pytest.mark.parametrize(
    "damage, phrase",
    [
        ("not-json", "config.json' is not valid JSON ("),
        ("json-list", "config.json' holds a JSON list, not an object of model settings"),
        ("no-model-type", "config.json' has no model_type, so the model family is unknown"),
    ],
)
@pytest.mark.parametrize("name", ["prune", "analyze", "evaluate"])
def test_broken_config_json(models, tmp_path, weights_never_load, name, damage, phrase):
    out = tmp_path / "out"
    assert_refused(run(*command(name, models[damage], out, models["beir"])), phrase, out)


# 3. config.json whose MLP width no longer matches the weights: refused from the safetensors headers
@pytest.mark.parametrize(
    "args",
    [
        ["prune", "--mlp-drop", "0.25", "--calib-samples", "4", "--no-streaming"],
        ["prune", "--mlp-drop", "0.25", "--calib-samples", "4", "--streaming"],
        ["analyze", "--calib-samples", "4", "--no-streaming"],
        ["analyze", "--calib-samples", "4", "--streaming"],
    ],
    ids=["prune-in-memory", "prune-streaming", "analyze-in-memory", "analyze-streaming"],
)
def test_config_that_does_not_match_the_weights(models, tmp_path, weights_never_load, args):
    out = tmp_path / "out"
    name, *flags = args
    line = assert_refused(
        run(name, models["narrower-config"], *flags, "-o", out), "do not match its config.json (LlamaForCausalLM)", out
    )
    assert "'model.layers.0.mlp.gate_proj.weight' is [64, 32] in model.safetensors, expected [48, 32]" in line


def test_evaluate_refuses_a_config_that_does_not_match_the_weights(models, tmp_path, weights_never_load):
    out = tmp_path / "out"
    assert_refused(run(*command("evaluate", models["narrower-config"], out, models["beir"])), "do not match", out)


# 4. A model folder without tokenizer files: refused before the model loads
@pytest.mark.subprocess
@pytest.mark.parametrize("name", ["prune", "analyze", "finetune", "evaluate"])
def test_folder_without_tokenizer(models, tmp_path, weights_never_load, name):
    out = tmp_path / "out"
    assert_refused(run(*command(name, models["no-tokenizer"], out, models["beir"])), "has no tokenizer (none of", out)


# 5. prune --importance FILE that is not an importance report
@pytest.mark.parametrize(
    "content, phrase",
    [
        ("{oops", "(not valid JSON: "),
        ('{"a": 1}', "(model: Field required)"),
        (bytes(range(128, 256)), "(not valid JSON: "),
        (None, "(No such file or directory)"),
    ],
    ids=["not-json", "other-json", "binary", "missing"],
)
def test_importance_file_that_is_not_a_report(models, tmp_path, weights_never_load, content, phrase):
    report = tmp_path / "importance.json"
    if isinstance(content, bytes):
        report.write_bytes(content)
    elif content is not None:
        report.write_text(content)
    out = tmp_path / "out"
    line = assert_refused(
        run("prune", models["src"], "--mlp-drop", "0.25", "--importance", report, "-o", out),
        f"'{report}' is not an importance report {phrase}",
        out,
    )
    assert line.endswith("pass the importance.json that `effir-surgery analyze` wrote.")


# 6. A device that is not one, or one this machine does not have
@pytest.mark.parametrize("name", ["prune", "analyze", "finetune", "evaluate"])
def test_not_a_device(models, tmp_path, name):
    out = tmp_path / "out"
    args = [a for a in command(name, models["src"], out, models["beir"]) if a not in ("--device", "cpu")]
    assert_refused(run(*args, "--device", "tpu7"), "--device: 'tpu7' is not a device; use auto, cpu, cuda", out)


@pytest.mark.parametrize("name", ["prune", "analyze", "finetune", "evaluate"])
def test_cuda_without_a_gpu(models, tmp_path, monkeypatch, weights_never_load, name):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "out"
    args = [a for a in command(name, models["src"], out, models["beir"]) if a not in ("--device", "cpu")]
    assert_refused(run(*args, "--device", "cuda"), "Device 'cuda' is not available: ", out)


def test_cuda_index_beyond_the_gpus(models, tmp_path, monkeypatch, weights_never_load):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    out = tmp_path / "out"
    assert_refused(
        run(*command("prune", models["src"], out, models["beir"]), "--device", "cuda:2"),
        "Device 'cuda:2' does not exist: torch sees 2 CUDA GPU(s), cuda:0 to cuda:1.",
        out,
    )


# 7. analyze -o an existing file
def test_analyze_output_that_is_a_file(models, tmp_path, weights_never_load):
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    result = run(*command("analyze", models["src"], out, models["beir"]))
    out.unlink()  # leftovers() must not count the user's own file
    assert_refused(result, f"Output '{out}' exists and is a file; choose a folder path with -o.", out)
    assert list(tmp_path.iterdir()) == []


# 8. A recipe that is not text
def test_recipe_of_random_bytes(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_bytes(bytes(range(128, 256)) * 4)
    assert_refused(run("run", recipe), f"{recipe}: not a text file (byte 0 is not UTF-8)")
    assert list(tmp_path.iterdir()) == [recipe]


# 9. The disk fills up during the save
def _full_disk(path, *args, **kwargs):
    """A weights writer that gets some bytes out, then meets a full disk."""
    Path(path).write_bytes(b"\0" * 64)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


@pytest.mark.parametrize("streaming", ["--no-streaming", "--streaming"])
@pytest.mark.parametrize("existing", [False, True], ids=["new", "overwrite"])
def test_disk_full_during_prune_save(models, tmp_path, monkeypatch, no_library_progress_bars, streaming, existing):
    monkeypatch.setattr("transformers.modeling_utils.safe_save_file", lambda sd, path, **kw: _full_disk(path))
    monkeypatch.setattr("effir_surgery.streaming.write_safetensors", _full_disk)
    out = tmp_path / "out"
    if existing:
        out.mkdir()
        (out / "keep.txt").write_text("previous result")
    args = ["prune", models["src"], "--drop-mlp-layers", "1", "-o", out, "--no-verify-reload", streaming]
    result = run(*args, *(["--overwrite"] if existing else []))
    if existing:  # the previous output is kept as it was; nothing else may remain
        assert (out / "keep.txt").read_text() == "previous result" and list(out.iterdir()) == [out / "keep.txt"]
        (out / "keep.txt").unlink()
        out.rmdir()
    kept = "still holds what it held before" if existing else "was not created"
    line = assert_refused(
        result,
        "failed writing model.safetensors: No space left on device; removed the unfinished",
        out,
        status=("Streaming the surgery to",),
    )
    assert f"'{out}' {kept}. Free space" in line
    assert list(tmp_path.iterdir()) == []


def test_disk_full_during_analyze_save(models, tmp_path, monkeypatch, no_library_progress_bars):
    monkeypatch.setattr("effir_surgery.report.plot_importance", lambda report, path: _full_disk(path))
    out = tmp_path / "analysis"
    result = run(*command("analyze", models["src"], out, models["beir"]))
    line = assert_refused(result, "No space left on device", out, status=("Scoring sublayers on",))
    assert "writing importance.png" in line and "was not created" in line
    assert list(tmp_path.iterdir()) == []


# 10. and 11. in a recipe: refusals before the first stage leave no run folder
@pytest.mark.parametrize(
    "stage, phrase",
    [
        ({"prune": {"drop_mlp_layers": [9]}}, "layer 9 is out of range; this model has 4 layers (0-3)"),
        (
            {"finetune": {"train": "beir", "mine": "none", "hard_negatives": 1}},
            "finetune: --mine none takes hard negatives from the training data only",
        ),
    ],
    ids=["layer-out-of-range", "mine-none"],
)
def test_recipe_refused_before_the_run_folder(models, tmp_path, weights_never_load, stage, phrase):
    import shutil

    shutil.copytree(models["beir"], tmp_path / "beir")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(json.dumps({"model": str(models["src"]), "run_dir": "runs/r1", **stage}))  # JSON is YAML
    assert_refused(run("run", recipe, "--set", "device=cpu"), phrase, tmp_path / "runs" / "r1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["beir", "recipe.yaml"]


# 11. finetune --mine none --hard-negatives 1 on data without negatives
def test_mine_none_without_negatives_in_the_data(models, tmp_path, weights_never_load):
    out = tmp_path / "out"
    args = [*command("finetune", models["src"], out, models["beir"]), "--mine", "none", "--hard-negatives", "1"]
    line = assert_refused(run(*args), "--mine none takes hard negatives from the training data only, but 8 of 8", out)
    assert "--hard-negatives 0" in line and list(tmp_path.iterdir()) == []


def test_mine_none_is_decided_by_the_data_not_the_flags(tmp_path):
    """The flags alone cannot refuse --mine none --hard-negatives 1 (jsonl rows may bring their own negatives), so
    the config accepts it and the data check decides."""
    from effir_surgery.config import FinetuneConfig
    from effir_surgery.errors import EffirError
    from effir_surgery.finetune.data import check_given_negatives, read_jsonl_pairs

    FinetuneConfig(model="m", train="t", output="o", mine="none", hard_negatives=1)
    rows = tmp_path / "train.jsonl"
    rows.write_text(
        json.dumps({"query": "q1", "positive": "p1", "negatives": ["n1", "n2"]})
        + "\n"
        + json.dumps({"query": "q2", "positive": "p2", "negatives": ["n3"]})
        + "\n"
    )
    data = read_jsonl_pairs(rows)
    check_given_negatives(data, 1)
    with pytest.raises(EffirError, match="1 of 2 queries have fewer than --hard-negatives 2"):
        check_given_negatives(data, 2)

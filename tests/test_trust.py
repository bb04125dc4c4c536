"""Hostile folders: code planted in a model folder runs only when the user allows it. Each kind of planted code is
refused by every command that reads models, before anything from the folder is imported (a marker file the code
would write stays absent), and ``verify`` names it."""

import json
import shutil

import pytest
from click.testing import CliRunner

from effir_surgery.cli import main

pytestmark = pytest.mark.timeout(300)

PLANT = "open({marker!r}, 'w').write('ran')\n"


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A stock tiny source and the effir folder pruned from it (both as this toolkit writes them)."""
    from conftest import build_tiny, make_beir, save_tiny_source, tiny_tokenizer

    root = tmp_path_factory.mktemp("trust")
    stock = save_tiny_source(build_tiny("llama"), tiny_tokenizer(), root / "stock")
    pruned = root / "pruned"
    result = CliRunner().invoke(main, ["prune", str(stock), "--drop-mlp-layers", "1", "-o", str(pruned)])
    assert result.exit_code == 0, result.output
    beir = make_beir(root / "beir")
    train = root / "train.jsonl"
    train.write_text("".join(json.dumps({"query": f"q{i}", "positive": f"the cells {i}"}) + "\n" for i in range(8)))
    return {"stock": stock, "pruned": pruned, "beir": beir, "train": train}


def _edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _plant(folder, name, marker):
    (folder / name).write_text(PLANT.format(marker=str(marker)) + "class Evil:\n    pass\n")


def hostile(kind, clean, tmp_path):
    """A copy of a clean folder with planted code of ``kind``; returns (folder, marker, what verify must name)."""
    marker = tmp_path / "ran"
    base = clean["pruned"] if kind in ("edited-remote-code", "extra-py") else clean["stock"]
    folder = tmp_path / kind
    shutil.copytree(base, folder)
    if kind == "config-auto-map":
        _plant(folder, "evil.py", marker)
        _edit_json(folder / "config.json", lambda d: d.__setitem__("auto_map", {"AutoConfig": "evil.Evil"}))
        named = "evil.Evil"
    elif kind == "tokenizer-auto-map":
        _plant(folder, "evil.py", marker)
        _edit_json(
            folder / "tokenizer_config.json",
            lambda d: d.__setitem__("auto_map", {"AutoTokenizer": ["evil.Evil", None]}),
        )
        named = "tokenizer_config.json auto_map"
    elif kind == "custom-st-module":
        _plant(folder, "evil.py", marker)
        modules = [{"idx": 0, "name": "0", "path": "", "type": "evil.Evil"}]
        (folder / "modules.json").write_text(json.dumps(modules))
        named = "modules.json module 'evil.Evil'"
    elif kind == "edited-remote-code":
        with (folder / "configuration_effir.py").open("a") as handle:
            handle.write("\n" + PLANT.format(marker=str(marker)))
        named = "configuration_effir.py differs"
    else:  # extra-py: an unreferenced module beside the sealed code, importable by a relative import
        _plant(folder, "helper.py", marker)
        named = "extra code file helper.py"
    return folder, marker, named


KINDS = ["config-auto-map", "tokenizer-auto-map", "custom-st-module", "edited-remote-code", "extra-py"]


def _commands(folder, clean, out):
    return {
        "prune": ["prune", folder, "--drop-mlp-layers", "0", "--dry-run"],
        "analyze": ["analyze", folder, "-o", out],
        "evaluate": ["evaluate", folder, "--task", "SciFact", "--data-dir", clean["beir"], "--no-measure", "-o", out],
        "finetune": [
            "finetune",
            folder,
            "--train",
            clean["train"],
            "--mine",
            "none",
            "--hard-negatives",
            "0",
            "-o",
            out,
        ],
        "push": ["push", folder, "--repo-id", "someone/tiny", "--dry-run"],
    }


@pytest.mark.subprocess
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", ["prune", "analyze", "evaluate", "finetune", "push"])
def test_planted_code_is_refused_and_never_runs(kind, command, clean, tmp_path):
    folder, marker, named = hostile(kind, clean, tmp_path)
    out = tmp_path / "out"
    args = [str(a) for a in _commands(folder, clean, out)[command]]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    if command == "push":
        assert "remote code:" in result.output and "cannot be published" in result.output
    else:
        assert "would run code that is not effir-surgery's" in result.output
        assert "--trust-remote-code" in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
    assert not marker.exists(), f"{command} ran the planted code ({kind})"
    assert not out.exists()


@pytest.mark.parametrize("kind", KINDS)
def test_verify_names_each_kind_of_planted_code(kind, clean, tmp_path):
    folder, marker, named = hostile(kind, clean, tmp_path)
    result = CliRunner().invoke(main, ["verify", str(folder)])
    assert result.exit_code == 2, result.output
    assert named in result.output, result.output
    assert not marker.exists()


def test_trust_remote_code_lets_the_user_run_foreign_code(clean, tmp_path):
    """The flag is the user's decision: with it, the folder's own code is loaded (here it runs and then fails,
    because the planted class is not a config)."""
    folder, marker, _ = hostile("config-auto-map", clean, tmp_path)
    CliRunner().invoke(main, ["prune", str(folder), "--drop-mlp-layers", "0", "--dry-run", "--trust-remote-code"])
    assert marker.exists()


def test_stock_and_own_folders_need_no_flag(clean):
    for name in ("stock", "pruned"):
        result = CliRunner().invoke(main, ["prune", str(clean[name]), "--drop-mlp-layers", "0", "--dry-run"])
        assert result.exit_code == 0, result.output

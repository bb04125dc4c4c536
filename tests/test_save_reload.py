"""Save -> reload in a clean process where effir_surgery cannot be imported: identical tensors and outputs."""

import ast
import hashlib
import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from effir_surgery.arch import shape_from_config
from effir_surgery.check import check_folder_files
from effir_surgery.config import PlanSettings
from effir_surgery.fresh import reload_outputs
from effir_surgery.plan import make_plan
from effir_surgery.save import save_model
from effir_surgery.surgery import apply_plan


def _prune_and_save(model, tokenizer, out, verify=False, **plan_kwargs):
    plan = make_plan(shape_from_config(model.config), PlanSettings(**plan_kwargs), model_name="tiny")
    if "mlp_width" not in plan_kwargs:
        # narrow layer 3 to a scattered subset so widths differ per layer
        plan = plan.model_copy(
            update={"mlp_widths": [*plan.mlp_widths[:3], 24], "kept_neurons": {"3": list(range(1, 64, 2))[:24]}}
        )
    apply_plan(model, plan)
    return save_model(model, tokenizer, out, plan=plan, provenance={"source_model": "tiny"}, verify=verify)


@pytest.mark.subprocess
def test_save_reload_identical(tiny_model, tokenizer, input_batch, tmp_path):
    out = tmp_path / "pruned"
    _prune_and_save(tiny_model, tokenizer, out, drop_mlp_layers=[1], drop_attention_layers=[2])
    assert check_folder_files(out) == []
    config = json.loads((out / "config.json").read_text())
    assert config["mlp_intermediate_sizes"] == [64, 0, 64, 24]
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForCausalLM"}

    # every tensor on disk equals the in-memory one
    saved = load_file(out / "model.safetensors")
    state = tiny_model.state_dict()
    tied = tiny_model.config.tie_word_embeddings
    assert set(saved) == set(state) - ({"lm_head.weight"} if tied else set())
    for name, tensor in saved.items():
        assert tensor.dtype == state[name].dtype and torch.equal(tensor, state[name]), name

    # outputs in a fresh process equal the in-memory model's, for the causal LM and the base model
    outputs, report = reload_outputs(out, input_batch, "float32")
    assert report["causal_class"].startswith("Effir") and report["base_class"].startswith("Effir")
    assert report["params"] == sum(p.numel() for p in tiny_model.parameters())
    assert report["toolkit_importable"] is False
    assert report["tokenizer_appends_eos"] and report["padding_side"] == "left"
    with torch.inference_mode():
        logits = tiny_model(**input_batch, use_cache=False).logits
        hidden = tiny_model.base_model(**input_batch, use_cache=False).last_hidden_state
    # same weights, same kernels, same thread count: bit-identical, not merely close
    mask = input_batch["attention_mask"].bool()
    assert torch.equal(outputs["logits"][mask], logits[mask])
    assert torch.equal(outputs["hidden"][mask], hidden[mask])


@pytest.mark.subprocess
def test_uniform_result_is_a_stock_checkpoint(tiny_model, tokenizer, tmp_path):
    out = tmp_path / "uniform"
    shape = shape_from_config(tiny_model.config)
    plan = make_plan(shape, PlanSettings(), model_name="tiny").model_copy(
        update={"mlp_widths": [32] * 4, "kept_neurons": {str(i): list(range(32)) for i in range(4)}}
    )
    apply_plan(tiny_model, plan)
    report = save_model(tiny_model, tokenizer, out, plan=plan)
    config = json.loads((out / "config.json").read_text())
    assert "auto_map" not in config and "effir_format_version" not in config
    assert not (out / "modeling_effir.py").exists()
    assert not report["causal_class"].startswith("Effir")


@pytest.mark.subprocess
def test_save_model_verifies_in_a_clean_process(tokenizer, tmp_path):
    from conftest import build_tiny

    report = _prune_and_save(build_tiny("qwen3"), tokenizer, tmp_path / "pruned", verify=True, drop_mlp_layers=[2])
    assert report["causal_class"] == "EffirQwen3ForCausalLM" and report["toolkit_importable"] is False


def test_remote_code_files_are_the_packaged_ones(tiny_model, tokenizer, tmp_path):
    out = tmp_path / "pruned"
    _prune_and_save(tiny_model, tokenizer, out, drop_mlp_layers=[0])
    from effir_surgery.save import HF_DIR

    for name in ("configuration_effir.py", "modeling_effir.py"):
        packaged = hashlib.sha256((HF_DIR / name).read_bytes()).hexdigest()
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == packaged


def _foreign_imports(source: str, siblings: set[str]) -> list[str]:
    """Imports in ``source`` that a checkpoint's remote code may not have: anything but torch, transformers, the
    standard library and relative imports of ``siblings`` (the other remote-code modules), plus any dynamic import
    (``__import__``, ``importlib.import_module``), which this check could not see through."""
    allowed = {"torch", "transformers", "__future__"} | set(sys.stdlib_module_names)
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            bad += [a.name for a in node.names if a.name.split(".")[0] not in allowed]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            if node.module.split(".")[0] not in allowed:
                bad.append(node.module)
        elif isinstance(node, ast.ImportFrom):
            targets = [node.module] if node.module else [a.name for a in node.names]
            bad += ["." * node.level + t for t in targets if node.level != 1 or t.split(".")[0] not in siblings]
        elif isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name in ("__import__", "import_module", "importlib.import_module"):
                bad.append(ast.unparse(node))
    return bad


def test_remote_code_imports_only_torch_transformers_and_stdlib():
    from effir_surgery.folder import HF_DIR, REMOTE_CODE_FILES

    siblings = {name.removesuffix(".py") for name in REMOTE_CODE_FILES}
    files = sorted(HF_DIR.glob("*.py"))
    assert {f.name for f in files} >= set(REMOTE_CODE_FILES)
    for file in files:
        assert _foreign_imports(file.read_text(), siblings) == [], file.name
    # the check itself catches what it must
    bad = (
        "import numpy\nfrom effir_surgery.arch import ARCH_SPECS\nfrom . import arch\nfrom ..load import x\n"
        "def f():\n    import safetensors.torch\n    return importlib.import_module('peft')\n"
        "import os, torch.nn\nfrom transformers import AutoModel\nfrom .modeling_effir import M\n"
    )
    assert _foreign_imports(bad, siblings) == [
        "numpy",
        "effir_surgery.arch",
        ".arch",
        "..load",
        "safetensors.torch",
        "importlib.import_module('peft')",
    ]


def test_surgery_plan_records_source_revision_and_tool_version(tokenizer, tmp_path):
    from conftest import build_tiny

    from effir_surgery import __version__

    tiny_model = build_tiny("llama")
    plan = make_plan(shape_from_config(tiny_model.config), PlanSettings(drop_mlp_layers=[1]), model_name="org/tiny")
    plan = plan.model_copy(update={"revision": "0123abc"})
    apply_plan(tiny_model, plan)
    save_model(tiny_model, tokenizer, tmp_path / "pruned", plan=plan, verify=False)
    saved = json.loads((tmp_path / "pruned" / "surgery_plan.json").read_text())
    assert (saved["model"], saved["revision"], saved["tool_version"]) == ("org/tiny", "0123abc", __version__)
    assert saved["drop_mlp_layers"] == [1] and saved["mlp_widths"][1] == 0


def test_interrupted_save_leaves_no_temp_folder_and_keeps_the_old_output(tmp_path, monkeypatch):
    """Ctrl-C (or SIGTERM, which the CLI turns into KeyboardInterrupt) at any point of an atomic save."""
    import os
    import shutil

    from effir_surgery import save

    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")

    def interrupted_save():
        with pytest.raises(KeyboardInterrupt):
            with save.atomic_folder(out, overwrite=True) as tmp:
                (tmp / "model.safetensors").write_text("half written")
                raise KeyboardInterrupt

    def assert_untouched():
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
        assert [p.name for p in out.iterdir()] == ["old.txt"]

    interrupted_save()  # while writing
    assert_untouched()

    rmtree, calls = shutil.rmtree, []

    def rmtree_interrupted_once(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 1:
            raise KeyboardInterrupt  # a second Ctrl-C while the temp folder is being deleted
        rmtree(path, *args, **kwargs)

    monkeypatch.setattr(save.shutil, "rmtree", rmtree_interrupted_once)
    interrupted_save()
    assert_untouched()
    monkeypatch.setattr(save.shutil, "rmtree", rmtree)

    replace = os.replace

    def interrupted_swap(src, dst):
        if ".tmp-" in str(src):
            raise KeyboardInterrupt  # after the old output was moved aside, before the new one moved in
        replace(src, dst)

    monkeypatch.setattr(save.os, "replace", interrupted_swap)
    with pytest.raises(KeyboardInterrupt):
        with save.atomic_folder(out, overwrite=True) as tmp:
            (tmp / "new.txt").write_text("new")
    assert_untouched()


def test_next_save_removes_what_a_killed_save_left(tmp_path):
    """SIGKILL skips every cleanup, so the temporary folder stays; the next save to the same output removes it, and
    keeps the temporary folders of processes that are still running and of other hosts."""
    import signal
    import subprocess

    from effir_surgery import outputs, save

    out = tmp_path / "out"
    writer = (
        "import sys, time\n"
        "from effir_surgery.save import atomic_folder\n"
        "with atomic_folder(sys.argv[1]) as tmp:\n"
        "    (tmp / 'model.safetensors').write_text('half written')\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", writer, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    (left,) = tmp_path.glob(".out.tmp-*")
    assert (left / "model.safetensors").is_file()
    running = outputs.sibling(out, "tmp")  # this process's: still running
    running.mkdir()
    elsewhere = tmp_path / f".out.tmp-otherhost-{proc.pid}-0123abcd"  # the dead pid, but on another machine
    elsewhere.mkdir()

    with save.atomic_folder(out) as tmp:
        (tmp / "model.safetensors").write_text("complete")
    assert not left.exists()
    assert running.is_dir() and elsewhere.is_dir()
    assert (out / "model.safetensors").read_text() == "complete"


def test_no_temp_folder_left_behind(tiny_model, tokenizer, tmp_path):
    _prune_and_save(tiny_model, tokenizer, tmp_path / "pruned", drop_mlp_layers=[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pruned"]


_DOWNSTREAM = """
import sys, time
from transformers import AutoConfig, AutoModel, AutoTokenizer
started = time.perf_counter()
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
config = AutoConfig.from_pretrained(sys.argv[1])
print(type(tokenizer).__name__, config.model_type, round(time.perf_counter() - started, 2))
AutoModel.from_pretrained(sys.argv[1])  # without trust_remote_code: must fail, never build a wrong model
"""


@pytest.mark.subprocess
def test_downstream_code_reads_the_tokenizer_without_a_prompt(tiny_model, tokenizer, tmp_path):
    """``AutoTokenizer.from_pretrained(folder)`` with no ``trust_remote_code`` (what most downstream code calls) must
    not ask to run the folder's code: with stdin closed transformers would print its "[y/N]" prompt. Loading the
    model without ``trust_remote_code`` must still fail, with an error that names the fix."""
    from effir_surgery.hf.configuration_effir import TRUST_GUARD

    out = tmp_path / "pruned"
    _prune_and_save(tiny_model, tokenizer, out, drop_mlp_layers=[1])
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "warning", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", _DOWNSTREAM, str(out)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    lines = done.stdout.split()
    assert lines[:2] and lines[1] == tiny_model.config.base_model_type, done.stdout + done.stderr
    assert float(lines[2]) < 10  # seconds: no 30 s prompt timeout
    assert "[y/N]" not in done.stdout + done.stderr and "custom code" not in done.stdout + done.stderr
    # the only output on stderr is the stock model's refusal; nothing was printed while reading the tokenizer
    assert done.returncode != 0 and done.stderr.startswith("Traceback") and TRUST_GUARD in done.stderr.splitlines()[-1]

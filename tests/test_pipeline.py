"""``effir-surgery run``: every stage's output exists, completed stages are reused by content hash, an
interrupted run resumes, and recipes validate."""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from effir_surgery.cli import main
from effir_surgery.errors import EffirError
from effir_surgery.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from conftest import build_tiny, make_beir, save_tiny_source, tiny_tokenizer

    root = tmp_path_factory.mktemp("pipe")
    source = save_tiny_source(build_tiny("llama"), tiny_tokenizer(), root / "tiny")
    beir = make_beir(root / "beir", n_docs=40, n_queries=16)
    return root, source, beir


def write_recipe(root: Path, source: Path, beir: Path, name: str, max_steps: int = 3, save_steps: int = 50) -> Path:
    recipe = {
        "name": name,
        "model": str(source),
        "run_dir": str(root / name),
        "prune": {"mlp_drop": 0.5, "calib": str(beir), "calib_samples": 16},
        "finetune": {
            "train": str(beir),
            "batch_size": 8,
            "mini_batch_size": 4,
            "max_length": 32,
            "max_steps": max_steps,
            "save_steps": save_steps,
            "lora": False,
        },
        "evaluate": {"data_dir": [str(beir)], "models": ["@source", "@pruned", "bm25"], "speed_docs": 8},
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.mark.integration
def test_run_all_stages_then_reuse(setup):
    root, source, beir = setup
    recipe = write_recipe(root, source, beir, "full")
    result = CliRunner().invoke(main, ["run", str(recipe), "--set", "device=cpu"])
    assert result.exit_code == 0, result.output
    run_dir = root / "full"
    assert (run_dir / "pruned" / "config.json").is_file()
    assert (run_dir / "finetuned" / "finetune.json").is_file()
    results = json.loads((run_dir / "eval" / "results.json").read_text())
    names = [m["name"] for m in results["models"]]
    assert names[0] == str(run_dir / "finetuned") and "BM25" in names and len(names) == 4
    record = json.loads((run_dir / "run.json").read_text())
    assert set(record["stages"]) == {"prune", "finetune", "evaluate"}
    # the run's model folders carry their own scores, and their cards show them
    attached = json.loads((run_dir / "finetuned" / "results.json").read_text())
    assert [m["name"] for m in attached["models"]] == [names[0]]
    assert "nDCG@10" in (run_dir / "finetuned" / "README.md").read_text()
    assert "nDCG@10" in result.output

    again = CliRunner().invoke(main, ["run", str(recipe), "--set", "device=cpu"])
    assert again.exit_code == 0, again.output
    for stage in ("prune", "finetune", "evaluate"):
        assert f"\n{stage}: reused -> " in again.output

    # a changed output is detected by content, not by the file merely existing
    tokenizer_config = run_dir / "pruned" / "tokenizer_config.json"
    tokenizer_config.write_text(tokenizer_config.read_text() + " ")
    third = CliRunner().invoke(main, ["run", str(recipe), "--set", "device=cpu", "--skip", "evaluate"])
    assert third.exit_code == 0, third.output
    assert "\nprune: ran -> " in third.output and "\nfinetune: ran -> " in third.output


@pytest.mark.integration
def test_interrupted_run_resumes(setup):
    root, source, beir = setup
    recipe = write_recipe(root, source, beir, "interrupted", max_steps=40, save_steps=2)
    command = [
        sys.executable,
        "-m",
        "effir_surgery.cli",
        "run",
        str(recipe),
        "--set",
        "device=cpu",
        "--skip",
        "evaluate",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    work = root / "interrupted" / ".finetuned.work" / "checkpoints"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if any(
            int(p.name.split("-")[1]) >= 4 for p in work.glob("checkpoint-*") if (p / "trainer_state.json").exists()
        ):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert proc.returncode == 130  # the shell's code for Ctrl-C, after the cleanup ran
    assert not (root / "interrupted" / "finetuned").exists()
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "prune: reused -> " in rerun.stdout and "finetune: ran -> " in rerun.stdout
    training = json.loads((root / "interrupted" / "finetuned" / "finetune.json").read_text())
    assert training["resumed_from_step"] >= 4 and training["steps"] == 40


def test_overrides_and_errors(setup, tmp_path):
    root, source, beir = setup
    recipe = write_recipe(root, source, beir, "errs")
    config = load_recipe(recipe, ["finetune.max_steps=7", "evaluate=null"])
    assert config.finetune.max_steps == 7 and config.evaluate is None
    with pytest.raises(EffirError, match="finetune.max_stepz: unknown setting"):
        load_recipe(recipe, ["finetune.max_stepz=7"])
    with pytest.raises(EffirError, match="prune.mlp_drop: must be in"):
        load_recipe(recipe, ["prune.mlp_drop=1.5"])
    with pytest.raises(EffirError, match="expected KEY=VALUE"):
        load_recipe(recipe, ["finetune"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(EffirError, match="not valid YAML"):
        load_recipe(bad)


@pytest.mark.parametrize(
    "stage, message",
    [
        ("finetune", r"finetune\.train: '\S*broken' has no qrels/train\.tsv \(available splits: test\)"),
        ("evaluate", r"evaluate\.data_dir: '\S*broken' has no qrels/test\.tsv .*\(available splits: train\)"),
    ],
    ids=["finetune", "evaluate"],
)
def test_bad_stage_data_fails_before_the_first_stage(setup, tmp_path, monkeypatch, stage, message):
    """Training data without a train split, or an evaluation folder without the evaluated split: ``run`` refuses
    the recipe before the prune stage loads and prunes the model, and creates no run folder. A skipped stage's data
    is not checked."""
    from conftest import make_beir

    import effir_surgery.run as runner

    _, source, beir = setup
    broken = make_beir(tmp_path / "broken", splits=("test",) if stage == "finetune" else ("train",))
    recipe = write_recipe(tmp_path, source, beir, "bad")
    data = yaml.safe_load(recipe.read_text())
    if stage == "finetune":
        data["finetune"]["train"] = str(broken)
    else:
        data["evaluate"]["data_dir"] = [str(beir), str(broken)]
    recipe.write_text(yaml.safe_dump(data))
    monkeypatch.setattr(runner, "prune", lambda *a, **k: pytest.fail("the prune stage ran"))

    result = CliRunner().invoke(main, ["run", str(recipe), "--set", "device=cpu"])
    assert result.exit_code == 2, result.output
    assert re.search(message, " ".join(result.output.split())), result.output
    assert not (tmp_path / "bad").exists(), "no run folder, let alone a pruned model"

    skipped = CliRunner().invoke(
        main, ["run", str(recipe), *[f"--skip={s}" for s in ("prune", "finetune", "evaluate")]]
    )
    assert skipped.exit_code == 0, skipped.output


# Recipes whose header has no "Hardware:" line yet (reported to the maintainer, who edits recipes). Remove an entry
# when its line is added: the test then fails as a reminder.
NO_HARDWARE_LINE_YET: set[str] = set()  # recipes whose header lacks a "Hardware:" line (none)


# the product's recipes and each study's (studies/NAME/recipes/)
RECIPES = sorted((REPO / "recipes").glob("**/*.yaml")) + sorted(REPO.glob("studies/*/recipes/**/*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_recipe_validates(recipe):
    """Every recipe validates against the schema, and its header comment (within the first 15 lines) opens with
    the recipe's purpose and states the hardware it needs and the exact command that runs it."""
    if recipe.parent.name == "accelerate":
        pytest.skip("accelerate launcher configs, not recipes")
    config = load_recipe(recipe)
    assert config.model and config.run_dir
    header = []
    for line in recipe.read_text().splitlines()[:15]:
        if not line.startswith("#"):
            break
        header.append(line.lstrip("#").strip())
    assert header, "the recipe must start with a header comment"
    purpose = header[0]
    assert len(purpose.split()) >= 6 and not re.match(r"(Hardware|Command|Data)\b", purpose), (
        "the header must open with the recipe's purpose"
    )
    path = recipe.relative_to(REPO).as_posix()
    assert any(re.search(rf"(effir-surgery|effir_surgery\.cli) run {re.escape(path)}$", line) for line in header), (
        f"the header must give the exact command (effir-surgery run {path})"
    )
    has_hardware = any(re.match(r"Hardware: \S", line) for line in header)
    if path in NO_HARDWARE_LINE_YET:
        assert not has_hardware, f"{path} now states its hardware: remove it from NO_HARDWARE_LINE_YET"
        pytest.xfail("the header has no 'Hardware:' line yet")
    assert has_hardware, "the header must state the hardware it needs ('Hardware: ...')"


@pytest.mark.integration
def test_recipe_paths_resolve_against_the_recipe_folder(setup, tmp_path, monkeypatch):
    """A recipe with relative paths (model folder, run_dir, calibration, training and evaluation data) runs from
    another working directory: every path is taken relative to the recipe's folder, and nothing is written where
    the command runs."""
    import shutil

    from conftest import make_beir

    _, source, _ = setup
    project = tmp_path / "project"
    shutil.copytree(source, project / "models" / "tiny")
    make_beir(project / "data" / "beir", n_docs=24, n_queries=8)
    recipe = project / "recipes" / "relative.yaml"
    recipe.parent.mkdir()
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": "relative",
                "model": "../models/tiny",
                "run_dir": "../runs/relative",
                "prune": {"drop_mlp_layers": [1], "calib": "../data/beir", "calib_samples": 8},
                "finetune": {
                    "train": "../data/beir",
                    "batch_size": 4,
                    "mini_batch_size": 4,
                    "max_length": 32,
                    "max_steps": 2,
                    "lora": False,
                },
                "evaluate": {"data_dir": ["../data/beir"], "models": ["@source"], "measure": False},
            }
        )
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    result = CliRunner().invoke(main, ["run", "../project/recipes/relative.yaml", "--set", "device=cpu"])
    assert result.exit_code == 0, result.output
    run_dir = project / "runs" / "relative"
    assert (run_dir / "pruned" / "config.json").is_file() and (run_dir / "finetuned" / "finetune.json").is_file()
    results = json.loads((run_dir / "eval" / "results.json").read_text())
    assert [m["name"] for m in results["models"]] == [str(run_dir / "finetuned"), str(project / "models" / "tiny")]
    assert list(elsewhere.iterdir()) == [], "nothing is written in the working directory"


def test_recipe_path_rules(tmp_path, monkeypatch):
    """Which recipe values are paths resolved against the recipe's folder: always run_dir, prune.calib (except
    'bundled'), finetune.train, evaluate.data_dir and evaluate.cache_dir; a model reference only when it exists
    there or can only be a path (Hub ids, the alias, baselines and @-references stay). Absolute paths stay, and
    --set values stay relative to the current directory."""
    folder = tmp_path / "recipes"
    (folder / "org" / "local").mkdir(parents=True)
    recipe = folder / "r.yaml"
    monkeypatch.chdir(tmp_path)

    def load(model="org/name", models=(), **extra):
        data = {"model": model, "run_dir": "runs/x", "evaluate": {"data_dir": ["d"], "models": list(models)}}
        recipe.write_text(yaml.safe_dump({**data, **extra}))
        return load_recipe(recipe)

    here = str(folder.resolve())
    for model, expected in [
        ("org/name", "org/name"),  # a Hub repo id
        ("smollm2-135m", "smollm2-135m"),  # the bundled alias
        ("org/local", f"{here}/org/local"),  # shaped like a repo id, but a folder beside the recipe
        ("../runs/ref/finetuned", f"{tmp_path.resolve()}/runs/ref/finetuned"),  # only a path (need not exist)
        ("runs/x/finetuned", f"{here}/runs/x/finetuned"),
        ("models/m.gguf", f"{here}/models/m.gguf"),
        ("/abs/model", "/abs/model"),
    ]:
        assert load(model).model == expected, model

    config = load(
        models=["@source", "@pruned", "bm25", "all-MiniLM-L6-v2", "org/name", "org/local", "../other/finetuned"],
        prune={"calib": "../data/calib.jsonl"},
        finetune={"train": "train.jsonl"},
    )
    assert config.run_dir == folder.resolve() / "runs" / "x"
    assert config.prune.calib == str(tmp_path.resolve() / "data" / "calib.jsonl")
    assert config.finetune.train == f"{here}/train.jsonl"
    assert config.evaluate.data_dir == [f"{here}/d"]
    assert config.evaluate.models == [
        "@source",
        "@pruned",
        "bm25",
        "all-MiniLM-L6-v2",
        "org/name",
        f"{here}/org/local",
        str(tmp_path.resolve() / "other" / "finetuned"),
    ]
    assert load(prune={"calib": "bundled"}).prune.calib == "bundled"
    assert (
        load(evaluate={"data_dir": ["/abs/beir"], "cache_dir": "cache"}).evaluate.cache_dir
        == folder.resolve() / "cache"
    )
    assert load(evaluate={"data_dir": ["/abs/beir"]}).evaluate.data_dir == ["/abs/beir"]

    # --set: relative to the current directory (tmp_path here), as a shell user expects
    recipe.write_text(yaml.safe_dump({"model": "org/name", "run_dir": "runs/x"}))
    config = load_recipe(recipe, ["run_dir=mine", "finetune.train=data/t.jsonl"])
    assert config.run_dir == Path("mine") and config.finetune.train == "data/t.jsonl"


@pytest.mark.parametrize(
    "prune", [{"mlp_drop": 0.5, "calib_samples": 8}, {"drop_mlp_layers": [1, 2]}], ids=["scored", "explicit"]
)
@pytest.mark.integration
def test_run_prints_its_plan_before_the_long_work(setup, tmp_path, monkeypatch, prune):
    """Before the prune stage's work: the model's layers and parameters, the stages with their settings, and the
    plan with its projected parameters, printed up front when the plan needs no scores, else as soon as it is made
    (after the scoring, before the surgery)."""
    import effir_surgery.pipeline as pipeline
    import effir_surgery.run as runner

    _, source, beir = setup
    events: list[str] = []
    monkeypatch.setattr(pipeline, "info", lambda message: events.append(str(message)))
    monkeypatch.setattr(runner, "info", pipeline.info)  # the runner prints the overview and stage lines
    surgery = pipeline.apply_plan
    monkeypatch.setattr(pipeline, "apply_plan", lambda *a, **k: (events.append("<surgery>"), surgery(*a, **k))[1])
    recipe = tmp_path / "plan.yaml"
    recipe.write_text(
        yaml.safe_dump({"name": "p", "model": str(source), "run_dir": "run", "prune": {**prune, "calib": str(beir)}})
    )

    result = CliRunner().invoke(main, ["run", str(recipe), "--set", "device=cpu"])
    assert result.exit_code == 0, result.output

    def first(pattern: str) -> int:
        return next(i for i, e in enumerate(events) if re.search(pattern, e))

    model = first(r"^model: .* \(llama, 4 layers, [\d,]+ params, [\d,]+ non-embedding\), float32 on cpu$")
    stages = first(r"^stages: prune \(runs\)$")
    settings = first(r"^  prune: calib=\S+, .*(calib_samples=8|drop_mlp_layers=\[1, 2\])")
    plan, projection = first(r"^plan:$"), first(r"^  params: [\d,]+ -> [\d,]+ \(")
    stage, surgery = first(r"stage 1/1: prune"), first("<surgery>")
    assert model < stages < settings < stage and plan < projection < surgery
    if "mlp_drop" in prune:
        assert "plan: chosen after scoring sublayer importance on" in events[settings + 1]
        assert stage < first(r"^Scoring sublayers") < plan
    else:
        assert projection < stage
        assert "  drop MLP layers (2): [1, 2]" in events
    assert sum(e == "plan:" for e in events) == 1

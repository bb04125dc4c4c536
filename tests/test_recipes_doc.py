"""The recipe format is documented where users look for it and cannot drift from the schema: every recipe setting
has a row in recipes/README.md, `effir-surgery run --help` names the top-level keys, the @-tokens, the path rule,
--set and --skip, and both documents' example recipes validate."""

import re
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from effir_surgery.cli import main
from effir_surgery.config import EvalSettings, FinetuneSettings, PruneSettings, RunConfig
from effir_surgery.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "recipes" / "README.md"


def section(text: str, heading: str) -> str:
    """The body of the section under ``heading`` (up to the next heading of the same or a higher level)."""
    level = heading.split(" ")[0]
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    ends = [m.start() for m in re.finditer(rf"\n#{{1,{len(level)}}} ", text[start:])]
    return text[start : start + ends[0]] if ends else text[start:]


@pytest.mark.parametrize(
    "model, heading",
    [
        (RunConfig, "## Top-level keys"),
        (PruneSettings, "### `prune`"),
        (FinetuneSettings, "### `finetune`"),
        (EvalSettings, "### `evaluate`"),
    ],
    ids=["top-level", "prune", "finetune", "evaluate"],
)
def test_every_recipe_setting_has_a_row_in_the_recipe_doc(model, heading):
    body = section(DOC.read_text(), heading)
    rows = set(re.findall(r"^\| `(\w+)` \|", body, re.M))
    fields = set(model.model_fields)
    assert not fields - rows, f"recipes/README.md, {heading}: no row for {sorted(fields - rows)}"
    assert not rows - fields, (
        f"recipes/README.md, {heading}: rows for settings that do not exist: {sorted(rows - fields)}"
    )


def test_the_recipe_docs_example_validates(tmp_path):
    example = re.search(r"```yaml\n(.*?)```", DOC.read_text(), re.S).group(1)
    recipe = tmp_path / "my.yaml"
    recipe.write_text(example)
    config = load_recipe(recipe)
    assert config.prune and config.finetune and config.evaluate
    assert config.run_dir == tmp_path.resolve() / "runs" / "smollm2-drop25", "run_dir is relative to the recipe"


def run_help() -> str:
    result = CliRunner().invoke(main, ["run", "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.output


def test_run_help_describes_the_recipe_format():
    text = run_help()
    flat = " ".join(text.split())
    for key in RunConfig.model_fields:
        assert re.search(rf"^\s+{key}\s{{2,}}\S", text, re.M), f"run --help: no line for the top-level key {key}"
    for phrase in (
        "effir-surgery prune --help",
        "finetune --help",
        "evaluate --help",
        "@source",
        "@pruned",
        "relative to the recipe file's folder",
        "A path given with --set is relative to the current directory",
        "--skip",
        "recipes/README.md",
    ):
        assert phrase in flat, f"run --help does not mention {phrase!r}"


def test_run_helps_example_recipe_validates(tmp_path):
    lines = run_help().splitlines()
    start = next(i for i, line in enumerate(lines) if "A minimal recipe" in line) + 1
    end = next(i for i in range(start, len(lines)) if not lines[i].strip())
    recipe = tmp_path / "my.yaml"
    recipe.write_text(textwrap.dedent("\n".join(lines[start:end])) + "\n")
    config = load_recipe(recipe)
    assert config.evaluate.models == ["@pruned", "@source", "bm25"]
    assert config.finetune.train == str(tmp_path.resolve() / "data" / "scifact")


def test_names_that_are_never_paths_agree_with_the_loaders():
    """recipe.py keeps its own copy of the alias, the baseline names and the Hub id pattern (importing load.py
    would import torch); they must match what the loaders accept."""
    from effir_surgery import load, retrievers
    from effir_surgery import recipe as config

    assert config.SMOLLM2_ALIAS == load.SMOLLM2_ALIAS
    assert config.BASELINE_NAMES == retrievers.BM25_NAMES | retrievers.MINILM_NAMES
    assert config._HUB_ID_SHAPE.pattern == load._HUB_ID.pattern

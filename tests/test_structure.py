"""The package's shape: data flows one way through the stages, the saved folder's names are defined once, and a
long module says why it is one job. These read the source with ``ast``; nothing is imported or run."""

import ast
from pathlib import Path

from effir_surgery import folder

PACKAGE = Path(folder.__file__).parent

# load -> analyze -> plan -> surgery -> save -> finetune -> evaluate -> publish; the commands sit on top. A module
# may import from its own stage or an earlier one. Shared foundations (errors, configs, the folder contract, the
# sealed remote code, the architecture table, the encoder) come first.
STAGES = {
    "foundation": (
        "__init__ errors _logging _memory validation config folder outputs fresh _fresh_process extras devices arch "
        "costs trust encode beir calib hf hf.configuration_effir hf.modeling_effir"
    ),
    "load": "load checkpoint layerwise source_card",
    "analyze": "analyze probe report",
    "plan": "plan",
    "surgery": "surgery ops ops.drop_attention ops.drop_mlp ops.gate_mlp ops.slice_mlp",
    "save": "save check card card_results card_history card_usage streaming",
    "finetune": (
        "finetune finetune.train finetune.data finetune.model finetune.checkpoints finetune.progress finetune.width"
    ),
    "evaluate": "evaluate eval_tasks eval_timer eval_results retrievers",
    "publish": "hub export",
    "commands": "pipeline run recipe cli cli_options cli_prune cli_finetune cli_evaluate cli_hub cli_export __main__",
}
RANK = {module: rank for rank, names in enumerate(STAGES.values()) for module in names.split()}
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:``, which never run."""
    hidden = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            hidden |= {id(child) for stmt in node.body for child in ast.walk(stmt)}
    return hidden


def _imports(name: str, path: Path) -> set[str]:
    """The package modules ``name`` imports, at module level or inside functions."""
    tree = ast.parse(path.read_text())
    hidden = _type_checking_nodes(tree)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    targets = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or id(node) in hidden:
            continue
        if node.level:
            base = package[: len(package) - (node.level - 1)]
            module = ".".join(base + ([node.module] if node.module else []))
        elif (node.module or "").startswith("effir_surgery"):
            module = node.module.removeprefix("effir_surgery").lstrip(".")
        else:
            continue
        if node.module is None:  # from . import x: x may be a module
            targets |= {f"{module}.{a.name}".lstrip(".") for a in node.names}
        else:
            targets.add(module)
    known = set(_modules())
    return {t if t in known else t.rsplit(".", 1)[0] for t in targets if t in known or t.rsplit(".", 1)[0] in known}


def test_every_module_has_a_stage():
    assert set(_modules()) - {""} <= set(RANK), f"give these modules a stage: {sorted(set(_modules()) - set(RANK))}"


def test_data_flows_one_way():
    """No module imports from a later stage (and so there are no import cycles across stages)."""
    backward = []
    for name, path in _modules().items():
        for target in _imports(name, path):
            if target and RANK.get(target, -1) > RANK.get(name, -1):
                backward.append(f"{name} ({list(STAGES)[RANK[name]]}) imports {target} ({list(STAGES)[RANK[target]]})")
    assert backward == []


def test_no_import_cycles():
    graph = {name: _imports(name, path) - {""} for name, path in _modules().items()}
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail, node, nxt]))
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def _contract_names() -> set[str]:
    names = {value for key, value in vars(folder).items() if key.endswith("_FILE") and isinstance(value, str)}
    return names | set(folder.REMOTE_CODE_FILES) | {folder.RESULTS_SCHEMA}


def test_saved_folder_names_are_written_once():
    """The saved folder's file names and the results schema are literals only in folder.py (messages that mention a
    name inside a sentence are fine)."""
    names = _contract_names()
    assert {"config.json", "provenance.json", "results.json", "surgery_plan.json"} <= names
    stray = []
    for name, path in _modules().items():
        if name == "folder" or name.startswith("hf"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                stray.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.value!r}")
    assert stray == []


def test_a_long_module_says_it_is_one_job():
    long = []
    for name, path in _modules().items():
        lines = len(path.read_text().splitlines())
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > MAX_LINES and "One job" not in doc:
            long.append(f"{name}: {lines} lines")
    assert long == []

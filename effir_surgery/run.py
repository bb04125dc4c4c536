"""Recipe runner (``effir-surgery run``): prune -> finetune -> evaluate -> push from one recipe, reusing completed
stages by content hash.

It sits on top of every stage, like the CLI: it calls the command functions of ``pipeline.py`` and the stages'
own entry points; nothing below imports it.
"""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel
from rich.markup import escape

from ._logging import info
from .arch import shape_from_config
from .config import PruneConfig, RunConfig
from .costs import param_count
from .devices import require_device
from .errors import EffirError
from .folder import CARD_FILE, CONFIG_FILE, RESULTS_FILE
from .load import check_source, load_config, resolve_source
from .outputs import output_lock
from .pipeline import _launched_as_main, prune
from .plan import SurgeryPlan, make_plan, validate_plan_config
from .trust import allowing_foreign_code

# Files a later step may add to or rewrite in a model folder without changing the model: the card (push renders it
# for the target repo) and attached evaluation results. They do not count toward a stage's output hash.
_ANNOTATIONS = {CARD_FILE, RESULTS_FILE}


def folder_hash(path: Path) -> str:
    """Content hash of a stage output: every file's relative path and bytes (a model folder's card and attached
    results excepted)."""
    import hashlib

    digest = hashlib.sha256()
    files = (
        [path]
        if path.is_file()
        else sorted(p for p in path.rglob("*") if p.is_file() and p.relative_to(path).as_posix() not in _ANNOTATIONS)
    )
    for file in files:
        digest.update(str(file.relative_to(path.parent if path.is_file() else path)).encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _key(*parts) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class RunResult(BaseModel):
    """Outcome of ``run``: each stage's status (ran / reused / skipped), seconds and output."""

    run_dir: Path
    stages: dict[str, dict]
    results: dict | None = None
    seconds: float


def run(config: RunConfig, skip: tuple[str, ...] = ()) -> RunResult:
    """Run a recipe: prune -> finetune -> evaluate -> push, reusing completed stages.

    A stage is reused when its settings, its input (the previous stage's output hash, or the source model) and its
    recorded output hash all still match; otherwise it runs and every later stage reruns after it. An interrupted
    fine-tuning resumes from its last checkpoint. Under ``accelerate launch`` only the main process prunes,
    evaluates and pushes; every process trains. A bad model reference, training data or evaluation folder fails
    before the first stage starts (and before the run folder is created).

    Before the first stage it prints (stderr) the model's layers and parameters, the stages (run or reused) with
    their settings, and the prune plan with its projected parameters when the plan needs no importance scores;
    otherwise the plan is printed as soon as it is made, after the scoring and before the surgery
    (``_run_overview``). The run folder may not overlap the model or the data it reads, and the main process holds
    its lock (``outputs.output_lock``) for the whole run, so a second run of the same recipe fails at once.
    """
    from .outputs import check_disjoint

    source = resolve_source(config.model, config.revision)  # a bad model reference fails before any stage
    evaluating = config.evaluate is not None and "evaluate" not in skip
    for device in {config.device, *((config.evaluate.device, *config.evaluate.devices) if evaluating else ())}:
        require_device(device)  # a GPU this machine lacks fails before any stage
    data = [config.finetune.train if config.finetune else None, *(config.evaluate.data_dir if config.evaluate else [])]
    check_disjoint(config.run_dir, [*source.local_paths, *data], what="run_dir")
    with allowing_foreign_code(config.trust_remote_code):
        if not _launched_as_main():
            return _run(config, skip, source)
        with output_lock(config.run_dir):
            return _run(config, skip, source)


def _run(config: RunConfig, skip: tuple[str, ...], source) -> RunResult:
    import json

    from accelerate import PartialState

    from .config import EvalConfig, FinetuneConfig
    from .evaluate import evaluate as run_evaluate
    from .finetune import finetune as run_finetune

    started = time.perf_counter()
    state = PartialState()
    run_dir = Path(config.run_dir)
    record_path = run_dir / "run.json"
    names = [n for n in ("prune", "finetune", "evaluate", "push") if n not in skip and _stage(config, n) is not None]
    _check_stage_data(config, names)
    check_source(source)  # config, weights against it, tokenizer: before the run folder is made
    record = json.loads(record_path.read_text()) if record_path.is_file() else {"stages": {}}
    upstream = _key(config.model, config.revision, _source_fingerprint(config.model))
    reuse = _reusable_stages(config, names, record, run_dir, upstream)
    # the plan before the long stages: model size, stages, settings and (when it needs no scores) the prune plan
    overview, early_plan = _run_overview(config, source, names, skip, reuse)
    if state.is_main_process:
        for line in overview:
            info(escape(line))
        run_dir.mkdir(parents=True, exist_ok=True)
    current = config.model
    pruned = None
    status: dict[str, dict] = {}
    for index, name in enumerate(names, start=1):
        settings = _stage(config, name)
        key = _key(name, settings, upstream, config.dtype)
        out = run_dir / _STAGE_OUTPUTS[name]
        reusable = reuse[name]
        last = record.get("durations", {}).get(name)
        eta = f"(last run took {last / 60:.0f} min)" if last and not reusable else ""
        info(f"[bold]stage {index}/{len(names)}: {name}[/] " + ("(up to date: reused)" if reusable else eta))
        stage_started = time.perf_counter()
        if not reusable:
            if name == "prune":
                if state.is_main_process:
                    prune(
                        PruneConfig(
                            model=current,
                            revision=config.revision,
                            dtype=config.dtype,
                            device=config.device,
                            trust_remote_code=config.trust_remote_code,
                            output=out,
                            overwrite=True,
                            **settings.model_dump(),
                        ),
                        on_plan=None if early_plan else _print_plan,
                    )
            elif name == "finetune":
                run_finetune(
                    FinetuneConfig(
                        model=str(current),
                        output=out,
                        dtype=config.dtype,
                        device=config.device,
                        trust_remote_code=config.trust_remote_code,
                        overwrite=True,
                        **settings.model_dump(),
                    )
                )
            elif name == "evaluate" and state.is_main_process:
                fields = settings.model_dump(exclude={"models"})
                for inherited in ("dtype", "device"):  # the recipe's value unless the stage sets its own
                    if inherited not in settings.model_fields_set:
                        fields[inherited] = getattr(config, inherited)
                if "attach" not in settings.model_fields_set:  # the run's models carry their scores (model card)
                    fields["attach"] = True
                extra = [_model_ref(m, config, pruned) for m in settings.models]
                run_evaluate(
                    EvalConfig(
                        models=[str(current), *extra],
                        output=out,
                        overwrite=True,  # a rerun of this stage replaces its results and reuses its mteb-cache
                        trust_remote_code=config.trust_remote_code,
                        **fields,
                    )
                )
            elif name == "push" and state.is_main_process:
                from .hub import push_saved

                push_saved(Path(current), config.push_to_hub)
                out.write_text(json.dumps({"repo_id": config.push_to_hub, "folder": str(current)}) + "\n")
            state.wait_for_everyone()
            seconds = time.perf_counter() - stage_started
            if state.is_main_process:
                record.setdefault("durations", {})[name] = round(seconds, 1)  # kept across invalidation: the ETA
                record["stages"][name] = {
                    "key": key,
                    "output": folder_hash(out),
                    "seconds": round(seconds, 1),
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                }
                # later stages depend on this output: forget them so they cannot be reused by accident
                for later in names[index:]:
                    record["stages"].pop(later, None)
                record_path.write_text(json.dumps(record, indent=1) + "\n")
        status[name] = {
            "status": "reused" if reusable else "ran",
            "seconds": record["stages"].get(name, {}).get("seconds"),
            "output": str(out),
        }
        info(f"  {name}: {status[name]['status']} in {time.perf_counter() - stage_started:.1f}s -> {out}")
        upstream = record["stages"].get(name, {}).get("output", key)
        if name == "prune":
            pruned = out
        if name in ("prune", "finetune"):
            current = out
    results = None
    eval_dir = run_dir / "eval" / RESULTS_FILE
    if "evaluate" in names and eval_dir.is_file():
        results = json.loads(eval_dir.read_text())
    return RunResult(run_dir=run_dir, stages=status, results=results, seconds=time.perf_counter() - started)


_STAGE_OUTPUTS = {"prune": "pruned", "finetune": "finetuned", "evaluate": "eval", "push": "push.json"}


def _reusable_stages(config, names: list[str], record: dict, run_dir: Path, upstream: str) -> dict[str, bool]:
    """Which of the stages ``names`` ``run`` reuses: a stage is reused when its settings, its input (``upstream``,
    then each reused stage's recorded output) and its recorded output hash all still match. Once one stage runs,
    every later one runs after it (its record is dropped when the earlier stage finishes)."""
    reuse = dict.fromkeys(names, False)
    for name in names:
        key = _key(name, _stage(config, name), upstream, config.dtype)
        out = run_dir / _STAGE_OUTPUTS[name]
        previous = record["stages"].get(name, {})
        if not (previous.get("key") == key and out.exists() and folder_hash(out) == previous.get("output")):
            break
        reuse[name] = True
        upstream = previous["output"]
    return reuse


def _settings_summary(settings) -> str:
    """A stage's settings as the recipe (or ``--set``) gave them: ``key=value, ...``; defaults and nulls are left
    out."""
    if not isinstance(settings, BaseModel):
        return str(settings)  # push: the repo id

    def show(value) -> str:
        if isinstance(value, list):
            return "[" + ", ".join(map(show, value)) + "]"
        return repr(value) if value == "" else str(value)

    values = settings.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    return ", ".join(f"{key}={show(value)}" for key, value in values.items()) or "all defaults"


def _run_overview(config, source, names: list[str], skip, reuse: dict[str, bool]) -> tuple[list[str], bool]:
    """The lines ``run`` prints before its first stage, and whether they include the prune plan.

    The model's layer count and parameters come from its config alone. When the prune stage will run, its plan is
    made here if it needs no importance scores (explicit layer lists: a plan error fails the run before any stage);
    otherwise it is made after the scoring, and ``prune`` prints it then (``_print_plan``), before the surgery.
    The model config is read cheaply; if that fails and no prune stage runs, the line says so and the run goes on.
    """
    pruning = "prune" in names and not reuse["prune"]
    name = f"run {config.name}" if config.name else "run"
    lines = [f"{name}: {config.model} -> {config.run_dir}"]
    revision = f" at revision {config.revision}" if config.revision else ""
    try:
        shape = shape_from_config(load_config(source))
    except Exception as exc:  # noqa: BLE001 - the prune stage needs it (re-raised); later stages load the model
        if pruning:
            raise
        shape = None
        why = str(exc).rstrip(".")
        lines.append(f"model: {config.model}{revision}, {config.dtype} on {config.device} (size unknown: {why})")
    if shape is not None:
        params = param_count(shape)
        lines.append(
            f"model: {config.model}{revision} ({shape.model_type}, {shape.num_layers} layers, {params.total:,} "
            f"params, {params.non_embedding:,} non-embedding), {config.dtype} on {config.device}"
        )
    skipped = [n for n in skip if _stage(config, n) is not None]
    stages = ", ".join(f"{n} ({'reused' if reuse[n] else 'runs'})" for n in names) or "none"
    lines.append(f"stages: {stages}" + (f"; skipped: {', '.join(skipped)}" if skipped else ""))
    lines += [f"  {n}: {_settings_summary(_stage(config, n))}" for n in names]
    if not pruning:
        return lines, False
    validate_plan_config(shape, config.prune)  # shape-only checks (layer indices, ratios): before any stage
    if config.prune.needs_scores:
        where = config.prune.calib or "the bundled calibration texts"
        lines.append(f"plan: chosen after scoring sublayer importance on {where}; printed before the surgery")
        return lines, False
    plan = make_plan(shape, config.prune, None, model_name=config.model)
    lines += ["plan:", *(f"  {line}" for line in plan.summary().splitlines())]
    return lines, True


def _print_plan(plan: SurgeryPlan) -> None:
    """``run``'s view of the prune stage's plan, printed as soon as it is made (after scoring, before surgery)."""
    info("plan:")
    for line in plan.summary().splitlines():
        info(escape(f"  {line}"))


def _check_stage_data(config, names: list[str]) -> None:
    """Refuse bad data of the stages in ``names`` before the first one runs, so a typo does not surface only after
    an hour of pruning: the fine-tuning data is read and validated as ``finetune`` reads it (file:line errors, the
    train split of a BEIR folder), each evaluation folder gets cheap file checks (the files exist; nothing is
    parsed). Errors name the recipe field."""
    from .beir import find_file, is_beir_folder
    from .extras import require_train
    from .finetune.data import check_given_negatives, read_train_data
    from .retrievers import require_eval_for

    if "finetune" in names:
        settings = config.finetune
        require_train(settings, "the recipe's finetune stage")
        try:
            data = read_train_data(settings.train, settings.train_split)
        except EffirError as exc:
            raise EffirError(f"finetune.train: {exc}") from None
        if settings.mine == "none":
            try:
                check_given_negatives(data, settings.hard_negatives)
            except EffirError as exc:
                raise EffirError(f"finetune: {exc}") from None
    if "evaluate" in names:
        require_eval_for(config.evaluate.models, "the recipe's evaluate stage")
        split = config.evaluate.split
        for folder in map(Path, config.evaluate.data_dir):
            where = f"evaluate.data_dir: '{folder}'"
            if not folder.is_dir():
                raise EffirError(f"{where} does not exist.")
            if not is_beir_folder(folder) or find_file(folder, "queries") is None:
                raise EffirError(f"{where} is not a BEIR folder (needs corpus.jsonl[.gz] and queries.jsonl[.gz]).")
            if not (folder / "qrels" / f"{split}.tsv").is_file():
                available = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
                raise EffirError(
                    f"{where} has no qrels/{split}.tsv for evaluate.split '{split}' "
                    f"(available splits: {', '.join(available) or 'none'})."
                )


def _stage(config, name: str):
    if name == "push":
        return config.push_to_hub
    return getattr(config, name)


def _source_fingerprint(model: str) -> str:
    """Cheap identity of the source: a local folder's config and weight sizes; a Hub id's name is enough here."""
    path = Path(model)
    if path.is_dir():
        parts = [(p.name, p.stat().st_size) for p in sorted(path.glob("*")) if p.is_file()]
        config = (path / CONFIG_FILE).read_text() if (path / CONFIG_FILE).is_file() else ""
        return _key(parts, config)
    return model


def _model_ref(name: str, config, pruned: Path | None) -> str:
    if name == "@source":
        return config.model
    if name == "@pruned":
        if pruned is None:
            raise EffirError("evaluate.models has '@pruned' but the recipe has no prune stage.")
        return str(pruned)
    return name

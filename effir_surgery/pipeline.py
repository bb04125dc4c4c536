"""Command orchestration: the ``prune``, ``analyze`` and ``finetune`` commands each call exactly one function here.

``prune``: source -> config (cheap checks) -> calibration -> analysis -> plan -> surgery -> atomic save + clean
reload check -> optional comparison. ``analyze``: importance report, table and plot. ``finetune``: train, save,
optionally push. The recipe runner (``effir-surgery run``) lives in ``run.py``, on top of these.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from ._logging import info
from ._memory import available_memory, format_bytes, peak_memory
from .analyze import ImportanceReport, analyze_importance, analyze_importance_layerwise
from .arch import shape_from_config
from .beir import load_beir
from .calib import load_calibration
from .config import AnalyzeConfig, EncoderSettings, PruneConfig
from .costs import param_count
from .devices import require_device
from .encode import read_encoder_config
from .errors import EffirError
from .folder import IMPORTANCE_FILE, Provenance
from .layerwise import load_layerwise
from .load import (
    check_source,
    ensure_local,
    load_config,
    load_model,
    load_tokenizer,
    local_checkpoint,
    resolve_source,
    source_trust,
)
from .outputs import claimed_output, output_lock
from .plan import SurgeryPlan, make_plan, validate_plan_config
from .save import atomic_folder, invocation, save_model
from .surgery import SurgeryRecord, apply_plan
from .trust import allowing_foreign_code


class PruneResult(BaseModel):
    """Outcome of ``prune``: the plan, what was done, where it went, and the checks."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    plan: SurgeryPlan
    record: SurgeryRecord | None = None
    output: Path | None = None
    reload: dict | None = None
    comparison: dict | None = None
    seconds: float
    streaming: bool = False
    reload_skipped: str | None = None
    peak_memory: dict[str, int] | None = None


def source_encoder(source) -> EncoderSettings:
    """The encoder definition a local folder was saved with (its sentence-transformers files: a fine-tuned model's
    own query prompt), else the default. Calibration and probe texts are formatted with it, so a model is scored on
    the inputs it is used with."""
    if source.kind == "folder":
        return read_encoder_config(source.path) or EncoderSettings()
    return EncoderSettings()


def _check_report(report: ImportanceReport, shape) -> None:
    if report.shape.num_layers != shape.num_layers or report.shape.mlp_widths != shape.mlp_widths:
        raise EffirError("--importance: that report was computed on a model with a different shape; re-run analyze.")


def _score(source, calibration, config, *, neurons: bool, streaming: bool):
    """Importance report of ``source`` on ``calibration`` (layer by layer when ``streaming``); also returns the
    loaded model when it was loaded whole, so the caller can reuse it."""
    if streaming:
        loaded = load_layerwise(source, config.dtype, config.device)  # a bad folder fails before anything is said
        info(f"Scoring sublayers layer by layer on {calibration.description} ...")
        report = analyze_importance_layerwise(
            loaded,
            calibration,
            model_name=config.model,
            max_length=config.calib_max_length,
            batch_size=config.calib_batch_size,
            neurons=neurons,
        )
        return report, None
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
        neurons=neurons,
    )
    return report, loaded


def prune(config: PruneConfig, on_plan: Callable[[SurgeryPlan], None] | None = None) -> PruneResult:
    """Prune ``config.model`` as configured and save the result (or only print the plan with ``dry_run``).

    In streaming mode (``config.streaming``, automatic for models larger than half the available RAM) the
    analysis runs one decoder layer at a time and the surgery streams from disk to disk (``streaming.py``); the
    saved folder is the same. ``on_plan`` is called with the plan as soon as it is made, before the surgery
    (``run`` prints it there).
    """
    started = time.perf_counter()
    source = resolve_source(config.model, config.revision)
    require_device(config.device)  # a GPU this machine lacks fails before the output is touched
    with allowing_foreign_code(config.trust_remote_code):
        if config.dry_run:
            return _prune(config, source, started, on_plan)
        with claimed_output(config.output, config.overwrite, [*source.local_paths, config.calib, config.importance]):
            return _prune(config, source, started, on_plan)


def _prune(config: PruneConfig, source, started: float, on_plan) -> PruneResult:
    check_source(source)  # config, weights against it, tokenizer: a bad folder fails before any work
    model_config = load_config(source)
    shape = shape_from_config(model_config)
    validate_plan_config(shape, config)
    streaming = _use_streaming(config, shape)

    report, loaded = None, None
    if config.importance is not None:
        report = ImportanceReport.load(config.importance)
        _check_report(report, shape)
    elif config.needs_scores:
        prompt = source_encoder(source).query_prompt
        calibration = load_calibration(config.calib, config.calib_samples, query_prompt=prompt)
        report, loaded = _score(source, calibration, config, neurons=config.wants_width, streaming=streaming)
    plan = make_plan(shape, config, report, model_name=config.model)
    plan = plan.model_copy(update={"revision": config.revision}) if config.revision else plan
    if on_plan is not None:
        on_plan(plan)
    if config.dry_run:
        return PruneResult(plan=plan, seconds=time.perf_counter() - started)

    if streaming:
        from .streaming import StreamingSurgery

        job = StreamingSurgery(local_checkpoint(source), plan, dtype=config.dtype)
        record = job.record
    else:
        loaded = loaded or load_model(source, config.dtype, config.device)
        record = apply_plan(loaded.model, plan)
    projection = plan.projection()
    from .source_card import source_format, source_language

    inherited = _source_license(source)
    carried = {"source_format": fmt} if (fmt := source_format(source)) else {}
    carried |= {"language": language} if (language := source_language(source)) else {}
    provenance = Provenance(
        source_model=config.model,
        base_model=inherited["base_model"],
        revision=config.revision,
        license=inherited["license"],
        **carried,
        command=invocation(),
        source_shape=shape.model_dump(),
        config=config.model_dump(mode="json"),
        record=record.model_dump(),
        costs=projection.model_dump(),
    )
    extra = {IMPORTANCE_FILE: report.model_dump_json(indent=1) + "\n"} if report else {}
    reload_skipped = None
    if streaming:
        info(f"Streaming the surgery to {config.output} ({len(job.entries)} tensors) ...")
        streamed = job.write(
            config.output,
            tokenizer=load_tokenizer(source),
            provenance=provenance,
            overwrite=config.overwrite,
            verify=config.verify_reload,
            extra_files=extra,
        )
        reload_report, reload_skipped = streamed.reload, streamed.reload_skipped
    else:
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
        comparison = compare_in_fresh_process(
            ensure_local(source), config.output, texts, config.dtype, 8, trust_source=source_trust(source)
        )
    if config.push_to_hub:
        from .hub import push_saved

        push_saved(config.output, config.push_to_hub)
    return PruneResult(
        plan=plan,
        record=record,
        output=config.output,
        reload=reload_report or None,
        comparison=comparison,
        seconds=time.perf_counter() - started,
        streaming=streaming,
        reload_skipped=reload_skipped,
        peak_memory=peak_memory(),
    )


def _too_large_to_load(shape, dtype: str) -> str | None:
    """Why the model should not be loaded whole (it would take more than half of the available RAM in ``dtype``;
    loading needs that much and more, and the machine keeps running other work), or None when it fits."""
    from .devices import torch_dtype

    need = param_count(shape).total * torch_dtype(dtype).itemsize
    available = available_memory()
    if need <= 0.5 * available:
        return None
    return (
        f"The model needs about {format_bytes(need)} in {dtype}, more than half of the {format_bytes(available)} "
        "of RAM available"
    )


def _use_streaming(config: PruneConfig, shape) -> bool:
    """``config.streaming``, or when unset: stream when the model is too large to load whole
    (``_too_large_to_load``)."""
    if config.streaming is not None:
        return config.streaming
    why = _too_large_to_load(shape, config.dtype)
    if why is None:
        return False
    info(f"{why}: analysing layer by layer and streaming the surgery.")
    return True


def _source_license(source) -> dict[str, str | None]:
    """Licence and base model the pruned model inherits from its source, for its card: ``{"license",
    "base_model"}`` (``source_card.source_card_metadata``: the source's model card, a Hugging Face cache path, what an
    effir-surgery folder recorded, or the bundled alias's)."""
    from .source_card import source_card_metadata

    return source_card_metadata(source)


def _analyze_streaming(config: AnalyzeConfig, source) -> bool:
    """Whether ``analyze`` runs layer by layer: ``config.streaming``, or when unset the rule of ``prune``
    (``_use_streaming``): when the model in ``config.dtype`` would take more than half of the available RAM. The
    drop-one probe needs the whole model, so an automatic choice of streaming with ``--probe`` is refused here,
    before anything is loaded (``AnalyzeConfig`` refuses an explicit ``--streaming --probe``).

    Raises:
        EffirError: ``--probe`` on a model that is too large to load whole.
    """
    if config.streaming is not None:
        return config.streaming
    why = _too_large_to_load(shape_from_config(load_config(source)), config.dtype)
    if why is None:
        return False
    if config.probe is not None:
        raise EffirError(
            f"{why}, so analyze would run layer by layer, but --probe needs the whole model in memory. Drop "
            "--probe, or pass --no-streaming to load the whole model anyway."
        )
    info(f"{why}: analysing layer by layer.")
    return True


def analyze(config: AnalyzeConfig) -> ImportanceReport:
    """Score every attention and MLP sublayer of ``config.model``; write ``importance.json``, ``importance.md``
    and ``importance.png`` into ``config.output``.

    Layer by layer (``analyze_importance_layerwise``, the same scores) with ``config.streaming`` or, when unset,
    for models larger than half the available RAM (``_analyze_streaming``); the probe needs the whole model.
    """
    source = resolve_source(config.model, config.revision)
    require_device(config.device)  # a GPU this machine lacks fails before the output is touched
    inputs = [*source.local_paths, config.calib, config.probe]
    with (
        allowing_foreign_code(config.trust_remote_code),
        claimed_output(config.output, config.overwrite, inputs) as out,
    ):
        return _analyze(config, source, out)


def _analyze(config: AnalyzeConfig, source, out: Path) -> ImportanceReport:
    from .report import importance_table, plot_importance

    streaming = _analyze_streaming(config, source)
    encoder = source_encoder(source)
    calibration = load_calibration(config.calib, config.calib_samples, query_prompt=encoder.query_prompt)
    if config.probe is not None:
        from .extras import require

        require("eval", "analyze --probe", {"pytrec_eval": "pytrec-eval-terrier"})
        load_beir(config.probe, config.probe_split)  # fail on bad probe data before loading the model
    report, loaded = _score(source, calibration, config, neurons=True, streaming=streaming)
    if config.probe is not None:
        from .probe import model_state, probe_sublayers

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
            encoder_config=encoder,
            model_state=model_state(source.path) if source.kind == "folder" else None,
        )
        report = report.model_copy(update={"probe": probe, "seconds": report.seconds + time.perf_counter() - started})
    # written beside the output and moved into place as models are saved: an interrupted run leaves no
    # half-written folder, and a full disk ends in one line
    with atomic_folder(out, config.overwrite) as tmp:
        report.save(tmp / IMPORTANCE_FILE)
        (tmp / "importance.md").write_text(importance_table(report) + "\n")
        plot_importance(report, tmp / "importance.png")
    return report


def _launched_as_main() -> bool:
    """Whether this is the main process of a launch (torchrun and accelerate set ``RANK``; a plain run is rank 0).
    Read from the environment: creating accelerate's state here, before training configures it, would give every
    process the wrong answer."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def finetune(config):
    """``effir-surgery finetune``: fine-tune and save (``finetune.finetune``), then push when asked."""
    from .extras import require_train

    require_train(config)
    from .finetune import finetune as run_finetune

    with allowing_foreign_code(config.trust_remote_code):
        if not _launched_as_main():
            run_finetune(config)
            return None  # only the main process saves (and reports); it alone holds the output's lock
        with output_lock(config.output):
            result = run_finetune(config)
    if config.push_to_hub:
        from .hub import push_saved

        push_saved(config.output, config.push_to_hub)
    return result

"""``finetune``: contrastive retrieval fine-tuning on the sentence-transformers trainer.

This module runs the training: ``finetune()``, the trainer (what it checkpoints), the loss, the training rows and
saving the result. InfoNCE over in-batch and hard negatives comes from sentence-transformers:
``CachedMultipleNegativesRankingLoss`` (GradCache) when a batch is split into mini-batches,
``MultipleNegativesRankingLoss`` (the same loss without the extra embedding pass) when one mini-batch holds the whole
batch; batches from the no-duplicates sampler; LoRA from peft (targets from the architecture table), merged before
saving. With ``learn_width`` the gates (``width``) give a width plan, which ``surgery.apply_plan`` cuts.

Checkpoints (``checkpoints``) go to a work folder beside the output; rerunning the same command resumes from the
last one. The final folder is written atomically through ``save.save_model``.
Runs unchanged under ``accelerate launch`` / ``torchrun`` (DDP, FSDP): negatives are then gathered across devices
and only the main process writes.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import torch
from pydantic import BaseModel

from .._logging import info
from ..arch import ModelShape, resolve_spec, shape_from_config
from ..config import EncoderSettings, FinetuneConfig
from ..costs import CostComparison
from ..devices import require_device, torch_dtype
from ..errors import EffirError
from ..folder import IMPORTANCE_FILE, PLAN_FILE, PROVENANCE_FILE, TRAINING_FILE, WIDTH_PLAN_FILE, Provenance
from ..load import check_source, ensure_local, load_config, resolve_source
from ..ops.gate_mlp import open_fraction
from ..outputs import check_disjoint, check_output
from ..plan import SurgeryPlan
from ..save import invocation, load_saved, save_model
from ..source_card import source_card_metadata, source_format, source_language
from ..surgery import apply_plan
from .checkpoints import (
    TRAINABLE_FILE,
    _check_fsdp_settings,
    _last_checkpoint,
    _work_folder,
    load_trainable,
    trainable_tensors,
    unsharded_copy,
)
from .data import bm25_negatives, build_rows, check_given_negatives, read_train_data
from .model import _add_trainables, _load_for_training
from .progress import _interactive, _step_timer, keep_stdout_for_results
from .width import _gate_schedule, _width_target, learned_width_plan, load_gate_scores, save_gate_scores


class FinetuneResult(BaseModel):
    """Outcome of a fine-tuning run."""

    output: Path
    steps: int
    resumed_from_step: int
    train_loss: float | None
    seconds: float
    examples: int
    losses: list[float] = []
    loss_class: str = ""  # the sentence-transformers loss that trained it
    open_gates: list[float] = []
    processes: int = 1
    open_gate_fraction: float | None = None
    width_plan: SurgeryPlan | None = None


def _trainer_class():
    from sentence_transformers import SentenceTransformerTrainer
    from transformers.trainer import TRAINING_ARGS_NAME

    class EffirTrainer(SentenceTransformerTrainer):
        """Checkpoints exactly the trainable tensors (LoRA weights, gates, or all weights for full fine-tuning) and
        restores them into the model being trained, whatever its wrappers; the trainer keeps optimizer,
        scheduler and RNG state beside them.

        Under FSDP the trainer gathers the full state dict on every process and passes it here; only the main
        process writes, from that dict (a sharded parameter holds only this process's shard). On resume each
        checkpoint tensor is distributed back onto its parameter's shards."""

        gates: list = []

        def log(self, logs: dict, *args, **kwargs) -> None:
            # the width progress of learned gates, next to the loss
            if self.gates and "loss" in logs:
                logs["open_gates"] = round(open_fraction(self.gates), 4)
            super().log(logs, *args, **kwargs)

        def _save(self, output_dir: str | None = None, state_dict=None) -> None:
            from safetensors.torch import save_file

            if not self.args.should_save:
                return
            output_dir = output_dir or self.args.output_dir
            os.makedirs(output_dir, exist_ok=True)
            save_file(trainable_tensors(self.model, state_dict), os.path.join(output_dir, TRAINABLE_FILE))
            if self.gates:  # the gates' accumulated Taylor scores: a resumed run ranks gates as an unbroken one
                save_gate_scores(self.gates, output_dir)
            torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))

        def _load_from_checkpoint(self, checkpoint_path: str, model=None) -> None:
            from safetensors.torch import load_file

            load_trainable(self.model, load_file(os.path.join(checkpoint_path, TRAINABLE_FILE)), checkpoint_path)
            if self.gates:
                load_gate_scores(self.gates, checkpoint_path)

    return EffirTrainer


def _rows(config: FinetuneConfig, data, work: Path, model=None) -> dict[str, list[str]]:
    """Training rows with hard negatives, cached in the work folder so a resumed run sees the same data."""
    cache = work / "rows.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    negatives = None
    if config.hard_negatives and config.mine == "bm25":
        info(f"Mining {config.hard_negatives} BM25 hard negative(s) per query from {len(data.corpus):,} documents")
        negatives = bm25_negatives(
            data, config.hard_negatives, config.mine_range_min, config.mine_range_max, config.seed
        )
    rows = build_rows(
        data, negatives, config.hard_negatives if config.mine != "model" else 0, config.max_examples, config.seed
    )
    if config.hard_negatives and config.mine == "model":
        rows = _model_negatives(config, data, rows, model)
    cache.write_text(json.dumps(rows))
    return rows


def _model_negatives(config: FinetuneConfig, data, rows, model) -> dict[str, list[str]]:
    """Hard negatives mined with the model being fine-tuned (sentence-transformers' ``mine_hard_negatives``)."""
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    info(f"Mining {config.hard_negatives} hard negative(s) per query with the model")
    mined = mine_hard_negatives(
        Dataset.from_dict({"query": rows["query"], "positive": rows["positive"]}),
        model,
        "query",
        "positive",
        corpus=data.corpus,
        range_min=config.mine_range_min,
        range_max=config.mine_range_max,
        num_negatives=config.hard_negatives,
        sampling_strategy="random",
        query_prompt=config.query_prompt,
        output_format="n-tuple",
        batch_size=config.mini_batch_size,
        verbose=False,
    )
    if len(mined) == 0:
        raise EffirError("Model-based mining found no negatives in range; widen --mine-range-max or use --mine bm25.")
    columns = mined.column_names
    # plain lists: a datasets Column is neither JSON-serialisable (the rows cache) nor a list
    renamed = {"query": list(mined[columns[0]]), "positive": list(mined[columns[1]])}
    for j, name in enumerate(columns[2:], start=1):
        renamed[f"negative_{j}"] = list(mined[name])
    return renamed


def _copy_metadata(source_folder: str, out: Path) -> dict:
    """Provenance of the input folder (and its plan/importance files) carried into the output."""
    src = Path(source_folder)
    # an input without a record still nests one, empty, so the card reads the result as fine-tuned
    parent = Provenance.read(src) if (src / PROVENANCE_FILE).is_file() else Provenance.model_construct()
    files = {}
    for name in (PLAN_FILE, IMPORTANCE_FILE):
        if (src / name).is_file():
            files[name] = (src / name).read_text()
    return {"parent": parent, "files": files}


def contrastive_loss(model, config: FinetuneConfig, gather: bool = False):
    """InfoNCE over in-batch and hard negatives at inverse temperature ``config.scale``, from sentence-transformers.

    GradCache (``CachedMultipleNegativesRankingLoss``) embeds the whole batch once without gradients, then again
    per mini-batch with them, so it costs one extra forward pass. It buys memory only when the batch is split: when
    ``mini_batch_size`` covers the batch the plain ``MultipleNegativesRankingLoss`` gives the same loss and
    gradients (a test checks it) about a quarter faster.
    """
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    if config.mini_batch_size >= config.batch_size:
        return MultipleNegativesRankingLoss(model, scale=config.scale, gather_across_devices=gather)
    return CachedMultipleNegativesRankingLoss(
        model, scale=config.scale, mini_batch_size=config.mini_batch_size, gather_across_devices=gather
    )


def finetune(config: FinetuneConfig) -> FinetuneResult:
    """Fine-tune ``config.model`` as a retriever on ``config.train`` and save it to ``config.output``."""
    from accelerate import PartialState
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers

    started = time.perf_counter()
    state = PartialState()
    out = Path(config.output)
    require_device(config.device)  # a GPU this machine lacks fails before anything is written or loaded
    check_output(out, config.overwrite, [config.train])
    data = read_train_data(config.train, config.train_split)  # bad data fails before any model is loaded
    if config.mine == "none":  # before the work folder: build_rows would refuse the data only after it is made
        check_given_negatives(data, config.hard_negatives)
    _check_fsdp_settings()
    source = resolve_source(config.model, config.revision)
    check_disjoint(out, source.local_paths)  # never write into, over or around the model being fine-tuned
    check_source(source)  # config, weights against it, tokenizer: a bad folder fails before the work folder
    model_config = load_config(source)
    spec = resolve_spec(model_config)
    shape = shape_from_config(model_config)
    target = _width_target(config, shape) if config.learn_width else None
    work = _work_folder(config, state.is_main_process)
    with state.main_process_first():
        folder = ensure_local(source)
        rows = _rows(config, data, work) if config.mine != "model" else None

    use_bf16 = (
        config.bf16 if config.bf16 is not None else bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    )
    model = _load_for_training(config, folder)
    if rows is None:
        with state.main_process_first():
            rows = _rows(config, data, work, model)
    gates = _add_trainables(model, config, spec)
    loss = contrastive_loss(model, config, gather=state.num_processes > 1)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(work / "checkpoints"),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay,
        lr_scheduler_type="linear",
        bf16=use_bf16,
        activation_checkpointing=config.gradient_checkpointing,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        prompts={"query": config.query_prompt} if config.query_prompt else None,
        learning_rate_mapping={r"neuron_gate": config.gate_learning_rate} if gates else {},
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        logging_steps=config.logging_steps,
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        dataloader_drop_last=True,
        use_cpu=config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available()),
        disable_tqdm=not _interactive(),
    )
    if len(rows["query"]) < config.batch_size:
        raise EffirError(f"Only {len(rows['query'])} training rows for --batch-size {config.batch_size}; lower it.")
    trainer = _trainer_class()(model=model, args=args, train_dataset=Dataset.from_dict(rows), loss=loss)
    trainer.gates = gates
    if gates:
        trainer.add_callback(_gate_schedule(gates, target, config.gate_penalty, config.gate_score))
    trainer.add_callback(_step_timer(len(rows["query"]), config.batch_size, _interactive()))
    keep_stdout_for_results(trainer)
    resume = _last_checkpoint(work / "checkpoints")
    resumed_from = int(resume.name.split("-")[-1]) if resume else 0
    if resume:
        info(f"Resuming from {resume} (step {resumed_from})")
    output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if trainer.state.global_step == 0:
        raise EffirError(
            f"No training step was taken: the no-duplicates sampler could not form one batch of {config.batch_size} "
            f"from {len(rows['query'])} rows. Lower --batch-size, add data, or use fewer --hard-negatives."
        )
    result = FinetuneResult(
        output=out,
        steps=trainer.state.global_step,
        resumed_from_step=resumed_from,
        loss_class=type(loss).__name__,
        train_loss=output.training_loss,
        seconds=time.perf_counter() - started,
        examples=len(rows["query"]),
        losses=[float(h["loss"]) for h in trainer.state.log_history if "loss" in h],
        open_gates=[float(h["open_gates"]) for h in trainer.state.log_history if "open_gates" in h],
        processes=state.num_processes,
    )
    # Under FSDP every process takes part in gathering the full weights; the main process then continues with an
    # unsharded copy (merging, folding and saving need whole tensors).
    full_state = trainer.accelerator.get_state_dict(trainer.model) if trainer.is_fsdp_enabled else None
    if not state.is_main_process:
        return result
    if full_state is not None:
        model, gates = unsharded_copy(config, folder, spec, full_state)

    trained = model[0].model.merge_and_unload() if config.lora else model[0].auto_model
    if gates:
        result.open_gate_fraction = open_fraction(gates)
        result.width_plan = learned_width_plan(trained, gates, target, config, spec)
        apply_plan(trained, result.width_plan)
    _save(config, folder, trained, model[0].tokenizer, result, data)
    shutil.rmtree(work, ignore_errors=True)
    result.seconds = time.perf_counter() - started
    return result


def _saved_encoder(config: FinetuneConfig, folder: str):
    """The encoder definition written into the output: the prompts it was trained with, and the input folder's
    inference max length (default 512), not the shorter length used to make training affordable."""
    from ..encode import read_encoder_config

    inference_length = (read_encoder_config(folder) or EncoderSettings()).max_length
    return config.encoder().model_copy(update={"max_length": inference_length})


def _save(config, folder, trained, tokenizer, result: FinetuneResult, data) -> None:
    """Put the trained base weights into the full causal LM of the input folder (same plan applied) and save."""
    causal, _ = load_saved(folder, dtype=torch_dtype(config.dtype), causal_lm=True)
    input_shape = shape_from_config(causal.config)
    width_plan = result.width_plan
    if width_plan is not None:
        apply_plan(causal, width_plan)
    missing, unexpected = causal.base_model.load_state_dict(trained.state_dict(), strict=False)
    if missing or unexpected:
        raise AssertionError(f"trained weights do not fit the causal LM: {missing[:3]} {unexpected[:3]}")
    meta = _copy_metadata(folder, result.output)
    extra = dict(meta["files"])
    if width_plan is not None:
        extra[WIDTH_PLAN_FILE] = width_plan.model_dump_json(indent=1) + "\n"
    training = {
        "config": config.model_dump(mode="json"),
        "data": data.description,
        **result.model_dump(mode="json", exclude={"width_plan", "output"}),
        "torch_threads": torch.get_num_threads(),
    }
    extra[TRAINING_FILE] = json.dumps(training, indent=1) + "\n"
    parent = meta["parent"]
    # costs against the original model: the parent's source shape when the input was itself pruned
    before = ModelShape(**parent.source_shape) if parent.source_shape else input_shape
    # a pruned input passes on what it recorded; any other input is the source itself
    if "source_model" in parent.model_fields_set:
        inherited = parent.model_dump(include={"base_model", "license", "source_format", "language"})
    else:
        source = resolve_source(config.model, config.revision)
        inherited = {
            **source_card_metadata(source),
            "source_format": source_format(source),
            "language": source_language(source),
        }
    carried = {key: inherited[key] for key in ("source_format", "language") if inherited.get(key)}
    provenance = Provenance(
        source_model=parent.source_model if "source_model" in parent.model_fields_set else config.model,
        base_model=inherited.get("base_model"),
        license=inherited.get("license"),
        **carried,
        command=invocation(),
        source_shape=before.model_dump(),
        costs=CostComparison.between(before, shape_from_config(causal.config)).model_dump(),
        parent=parent,
    )
    save_model(
        causal,
        tokenizer,
        result.output,
        encoder=_saved_encoder(config, folder),
        provenance=provenance,
        overwrite=config.overwrite,
        verify=config.verify_reload,
        dtype=config.dtype,
        extra_files=extra,
    )

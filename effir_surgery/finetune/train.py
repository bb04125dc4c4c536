"""``finetune``: contrastive retrieval fine-tuning on the sentence-transformers trainer.

InfoNCE over in-batch and hard negatives comes from sentence-transformers: ``CachedMultipleNegativesRankingLoss``
(GradCache) when a batch is split into mini-batches, ``MultipleNegativesRankingLoss`` (the same loss without the
extra embedding pass) when one mini-batch holds the whole batch; batches from the no-duplicates sampler; LoRA from
peft (targets from the architecture table), merged before saving.
With ``learn_width`` every MLP neuron gets a trainable gate; an L1 proximal step and a gradual schedule close gates
until the target width is reached; the gates are then folded and the closed neurons sliced away.

Checkpoints (the trainable tensors, optimizer and scheduler) go to a work folder beside the output; rerunning
the same command resumes from the last one. The final folder is written atomically through ``save.save_model``.
Runs unchanged under ``accelerate launch`` / ``torchrun`` (DDP, FSDP): negatives are then gathered across devices
and only the main process writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import torch
from pydantic import BaseModel

from .._logging import Every, estimate_line, format_rate, info, info_line, progress_line
from ..arch import ModelShape, resolve_spec, shape_from_config
from ..card import source_card_metadata
from ..config import EncoderConfig, FinetuneConfig
from ..costs import CostComparison
from ..encode import sentence_transformer
from ..errors import EffirError
from ..load import check_source, ensure_local, load_config, require_device, resolve_source, torch_dtype
from ..ops.gate_mlp import (
    accumulate_scores,
    close_to_budget,
    fold_gates,
    insert_gates,
    keep_closed,
    open_fraction,
    scheduled_open_count,
    shrink_gates,
)
from ..outputs import check_disjoint, check_output
from ..plan import SurgeryPlan, neuron_budget, plan_from_gates
from ..save import invocation, load_saved, save_model
from ..surgery import apply_plan
from .data import bm25_negatives, build_rows, check_given_negatives, read_train_data

# Settings that do not change what is trained; a rerun that differs only in these still resumes.
_NOT_RUN_DEFINING = {"overwrite", "verify_reload", "logging_steps", "output", "device", "push_to_hub"}
TRAINABLE_FILE = "trainable.safetensors"
GATE_SCORES_FILE = "gate_scores.safetensors"


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


# Gates close between these fractions of the training steps; the rest of the run lets the narrowed model recover.
SCHEDULE_START, SCHEDULE_END = 0.1, 0.7
OPEN_FLOOR = 1e-3


def _gate_schedule(gates, target: int, strength: float, by: str = "value"):
    """A trainer callback that, after every optimizer step inside the schedule window, applies the L1 proximal step
    (``strength / window`` per step, so strength 1 alone closes an undefended gate by the window's end) and then
    closes the gates with the smallest values (``by="value"``) or Taylor scores (``by="taylor"``, accumulated before
    every optimizer step) down to ``ops.gate_mlp.scheduled_open_count``. At the window's end exactly ``target``
    neurons are open."""
    from transformers import TrainerCallback

    total = sum(g.neuron_gate.numel() for g in gates)

    class GateSchedule(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            if by == "taylor":  # the gradients of this step, all micro-batches summed, not yet applied
                accumulate_scores(gates)

        def on_step_end(self, args, state, control, **kwargs):
            start = int(SCHEDULE_START * state.max_steps)
            end = max(start + 1, int(SCHEDULE_END * state.max_steps))
            # Gates close only through the schedule, smallest first, so the open count follows it exactly; the
            # optimizer and the L1 step may push an open gate down to OPEN_FLOOR, not shut it.
            keep_closed(gates, open_floor=OPEN_FLOOR)
            if start < state.global_step <= end:
                shrink_gates(gates, strength / (end - start), floor=OPEN_FLOOR)
                close_to_budget(gates, scheduled_open_count(total, target, state.global_step, start, end), by)
                keep_closed(gates)

    return GateSchedule()


# Progress lines (runs without a progress bar) come at logging steps, at most this often.
PROGRESS_SECONDS = 30.0


def _step_timer(examples: int, batch_size: int, interactive: bool):
    """A trainer callback that tells how long the run takes, from steps timed on this device (main process only).

    At the start: the optimizer steps of this run (the trainer's count: rows, batch size, epochs or max steps; a
    resumed run counts the steps left) and the examples. After this run's second step, if steps remain, one line
    ``N steps; about X s/step on DEVICE: estimated total Y (ETA HH:MM)`` from the second step's duration (the first
    carries warm-up: loading the first batch, allocating, building kernels). Then, when no progress bar runs (a pipe,
    a log, EFFIR_SURGERY_NO_PROGRESS=1; the bar shows its own ETA), a line with the loss and the ETA at logging
    steps, at most every ``PROGRESS_SECONDS``, from the mean step time since the first step.
    """
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.begun = time.monotonic()
            self.first = state.global_step  # > 0 when resumed
            self.marks: dict[int, float] = {}  # this run's step number -> when it ended, for steps 1 and 2
            self.every = Every(PROGRESS_SECONDS)
            processes = getattr(args, "world_size", 1)
            self.device = str(args.device) if processes == 1 else f"{processes} x {args.device.type}"
            if not state.is_world_process_zero:
                return
            left = state.max_steps - self.first
            steps = f"{left:,} steps" if not self.first else f"{left:,} of {state.max_steps:,} steps left"
            batch = f"batch {batch_size}" + (f" x {processes} processes" if processes > 1 else "")
            info_line(f"Fine-tuning on {examples:,} examples: {steps} ({batch}) on {self.device}")

        def on_step_end(self, args, state, control, **kwargs):
            done = state.global_step - self.first
            if not state.is_world_process_zero or done not in (1, 2):
                return
            self.marks[done] = time.monotonic()
            left = state.max_steps - state.global_step
            if done == 2 and left > 0:
                per_step = self.marks[2] - self.marks[1]
                run_steps = state.max_steps - self.first
                what = f"{run_steps:,} steps" + (f" of {state.max_steps:,}" if self.first else "")
                spent = self.marks[2] - self.begun
                info_line(
                    estimate_line(
                        what, f"{format_rate(per_step)} s/step", self.device, spent + left * per_step, left * per_step
                    )
                )
                self.every = Every(PROGRESS_SECONDS)

        def on_log(self, args, state, control, logs=None, **kwargs):
            done = state.global_step - self.first
            if interactive or not state.is_world_process_zero or done < 2 or "loss" not in (logs or {}):
                return
            if self.every.due():
                per_step = (time.monotonic() - self.marks[1]) / (done - 1)
                left = (state.max_steps - state.global_step) * per_step
                where = f"step {state.global_step:,}/{state.max_steps:,}, loss {logs['loss']:.4f}"
                info_line(progress_line(where, left))

    return StepTimer()


def trainable_tensors(model: torch.nn.Module, state_dict: dict | None = None) -> dict[str, torch.Tensor]:
    """The trainable tensors of ``model`` by parameter name, as plain contiguous CPU tensors.

    ``state_dict``, when given, is the full (gathered) state dict the trainer passes under FSDP: values are taken from
    it, since the model's own sharded parameters hold only one process's shard. Names are the model's parameter
    names (the same keys FSDP2 and a plain model use).
    """
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if state_dict is None:
        params = dict(model.named_parameters())
        return {n: params[n].detach().contiguous().cpu() for n in names}
    missing = [n for n in names if n not in state_dict]
    if missing:
        raise EffirError(f"The gathered state dict lacks trainable parameters {missing[:3]}.")
    return {n: state_dict[n].detach().contiguous().cpu() for n in names}


def load_trainable(model: torch.nn.Module, state: dict[str, torch.Tensor], where: str = "the checkpoint") -> None:
    """Copy checkpoint tensors (full, unsharded) into ``model``'s trainable parameters, in place.

    A sharded parameter (a ``DTensor``: FSDP2) receives the tensor distributed with its own mesh and placements, so
    each process keeps exactly its shard. Refuses a checkpoint whose names do not match the trainable parameters.
    """
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in state]
    unknown = [n for n in state if n not in params]
    if missing or unknown:
        raise EffirError(
            f"Checkpoint {where} does not match this run (missing {missing[:3]}, unknown {unknown[:3]}); delete the "
            "work folder to start over."
        )
    from torch.distributed.tensor import DTensor, distribute_tensor

    with torch.no_grad():
        for name, tensor in state.items():
            param = params[name]
            tensor = tensor.to(param.dtype)
            if isinstance(param, DTensor):
                tensor = distribute_tensor(
                    tensor.to(param.device_mesh.device_type), param.device_mesh, param.placements
                )
            else:
                tensor = tensor.to(param.device)
            param.copy_(tensor)


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
                scores = {str(i): g.neuron_score.detach().contiguous().cpu() for i, g in enumerate(self.gates)}
                save_file(scores, os.path.join(output_dir, GATE_SCORES_FILE))
            torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))

        def _load_from_checkpoint(self, checkpoint_path: str, model=None) -> None:
            from safetensors.torch import load_file

            load_trainable(self.model, load_file(os.path.join(checkpoint_path, TRAINABLE_FILE)), checkpoint_path)
            scores = os.path.join(checkpoint_path, GATE_SCORES_FILE)
            if self.gates and os.path.isfile(scores):
                for i, tensor in load_file(scores).items():
                    self.gates[int(i)].neuron_score.copy_(tensor)

    return EffirTrainer


def _run_key(config: FinetuneConfig) -> str:
    fields = {k: v for k, v in config.model_dump(mode="json").items() if k not in _NOT_RUN_DEFINING}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def _work_folder(config: FinetuneConfig, is_main: bool) -> Path:
    """The run's work folder (checkpoints, mined rows), beside the output; refuses another run's folder."""
    out = Path(config.output)
    work = out.parent / f".{out.name}.work"
    key = _run_key(config)
    marker = work / "run.json"
    if marker.is_file() and json.loads(marker.read_text()).get("key") != key:
        if not config.overwrite:
            raise EffirError(
                f"{work} holds checkpoints of a different fine-tuning run; pass --overwrite to discard them or "
                "choose another -o."
            )
        if is_main:
            shutil.rmtree(work)
    if is_main:
        work.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"key": key, "config": config.model_dump(mode="json")}, indent=1) + "\n")
    return work


def _last_checkpoint(folder: Path) -> Path | None:
    checkpoints = [
        p
        for p in folder.glob("checkpoint-*")
        if (p / TRAINABLE_FILE).is_file() and (p / "trainer_state.json").is_file()
    ]
    return max(checkpoints, key=lambda p: int(p.name.split("-")[-1]), default=None)


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


def _width_target(config: FinetuneConfig, shape) -> int:
    """How many MLP neurons (over all present MLPs) the learned gates should leave open."""
    present = sum(shape.mlp_widths)
    if config.mlp_width is not None:
        return max(1, round(config.mlp_width * present))
    return neuron_budget(shape, config.param_budget)


def _copy_metadata(source_folder: str, out: Path) -> dict:
    """Provenance of the input folder (and its plan/importance files) carried into the output."""
    src = Path(source_folder)
    parent = json.loads((src / "provenance.json").read_text()) if (src / "provenance.json").is_file() else {}
    files = {}
    for name in ("surgery_plan.json", "importance.json"):
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


def _load_for_training(config: FinetuneConfig, folder: str):
    """The input folder as a sentence-transformers model (the one encoder definition), in the working dtype."""
    return sentence_transformer(
        folder,
        config.encoder(),
        dtype=torch_dtype(config.dtype),
        device=None if config.device == "auto" else config.device,
    )


def _add_trainables(model, config: FinetuneConfig, spec) -> list:
    """Insert what the run trains into ``model`` (in place): learned-width gates and/or LoRA adapters (seeded, so
    their initial values do not depend on what ran before in the process). Returns the gates."""
    auto = model[0].auto_model
    gates = insert_gates(auto, spec) if config.learn_width else []
    if config.lora:
        from peft import LoraConfig, get_peft_model
        from transformers import set_seed

        set_seed(config.seed)
        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=list(spec.lora_targets),
            task_type="FEATURE_EXTRACTION",
        )
        model[0].model = get_peft_model(auto, lora)
        for gate in gates:
            gate.neuron_gate.requires_grad_(True)
    return gates


def unsharded_copy(config: FinetuneConfig, folder: str, spec, full_state: dict):
    """A plain (unsharded) copy of the trained model, built as for training and loaded with ``full_state``, the full
    state dict gathered from the sharded model (FSDP). Returns ``(model, gates)``."""
    model = _load_for_training(config, folder)
    gates = _add_trainables(model, config, spec)
    missing, unexpected = model.load_state_dict(full_state, strict=False)
    if missing or unexpected:
        raise EffirError(
            f"The gathered weights do not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    return model, gates


def _check_fsdp_settings() -> None:
    """Under ``accelerate launch`` with FSDP, checkpoints must hold full tensors (``FULL_STATE_DICT``): a sharded
    state dict would leave nothing this trainer can resume from or merge."""
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return
    kind = os.environ.get("FSDP_STATE_DICT_TYPE", "SHARDED_STATE_DICT")
    if kind != "FULL_STATE_DICT":
        raise EffirError(
            f"FSDP with fsdp_state_dict_type {kind}: set fsdp_state_dict_type: FULL_STATE_DICT in the accelerate "
            "config (as recipes/accelerate/fsdp.yaml does); checkpoints and the final merge need the full tensors."
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
        close_to_budget(gates, target, config.gate_score)
        kept = fold_gates(trained, spec)
        result.width_plan = plan_from_gates(
            shape_from_config(trained.config), kept, config.width_multiple, model_name=config.model
        )
        apply_plan(trained, result.width_plan)
    _save(config, folder, trained, model[0].tokenizer, result, data)
    shutil.rmtree(work, ignore_errors=True)
    result.seconds = time.perf_counter() - started
    return result


def _saved_encoder(config: FinetuneConfig, folder: str):
    """The encoder definition written into the output: the prompts it was trained with, and the input folder's
    inference max length (default 512), not the shorter length used to make training affordable."""
    from ..encode import read_encoder_config

    inference_length = (read_encoder_config(folder) or EncoderConfig()).max_length
    return config.encoder().model_copy(update={"max_length": inference_length})


def _interactive() -> bool:
    from .._logging import progress_enabled

    return progress_enabled()


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
        extra["width_plan.json"] = width_plan.model_dump_json(indent=1) + "\n"
    training = {
        "config": config.model_dump(mode="json"),
        "data": data.description,
        **result.model_dump(mode="json", exclude={"width_plan", "output"}),
        "torch_threads": torch.get_num_threads(),
    }
    extra["finetune.json"] = json.dumps(training, indent=1) + "\n"
    parent = meta["parent"]
    # costs against the original model: the parent's source shape when the input was itself pruned
    before = ModelShape(**parent["source_shape"]) if parent.get("source_shape") else input_shape
    # a pruned input passes on what it recorded; any other input is the source itself
    inherited = (
        parent if "source_model" in parent else source_card_metadata(resolve_source(config.model, config.revision))
    )
    provenance = {
        "source_model": parent.get("source_model", config.model),
        "base_model": inherited.get("base_model"),
        "license": inherited.get("license"),
        "command": invocation(),
        "source_shape": before.model_dump(),
        "costs": CostComparison.between(before, shape_from_config(causal.config)).model_dump(),
        "parent": parent,
    }
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

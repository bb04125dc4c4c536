"""Checkpoint and resume bookkeeping of a fine-tuning run.

Checkpoints (the trainable tensors, optimizer and scheduler) go to a work folder beside the output; rerunning
the same command resumes from the last one. This module owns the work folder and the run key that guards it, finding
the last checkpoint, the trainable tensors written to and restored from a checkpoint (full tensors, also under
FSDP), the FSDP setting that makes them full, and the unsharded copy of an FSDP-trained model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch

from ..config import FinetuneConfig
from ..errors import EffirError
from .model import _add_trainables, _load_for_training

# Settings that do not change what is trained; a rerun that differs only in these still resumes.
_NOT_RUN_DEFINING = {"overwrite", "verify_reload", "logging_steps", "output", "device", "push_to_hub"}
TRAINABLE_FILE = "trainable.safetensors"


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

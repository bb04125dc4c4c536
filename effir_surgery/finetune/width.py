"""Learned width during fine-tuning: the gate schedule, the width target, the gate scores file and the width plan.

With ``learn_width`` every MLP neuron gets a trainable gate; an L1 proximal step and a gradual schedule close gates
until the target width is reached; the gates are then folded and the closed neurons sliced away. This module owns
the schedule (a trainer callback), the target, the Taylor scores carried through checkpoints, and the
``SurgeryPlan`` the folded gates give (``plan.plan_from_gates``); ``surgery.apply_plan`` then cuts the model.
"""

from __future__ import annotations

import os

from ..arch import shape_from_config
from ..config import FinetuneConfig
from ..ops.gate_mlp import (
    accumulate_scores,
    close_to_budget,
    fold_gates,
    keep_closed,
    scheduled_open_count,
    shrink_gates,
)
from ..plan import SurgeryPlan, neuron_budget, plan_from_gates

GATE_SCORES_FILE = "gate_scores.safetensors"

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


def _width_target(config: FinetuneConfig, shape) -> int:
    """How many MLP neurons (over all present MLPs) the learned gates should leave open."""
    present = sum(shape.mlp_widths)
    if config.mlp_width is not None:
        return max(1, round(config.mlp_width * present))
    return neuron_budget(shape, config.param_budget)


def save_gate_scores(gates, output_dir: str) -> None:
    """Write the gates' accumulated Taylor scores into a checkpoint: a resumed run ranks gates as an unbroken one."""
    from safetensors.torch import save_file

    scores = {str(i): g.neuron_score.detach().contiguous().cpu() for i, g in enumerate(gates)}
    save_file(scores, os.path.join(output_dir, GATE_SCORES_FILE))


def load_gate_scores(gates, checkpoint_path: str) -> None:
    """Restore the gates' Taylor scores from a checkpoint, when it has them (in place)."""
    from safetensors.torch import load_file

    scores = os.path.join(checkpoint_path, GATE_SCORES_FILE)
    if os.path.isfile(scores):
        for i, tensor in load_file(scores).items():
            gates[int(i)].neuron_score.copy_(tensor)


def learned_width_plan(trained, gates, target: int, config: FinetuneConfig, spec) -> SurgeryPlan:
    """The width plan the learned gates give: the gates closed to exactly ``target`` open neurons, folded into
    ``trained`` (in place: each surviving gate multiplied into its ``down_proj`` column), and the surviving neurons
    as a ``SurgeryPlan``. The model is not cut here; ``surgery.apply_plan`` does that."""
    close_to_budget(gates, target, config.gate_score)
    kept = fold_gates(trained, spec)
    return plan_from_gates(shape_from_config(trained.config), kept, config.width_multiple, model_name=config.model)

"""Progress of a fine-tuning run: the step timer (the run announced, estimated and reported as it goes) and whether
a progress bar shows.
"""

from __future__ import annotations

import time

from .._logging import Every, estimate_line, format_rate, info_line, progress_line

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


def _interactive() -> bool:
    from .._logging import progress_enabled

    return progress_enabled()


def keep_stdout_for_results(trainer) -> None:
    """Stop the trainer printing its log dicts (``{'loss': ...}``, the closing ``train_runtime`` summary) on stdout,
    which carries only results: without a bar it prints them (``PrinterCallback``), with one the bar writes them
    (``ProgressCallback``). The step timer already prints the loss in logs; the bar shows it as a postfix."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    if trainer.pop_callback(ProgressCallback) is None:
        return

    class LossBar(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and self.training_bar is not None and "loss" in (logs or {}):
                self.training_bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)

    trainer.add_callback(LossBar())

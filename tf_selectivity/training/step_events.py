"""What a run does at chosen training steps: keep its weights, measure its selectivity.

Steps are counted over the whole run (step ``s`` = ``s`` training batches
done; epoch ``s / steps_per_epoch``). A run's `StepEvents` says which steps
are due (`due`) and records them (`record`): at a kept checkpoint's step the
model's weights go to ``checkpoints/epoch-<label>.weights.h5``
(`training.kept_checkpoints`); at every ``selectivity_every_steps``-th step
below ``selectivity_steps_until`` epochs (and at step 0) the validation
split's selectivity per probe, from the model's streaming `SplitSelectivity`
metric (the validation pass's own logs at an epoch's end), goes to
``selectivity_steps.csv`` and TensorBoard (``logs/validation_steps``, on a
step axis).

`training.epochs.run_epochs` asks the runner to pause inside an epoch at the
due steps and brings the state there (weights into the model, or a
validation pass of the state as it is), so the runners need not know what
is recorded.

Resuming: a run resumes at its last complete epoch ``E``; the rows of
``selectivity_steps.csv`` after step ``E * steps_per_epoch`` (written by the
killed process for steps that are trained again) are dropped, TensorBoard
drops its events of those steps (each process writes a session start
event at its first step, which TensorBoard reads as a restart), and kept
checkpoints of those steps are written again, identically (training is a
deterministic function of the seed).
"""

from __future__ import annotations

import csv
import math
import os

import numpy as np

from tf_selectivity.core.files import replacing
from tf_selectivity.models.split_selectivity import SPLIT_LOG_PREFIX, SPLIT_MEAN_LOG
from tf_selectivity.training.kept_checkpoints import checkpoint_step, kept_checkpoint_dir, kept_checkpoint_path
from tf_selectivity.training.run_dir import SELECTIVITY_STEPS_FILE
from tf_selectivity.training.weights_file import WeightsFile

__all__ = ["StepEvents", "SELECTIVITY_STEPS_COLUMNS", "step_events_for"]

# One row per (step, probe); `mean` is the step's mean over probes (eq. 3).
SELECTIVITY_STEPS_COLUMNS = ("step", "epoch", "layer", "selectivity", "mean")
TENSORBOARD_STEPS_DIR = "validation_steps"


def step_events_for(config, run_dir: str, logs_dir: str, model, steps_per_epoch: int, epochs_done: int):
    """The `StepEvents` of a run with `config`'s settings, or None when it records nothing."""
    if not config.keep_checkpoints and not config.selectivity_every_steps:
        return None
    from tf_selectivity.training.export import tensorflow_available

    return StepEvents(
        model, run_dir, steps_per_epoch=steps_per_epoch, epochs=config.epochs, epochs_done=epochs_done,
        keep_checkpoints=config.keep_checkpoints, selectivity_every_steps=config.selectivity_every_steps,
        selectivity_steps_until=config.selectivity_steps_until,
        tensorboard_dir=os.path.join(logs_dir, TENSORBOARD_STEPS_DIR) if tensorflow_available() else None,
    )


class StepEvents:
    """One run's records at chosen training steps.

    Args:
        model: the run's compiled model (a `SelectivityModel`; compiled with
            ``split_selectivity=True`` when `selectivity_every_steps`).
        run_dir: its run directory.
        steps_per_epoch: training steps of one epoch.
        epochs: the run's epochs.
        epochs_done: the epoch it starts (or resumes) at.
        keep_checkpoints: epochs whose weights to keep (floats, 0: initialization).
        selectivity_every_steps: measure every this many steps (0: never).
        selectivity_steps_until: ... while the step is below this many
            epochs (None: the whole run).
        tensorboard_dir: where to write the selectivity's TensorBoard
            events (None: nowhere).
    """

    def __init__(self, model, run_dir, *, steps_per_epoch, epochs, epochs_done=0, keep_checkpoints=(),
                 selectivity_every_steps=0, selectivity_steps_until=None, tensorboard_dir=None):
        self.model = model
        self.run_dir = run_dir
        self.steps_per_epoch = int(steps_per_epoch)
        self.checkpoints = {}
        for epoch in keep_checkpoints:
            self.checkpoints.setdefault(checkpoint_step(epoch, steps_per_epoch), []).append(float(epoch))
        self.every = int(selectivity_every_steps)
        until = epochs if selectivity_steps_until is None else selectivity_steps_until
        # Strictly below `until` epochs; the whole run includes its last step.
        self.selectivity_limit = (
            epochs * self.steps_per_epoch + 1 if selectivity_steps_until is None
            else math.ceil(until * self.steps_per_epoch)
        )
        self.tensorboard_dir = tensorboard_dir
        self._weights_file = None
        self._writer = None
        self.csv_path = os.path.join(run_dir, SELECTIVITY_STEPS_FILE)
        # The first step this process trains (the first it may record).
        self._first_step = epochs_done * self.steps_per_epoch + 1 if epochs_done else 0
        if self.every:
            self._keep_rows_until(epochs_done * self.steps_per_epoch)

    # ---------------------------------------------------------------- steps
    def measures_selectivity(self, step: int) -> bool:
        return bool(self.every) and step % self.every == 0 and step < self.selectivity_limit

    def due(self, step: int) -> tuple:
        """(keep the weights, measure the selectivity) at `step`."""
        return step in self.checkpoints, self.measures_selectivity(step)

    def steps_in_epoch(self, epoch: int) -> list:
        """The due steps strictly inside `epoch`, as steps into it (1 .. steps_per_epoch - 1)."""
        first = epoch * self.steps_per_epoch
        inside = {step - first for step in self.checkpoints if first < step < first + self.steps_per_epoch}
        if self.every:
            start = (first // self.every + 1) * self.every
            stop = min(first + self.steps_per_epoch, self.selectivity_limit)
            inside.update(step - first for step in range(start, stop, self.every))
        return sorted(inside)

    # -------------------------------------------------------------- records
    def record(self, step: int, validation_logs=None) -> None:
        """Records what is due at `step`.

        Args:
            step: the training steps done; the model's weights are those
                after them (where a checkpoint is due).
            validation_logs: the logs of a validation pass with the weights
                of `step` (where selectivity is due): ``split_selectivity/<probe>``
                and ``split_mean_selectivity``, as backend or Python scalars.
        """
        keep, measure = self.due(step)
        if keep:
            self._keep_weights(step)
        if measure:
            if validation_logs is None:
                raise ValueError(f"step {step} needs the validation split's selectivity")
            self._write_selectivity(step, validation_logs)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _keep_weights(self, step):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and not optimizer.built:
            # The layout of every later file (weights and optimizer state).
            optimizer.build(self.model.trainable_variables)
        if self._weights_file is None:
            self._weights_file = WeightsFile(self.model)
        os.makedirs(kept_checkpoint_dir(self.run_dir), exist_ok=True)
        for epoch in self.checkpoints[step]:
            with replacing(kept_checkpoint_path(self.run_dir, epoch), suffix=".weights.h5") as tmp:
                self._weights_file.write(tmp)

    def _write_selectivity(self, step, logs):
        values = {
            name[len(SPLIT_LOG_PREFIX):]: float(np.asarray(value))
            for name, value in logs.items() if name.startswith(SPLIT_LOG_PREFIX)
        }
        order = {name: i for i, name in enumerate(getattr(self.model, "probe_names", None) or [])}
        layers = sorted(values.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))  # network order
        if not layers:
            raise ValueError("the validation logs hold no split selectivity: compile with split_selectivity=True")
        mean = float(np.asarray(logs[SPLIT_MEAN_LOG]))
        epoch = step / self.steps_per_epoch
        new = not os.path.exists(self.csv_path)
        with open(self.csv_path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(SELECTIVITY_STEPS_COLUMNS)
            for layer, value in layers:
                writer.writerow([step, repr(epoch), layer, repr(value), repr(mean)])
        if self.tensorboard_dir is not None:
            import tensorflow as tf

            if self._writer is None:
                self._writer = tf.summary.create_file_writer(self.tensorboard_dir)
                # Each process starts a session: TensorBoard takes a later
                # one as a restart and drops what a killed process wrote for
                # the steps trained again, as the CSV's rows are dropped.
                from tf_selectivity.core.compat import write_session_start

                write_session_start(self._writer, self._first_step)
            with self._writer.as_default(step=step):
                for layer, value in layers:
                    tf.summary.scalar(f"split_selectivity/{layer}", value)
                tf.summary.scalar("split_mean_selectivity", mean)

    def _keep_rows_until(self, last_step):
        """Drops the rows after `last_step` (and a torn last line) of a killed run's file."""
        if not os.path.exists(self.csv_path):
            return
        with open(self.csv_path, newline="") as f:
            text = f.read()
        lines = text.splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines = lines[:-1]
        kept = lines[:1] + [
            line for line in lines[1:] if _row_step(line) is not None and _row_step(line) <= last_step
        ]
        if kept == lines and len(lines) == len(text.splitlines()):
            return
        with replacing(self.csv_path) as tmp:
            with open(tmp, "w", newline="") as f:
                f.writelines(kept)


def _row_step(line: str):
    try:
        return int(line.split(",", 1)[0])
    except ValueError:
        return None

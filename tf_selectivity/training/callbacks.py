"""Callbacks of the training command: checkpoints, best epoch, progress bar."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import sys

import keras

from tf_selectivity.core.files import NoSpaceError, replacing
from tf_selectivity.training.run_dir import DamagedCheckpointError, RunPaths, read_checkpoint_state
from tf_selectivity.training.status import non_finite_reason
from tf_selectivity.training.weights_file import WeightsFile

__all__ = ["CompactProgbar", "RunCheckpoint", "SplitSelectivityEvery", "SPLIT_SELECTIVITY_PREFIX"]


def stdout_is_terminal() -> bool:
    return hasattr(sys.stdout, "isatty") and sys.stdout.isatty()


class CompactProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar without the per-layer entries (``name/...``), which
    go to TensorBoard and history.csv instead of a 40-column line.

    Off a terminal (stdout a file or a pipe) the live bar (verbose 1) becomes
    one plain line per epoch (verbose 2): Keras' bar would fill the log with
    carriage returns and ANSI colour codes.
    """

    def __init__(self, verbose=1):
        super().__init__()
        if verbose == 1 and not stdout_is_terminal():
            verbose = 2
        self._forced_verbose = verbose

    def set_params(self, params):
        super().set_params(dict(params, verbose=self._forced_verbose))

    @staticmethod
    def _compact(logs):
        return {k: v for k, v in (logs or {}).items() if "/" not in k}

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, self._compact(logs))

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, self._compact(logs))


# Epoch logs of `SelectivityModel.compile(split_selectivity=True)` on the
# validation split: val_split_selectivity/<probe>, val_split_mean_selectivity.
SPLIT_SELECTIVITY_PREFIX = "val_split_"


class SplitSelectivityEvery(keras.callbacks.Callback):
    """Keeps the validation split's selectivity in the logs every `every` epochs.

    The model measures it in every validation pass; on the other epochs this
    callback takes it out of the epoch logs, so that the callbacks after it
    (``history.csv``, TensorBoard, keras-tuner) record it at epochs `every`,
    2 `every`, ... and always at the run's last epoch; with `every` 0 at
    none (a model that measures it for other records). Put it first.

    Args:
        every: record every this many epochs (>= 1), or 0: never.
    """

    def __init__(self, every: int):
        super().__init__()
        if every < 0:
            raise ValueError(f"every must be a positive number of epochs, or 0; got {every}")
        self.every = int(every)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        done = epoch + 1
        if self.every and (done % self.every == 0 or done == self.params.get("epochs")):
            return
        for name in [name for name in logs if name.startswith(SPLIT_SELECTIVITY_PREFIX)]:
            del logs[name]


class RunCheckpoint(keras.callbacks.Callback):
    """Saves the training state every epoch and keeps the best epoch's weights.

    After each epoch the best weights (if `monitor` improved), the full
    state (weights and optimizer), ``history.csv`` and ``state.json`` (epochs
    done, best epoch, history) are written to temporary names, and only when
    all four are written are they renamed into place, ``state.json`` last: a
    run killed at any moment, or whose disk fills up (`NoSpaceError`, its
    message saying which epoch's checkpoint is intact), resumes from the last
    complete epoch.

    Divergence: an epoch whose mean loss is not finite (Keras' running mean
    stays non-finite once one batch loss is), or after which a weight is
    not finite, stops training: `diverged_epoch` and `diverged_reason` are
    set, the epoch's row is added to ``history.csv`` for diagnosis, and the
    saved state stays that of the last finite epoch. Checked once per epoch
    from values Keras already logs (no per-step host synchronization), so
    at most the rest of the diverging epoch is computed in vain.

    Args:
        paths: the run's `RunPaths`.
        monitor: metric whose maximum selects the best epoch.
        input_pipeline: recorded in ``state.json`` ("tf.data", "host" or
            "device"), so that a resumed run keeps its random stream
            (`tf_selectivity.training.placement`).
    """

    def __init__(self, paths: RunPaths, monitor: str = "val_accuracy", input_pipeline=None):
        super().__init__()
        self.paths = paths
        self.monitor = monitor
        self.input_pipeline = input_pipeline
        self.epochs_done = 0
        self.best_epoch = None
        self.best_value = -math.inf
        self.history = []
        self.diverged_epoch = None
        self.diverged_reason = None
        self._weights_file = None

    def set_model(self, model):
        super().set_model(model)
        if self._weights_file is None or self._weights_file.model is not model:
            # Writes both files in milliseconds after the first save (its layout).
            self._weights_file = WeightsFile(model)

    def restore(self) -> int:
        """Loads the saved state into the model; returns the epoch to start at.

        Raises:
            DamagedCheckpointError: ``state.json`` or the weights file cannot
                be read, or the weights do not fit the model.
        """
        state = read_checkpoint_state(self.paths)
        if state is None:
            return 0
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        if not os.path.exists(self.paths.state_weights):
            raise DamagedCheckpointError(self.paths.state_weights, "it is missing")
        try:
            self.model.load_weights(self.paths.state_weights)
        except Exception as error:  # h5py / Keras raise OSError, ValueError... by the kind of damage
            raise DamagedCheckpointError(
                self.paths.state_weights, f"it cannot be loaded into the model: {str(error).strip()[:300]}"
            ) from None
        self.epochs_done = int(state["epochs_done"])
        self.best_epoch = state["best_epoch"]
        self.best_value = float(state["best_value"])
        self.history = list(state["history"])
        return self.epochs_done

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        if self.monitor not in logs:
            raise KeyError(f"RunCheckpoint needs {self.monitor!r} in the epoch logs.")
        reason = non_finite_reason(logs) or self._non_finite_weight()
        if reason:
            self.diverged_epoch = epoch + 1
            self.diverged_reason = reason
            self.model.stop_training = True
            self._write_history_csv(self.history + [{"epoch": epoch + 1, **logs}])
            return
        value = logs[self.monitor]
        # Strictly greater: on ties the earlier epoch wins, as in the paper's
        # "epoch that achieved the highest validation accuracy".
        improved = value > self.best_value
        best_value, best_epoch = (value, epoch + 1) if improved else (self.best_value, self.best_epoch)
        history = self.history + [{"epoch": epoch + 1, **logs}]
        state = {
            "epochs_done": epoch + 1,
            "best_epoch": best_epoch,
            "best_value": best_value,
            "monitor": self.monitor,
            "input_pipeline": self.input_pipeline,
            "history": history,
        }
        try:
            os.makedirs(self.paths.checkpoint_dir, exist_ok=True)
            # The epoch's files, all or none: each is written to a temporary
            # name; the renames happen when the block ends, in the reverse
            # order of entering (state.json last).
            with contextlib.ExitStack() as stack:
                state_tmp = stack.enter_context(replacing(self.paths.state))
                history_tmp = stack.enter_context(replacing(self.paths.history))
                weights_tmp = stack.enter_context(replacing(self.paths.state_weights, suffix=".weights.h5"))
                if improved:
                    self._weights_file.write(stack.enter_context(replacing(self.paths.best_weights, suffix=".weights.h5")))
                self._weights_file.write(weights_tmp)
                self._write_history_csv(history, history_tmp)
                with open(state_tmp, "w") as f:
                    json.dump(state, f, indent=2, sort_keys=True)
                    f.write("\n")
        except NoSpaceError as error:
            kept = (
                f"the checkpoint of epoch {self.epochs_done} is intact" if self.epochs_done
                else "no epoch was checkpointed yet"
            )
            raise error.with_note(f"{kept}: free space, then run the same command to resume") from None
        self.best_value, self.best_epoch = best_value, best_epoch
        self.epochs_done = epoch + 1
        self.history = history

    def _non_finite_weight(self):
        # One host copy of all weights (what the checkpoint writes anyway)
        # and NumPy checks: several times cheaper than one backend
        # `isfinite` reduction per variable (benchmarks/RESULTS.md).
        import numpy as np

        for variable, value in zip(self.model.weights, self.model.get_weights()):
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                return f"weight {variable.path} is not finite"
        return None

    def _column_order(self, names):
        """Headline metrics first (alphabetically), then the per-layer ones
        ("selectivity/<probe>", "val_selectivity/<probe>") in network order."""
        probes = {name: i for i, name in enumerate(getattr(self.model, "probe_names", None) or [])}

        def key(column):
            if "/" not in column:
                return (0, "", 0, column)
            prefix, _, layer = column.rpartition("/")
            return (1, prefix, probes.get(layer, len(probes)), column)

        return sorted(names, key=key)

    def _write_history_csv(self, rows, path=None):
        """Writes ``history.csv`` (atomically), or to `path` (a temporary)."""
        if path is None:
            with replacing(self.paths.history) as tmp:
                return self._write_history_csv(rows, tmp)
        names = {k for row in rows for k in row} - {"epoch"}
        columns = ["epoch"] + self._column_order(names)
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

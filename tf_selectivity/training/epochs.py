"""The epoch loop: one for every way a run trains.

A run trains from host batches (TensorFlow's tf.data, or NumPy batches on
JAX), with its data on the device (JAX), or packed with other replicates in
one program (JAX). The *computation* of an epoch differs between those and
is an `EpochRunner`'s; everything around it is `run_epochs`'s, the same for
all: the Keras callbacks of each run (checkpoints and the best epoch,
TensorBoard, the progress bar, keras-tuner's), metric resets, validation,
``stop_training``, and the order in which these happen, which is that of
Keras' own `fit`.

A *lane* is one run in the loop: its model, its callbacks and the epochs it
has finished. Several lanes (packed replicates) advance together, one epoch
per round each; a lane leaves the round-robin when it has trained all its
epochs or its model's ``stop_training`` is set (e.g. by `RunCheckpoint`
when its loss is not finite). Lanes may start at different epochs (a pack
resumed after a kill between two replicates' checkpoint writes).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Protocol, Sequence

from tf_selectivity.core.signals import raise_if_interrupted

__all__ = ["Lane", "EpochRunner", "run_epochs"]


@dataclasses.dataclass
class Lane:
    """One run in the epoch loop.

    Attributes:
        model: the run's compiled model; between epochs its variables hold
            the run's state, so callbacks may read (or replace) them.
        callbacks: its `keras.callbacks.CallbackList`.
        epochs_done: epochs finished (a resumed run's initial epoch).
        events: its `StepEvents` (records at chosen training steps), or None.
    """

    model: object
    callbacks: object
    epochs_done: int = 0
    events: object = None


class EpochRunner(Protocol):
    """The computation of epochs, for `run_epochs`.

    A runner holds the training state of its lanes while an epoch runs (in
    the models' variables, or as arrays of its own); `run_epochs` calls,
    per round, `train_epochs` (which first reads the state from the models:
    a callback may have changed the weights), `validate_epochs`, then `store`
    (which writes the state back into the models before the epoch's
    callbacks see them).

    Attributes:
        steps_per_epoch: training steps of one epoch.
    """

    steps_per_epoch: int

    def reports_batches(self, lanes: Sequence[int]) -> bool:
        """Whether `train_epochs` calls the batch callbacks itself (one lane)."""

    def train_epochs(self, epochs: Sequence[int], lanes: Sequence[int], callbacks, stops=(),
                     pause: Callable[[int], None] | None = None) -> dict:
        """Trains epoch ``epochs[i]`` of every lane i in `lanes`.

        Args:
            epochs: the epoch index of every lane (all lanes, active or not).
            lanes: the active lanes.
            callbacks: the one lane's `CallbackList` when
                `reports_batches`, else None.
            stops: steps into the epoch (1 .. steps_per_epoch - 1) after
                which to call `pause`; the batches trained are the same.
            pause: called with the steps done in the epoch; while it runs,
                `write_models` and `validate_now` see the state after them.

        Returns:
            {lane: epoch-mean training logs (floats)}.
        """

    def write_models(self, lanes: Sequence[int]) -> None:
        """Writes the current training state of `lanes` into their models (inside an epoch)."""

    def validate_now(self, lanes: Sequence[int]) -> dict:
        """{lane: validation logs} of the current state (inside an epoch, or
        the models' state between epochs), leaving the training state as it is."""

    def validate_epochs(self, lanes: Sequence[int]) -> dict:
        """{lane: validation logs (floats)} with the state after training."""

    def store(self, lanes: Sequence[int]) -> None:
        """Writes the state of `lanes` into their models' variables."""


def run_epochs(runner: EpochRunner, lanes: Sequence[Lane], *, epochs: int,
               on_round: Callable[[dict, dict], None] | None = None) -> list:
    """Trains every lane from its ``epochs_done`` to `epochs`, driving its callbacks.

    Per round, for each active lane, as `keras.Model.fit` does per epoch:
    metrics reset and ``on_epoch_begin``; the epoch's training (batch
    callbacks from the runner where it reports them, else one
    ``on_train_batch_begin`` before the epoch and one ``on_train_batch_end``
    with its mean logs once the state is written); ``on_test_begin``,
    validation, the state written into the model, ``on_test_end``;
    ``on_epoch_end`` with the training and ``val_`` logs. ``on_train_begin`` and ``on_train_end`` once per lane.

    A lane's `StepEvents` (``lane.events``) are recorded at its due steps:
    step 0 before a run's first epoch; steps inside an epoch where the
    runner pauses (`EpochRunner.train_epochs`' ``stops``); an epoch's last
    step once its state is written, from its validation logs, before
    ``on_epoch_end`` (the epoch's checkpoint).

    Args:
        runner: the `EpochRunner` of these lanes.
        lanes: the `Lane`s (their ``epochs_done`` advance).
        epochs: the epochs of a run (the index of the last epoch + 1).
        on_round: called after each round with ({lane: epoch trained},
            {lane: its epoch logs}) (e.g. a pack's one-line progress).

    Returns:
        Each lane's last epoch logs ({} for a lane that trained nothing).
    """
    last_logs = [{} for _ in lanes]
    for lane in lanes:
        lane.model.stop_training = False
        lane.callbacks.on_train_begin()
    active = [index for index, lane in enumerate(lanes) if lane.epochs_done < epochs]
    steps_per_epoch = runner.steps_per_epoch
    try:
        _record_steps(runner, lanes, {i: 0 for i in active if lanes[i].epochs_done == 0})
        _run_rounds(runner, lanes, active, epochs, on_round, last_logs, steps_per_epoch)
    finally:
        for lane in lanes:
            if lane.events is not None:
                lane.events.close()
    for lane, logs in zip(lanes, last_logs):
        lane.callbacks.on_train_end(logs)
    return last_logs


def _record_steps(runner, lanes, steps: dict, validation_logs: dict | None = None) -> None:
    """Records what each lane's `StepEvents` has due at its step ({lane: step}).

    The state is that of the runner inside an epoch, or the models' between
    epochs; `validation_logs` ({lane: logs}), where given, are those of the
    state (an epoch's validation pass) and no pass is run.
    """
    due = {index: lanes[index].events.due(step) for index, step in steps.items() if lanes[index].events is not None}
    weights = [index for index, (keep, _) in due.items() if keep]
    measured = [index for index, (_, measure) in due.items() if measure]
    if weights and validation_logs is None:
        runner.write_models(weights)
    if validation_logs is None:
        validation_logs = runner.validate_now(measured) if measured else {}
    for index, (keep, measure) in due.items():
        if keep or measure:
            lanes[index].events.record(steps[index], validation_logs.get(index))


def _run_rounds(runner, lanes, active, epochs, on_round, last_logs, steps_per_epoch) -> None:
    while active:
        raise_if_interrupted()  # a Ctrl-C Python dropped (in a garbage-collection callback)
        for index in active:
            lanes[index].model.reset_metrics()
            lanes[index].callbacks.on_epoch_begin(lanes[index].epochs_done)
        reporting = runner.reports_batches(active)
        if not reporting:
            for index in active:
                lanes[index].callbacks.on_train_batch_begin(0)
        epochs_now = [lane.epochs_done for lane in lanes]
        stops = sorted({
            step for index in active if lanes[index].events is not None
            for step in lanes[index].events.steps_in_epoch(epochs_now[index])
        })

        def pause(step, active=active, epochs_now=epochs_now):
            _record_steps(runner, lanes, {i: epochs_now[i] * steps_per_epoch + step for i in active})

        train_logs = runner.train_epochs(
            epochs_now, active, lanes[active[0]].callbacks if reporting else None,
            stops=stops, pause=pause if stops else None,
        )
        for index in active:
            lanes[index].callbacks.on_test_begin()
        val_logs = runner.validate_epochs(active)
        runner.store(active)
        # Before the epoch's callbacks (its checkpoint): a run killed after
        # them resumes after this epoch, its records made.
        _record_steps(
            runner, lanes, {i: (epochs_now[i] + 1) * steps_per_epoch for i in active}, validation_logs=val_logs
        )
        trained, round_logs = {}, {}
        for index in active:
            lane = lanes[index]
            if not reporting:  # after `store`: the batch's callbacks see its weights
                lane.callbacks.on_train_batch_end(runner.steps_per_epoch - 1, train_logs[index])
            lane.callbacks.on_test_end(val_logs[index])
            logs = dict(train_logs[index])
            logs.update({f"val_{name}": value for name, value in val_logs[index].items()})
            lane.callbacks.on_epoch_end(lane.epochs_done, logs)
            trained[index], round_logs[index] = lane.epochs_done, logs
            last_logs[index] = logs
            lane.epochs_done += 1
        active = [i for i in active if not lanes[i].model.stop_training and lanes[i].epochs_done < epochs]
        if on_round is not None:
            on_round(trained, round_logs)

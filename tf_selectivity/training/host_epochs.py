"""Epochs from host batches: the `EpochRunner`s of one run that streams its data.

TensorFlow trains from a tf.data pipeline (batches prepared by C++ threads
beside the step) with the model's own compiled train function, as
`keras.Model.fit` does; JAX trains from the NumPy `ImageBatches` (when the
data stay on the host, `training/placement.py`) with the model's stateless
steps, jitted, the state held here between steps as Keras' JAX trainer
holds it. Both shuffle and augment as pure functions of (seed, epoch,
batch), so resuming at any epoch reproduces an uninterrupted run.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os

import keras

from tf_selectivity.core.signals import raise_if_interrupted

__all__ = ["host_runner", "TensorFlowRunner", "JAXHostRunner"]


def _floats(logs) -> dict:
    """Epoch logs (backend scalars) as Python floats."""
    return {name: float(keras.ops.convert_to_numpy(value)) for name, value in logs.items()}


def host_runner(model, config, data, progress: bool = True, devices=None):
    """The host-batch runner of this backend for one run.

    Args:
        model: the run's compiled model.
        config: its `TrainConfig` (seed, batch sizes, augmentation).
        data: its `DatasetSplits`.
        progress: report every batch to the callbacks (a progress bar).
        devices: its `training.devices.DataParallel` (default: one device).
    """
    if keras.backend.backend() == "tensorflow":
        return TensorFlowRunner(model, config, data, progress, devices)
    if keras.backend.backend() == "jax":
        return JAXHostRunner(model, config, data, progress, devices=devices)
    raise ValueError(f"training needs the TensorFlow or the JAX backend; KERAS_BACKEND is {keras.backend.backend()!r}")


class TensorFlowRunner:
    """One run's epochs through its model's compiled train and test functions.

    Per step the model's `train_function` (`make_train_function`: the
    `tf.function` of its `train_step`, XLA where compiled so) takes the next
    batch of the epoch's tf.data iterator, exactly as `fit` calls it; the
    model's variables are the state. Validation is `evaluate` on the
    validation split. Over several devices (a model built in a
    `tf.distribute` scope) each global batch is split over the replicas,
    and the epoch's logs are read from the metrics, which combine them.
    """

    def __init__(self, model, config, data, progress=True, devices=None):
        import math

        from tf_selectivity.data.tf_pipeline import evaluation_dataset
        from tf_selectivity.training.devices import DataParallel

        self.model = model
        self.devices = devices or DataParallel()
        self.config = config
        self.data = data
        self.progress = progress
        self.steps_per_epoch = math.ceil(data.num_train / config.batch_size)
        self.streamed = getattr(data, "streamed", False)
        if self.streamed:
            from tf_selectivity.data.stream_pipeline import evaluation_stream

            self.validation = evaluation_stream(data, "validation", config.eval_batch_size)
        else:
            self.validation = evaluation_dataset(data.validation_images, data.validation_labels,
                                                 config.eval_batch_size)

    def reports_batches(self, lanes) -> bool:
        return self.progress

    def train_epochs(self, epochs, lanes, callbacks, stops=(), pause=None) -> dict:
        from tf_selectivity.data.tf_pipeline import training_dataset

        epoch = epochs[0]
        if self.streamed:
            from tf_selectivity.data.stream_pipeline import training_stream

            batches = training_stream(self.data, self.config.batch_size, seed=self.config.seed, epoch=epoch,
                                      augment=self.config.augment)
        else:
            batches = training_dataset(
                self.data.train_images, self.data.train_labels, self.config.batch_size, seed=self.config.seed,
                first_epoch=epoch, epochs=epoch + 1, augment=self.config.augment,
            )
        self.model.make_train_function()  # sets (once) the model's `train_function`
        train_function = self.model.train_function
        iterator = iter(self.devices.distribute_dataset(batches))
        logs = {}
        for step in range(self.steps_per_epoch):
            raise_if_interrupted()
            if callbacks is not None:
                callbacks.on_train_batch_begin(step)
            logs = train_function(iterator)
            if callbacks is not None:
                callbacks.on_train_batch_end(step, logs)
            if pause is not None and step + 1 in stops:
                pause(step + 1)
        if self.devices.count > 1:  # a step's logs are one replica's
            combined = self.model.metrics_logs(gated=self.model.selectivity_window is not None)
            logs = {name: combined.get(name, value) for name, value in logs.items()}
        return {lanes[0]: _floats(logs)}

    def validate_epochs(self, lanes) -> dict:
        logs = self.model.evaluate(self.validation, verbose=0, return_dict=True)
        return {lanes[0]: {name: float(value) for name, value in logs.items()}}

    def write_models(self, lanes) -> None:
        """Nothing to do: the model's variables are the state."""

    def validate_now(self, lanes) -> dict:
        # `evaluate` resets the metrics (the epoch's running training means)
        # and the forward pass writes the probes' batch statistics: both are
        # put back, so the epoch goes on as if nothing had run.
        kept = list(self.model.metrics_variables) + list(self.model.non_trainable_variables)
        values = [variable.numpy() for variable in kept]
        try:
            return self.validate_epochs(lanes)
        finally:
            for variable, value in zip(kept, values):
                variable.assign(value)

    def store(self, lanes) -> None:
        """Nothing to do: the model's variables are the state."""


class StreamBatches:
    """NumPy batches of a streamed split for JAX, from its tf.data pipeline
    (`data.stream_pipeline`), this process' share of each global batch.

    Args:
        data: a `StreamSplits`.
        config: the run's `TrainConfig`.
        split: "train" (the epoch set by `set_epoch`) or "validation".
    """

    def __init__(self, data, config, split):
        from tf_selectivity.data.stream_pipeline import host_shard, steps_per_epoch

        self.data, self.config, self.split = data, config, split
        self.epoch = 0
        self.shard = host_shard()
        batch = config.batch_size if split == "train" else config.eval_batch_size
        self.steps = steps_per_epoch(data, batch) if split == "train" else -(-data.num_validation // batch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self):
        return self.steps

    def __iter__(self):
        from tf_selectivity.data import stream_pipeline

        if self.split == "train":
            dataset = stream_pipeline.training_stream(
                self.data, self.config.batch_size, seed=self.config.seed, epoch=self.epoch,
                augment=self.config.augment, shard=self.shard,
            )
        else:
            dataset = stream_pipeline.evaluation_stream(self.data, "validation", self.config.eval_batch_size,
                                                        shard=self.shard)
        return stream_pipeline.numpy_batches(dataset)

    def first_example(self):
        """(images, labels) of the split's first batch."""
        return next(iter(self))


class JAXHostRunner:
    """One run's epochs on JAX from host batches, through its stateless steps.

    The model's `train_step` / `test_step` (Keras' JAX trainer API) are
    jitted once; the state (trainable, non-trainable, optimizer and metrics
    variables) is read from the model before an epoch and written back
    after it. Batches are prepared by a few threads ahead of the step
    (`ImageBatches` is a pure function of its index). Over several devices
    each batch is split over them (`DataParallel.shard_batch`): the
    compiled step sees the global batch.
    """

    def __init__(self, model, config, data, progress=True, workers=None, devices=None):
        import jax

        from tf_selectivity.data import ImageBatches
        from tf_selectivity.training.devices import DataParallel

        self.model = model
        self.devices = devices or DataParallel()
        self.progress = progress
        if getattr(data, "streamed", False):
            self.train = StreamBatches(data, config, "train")
            self.validation = StreamBatches(data, config, "validation")
        else:
            self.train = ImageBatches(
                data.train_images, data.train_labels, config.batch_size,
                shuffle=True, augment=config.augment, seed=config.seed,
            )
            self.validation = ImageBatches(data.validation_images, data.validation_labels, config.eval_batch_size)
        self.steps_per_epoch = len(self.train)
        self.workers = workers or (2 if (os.cpu_count() or 1) > 2 else 1)
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        from tf_selectivity.training.device_loop import build_metrics

        images, labels = self.validation.first_example() if isinstance(self.validation, StreamBatches) else (
            data.validation_images, data.validation_labels)
        build_metrics(model, images, labels)
        self._reset_metric_values = [v.value for v in model.metrics_variables]
        self._train_step = jax.jit(model.train_step)
        self._test_step = jax.jit(model.test_step)
        self._state = None

    def reports_batches(self, lanes) -> bool:
        return self.progress

    def _batches(self, batches):
        """`batches[0], batches[1], ...`, each prepared ahead by the worker threads
        (a stream's, by its tf.data pipeline)."""
        if isinstance(batches, StreamBatches):
            yield from batches
            return
        with concurrent.futures.ThreadPoolExecutor(self.workers) as pool:
            pending = collections.deque()
            for index in range(len(batches)):
                pending.append(pool.submit(batches.__getitem__, index))
                if len(pending) > 2 * self.workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def train_epochs(self, epochs, lanes, callbacks, stops=(), pause=None) -> dict:
        from tf_selectivity.training.device_loop import model_state

        self.train.set_epoch(epochs[0])
        state = model_state(self.model)  # metrics already reset by the loop
        logs = {}
        for step, batch in enumerate(self._batches(self.train)):
            raise_if_interrupted()
            if callbacks is not None:
                callbacks.on_train_batch_begin(step)
            logs, state = self._train_step(state, self.devices.shard_batch(batch))
            if callbacks is not None:
                callbacks.on_train_batch_end(step, logs)
            if pause is not None and step + 1 in stops:
                self._state = state
                pause(step + 1)
        self._state = state
        return {lanes[0]: _floats(logs)}

    def _validate(self, state):
        """(logs, state after the validation split) of a training state."""
        trainable, non_trainable, optimizer, _ = state
        # The metrics' reset values: those of a freshly built model.
        eval_state = (trainable, non_trainable, list(self._reset_metric_values))
        logs = {}
        for batch in self._batches(self.validation):
            logs, eval_state = self._test_step(eval_state, self.devices.shard_batch(batch))
        return _floats(logs), (eval_state[0], eval_state[1], optimizer, eval_state[2])

    def validate_epochs(self, lanes) -> dict:
        logs, self._state = self._validate(self._state)
        return {lanes[0]: logs}

    def write_models(self, lanes) -> None:
        from tf_selectivity.training.device_loop import write_model_state

        if self._state is not None:  # else between epochs: the model holds the state
            write_model_state(self.model, self._state)

    def validate_now(self, lanes) -> dict:
        from tf_selectivity.training.device_loop import model_state

        state = self._state if self._state is not None else model_state(self.model)
        return {lanes[0]: self._validate(state)[0]}

    def store(self, lanes) -> None:
        from tf_selectivity.training.device_loop import write_model_state

        write_model_state(self.model, self._state)
        self._state = None

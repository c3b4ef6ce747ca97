"""Epochs as compiled JAX programs over data held on the device.

`model.fit` on JAX hands the compiled step one host batch at a time; with a
small network on a GPU, the Python that cuts, augments and copies each batch
is the bottleneck (BUILD_NOTES.md, *Accelerator path*; benchmarks/RESULTS.md). Here the training and
validation splits live on the device (uint8 images, int32 labels) and many
steps run as one call of a `jax.lax.fori_loop` whose body is the model's own
stateless `train_step` (`tf_selectivity.data.device_pipeline` cuts, shuffles
and augments each batch inside it). The host only launches calls, reads the
logs after each call and writes the state back into the model's variables at
the end of every epoch, so callbacks (checkpoints, TensorBoard, progress bar,
best-epoch selection) work per epoch as with `fit`.

An epoch is a handful of pure functions of the training state
(`EpochFunctions`); they hold no Python state per step, so replicates of one
configuration can be packed with `jax.vmap` over their states and run keys:

* ``plan(key, epoch)``: the epoch's `EpochPlan` (run key, epoch and sample
  order; each step draws its crops and flips from them), one small program
  per epoch;
* ``train_steps(state, data, plan, start, stop)``: full batches
  ``start .. stop - 1`` (``start``/``stop`` are traced: one compiled program
  whatever the number of steps per call);
* ``train_last(state, data, plan)``: the smaller last batch when the batch
  size does not divide the split (a second program with its own static
  shape: the last batch of an epoch is smaller, as in PyTorch's DataLoader
  and our host pipelines);
* ``evaluate(state, data)``: the whole validation split in the fixed order
  and batch size of `evaluate` on the host path (one program).

On CPUs the steps run one compiled step per call instead of a loop (see
`DeviceTrainer`'s ``compiled_loop``).

Only imported on the JAX backend.
"""

from __future__ import annotations

import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import keras
import numpy as np

from tf_selectivity.data import device_pipeline

__all__ = [
    "DEVICE_MEMORY_FRACTION",
    "EpochFunctions",
    "DeviceTrainer",
    "device_data_bytes",
    "fits_on_device",
    "free_device_memory",
    "epoch_functions",
    "model_state",
    "write_model_state",
]

# The data may take at most this share of the device's free memory: the rest
# is for the model, its activations (a ResNet20 step at batch 256 needs a few
# hundred MB; packed replicates N times that) and XLA's scratch buffers.
DEVICE_MEMORY_FRACTION = 0.5


# ------------------------------------------------------------------ memory
def device_data_bytes(*arrays) -> int:
    """Bytes the splits take on the device: images (ndim > 1) as uint8, labels as int32."""
    total = 0
    for array in arrays:
        array = np.asarray(array)
        itemsize = 1 if array.ndim > 1 else 4
        total += int(array.size) * itemsize
    return total


def fits_on_device(nbytes: int, device=None) -> bool:
    """Whether `nbytes` of data may be kept on `device` (default: JAX's first).

    At most `DEVICE_MEMORY_FRACTION` of its free memory; a device that does
    not report its memory is trusted, as `training.placement` does for the
    splits.
    """
    free = free_device_memory(device)
    return free is None or nbytes <= DEVICE_MEMORY_FRACTION * free


def free_device_memory(device=None):
    """Free bytes on `device` (default: JAX's first device), or None if unknown.

    Accelerators report their allocator's limit and use
    (`Device.memory_stats`); a CPU device has none, and its "device memory" is
    the host's, so the host's available memory is used there.
    """
    device = device or jax.devices()[0]
    stats = None
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001  (backends without the call raise various errors)
        stats = None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    if device.platform == "cpu":
        return _host_available_memory()
    return None


def _host_available_memory():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


# ------------------------------------------------------------------- state
def model_state(model):
    """The model's training state as `train_step` takes it.

    Returns:
        (trainable, non_trainable, optimizer, metrics): four lists of arrays.
    """
    return (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in model.optimizer.variables],
        [v.value for v in model.metrics_variables],
    )


def build_metrics(model, images, labels) -> None:
    """Builds the model's compiled metrics on one example, then resets them.

    Keras creates a compiled metric's variables at its first update. A
    jitted step takes the metrics' variables from the state captured before
    it (`model_state`); a metric first built inside the trace (e.g. a
    user's extra ``metrics=``) would have no value there. `fit` builds them
    symbolically before its first step; this does the same with one eager
    forward pass.

    Args:
        model: a compiled model.
        images: at least one image (uint8 or float, [0, 255]).
        labels: their integer labels.
    """
    x = np.asarray(images[:1], dtype=np.float32)
    y = np.asarray(labels[:1], dtype=np.int32)
    model.compute_metrics(x, y, model(x, training=False), sample_weight=None)
    model.reset_metrics()


def write_model_state(model, state) -> None:
    """Assigns a `model_state`-shaped state to the model's variables."""
    groups = (
        model.trainable_variables,
        model.non_trainable_variables,
        model.optimizer.variables,
        model.metrics_variables,
    )
    for variables, values in zip(groups, state):
        for variable, value in zip(variables, values):
            variable.assign(value)


# --------------------------------------------------------- pure functions
class EpochFunctions(NamedTuple):
    """The pure functions of an epoch on device-resident data.

    ``data`` is ``(train_images, train_labels, validation_images,
    validation_labels)`` (uint8 and int32 device arrays); ``state`` is
    `model_state`'s 4-tuple; ``plan`` is the epoch's
    `device_pipeline.EpochPlan`. None of them reads or writes Python state
    (the model only supplies the structure: its stateless steps), so all can
    be jitted, and `jax.vmap`-ed for packed replicates of one configuration:
    state, key and plan mapped (axis 0); data, epoch, step, start and stop
    shared (None); e.g. ``jax.vmap(fn.train_steps, in_axes=(0, None, 0, None,
    None))`` and ``jax.vmap(fn.plan, in_axes=(0, None))`` (tested against
    single runs).

    Attributes:
        plan: (key, epoch) -> the epoch's `EpochPlan` (key, epoch, order);
            ``key`` is `device_pipeline.run_key(seed)`.
        train_step: (state, data, plan, step) -> (state, logs) after full
            batch `step`.
        train_steps: (state, data, plan, start, stop) -> (state, logs) after
            full batches start .. stop - 1: `train_step` in a
            `jax.lax.fori_loop` with traced bounds (one program for any
            number of steps).
        train_last: (state, data, plan) -> (state, logs) after the smaller
            last batch, or None when the batch size divides N.
        evaluate: (state, data) -> (state, logs): the validation split; only
            the non-trainable (probe) and metrics variables change.
        reset_metrics: state -> state with the metrics at their reset values.
        full_steps: number of full batches per epoch (static).
        last_batch: size of the smaller last batch (0 if none).
    """

    plan: Callable
    train_step: Callable
    train_steps: Callable
    train_last: Callable | None
    evaluate: Callable
    reset_metrics: Callable
    full_steps: int
    last_batch: int


def epoch_functions(model, *, num_train, batch_size, num_validation, eval_batch_size,
                    augment=True) -> EpochFunctions:
    """Builds the `EpochFunctions` of a compiled Keras JAX model.

    Args:
        model: a compiled model with a stateless JAX ``train_step(state,
            data)`` and ``test_step(state, data)`` (Keras' JAX trainer API;
            `SelectivityModel` has both). Its metrics must reset to the values
            they hold when this is called (call ``model.reset_metrics()``).
        num_train, batch_size: training split size and batch size.
        num_validation, eval_batch_size: validation split size and batch size.
        augment: pad-crop-flip augmentation of training batches.

    Returns:
        An `EpochFunctions`.
    """
    num_train, batch_size = int(num_train), int(batch_size)
    full_steps, last_batch = divmod(num_train, batch_size)
    eval_full, eval_last = divmod(int(num_validation), int(eval_batch_size))
    reset_values = [jnp.asarray(v.value) for v in model.metrics_variables]

    def reset_metrics(state):
        trainable, non_trainable, optimizer, _ = state
        return trainable, non_trainable, optimizer, list(reset_values)

    def plan(key, epoch):
        return device_pipeline.epoch_plan(key, epoch, num_train)

    def one_step(state, data, plan_, step, size):
        x, y = device_pipeline.training_batch(
            data[0], data[1], plan_, step, size, stride=batch_size, augment=augment
        )
        logs, state = model.train_step(state, (x, y))
        return state, logs

    # Zeros shaped like a step's logs, to carry them through a loop: traced
    # abstractly (no computation), with the static arguments closed over.
    def zero_logs(step_fn, *arrays):
        shapes = jax.eval_shape(step_fn, *arrays)[1]
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def train_step(state, data, plan_, step):
        return one_step(state, data, plan_, step, batch_size)

    def train_steps(state, data, plan_, start, stop):
        def body(step, carry):
            return train_step(carry[0], data, plan_, step)

        logs = zero_logs(train_step, state, data, plan_, start)
        return jax.lax.fori_loop(start, stop, body, (state, logs))

    def train_last(state, data, plan_):
        return one_step(state, data, plan_, full_steps, last_batch)

    def evaluate(state, data):
        trainable, non_trainable, optimizer, metrics = state
        images, labels = data[2], data[3]

        def test_step(eval_state, start, size):
            x, y = device_pipeline.evaluation_batch(images, labels, start, size)
            logs, eval_state = model.test_step(eval_state, (x, y))
            return eval_state, logs

        eval_state = (trainable, non_trainable, metrics)
        first_size = eval_batch_size if eval_full else eval_last
        logs = zero_logs(lambda s: test_step(s, 0, first_size), eval_state)
        if eval_full:
            def body(step, carry):
                return test_step(carry[0], step * eval_batch_size, eval_batch_size)

            eval_state, logs = jax.lax.fori_loop(0, eval_full, body, (eval_state, logs))
        if eval_last:
            eval_state, logs = test_step(eval_state, eval_full * eval_batch_size, eval_last)
        _, non_trainable, metrics = eval_state
        return (trainable, non_trainable, optimizer, metrics), logs

    return EpochFunctions(
        plan=plan,
        train_step=train_step,
        train_steps=train_steps,
        train_last=train_last if last_batch else None,
        evaluate=evaluate,
        reset_metrics=reset_metrics,
        full_steps=full_steps,
        last_batch=last_batch,
    )


# ------------------------------------------------------------------ runner
class DeviceTrainer:
    """Epochs of one or more runs with their data on the device (an `EpochRunner`).

    The `EpochFunctions` of the first model (they use only its structure)
    run the epochs of every lane; with several lanes (replicates of one
    configuration, `training/replicates.py`) they are `jax.vmap`-ed over
    the stacked states and run keys, the data shared. `jax.vmap` keeps the
    lanes' computations apart, so each trains exactly as it would alone
    (equal within float rounding, tested) and a NaN in one cannot reach
    another. With one lane nothing is mapped. Between epochs each lane's
    state lives in its model's variables (`run_epochs` reads and writes it
    around each epoch), so callbacks work per epoch as with `fit`.

    Args:
        models: a compiled model (see `epoch_functions`), or a list of
            compiled models of one configuration (same structure).
        train_images, train_labels: the training split (uint8 (N, H, W, C),
            integer (N,)) as NumPy arrays; copied to the device once.
        validation_images, validation_labels: the validation split.
        batch_size, eval_batch_size: training and validation batch sizes.
        seed: the run seed of a single model (order and augmentation derive
            from ``device_pipeline.run_key(seed)``); `seeds` for a list.
        seeds: one seed per model.
        augment: pad-crop-flip augmentation.
        seconds_per_call: for one lane with a progress bar (`fit`'s verbose
            1), the steps between two updates are chosen so that they take
            about this long (results do not depend on it); otherwise an
            epoch's full batches run as one call.
        steps_per_call: a fixed number of steps between two updates instead;
            None: chosen by `seconds_per_call`.
        compiled_loop: run many steps per call in a `fori_loop` (True), or
            one compiled step per call, dispatched asynchronously from Python
            (False). "auto": the loop except on CPUs, where XLA runs the
            convolution gradients of a loop body many times slower than the
            same ops outside a loop (jax-ml/jax#12868; benchmarks/RESULTS.md). The data
            stay on the device either way.
        progress: report batches to the callbacks of a single lane (steps
            in chunks of `seconds_per_call`); False: one call per epoch.
    """

    def __init__(self, models, train_images, train_labels, validation_images, validation_labels,
                 *, batch_size, eval_batch_size, seed=None, seeds=None, augment=True, seconds_per_call=0.5,
                 steps_per_call=None, compiled_loop="auto", progress=True):
        if isinstance(models, keras.Model):
            models, seeds = [models], [seed if seeds is None else seeds[0]]
        models = list(models)
        if not models or seeds is None or len(seeds) != len(models) or any(s is None for s in seeds):
            raise ValueError("give one seed per model, and at least one model")
        if len(train_labels) == 0 or len(validation_labels) == 0:
            raise ValueError("The training and validation splits must not be empty.")
        self.models = models
        self.seeds = [int(s) for s in seeds]
        self.batch_size = int(batch_size)
        self.seconds_per_call = float(seconds_per_call)
        self.progress = bool(progress)
        self.data = (
            jax.device_put(np.ascontiguousarray(train_images, dtype=np.uint8)),
            jax.device_put(np.asarray(train_labels, dtype=np.int32)),
            jax.device_put(np.ascontiguousarray(validation_images, dtype=np.uint8)),
            jax.device_put(np.asarray(validation_labels, dtype=np.int32)),
        )
        for model in models:
            if model.optimizer is None:
                raise ValueError("Compile the model before training it on the device.")
            if not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
            build_metrics(model, validation_images, validation_labels)
        self.functions = functions = epoch_functions(
            models[0],
            num_train=len(train_labels),
            batch_size=self.batch_size,
            num_validation=len(validation_labels),
            eval_batch_size=int(eval_batch_size),
            augment=augment,
        )
        if compiled_loop == "auto":
            compiled_loop = jax.devices()[0].platform != "cpu"
        self.compiled_loop = bool(compiled_loop)
        self.packed = len(models) > 1
        keys = [device_pipeline.run_key(s) for s in self.seeds]
        self.keys = jnp.stack(keys) if self.packed else keys[0]
        self.key = keys[0]

        def compiled(fn, in_axes):
            # Packed: state, key and plan mapped (axis 0); data, step bounds shared.
            return jax.jit(jax.vmap(fn, in_axes=in_axes) if self.packed else fn)

        self._plan = compiled(functions.plan, (0, 0))
        self._reset_metrics = compiled(functions.reset_metrics, 0)
        if self.compiled_loop:
            self._train_steps = compiled(functions.train_steps, (0, None, 0, None, None))
        else:
            self._train_step = compiled(functions.train_step, (0, None, 0, None))
        self._train_last = compiled(functions.train_last, (0, None, 0)) if functions.train_last else None
        self._evaluate = compiled(functions.evaluate, (0, None))
        self._fixed_steps_per_call = steps_per_call is not None
        self._steps_per_call = max(1, int(steps_per_call)) if steps_per_call else 1
        self._compiled_steps = False
        self._state = None

    @property
    def replicates(self) -> int:
        return len(self.models)

    @property
    def steps_per_epoch(self) -> int:
        return self.functions.full_steps + (1 if self.functions.last_batch else 0)

    # --------------------------------------------------------------- state
    def state(self):
        """The models' training state (stacked along a new first axis when packed)."""
        states = [model_state(model) for model in self.models]
        if not self.packed:
            return states[0]
        return jax.tree.map(lambda *values: jnp.stack(values), *states)

    def write_state(self, state, lanes=None) -> None:
        """Writes `state` (as `state()` returns it) into the models of `lanes` (default: all)."""
        if not self.packed:
            write_model_state(self.models[0], state)
            return
        state = jax.device_get(state)
        for lane in range(len(self.models)) if lanes is None else lanes:
            write_model_state(self.models[lane], jax.tree.map(lambda values: values[lane], state))

    def reset_metrics(self, state):
        """`state` with every lane's metrics at their reset values."""
        return self._reset_metrics(state)

    # -------------------------------------------------------------- epochs
    def epoch_plan(self, epoch):
        """The `EpochPlan` of `epoch` (one epoch per lane when packed; device arrays)."""
        # NumPy scalars: a jnp scalar costs a dispatch of its own per step,
        # and mixing Python ints with int32 arrays would compile twice.
        return self._plan(self.keys, np.asarray(epoch, dtype=np.int32))

    def run_steps(self, state, plan, start, stop):
        """Full batches ``start .. stop - 1`` of an epoch; returns (state, logs).

        Asynchronous: the arrays returned are not ready until the device is
        done (`jax.block_until_ready`).
        """
        if self.compiled_loop:
            return self._train_steps(state, self.data, plan, np.int32(start), np.int32(stop))
        logs = None
        for step in range(start, stop):
            state, logs = self._train_step(state, self.data, plan, np.int32(step))
        return state, logs

    def train_epoch(self, state, epoch, callbacks=None, chunked=True, stops=(), pause=None):
        """One epoch's training steps; returns (state, logs on the device).

        Args:
            state: the training state (`state()`).
            epoch: the epoch index (one per lane when packed).
            callbacks: a single lane's `CallbackList`, told of each chunk of
                steps (``on_train_batch_begin/end``), or None.
            chunked: run the full batches in chunks of about
                `seconds_per_call` (a moving progress bar) instead of one call.
            stops: steps into the epoch after which to call `pause` (a call
                ends there; the steps are the same).
            pause: called with the steps done; meanwhile the state is the
                runner's current one (`write_models`, `validate_now`).
        """
        functions = self.functions
        state = self._reset_metrics(state)
        plan = self.epoch_plan(epoch)
        logs = None
        step = 0
        stops = sorted(int(s) for s in stops) if pause is not None else []
        while step < functions.full_steps:
            count = self._steps_per_call if chunked else functions.full_steps
            stop = min(step + count, functions.full_steps, *[s for s in stops if s > step])
            if callbacks is not None:
                callbacks.on_train_batch_begin(step)
            started = time.perf_counter()
            state, logs = self.run_steps(state, plan, step, stop)
            if callbacks is not None or chunked:
                logs = jax.device_get(logs)  # waits for the call
                self._adapt_steps_per_call(stop - step, time.perf_counter() - started)
            if callbacks is not None:
                callbacks.on_train_batch_end(stop - 1, logs)
            step = stop
            if step in stops:
                self._state = state
                pause(step)
        if self._train_last is not None:
            if callbacks is not None:
                callbacks.on_train_batch_begin(functions.full_steps)
            state, logs = self._train_last(state, self.data, plan)
            if callbacks is not None:
                logs = jax.device_get(logs)
                callbacks.on_train_batch_end(functions.full_steps, logs)
        return state, logs

    def _adapt_steps_per_call(self, steps, seconds):
        if self._fixed_steps_per_call:
            return
        if not self._compiled_steps:
            # The first call includes compilation: it says nothing of speed.
            self._compiled_steps = True
            return
        per_step = max(seconds / steps, 1e-6)
        self._steps_per_call = int(
            min(max(1, round(self.seconds_per_call / per_step)), max(1, self.functions.full_steps))
        )

    def validate(self, state):
        """The validation split's logs with this state; returns (state, logs)."""
        return self._evaluate(self._reset_metrics(state), self.data)

    # ------------------------------------------------- EpochRunner protocol
    def reports_batches(self, lanes) -> bool:
        return not self.packed and self.progress

    def train_epochs(self, epochs, lanes, callbacks, stops=(), pause=None) -> dict:
        # Read after on_epoch_begin: a callback may have changed the weights.
        state = self.state()
        epoch = epochs if self.packed else epochs[0]
        self._state, logs = self.train_epoch(
            state, epoch, callbacks=callbacks, chunked=callbacks is not None, stops=stops, pause=pause
        )
        return self._lane_logs(logs, lanes)

    def validate_epochs(self, lanes) -> dict:
        self._state, logs = self.validate(self._state)
        return self._lane_logs(logs, lanes)

    def write_models(self, lanes) -> None:
        if self._state is not None:  # else between epochs: the models hold the state
            self.write_state(self._state, lanes)

    def validate_now(self, lanes) -> dict:
        # The evaluate program on the device; only its logs come back.
        state = self._state if self._state is not None else self.state()
        return self._lane_logs(self.validate(state)[1], lanes)

    def _lane_logs(self, logs, lanes) -> dict:
        logs = jax.device_get(logs)
        if not self.packed:
            return {lanes[0]: {name: float(value) for name, value in logs.items()}}
        return {lane: {name: float(value[lane]) for name, value in logs.items()} for lane in lanes}

    def store(self, lanes) -> None:
        self.write_state(self._state, lanes)
        self._state = None

    def fit(self, *, epochs, initial_epoch=0, callbacks=(), verbose=1):
        """`fit` for a single model: trains epochs ``initial_epoch .. epochs - 1``.

        Args:
            epochs: index of the last epoch + 1 (as `fit`).
            initial_epoch: first epoch (a resumed run's epochs done).
            callbacks: Keras callbacks (no progress bar is added: pass one).
            verbose: the `verbose` in the callbacks' params; 1 also makes
                compiled calls short enough for a moving progress bar.

        Returns:
            The `keras.callbacks.History` of this call.
        """
        from tf_selectivity.training.epochs import Lane, run_epochs

        if self.packed:
            raise ValueError("fit trains one model; run packed lanes with training.epochs.run_epochs")
        model = self.models[0]
        callback_list = keras.callbacks.CallbackList(
            list(callbacks), add_history=True, add_progbar=False, model=model,
            verbose=verbose, epochs=epochs, steps=self.steps_per_epoch,
        )
        progress, self.progress = self.progress, verbose == 1
        try:
            run_epochs(self, [Lane(model, callback_list, initial_epoch)], epochs=epochs)
        finally:
            self.progress = progress
        return model.history

"""Replicates in one program: several seeds of one configuration trained together.

The paper's experiments train every configuration with many seeds. A small
network such as ResNet20 leaves a GPU mostly idle in one run; on JAX,
`train_replicates` trains the seeds of one configuration as *one* program:
the epoch functions of `training/device_loop.py` are `jax.vmap`-ed over the
replicates' stacked states (weights, optimizer, probe statistics, metrics)
and run keys, with the data on the device shared by all. `jax.vmap` keeps
the replicates' computations apart, so each replicate trains exactly as a
single run of its seed would on the device path (equal within float
rounding, tested), and a NaN in one replicate cannot reach another.

Each replicate writes its own run directory, as `train()` writes it:
``config.json`` first, per epoch its own checkpoint, ``history.csv`` and
TensorBoard logs (`RunCheckpoint` and the other callbacks of `train`, one
set per replicate), and at the end its test evaluation, exported model and
``summary.json`` (`loop.finish_run`). The summary has one more key,
``"packed_replicates"`` (the number of runs in the program), because
``train_seconds_this_session`` is then the pack's time. A single run of a
seed trained packed finds its directory complete; a packed run finds a
single run's directory complete or resumes it.

Epochs per replicate: each replicate keeps its own epoch counter, so a pack
resumes replicates that finished different numbers of epochs (a kill
between two replicates' checkpoint writes): every round trains each
replicate's *next* epoch, and a replicate that has finished its epochs (or
diverged, or was stopped by a callback) stays in the program until the pack
ends but is no longer read or written -- its computation is wasted, its
files untouched. No rollback is needed and no replicate ever trains an epoch
twice.

On TensorFlow, and for runs that cannot keep their data on the device (a
run resumed on host batches, splits that do not fit), replicates train one
after another with `train`.
"""

from __future__ import annotations

import contextlib
import math
import time

import keras
import numpy as np

from tf_selectivity.models import MODELS
from tf_selectivity.training.callbacks import RunCheckpoint
from tf_selectivity.training.loop import (
    _finished,
    build_compiled_model,
    finish_run,
    load_run_data,
    prepare_run_dir,
    run_callbacks,
    start_run,
    train,
)
from tf_selectivity.training.packing import DEFAULT_PACK_REPLICATES, check_replicate_configs
from tf_selectivity.training.placement import choose_input_pipeline
from tf_selectivity.training.run_dir import RunLockedError

__all__ = [
    "train_replicates", "resolve_pack_replicates", "PackedTrainer", "benchmark_packed", "PackTooLargeError",
]


class PackTooLargeError(RuntimeError):
    """The packed program does not fit in the device's memory."""


def resolve_pack_replicates(setting) -> int:
    """The seeds this process trains together for `--pack_replicates`.

    Args:
        setting: a number of seeds (used as given, also on a CPU), or None
            for "auto": `DEFAULT_PACK_REPLICATES` on JAX with an
            accelerator, 1 on a CPU (XLA's grouped convolutions make a
            packed step there 4x slower than the same replicates one after
            another; BUILD_NOTES.md) and on TensorFlow (no packing).
    """
    if setting is not None:
        return max(1, int(setting))
    if keras.backend.backend() != "jax":
        return 1
    import jax

    return 1 if jax.devices()[0].platform == "cpu" else DEFAULT_PACK_REPLICATES


def train_replicates(configs, *, verbose: int = 1, data=None, metrics=None, callbacks_for=None,
                     skip_locked: bool = False) -> list:
    """Trains replicates of one configuration, packed in one program on JAX.

    Every run behaves as ``train(config)`` would: a finished run is not
    trained again, an interrupted one resumes from its checkpoint, each run
    directory is locked while it trains, everything that can be refused is
    checked before anything is written, and each run ends with its own
    ``summary.json`` (completed or diverged).

    Args:
        configs: `TrainConfig`s that differ only in ``seed`` and
            ``output_dir`` (`packing.check_replicate_configs`).
        verbose: 0 silent; 1 or 2: one line per epoch for the whole pack
            (a progress bar per replicate would be unreadable), and each
            run's closing lines.
        data: the runs' `DatasetSplits`, if already loaded.
        metrics: extra Keras metrics, as in `train`.
        callbacks_for: function config -> list of extra Keras callbacks of
            that replicate (each replicate needs its own instances).
        skip_locked: leave out runs another process is training (their
            summary is None) instead of raising `RunLockedError`.

    Returns:
        The summaries, in the order of `configs` (None for a run skipped
        because it was locked).

    Raises:
        ConfigError: the configurations cannot be packed or trained, or a
            run directory holds another run.
        DatasetUnavailableError: the dataset cannot be loaded.
        RunLockedError: another process trains one of the runs (unless
            `skip_locked`).
        PackTooLargeError: the packed program does not fit in the device's
            memory (pack fewer replicates).
    """
    configs = list(configs)
    check_replicate_configs(configs)
    for config in configs:
        config.validate(known_models=MODELS)
    all_paths = [prepare_run_dir(config) for config in configs]
    summaries = [None] * len(configs)
    pending = []
    for index, paths in enumerate(all_paths):
        if paths.is_complete():
            summaries[index] = _finished(paths, verbose)
        elif paths.is_locked():
            if not skip_locked:
                raise RunLockedError(
                    f"another process is training in {paths.root}; wait for it or use another `output_dir`"
                )
            if verbose:
                print(f"{paths.root} is being trained by another process; left to it.", flush=True)
        else:
            pending.append(index)
    if not pending:
        return summaries
    if data is None:
        data = load_run_data(configs[0])
    backend = keras.backend.backend()
    pipelines = {
        index: choose_input_pipeline(
            configs[index].data_on_device, data, all_paths[index], backend, verbose if index == pending[0] else 0
        )
        for index in pending
    }
    packed = [index for index in pending if pipelines[index] == "device"] if backend == "jax" else []
    if len(packed) < 2:
        packed = []
    alone = [index for index in pending if index not in packed]
    if verbose and alone and len(pending) > 1:
        reason = (
            "TensorFlow trains them one after another (packing needs the JAX backend)"
            if backend != "jax"
            else "trained one after another (their data are not on the device)"
        )
        seeds = ", ".join(str(configs[index].seed) for index in alone)
        print(f"Seeds {seeds}: {reason}.", flush=True)
    if packed:
        if verbose:
            print(data.summary_line(), flush=True)
        for index, summary in _train_pack(
            [configs[index] for index in packed], [all_paths[index] for index in packed], data,
            verbose=verbose, metrics=metrics, callbacks_for=callbacks_for, skip_locked=skip_locked,
        ).items():
            summaries[packed[index]] = summary
    for index in alone:
        keras.backend.clear_session()  # each run as in a process of its own
        callbacks = list(callbacks_for(configs[index])) if callbacks_for else []
        try:
            summaries[index] = train(configs[index], callbacks=callbacks, verbose=verbose, data=data, metrics=metrics)
        except RunLockedError:
            if not skip_locked:
                raise
    return summaries


def _train_pack(configs, all_paths, data, *, verbose, metrics, callbacks_for, skip_locked) -> dict:
    """Locks the runs, trains the unfinished ones as one pack, finishes each.

    Returns:
        {position in `configs`: summary} of the runs trained or found finished.
    """
    summaries = {}
    with contextlib.ExitStack() as stack:
        mine = []
        for index, paths in enumerate(all_paths):
            try:
                stack.enter_context(paths.locked())
            except RunLockedError:
                if not skip_locked:
                    raise
                continue
            if paths.is_complete():  # another process finished it meanwhile
                summaries[index] = _finished(paths, verbose)
                continue
            mine.append(index)
        for index in mine:
            start_run(configs[index], all_paths[index], data)
        if mine:
            trained = _train_locked_pack(
                [configs[i] for i in mine], [all_paths[i] for i in mine], data, verbose, metrics, callbacks_for
            )
            summaries.update({mine[i]: summary for i, summary in enumerate(trained)})
    return summaries


def _train_locked_pack(configs, all_paths, data, verbose, metrics, callbacks_for) -> list:
    first = configs[0]
    steps_per_epoch = math.ceil(len(data.train_labels) / first.batch_size)
    models, checkpoints, initial_epochs = [], [], []
    jit_compile = True
    for config, paths in zip(configs, all_paths):
        # Layer and variable names as a single run of this seed gets them in
        # a process of its own (its files and logs name them).
        keras.backend.clear_session()
        model, jit_compile = build_compiled_model(config, data, metrics, steps_per_epoch)
        checkpoint = RunCheckpoint(paths, input_pipeline="device")
        checkpoint.set_model(model)
        initial_epochs.append(checkpoint.restore())
        models.append(model)
        checkpoints.append(checkpoint)
    seeds = [config.seed for config in configs]
    if verbose:
        import jax

        device = jax.devices()[0]
        print(
            f"Training {len(configs)} replicates (seeds {_describe_seeds(seeds)}) packed in one program on "
            f"{device.platform}:{device.id}.",
            flush=True,
        )
        for config, paths, done in zip(configs, all_paths, initial_epochs):
            if done:
                print(f"Resuming {paths.root} after epoch {done}/{config.epochs}.", flush=True)
    callback_lists = []
    for index, (config, paths, model, checkpoint) in enumerate(zip(configs, all_paths, models, checkpoints)):
        extra = list(callbacks_for(config)) if callbacks_for else []
        callbacks = run_callbacks(
            paths, checkpoint, verbose, extra, progress=False, announce_missing_tensorboard=index == 0
        )
        callback_lists.append(
            keras.callbacks.CallbackList(
                callbacks, add_history=True, add_progbar=False, model=model, verbose=verbose,
                epochs=config.epochs, steps=steps_per_epoch,
            )
        )
    lanes = [i for i, done in enumerate(initial_epochs) if done < first.epochs]
    start = time.time()
    if lanes:
        trainer = PackedTrainer(
            [models[i] for i in lanes], [seeds[i] for i in lanes],
            data.train_images, data.train_labels, data.validation_images, data.validation_labels,
            batch_size=first.batch_size, eval_batch_size=first.eval_batch_size, augment=first.augment,
        )
        try:
            trainer.fit(
                [callback_lists[i] for i in lanes], [initial_epochs[i] for i in lanes], epochs=first.epochs,
                progress=_PackProgress(first.epochs, [seeds[i] for i in lanes]) if verbose else None,
            )
        except Exception as error:  # noqa: BLE001  (only an out-of-memory error is translated)
            if "RESOURCE_EXHAUSTED" in str(error):
                raise PackTooLargeError(
                    f"{len(lanes)} packed replicates do not fit in the device's memory "
                    f"({str(error).strip().splitlines()[0][:200]}); pack fewer (`pack_replicates="
                    f"{max(1, len(lanes) // 2)}`); the runs resume from their checkpoints"
                ) from error
            raise
    train_seconds = time.time() - start
    extra_summary = {"packed_replicates": len(configs)}
    return [
        finish_run(config, paths, data, model, checkpoint, train_seconds, jit_compile, "device", verbose, extra_summary)
        for config, paths, model, checkpoint in zip(configs, all_paths, models, checkpoints)
    ]


def _describe_seeds(seeds) -> str:
    """"0-3, 7" for [0, 1, 2, 3, 7]."""
    parts, run = [], []
    for seed in list(seeds) + [None]:
        if run and (seed is None or seed != run[-1] + 1):
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
            run = []
        if seed is not None:
            run.append(seed)
    return ", ".join(parts)


class _PackProgress:
    """One line per round of a pack: the epoch, the time, and the spread of
    the replicates' loss and validation accuracy."""

    def __init__(self, epochs, seeds):
        self.epochs = epochs
        self.seeds = list(seeds)
        self.started = time.perf_counter()

    def __call__(self, epochs_trained, logs):
        """`epochs_trained`: {lane: epoch index trained}; `logs`: {lane: epoch logs}."""
        now = time.perf_counter()
        seconds, self.started = now - self.started, now
        lanes = sorted(logs)
        epochs = sorted({epochs_trained[lane] + 1 for lane in lanes})
        epoch = f"{epochs[0]}" if len(epochs) == 1 else f"{epochs[0]}-{epochs[-1]}"
        parts = []
        for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
            values = [logs[lane][name] for lane in lanes if name in logs[lane]]
            if values:
                parts.append(f"{name} {_spread(values)}")
        print(
            f"Epoch {epoch}/{self.epochs} - {seconds:.1f} s - {len(lanes)} replicates: " + ", ".join(parts),
            flush=True,
        )


def _spread(values) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "nan"
    low, high = min(finite), max(finite)
    text = f"{low:.4f}" if low == high else f"{low:.4f}..{high:.4f}"
    bad = len(values) - len(finite)
    return text + (f" ({bad} not finite)" if bad else "")


class PackedTrainer:
    """The epochs of several replicates as one `jax.vmap`-ed program.

    The epoch functions of a `DeviceTrainer` (built from the first model:
    they only use its structure) mapped over the replicates' stacked states
    and run keys; the data on the device are shared. Between epochs each
    replicate's state lives in its own model's variables, as with `fit`, so
    its callbacks (checkpoint, logs) see its weights.

    Args:
        models: compiled models of one configuration (same structure).
        seeds: their seeds (run keys).
        train_images, train_labels, validation_images, validation_labels:
            the splits (NumPy), copied to the device once.
        batch_size, eval_batch_size, augment: as `DeviceTrainer`.
        compiled_loop: as `DeviceTrainer` ("auto": a compiled loop of the
            steps on accelerators, one compiled (packed) step per call on
            CPUs).
    """

    def __init__(self, models, seeds, train_images, train_labels, validation_images, validation_labels, *,
                 batch_size, eval_batch_size, augment=True, compiled_loop="auto"):
        import jax
        import jax.numpy as jnp

        from tf_selectivity.data import device_pipeline
        from tf_selectivity.training.device_loop import DeviceTrainer

        if len(models) != len(seeds) or not models:
            raise ValueError("give one seed per model, and at least one model")
        self.models = list(models)
        self.base = DeviceTrainer(
            self.models[0], train_images, train_labels, validation_images, validation_labels,
            batch_size=batch_size, eval_batch_size=eval_batch_size, seed=seeds[0], augment=augment,
            compiled_loop=compiled_loop,
        )
        for model in self.models[1:]:
            if model.optimizer is None:
                raise ValueError("Compile the models before training them.")
            if not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
            model.reset_metrics()
        self.data = self.base.data
        self.functions = functions = self.base.functions
        self.compiled_loop = self.base.compiled_loop
        self.keys = jnp.stack([device_pipeline.run_key(int(seed)) for seed in seeds])
        # Mapped: state, key, plan (axis 0); shared: data, step bounds.
        self._plan = jax.jit(jax.vmap(functions.plan, in_axes=(0, 0)))
        self._reset_metrics = jax.jit(jax.vmap(functions.reset_metrics))
        if self.compiled_loop:
            self._train_steps = jax.jit(jax.vmap(functions.train_steps, in_axes=(0, None, 0, None, None)))
        else:
            self._train_step = jax.jit(jax.vmap(functions.train_step, in_axes=(0, None, 0, None)))
        self._train_last = (
            jax.jit(jax.vmap(functions.train_last, in_axes=(0, None, 0))) if functions.train_last else None
        )
        self._evaluate = jax.jit(jax.vmap(functions.evaluate, in_axes=(0, None)))

    @property
    def replicates(self) -> int:
        return len(self.models)

    @property
    def steps_per_epoch(self) -> int:
        return self.base.steps_per_epoch

    # ------------------------------------------------------------ state
    def stacked_state(self):
        """The models' states stacked along a new first axis (device arrays)."""
        import jax
        import jax.numpy as jnp

        from tf_selectivity.training.device_loop import model_state

        return jax.tree.map(lambda *values: jnp.stack(values), *[model_state(m) for m in self.models])

    def plans(self, epochs):
        """The `EpochPlan`s of each replicate's epoch (`epochs`: one per replicate)."""
        return self._plan(self.keys, np.asarray(epochs, dtype=np.int32))

    def run_steps(self, state, plans, start, stop):
        """Full batches ``start .. stop - 1`` of every replicate's epoch; (state, logs)."""
        if self.compiled_loop:
            return self._train_steps(state, self.data, plans, np.int32(start), np.int32(stop))
        logs = None
        for step in range(start, stop):
            state, logs = self._train_step(state, self.data, plans, np.int32(step))
        return state, logs

    def train_epoch(self, state, epochs):
        """Every replicate's epoch (`epochs`: its index per replicate); (state, logs)."""
        functions = self.functions
        state = self._reset_metrics(state)
        plans = self.plans(epochs)
        logs = None
        if functions.full_steps:
            state, logs = self.run_steps(state, plans, 0, functions.full_steps)
        if self._train_last is not None:
            state, logs = self._train_last(state, self.data, plans)
        return state, logs

    def validate(self, state):
        return self._evaluate(self._reset_metrics(state), self.data)

    # -------------------------------------------------------------- fit
    def fit(self, callback_lists, initial_epochs, *, epochs, progress=None):
        """Trains every replicate from its ``initial_epochs`` entry to `epochs`.

        Per round, each replicate still training runs its next epoch; its
        callbacks get the calls `fit` makes (``on_epoch_begin``, one
        ``on_train_batch_begin/end`` pair, ``on_test_begin/end``,
        ``on_epoch_end``), after its state is written into its model. A
        replicate leaves the round-robin when it has trained `epochs`
        epochs or its model's ``stop_training`` is set (e.g. by
        `RunCheckpoint` when its loss is not finite).

        Args:
            callback_lists: one `keras.callbacks.CallbackList` per replicate.
            initial_epochs: epochs each replicate has finished.
            epochs: the epochs of a run.
            progress: called after each round with ({replicate: epoch
                trained}, {replicate: logs}).
        """
        import jax

        from tf_selectivity.training.device_loop import write_model_state

        if len(callback_lists) != self.replicates or len(initial_epochs) != self.replicates:
            raise ValueError("give one callback list and one initial epoch per replicate")
        done = np.asarray(initial_epochs, dtype=np.int64)
        active = done < epochs
        last_logs = [{} for _ in self.models]
        for model, callbacks in zip(self.models, callback_lists):
            model.stop_training = False
            callbacks.on_train_begin()
        while active.any():
            lanes = [int(lane) for lane in np.flatnonzero(active)]
            for lane in lanes:
                self.models[lane].reset_metrics()
                callback_lists[lane].on_epoch_begin(int(done[lane]))
            # Read after on_epoch_begin: a callback may change the weights.
            state = self.stacked_state()
            for lane in lanes:
                callback_lists[lane].on_train_batch_begin(0)
            state, train_logs = self.train_epoch(state, done)
            for lane in lanes:
                callback_lists[lane].on_test_begin()
            state, val_logs = self.validate(state)
            state, train_logs, val_logs = jax.device_get((state, train_logs, val_logs))
            trained, round_logs = {}, {}
            for lane in lanes:
                model = self.models[lane]
                write_model_state(model, jax.tree.map(lambda values: values[lane], state))
                logs = {name: float(value[lane]) for name, value in train_logs.items()}
                callback_lists[lane].on_train_batch_end(self.steps_per_epoch - 1, logs)
                validation = {name: float(value[lane]) for name, value in val_logs.items()}
                callback_lists[lane].on_test_end(validation)
                logs.update({f"val_{name}": value for name, value in validation.items()})
                callback_lists[lane].on_epoch_end(int(done[lane]), logs)
                trained[lane], round_logs[lane] = int(done[lane]), logs
                last_logs[lane] = logs
                done[lane] += 1
                if model.stop_training or done[lane] >= epochs:
                    active[lane] = False
            if progress is not None:
                progress(trained, round_logs)
        for callbacks, logs in zip(callback_lists, last_logs):
            callbacks.on_train_end(logs)


# ------------------------------------------------------------ benchmark
def benchmark_packed(model_name, batch_size, alpha, precision, replicates, steps, warmup, repeats=3) -> float:
    """Aggregate training images per second of `replicates` packed seeds.

    Synthetic CIFAR-sized data (32x32x3, 10 classes) on the device; seeds
    0 .. replicates - 1; SGD as the paper's. Times `steps` packed steps
    after `warmup` steps (which include compilation), `repeats` times, and
    takes the median. The steps run as `PackedTrainer` runs them (a
    compiled loop on accelerators, one packed step per call on CPUs).

    Returns:
        Images per second, all replicates together.
    """
    import statistics

    import jax

    from tf_selectivity.models import build_model
    from tf_selectivity.training.optimizers import TorchSGD

    keras.mixed_precision.set_dtype_policy(precision)
    rng = np.random.default_rng(0)
    count = batch_size * (warmup + steps)
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, count)
    models = []
    for seed in range(replicates):
        keras.utils.set_random_seed(seed)
        model = build_model(model_name, alpha=alpha)
        model.compile(optimizer=TorchSGD(0.1, momentum=0.9, weight_decay_l2=1e-4))
        models.append(model)
    trainer = PackedTrainer(
        models, list(range(replicates)), images, labels, images[:batch_size], labels[:batch_size],
        batch_size=batch_size, eval_batch_size=batch_size,
    )
    state = trainer._reset_metrics(trainer.stacked_state())
    plans = trainer.plans(np.zeros(replicates))
    state, logs = trainer.run_steps(state, plans, 0, warmup)  # compiles
    jax.block_until_ready((state, logs))
    times = []
    for _ in range(max(1, int(repeats))):
        started = time.perf_counter()
        state, logs = trainer.run_steps(state, plans, warmup, warmup + steps)
        jax.block_until_ready((state, logs))
        times.append(time.perf_counter() - started)
    losses = np.asarray(logs["loss"])
    if not np.isfinite(losses).all():
        raise FloatingPointError(f"a replicate's loss is not finite: {losses}")
    return replicates * batch_size * steps / statistics.median(times)

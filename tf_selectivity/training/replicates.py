"""Replicates in one program: several seeds of one configuration trained together.

The paper's experiments train every configuration with many seeds. A small
network such as ResNet20 leaves a GPU mostly idle in one run; on JAX,
`train_replicates` trains the seeds of one configuration as *one* program:
a `DeviceTrainer` of several lanes (`training/device_loop.py`) maps the
epoch functions with `jax.vmap` over the replicates' stacked states
(weights, optimizer, probe statistics, metrics) and run keys, with the data
on the device shared by all, and the epoch loop of every run
(`training/epochs.py`) drives each replicate's callbacks. `jax.vmap` keeps
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

from tf_selectivity.training.epochs import run_epochs
from tf_selectivity.training.loop import (
    announce_finished,
    finished_summary,
    build_run,
    finish_run,
    load_run_data,
    run_callbacks,
    run_lane,
    start_run,
    train,
)
from tf_selectivity.training.packing import DEFAULT_PACK_REPLICATES, check_replicate_configs
from tf_selectivity.training.devices import data_parallel
from tf_selectivity.training.placement import choose_input_pipeline
from tf_selectivity.training.prepare import PreparedRun, prepare_runs, refuse_locked
from tf_selectivity.training.run_dir import RunLockedError, check_checkpoint

__all__ = ["train_replicates", "resolve_pack_replicates", "PackTooLargeError"]


class PackTooLargeError(RuntimeError):
    """The packed program does not fit in the device's memory."""


def resolve_pack_replicates(setting) -> int:
    """The seeds this process trains together for `--pack_replicates`.

    Args:
        setting: a number of seeds (used as given, also on a CPU), or None
            for "auto": `DEFAULT_PACK_REPLICATES` on JAX with an
            accelerator, 1 on a CPU (XLA's grouped convolutions make a
            packed step there slower than the same replicates one after
            another; benchmarks/RESULTS.md) and on TensorFlow (no packing).
    """
    if setting is not None:
        return max(1, int(setting))
    if keras.backend.backend() != "jax":
        return 1
    import jax

    return 1 if jax.devices()[0].platform == "cpu" else DEFAULT_PACK_REPLICATES


def train_replicates(runs, *, verbose: int = 1, data=None, metrics=None, callbacks_for=None,
                     skip_locked: bool = False) -> list:
    """Trains replicates of one configuration, packed in one program on JAX.

    Every run behaves as ``train(config)`` would: a finished run is not
    trained again, an interrupted one resumes from its checkpoint, each run
    directory is locked while it trains, everything that can be refused is
    checked before anything is written, and each run ends with its own
    ``summary.json`` (completed or diverged).

    Args:
        runs: `TrainConfig`s that differ only in ``seed`` and
            ``output_dir`` (`packing.check_replicate_configs`), or their
            `PreparedRun`s (`prepare_runs`: their checks are not repeated).
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
        The `RunSummary`s, in the order of `runs` (None for a run skipped
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
    prepared = [run if isinstance(run, PreparedRun) else prepare_runs([run])[0] for run in runs]
    configs = [run.config for run in prepared]
    check_replicate_configs(configs)
    all_paths = [run.paths for run in prepared]
    if not skip_locked:
        refuse_locked(prepared)
    summaries = [None] * len(configs)
    pending = []
    for index, run in enumerate(prepared):
        if run.finished:
            summaries[index] = announce_finished(run.paths, run.summary, verbose)
        elif run.locked:
            if verbose:
                print(f"{run.paths.root} is being trained by another process; left to it.", flush=True)
        else:
            pending.append(index)
    if not pending:
        return summaries
    if data is None:
        data = load_run_data(configs[0])
    backend = keras.backend.backend()
    pipelines = {
        index: choose_input_pipeline(
            configs[index].data_on_device, data, all_paths[index], backend, verbose if index == pending[0] else 0,
            devices=data_parallel(configs[index]).count,
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
            summaries[index] = train(prepared[index], callbacks=callbacks, verbose=verbose, data=data, metrics=metrics)
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
    # Before any lock or config.json: every checkpoint readable, and every
    # model built (a user's model function that fails stops here).
    for paths in all_paths:
        check_checkpoint(paths)
    runs = []
    for config, paths in zip(configs, all_paths):
        # Layer and variable names as a single run of this seed gets them in
        # a process of its own (its files and logs name them).
        keras.backend.clear_session()
        runs.append(build_run(config, paths, data, "device", metrics, restore=False))
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
                summaries[index] = finished_summary(paths, verbose)
                continue
            mine.append(index)
        for index in mine:
            runs[index].checkpoint.restore()
        for index in mine:
            start_run(configs[index], all_paths[index], data)
        if mine:
            trained = _train_locked_pack([runs[i] for i in mine], data, verbose, callbacks_for)
            summaries.update({mine[i]: summary for i, summary in enumerate(trained)})
    return summaries


def _train_locked_pack(runs, data, verbose, callbacks_for) -> list:
    configs = [run.config for run in runs]
    first = configs[0]
    seeds = [config.seed for config in configs]
    if verbose:
        import jax

        device = jax.devices()[0]
        print(
            f"Training {len(configs)} replicates (seeds {_describe_seeds(seeds)}) packed in one program on "
            f"{device.platform}:{device.id}.",
            flush=True,
        )
        for run in runs:
            if run.epochs_done:
                print(f"Resuming {run.paths.root} after epoch {run.epochs_done}/{run.config.epochs}.", flush=True)
    steps_per_epoch = math.ceil(len(data.train_labels) / first.batch_size)
    lanes = []
    for index, run in enumerate(runs):
        extra = list(callbacks_for(run.config)) if callbacks_for else []
        callbacks = run_callbacks(
            run.paths, run.checkpoint, verbose, extra, progress=False, announce_missing_tensorboard=index == 0,
            selectivity_every=run.config.selectivity_every, split_selectivity=getattr(run.model, "split_selectivity", False),
        )
        lanes.append(run_lane(run, callbacks, verbose, steps_per_epoch))
    training = [i for i, run in enumerate(runs) if run.epochs_done < first.epochs]
    start = time.time()
    if training:
        from tf_selectivity.training.device_loop import DeviceTrainer

        runner = DeviceTrainer(
            [runs[i].model for i in training],
            data.train_images, data.train_labels, data.validation_images, data.validation_labels,
            seeds=[seeds[i] for i in training], batch_size=first.batch_size,
            eval_batch_size=first.eval_batch_size, augment=first.augment, progress=False,
        )
        try:
            run_epochs(
                runner, [lanes[i] for i in training], epochs=first.epochs,
                on_round=_PackProgress(first.epochs, [seeds[i] for i in training]) if verbose else None,
            )
        except Exception as error:  # noqa: BLE001  (only an out-of-memory error is translated)
            if "RESOURCE_EXHAUSTED" in str(error):
                raise PackTooLargeError(
                    f"{len(training)} packed replicates do not fit in the device's memory "
                    f"({str(error).strip().splitlines()[0][:200]}); pack fewer (`pack_replicates="
                    f"{max(1, len(training) // 2)}`); the runs resume from their checkpoints"
                ) from error
            raise
    train_seconds = time.time() - start
    return [finish_run(run, train_seconds, verbose, packed_replicates=len(configs)) for run in runs]


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

"""`train`: one run of the paper's protocol, resumable, ending in a summary."""

from __future__ import annotations

import dataclasses
import math
import time

import keras
import numpy as np

from tf_selectivity.measures.unit_statistics import evaluate_responses
from tf_selectivity.data import ImageBatches
from tf_selectivity.data.sources import load_config_dataset
from tf_selectivity.models import build_model
from tf_selectivity.models.user_models import UserModelError
from tf_selectivity.training.callbacks import CompactProgbar, RunCheckpoint, SplitSelectivityEvery
from tf_selectivity.training.config import ConfigError, ConfigValueError, TrainConfig
from tf_selectivity.training.devices import DataParallel, data_parallel
from tf_selectivity.training.epochs import Lane, run_epochs
from tf_selectivity.training.export import (
    export_run_models,
    tensorflow_available,
)
from tf_selectivity.training.host_epochs import host_runner
from tf_selectivity.training.kept_checkpoints import kept_checkpoint_paths
from tf_selectivity.training.optimizers import make_optimizer
from tf_selectivity.training.placement import choose_input_pipeline
from tf_selectivity.core.files import write_json_atomic
from tf_selectivity.training.prepare import PreparedRun, prepare_runs, refuse_locked
from tf_selectivity.training.run_dir import (
    RunPaths,
    check_checkpoint,
    remove_partial_files,
)
from tf_selectivity.training.step_events import step_events_for
from tf_selectivity.training.summary import RunSummary

__all__ = [
    "train", "Run", "build_run", "finished_summary", "announce_finished", "run_lane", "resolve_jit_compile", "load_run_data",
    "start_run", "build_compiled_model", "check_model", "run_callbacks", "finish_run",
]


def resolve_jit_compile(setting: str) -> bool:
    """The `--jit_compile` flag: "auto" uses XLA where it wins.

    On TensorFlow, XLA is slower than the default graph executor on CPU but
    faster on GPU/TPU (benchmarks/RESULTS.md), so "auto" enables it only when an accelerator is
    visible. On JAX every step is XLA-compiled anyway (`jax.jit`). In a
    `tf.distribute` scope over several devices it is off: an XLA-compiled
    step there reads the replicas' variables across devices and fails
    (Keras' own "auto" turns it off there too).

    Raises:
        ConfigValueError: "true" on TensorFlow over several devices.
    """
    replicated = False
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicated = tf.distribute.has_strategy() and tf.distribute.get_strategy().num_replicas_in_sync > 1
    if setting == "true" and replicated:
        raise ConfigValueError(
            "jit_compile", "cannot be true for TensorFlow over several devices (--devices); use auto or false"
        )
    if setting in ("true", "false"):
        return setting == "true"
    if keras.backend.backend() == "jax":
        return True
    if keras.backend.backend() == "tensorflow":
        return not replicated and bool(tf.config.list_physical_devices("GPU") or tf.config.list_physical_devices("TPU"))
    return False


def _set_precision(precision: str) -> None:
    keras.mixed_precision.set_dtype_policy(precision)


def train(run, *, callbacks=(), verbose: int = 1, data=None, metrics=None) -> RunSummary:
    """Trains one network at one alpha and writes its run directory.

    Follows the paper's protocol (defaults of `TrainConfig`): SGD with
    momentum and coupled weight decay, step learning-rate decay, keep the
    epoch with the best validation accuracy, evaluate it on the test set.
    The same call on the same `output_dir` resumes after an interruption and
    ends with the same result; a finished run (completed or diverged) is not
    trained again. On JAX the training and validation splits live on the
    accelerator when they fit (`config.data_on_device`;
    `training/device_loop.py`).

    Everything that can be refused is checked before the run directory is
    created or its lock taken: the configuration and the directory
    (`prepare_runs`), the data (loaded first), the checkpoint of an
    interrupted run, and the model (built first: a user's model function
    that fails stops here).

    A run whose loss becomes non-finite stops at the end of that epoch and
    is finished as *diverged* (`RunSummary.as_diverged`): its summary says so and
    in which epoch, with no test metrics, and no model is exported.

    Args:
        run: the run's `TrainConfig`, or its `PreparedRun` (from
            `prepare_runs`, which a command line calls before a backend
            starts: its checks are not repeated).
        callbacks: extra Keras callbacks (e.g. keras-tuner's).
        verbose: 1 progress bar, 2 one line per epoch, 0 silent.
        data: the run's `DatasetSplits`, if the caller loaded them already
            (with `load_dataset` and this config's data settings).
        metrics: extra Keras metrics (`SelectivityModel.compile(metrics=...)`),
            logged per epoch (``history.csv``, TensorBoard, ``val_<name>``).

    Returns:
        The run's `RunSummary` (also written to ``summary.json``).

    Raises:
        ConfigError: invalid configuration or conflicting output directory,
            a user's model function that fails.
        DamagedCheckpointError: the checkpoint of an interrupted run cannot
            be read (a `ConfigError`; nothing is changed).
        DamagedFileError: a finished run's ``summary.json`` cannot be read.
        DatasetUnavailableError: the dataset cannot be loaded.
        RunLockedError: another process is training in the directory.
    """
    prepared = run if isinstance(run, PreparedRun) else prepare_runs([run])[0]
    config, paths = prepared.config, prepared.paths
    if prepared.finished:
        return announce_finished(paths, prepared.summary, verbose)
    refuse_locked([prepared])
    # Before the lock and config.json: a checkpoint that cannot be read, ...
    check_checkpoint(paths)
    # ... the devices, ...
    devices = data_parallel(config)
    if data is None:
        data = load_run_data(config)
    # Raises before anything is written if the setting cannot hold here.
    pipeline = choose_input_pipeline(
        config.data_on_device, data, paths, keras.backend.backend(), verbose, devices=devices.count
    )
    if verbose:
        print(data.summary_line(), flush=True)
    # ... and the model (a user's function that fails is found here).
    built = build_run(config, paths, data, pipeline, metrics, restore=False, devices=devices)
    with paths.locked():
        if paths.is_complete():  # another process finished it meanwhile
            return finished_summary(paths, verbose)
        built.checkpoint.restore()
        start_run(config, paths, data)
        return _train_locked(built, callbacks, verbose)


def load_run_data(config: TrainConfig):
    """The run's `DatasetSplits`, loaded with `config`'s data settings."""
    return load_config_dataset(config)


def start_run(config: TrainConfig, paths: RunPaths, data) -> None:
    """Starts (or resumes) writing a run directory; call with its lock held.

    Removes what a killed process left half-written, then writes
    ``config.json`` (identity, configuration and the data's description).
    """
    # Files a killed process left half-written (never part of the run).
    remove_partial_files(paths)
    record = {"identity": config.identity(), "config": config.to_dict(), **data.describe()}
    if data.skipped_images:
        record["skipped_images"] = list(data.skipped_images)
    write_json_atomic(paths.config, record)


def finished_summary(paths: RunPaths, verbose: int) -> RunSummary:
    """The summary of a finished run (completed or diverged), said in one line.

    Raises:
        DamagedFileError: its ``summary.json`` cannot be read.
    """
    return announce_finished(paths, RunSummary.read(paths.summary), verbose)


def announce_finished(paths: RunPaths, summary: RunSummary, verbose: int) -> RunSummary:
    """`summary`, the finished run's in `paths`, said in one line (`verbose`)."""
    if verbose:
        what = "complete" if summary.completed else f"finished ({summary.status} in epoch {summary.diverged_epoch})"
        print(f"Run in {paths.root} is already {what}; nothing to do.")
    return summary


def build_compiled_model(config: TrainConfig, data, metrics=None, steps_per_epoch=None):
    """The run's model, built from its seed and compiled with its optimizer.

    Sets the global random seed and the dtype policy first, so that the
    initial weights are a function of ``config.seed`` alone.

    Returns:
        (model, jit_compile).

    Raises:
        ConfigError: a user's model function that fails (`UserModelError`),
            a layer that this backend would train wrongly (oneDNN).
    """
    keras.utils.set_random_seed(config.seed)
    _set_precision(config.precision)
    pixel_mean, pixel_std = data.pixel_statistics()
    try:
        model = build_model(
            config.model,
            num_classes=data.num_classes,
            alpha=config.alpha,
            activation=config.activation,
            leaky_slope=config.leaky_slope,
            selectivity_index=config.selectivity_index,
            input_shape=data.image_shape,
            pixel_mean=pixel_mean,
            pixel_std=pixel_std,
        )
    except UserModelError as error:  # a user's function: its message is the answer
        raise ConfigError(str(error)) from None
    if steps_per_epoch is None:
        steps_per_epoch = math.ceil(data.num_train / config.batch_size)
    window = config.alpha_window_steps(steps_per_epoch)
    if window is not None:  # the regularizer's steps, switched inside the compiled step
        model.set_selectivity_window(*window)
    jit_compile = resolve_jit_compile(config.jit_compile)
    from tf_selectivity.models.onednn import check_onednn_gradients

    try:  # before compile, so that the user gets the reason, not a crash
        check_onednn_gradients(model)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch), jit_compile=jit_compile, metrics=metrics,
        # Computed in every validation pass (it costs little); recorded
        # every `selectivity_every` epochs (`SplitSelectivityEvery`) and
        # at the steps of `selectivity_every_steps` (`StepEvents`).
        split_selectivity=config.selectivity_every > 0 or config.selectivity_every_steps > 0,
    )
    return model, jit_compile


@dataclasses.dataclass(frozen=True)
class DatasetShape:
    """What building a model needs of a dataset, for `check_model` before
    the dataset is loaded: its image shape, classes and pixel statistics."""

    image_shape: tuple
    num_classes: int
    pixel_mean: tuple = (0.0, 0.0, 0.0)
    pixel_std: tuple = (1.0, 1.0, 1.0)

    def pixel_statistics(self):
        return self.pixel_mean, self.pixel_std


def check_model(config: TrainConfig, data) -> None:
    """Builds and compiles the run's model once, and discards it.

    For a command that starts many runs of a user's model function (a
    sweep): a function that fails is found before anything is written,
    instead of in every trial.

    Args:
        config: the runs' configuration.
        data: the loaded `DatasetSplits`, or a `DatasetShape` where the data
            are loaded later (by each trial).

    Raises:
        ConfigError: the model cannot be built (see `build_compiled_model`).
    """
    build_compiled_model(config, data, steps_per_epoch=1)
    keras.backend.clear_session()


def run_callbacks(paths: RunPaths, checkpoint, verbose: int, extra_callbacks=(), progress=True,
                  announce_missing_tensorboard=True, selectivity_every: int = 0, split_selectivity=None) -> list:
    """The callbacks of one run: the epochs its split selectivity is kept
    (`selectivity_every`; none where the model measures it only for
    `split_selectivity`'s step records), its checkpoint, TensorBoard logs
    (when TensorFlow is installed), a progress bar (`progress` and
    `verbose`), then `extra_callbacks`."""
    if split_selectivity is None:
        split_selectivity = selectivity_every > 0
    callbacks = [SplitSelectivityEvery(selectivity_every)] if split_selectivity else []
    callbacks.append(checkpoint)
    if tensorflow_available():
        callbacks.append(
            keras.callbacks.TensorBoard(paths.logs, write_graph=False, profile_batch=0)
        )
    elif verbose and announce_missing_tensorboard:
        print("TensorFlow is not installed: no TensorBoard logs (history.csv has the same values).")
    if verbose and progress:
        callbacks.append(CompactProgbar(verbose=verbose))
    callbacks.extend(extra_callbacks)
    return callbacks


@dataclasses.dataclass
class Run:
    """One run being trained: what the steps from start to summary share.

    Attributes:
        config: its `TrainConfig`.
        paths: its `RunPaths`.
        data: its `DatasetSplits`.
        model: its compiled model (the checkpoint's state restored).
        checkpoint: its `RunCheckpoint` (epochs done, best epoch, history,
            divergence).
        pipeline: "tf.data", "host" or "device" (`training.placement`).
        jit_compile: whether the steps are XLA-compiled.
        devices: the devices each step runs on (`training.devices`).
    """

    config: TrainConfig
    paths: RunPaths
    data: object
    model: keras.Model
    checkpoint: RunCheckpoint
    pipeline: str
    jit_compile: bool
    devices: DataParallel = dataclasses.field(default_factory=DataParallel)

    @property
    def epochs_done(self) -> int:
        return self.checkpoint.epochs_done


def build_run(config: TrainConfig, paths: RunPaths, data, pipeline: str, metrics=None, restore=True,
              devices=None) -> Run:
    """The run's compiled model and its checkpoint.

    Args:
        config: the run's `TrainConfig`.
        paths: its `RunPaths`.
        data: its data (`DatasetSplits`).
        pipeline: its input pipeline (`training.placement`).
        metrics: the Keras metrics it compiles with.
        restore: load the checkpoint's state into the model now (call with
            the run's lock held); with False, call `run.checkpoint.restore()`
            once the lock is held (`train` builds the model first, so that a
            model that cannot be built stops before anything is written).
        devices: its `DataParallel` (`data_parallel(config)`; default one
            device): the model is built and compiled in its scope.

    Raises:
        ConfigError: a user's model function that fails, a layer that this
            backend would train wrongly (oneDNN).
        DamagedCheckpointError: (`restore`) the checkpoint cannot be read.
    """
    steps_per_epoch = math.ceil(data.num_train / config.batch_size)
    devices = devices or DataParallel()
    with devices.scope():
        model, jit_compile = build_compiled_model(config, data, metrics, steps_per_epoch)
        if devices.count > 1:
            # Its variables in the scope too: mirrored (TensorFlow; created
            # inside the first distributed step they fail), replicated (JAX).
            model.optimizer.build(model.trainable_variables)
    checkpoint = RunCheckpoint(paths, input_pipeline=pipeline)
    checkpoint.set_model(model)
    if restore:
        checkpoint.restore()
    return Run(config, paths, data, model, checkpoint, pipeline, jit_compile, devices)


def run_lane(run: Run, callbacks, verbose: int, steps_per_epoch: int) -> Lane:
    """The run as a lane of the epoch loop, with its callbacks and its
    records at chosen steps (`StepEvents`)."""
    callback_list = keras.callbacks.CallbackList(
        list(callbacks), add_history=True, add_progbar=False, model=run.model,
        verbose=verbose, epochs=run.config.epochs, steps=steps_per_epoch,
    )
    events = step_events_for(run.config, run.paths.root, run.paths.logs, run.model, steps_per_epoch, run.epochs_done)
    return Lane(run.model, callback_list, run.epochs_done, events)


def _train_locked(run: Run, extra_callbacks, verbose):
    config, paths = run.config, run.paths
    if verbose and run.epochs_done:
        print(f"Resuming {paths.root} after epoch {run.epochs_done}/{config.epochs}.")
    start = time.time()
    if run.epochs_done < config.epochs:
        # The runner's state (optimizer, metrics) is created on the run's devices.
        with run.devices.scope():
            _train_epochs(run, extra_callbacks, verbose)
    return finish_run(run, time.time() - start, verbose)


def _train_epochs(run: Run, extra_callbacks, verbose) -> None:
    config, data = run.config, run.data
    if run.pipeline == "device":
        # JAX with the splits on the accelerator: compiled epochs
        # (training/device_loop.py).
        from tf_selectivity.training.device_loop import DeviceTrainer

        runner = DeviceTrainer(
            run.model, data.train_images, data.train_labels,
            data.validation_images, data.validation_labels,
            batch_size=config.batch_size, eval_batch_size=config.eval_batch_size,
            seed=config.seed, augment=config.augment, progress=verbose == 1,
        )
    else:
        runner = host_runner(run.model, config, data, progress=verbose == 1, devices=run.devices)
    callbacks = run_callbacks(
        run.paths, run.checkpoint, verbose, extra_callbacks, selectivity_every=config.selectivity_every,
        split_selectivity=getattr(run.model, "split_selectivity", False),
    )
    lane = run_lane(run, callbacks, verbose, runner.steps_per_epoch)
    run_epochs(runner, [lane], epochs=config.epochs)


def finish_run(run: Run, train_seconds: float, verbose: int, packed_replicates=None) -> RunSummary:
    """Ends a trained run: its summary, written last.

    A diverged run (``run.checkpoint.diverged_epoch``) gets the diverged
    summary and nothing else. Otherwise the best epoch's weights are loaded
    into the model, evaluated on the test split (accuracy, selectivity of
    every probe, dead units) and exported (SavedModel where TensorFlow is
    installed, ``model.keras``).

    Args:
        run: the `Run`.
        train_seconds: the time this session trained it.
        verbose: print the closing lines.
        packed_replicates: the number of runs it was trained with in one
            program, if it was packed (recorded in its summary).

    Returns:
        The run's `RunSummary`.
    """
    config, paths, data, model, checkpoint = run.config, run.paths, run.data, run.model, run.checkpoint
    recorded = _run_record(run, train_seconds, packed_replicates)
    if checkpoint.diverged_epoch is not None:
        return _write_diverged(run, recorded, verbose)

    model.load_weights(paths.best_weights)
    test = evaluate_responses(
        model.unit_response_model().predict_on_batch,
        _test_batches(data, config.eval_batch_size),
        num_classes=data.num_classes,
        layer_names=model.probe_names,
        selectivity_index=config.selectivity_index,
    )
    layer_si = test.layer_selectivity()
    dead = [float(np.mean(s.selectivity.dead_units())) for s in test.layers.values()]
    best = checkpoint.history[checkpoint.best_epoch - 1]
    saved_model, keras_model = export_run_models(model, paths)
    summary = dataclasses.replace(
        recorded,
        best_epoch=checkpoint.best_epoch,
        val_accuracy=best["val_accuracy"],
        test_accuracy=test.accuracy,
        test_layer_selectivity=layer_si,
        test_mean_selectivity=float(np.mean(layer_si)),
        test_layer_dead_fraction=dead,
        probe_names=model.probe_names,
        jit_compile=run.jit_compile,
        input_pipeline=run.pipeline,
        saved_model=saved_model,
        keras_model=keras_model,
    )
    summary.write(paths.summary)
    if verbose:
        print(
            f"Best epoch {summary.best_epoch}: val accuracy {summary.val_accuracy:.4f}, "
            f"test accuracy {summary.test_accuracy:.4f}, "
            f"test mean selectivity {summary.test_mean_selectivity:.4f}\n"
            f"Wrote {paths.root}"
        )
    return summary


def _test_batches(data, batch_size: int):
    """The test split's batches: from memory, or read through a stream's evaluation transform."""
    if getattr(data, "streamed", False):
        from tf_selectivity.data.stream_pipeline import evaluation_stream, numpy_batches

        return numpy_batches(evaluation_stream(data, "test", batch_size))
    return ImageBatches(data.test_images, data.test_labels, batch_size)


def _run_record(run: Run, train_seconds: float, packed_replicates=None) -> RunSummary:
    """What every summary of the run records (completed or diverged): its
    settings, data, backend and training time."""
    config = run.config
    return RunSummary(
        model=config.model,
        alpha=config.alpha,
        seed=config.seed,
        activation=config.activation,
        leaky_slope=config.leaky_slope,
        epochs=config.epochs,
        selectivity_index=config.selectivity_index,
        **run.data.describe(),
        backend=keras.backend.backend(),
        keras_version=keras.__version__,
        train_seconds_this_session=train_seconds,
        packed_replicates=packed_replicates,
        kept_checkpoints=tuple(kept_checkpoint_paths(run.paths.root)),
        devices=run.devices.count,
        per_device_batch_size=config.batch_size // run.devices.count,
        learning_rate=config.scaled_learning_rate,
    )


def _write_diverged(run: Run, recorded: RunSummary, verbose) -> RunSummary:
    """Finishes a diverged run: its summary, no evaluation and no export."""
    checkpoint = run.checkpoint
    summary = recorded.as_diverged(checkpoint.diverged_epoch, checkpoint.diverged_reason)
    summary.write(run.paths.summary)
    if verbose:
        print(
            f"Diverged in epoch {summary.diverged_epoch}/{run.config.epochs} ({summary.reason}); "
            f"training stopped. The run is finished as diverged: no test metrics, no exported model.\n"
            f"Wrote {run.paths.root}"
        )
    return summary

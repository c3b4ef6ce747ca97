"""`load_run`: one finished training run in Python, read as the analysis reads it.

    run = tf_selectivity.load_run("runs/quickstart")
    run.summary.test_accuracy     # summary.json (`RunSummary`)
    run.config.epochs             # config.json (`TrainConfig`)
    run.history                   # history.csv: one row per epoch (pandas)
    run.model                     # the `SelectivityModel` of model.keras, any backend
    run.test_data.images          # the test split `analyze` evaluates the run on
    run.subset(1000)              # its class-balanced subset of 1,000 images
    run.at(0.5).model             # the model as it was at a kept checkpoint (--keep_checkpoints)

A run is found, checked and loaded by the code ``analyze`` uses
(`analysis.runs`: `RunRecord`, `load_run_model`; `analysis.context`:
`TestDataLoader`), so that what a user computes from a `Run` is computed
on the same model and the same images as the analysis' tables.
"""

from __future__ import annotations

import dataclasses
import glob
import os

from tf_selectivity.analysis.context import TestData, TestDataLoader
from tf_selectivity.analysis.options import AnalysisOptions
from tf_selectivity.analysis.runs import RunLoadError, RunRecord, discover_runs, load_run_model
from tf_selectivity.training.config import TrainConfig, with_legacy_defaults
from tf_selectivity.training.kept_checkpoints import epoch_label, kept_checkpoint_paths
from tf_selectivity.training.run_dir import RunPaths

__all__ = ["Run", "load_run"]


class Run:
    """A finished training run (completed or diverged): its records, model and test data.

    Made by `load_run`. Files are read on first use and kept. The model
    holds the weights the run exported: those of its best epoch (`epoch`).

    Args:
        record: the run's `RunRecord` (its directory, summary and configuration).
        test_data: the `TestDataLoader` that resolves the run's test data.
    """

    def __init__(self, record: RunRecord, test_data: TestDataLoader):
        self.record = record
        self._test_data_loader = test_data
        self._model = None
        self._history = None
        self._subsets = {}
        self._checkpoint = None  # (epoch, path) of a view made by `at`

    # -------------------------------------------------------------- records
    @property
    def path(self) -> str:
        """The run directory (absolute)."""
        return self.record.run_dir

    @property
    def summary(self):
        """The run's ``summary.json`` (`RunSummary`): condition, status, test metrics, probes."""
        return self.record.summary

    @property
    def diverged(self) -> bool:
        """Whether training stopped at a non-finite loss (the run then has no model)."""
        return self.record.diverged

    @property
    def config(self) -> TrainConfig | None:
        """The `TrainConfig` the run was trained with (``config.json``), ``output_dir`` set to
        where the run is now; None for a run without one (a model saved with `save_as_run`).

        Settings the run's version did not record yet have the values it was trained with
        (`training.config.with_legacy_defaults`); keys this version does not know are left out.
        """
        if not self.record.config:
            return None
        known = {field.name for field in dataclasses.fields(TrainConfig)}
        values = {key: value for key, value in with_legacy_defaults(self.record.config).items() if key in known}
        values["output_dir"] = self.path
        return TrainConfig(**values)

    @property
    def epoch(self) -> float | None:
        """The epoch whose weights `model` holds: the kept checkpoint's of a view made by
        `at`, else the best validation epoch (1-based); None when the run does not record
        it (a diverged or imported run)."""
        if self._checkpoint is not None:
            return self._checkpoint[0]
        return self.summary.best_epoch

    @property
    def history(self):
        """``history.csv`` as a pandas DataFrame, one row per epoch (None if the run has none).

        Raises:
            RunLoadError: the file cannot be read.
        """
        if self._history is None:
            path = RunPaths(self.path).history
            if not os.path.exists(path):
                return None
            import pandas as pd

            try:
                self._history = pd.read_csv(path)
            except Exception as error:  # pandas raises several kinds for a damaged file
                raise RunLoadError(f"{self.path}: history.csv cannot be read ({type(error).__name__}: {error})") from None
        return self._history

    # ---------------------------------------------------------------- model
    @property
    def model(self):
        """The run's Keras model (a `SelectivityModel`, probes included), loaded once.

        Loads ``model.keras`` on the current Keras backend, as the analysis
        does (`analysis.runs.load_run_model`); in a view made by `at`, then
        the weights of its kept checkpoint. A diverged run exported no
        model: a view of it at a kept checkpoint rebuilds the network from
        its configuration (which reads its training data for the input
        normalization, and sets Keras' global random seed to the run's).

        Raises:
            RunLoadError: the run diverged (only its checkpoints kept along
                training can be loaded), or its model file is missing or
                cannot be loaded.
        """
        if self._model is None:
            self._model = self._load_model()
        return self._model

    # ------------------------------------------------- checkpoints kept along training
    @property
    def checkpoint_epochs(self) -> list:
        """The epochs whose weights the run kept (``--keep_checkpoints``), sorted; [] if none."""
        return list(kept_checkpoint_paths(self.path))

    def at(self, epoch: float) -> "Run":
        """The run as it was at a kept checkpoint: its `model` holds that epoch's weights.

        Records, configuration and test data are the run's; only the model
        differs, so the analysis (`RunContext`, its stages) can take it as a run.

        Args:
            epoch: a kept epoch (`checkpoint_epochs`; 0: the initialization).

        Raises:
            RunLoadError: the run kept no checkpoint of `epoch` (the message
                lists those it kept).
        """
        # By label: the file names hold the epochs as `epoch_label` writes them.
        kept = {epoch_label(kept_epoch): (kept_epoch, path) for kept_epoch, path in kept_checkpoint_paths(self.path).items()}
        if epoch_label(epoch) not in kept:
            listed = ", ".join(kept) if kept else "none (train with --keep_checkpoints)"
            raise RunLoadError(
                f"{self.path}: no checkpoint of epoch {epoch_label(epoch)} was kept; kept epochs: {listed}"
            )
        view = Run(self.record, self._test_data_loader)
        view._checkpoint = kept[epoch_label(epoch)]
        view._subsets = self._subsets  # the same test data
        return view

    def _load_model(self):
        # The one place the weights come from: a view of the run at another
        # epoch (a checkpoint along training) differs from this one here only.
        if self._checkpoint is not None:
            return self._load_checkpoint_model(*self._checkpoint)
        if self.diverged:
            summary = self.summary
            raise RunLoadError(
                f"{self.path}: the run diverged in epoch {summary.diverged_epoch} ({summary.reason}) and "
                "exported no model; its configuration, summary and history are readable"
            )
        return load_run_model(self.record)

    def _load_checkpoint_model(self, epoch, path):
        model = self._rebuilt_model(epoch) if self.diverged else load_run_model(self.record)
        try:
            # The file holds the optimizer's state too (it can resume
            # training); the model of an analysis needs only the weights.
            model.load_weights(path, objects_to_skip=[model.optimizer] if model.optimizer is not None else None)
        except Exception as error:  # h5py / Keras raise several kinds for a damaged file
            raise RunLoadError(
                f"{path}: the checkpoint of epoch {epoch_label(epoch)} cannot be loaded "
                f"({type(error).__name__}: {str(error).strip()[:300]})"
            ) from None
        return model

    def _rebuilt_model(self, epoch):
        """The run's network built again from its configuration (its weights
        replaced next), for a run that exported no model."""
        config = self.config
        if config is None:
            raise RunLoadError(f"{self.path}: the run diverged and records no configuration to build its network "
                               f"from for the weights of epoch {epoch_label(epoch)}")
        from tf_selectivity.data.sources import DatasetUnavailableError
        from tf_selectivity.training.config import ConfigError
        from tf_selectivity.training.loop import build_compiled_model, load_run_data

        try:
            model, _ = build_compiled_model(config, load_run_data(config))
        except (DatasetUnavailableError, ConfigError) as error:
            raise RunLoadError(
                f"{self.path}: the run diverged and exported no model; building its network again for the weights "
                f"of epoch {epoch_label(epoch)} needs its training data: {error}"
            ) from None
        return model

    # ----------------------------------------------------------------- data
    @property
    def test_data(self) -> TestData:
        """The test data the analysis evaluates the run on (`TestData`: uint8 images, labels,
        class names): the run's own dataset, or `load_run`'s ``dataset``, loaded once.

        Raises:
            RunLoadError: no dataset named, or one whose image shape or
                number of classes is not the model's.
            DatasetUnavailableError: the dataset cannot be read.
        """
        return self._test_data_loader.for_run(self.record)

    def subset(self, size: int | None) -> TestData:
        """The class-balanced subset of `size` test images, as the analysis' stages take it
        (``--ablation_max_samples``, ``--robustness_max_samples``); None: the whole test data.

        ``chosen`` holds the images' positions in `test_data`.
        """
        if not size:
            return self.test_data
        if size not in self._subsets:
            self._subsets[size] = self.test_data.subset(size)
        return self._subsets[size]

    def __repr__(self) -> str:
        summary = self.summary
        if self.diverged:
            state = f"diverged in epoch {summary.diverged_epoch}"
        elif summary.test_accuracy is not None:
            state = f"test accuracy {summary.test_accuracy:.4f}"
        else:
            state = summary.status
        at = f", at epoch {epoch_label(self._checkpoint[0])}" if self._checkpoint is not None else ""
        return (f"Run({self.path!r}: {summary.model}, alpha={summary.alpha:g}, seed={summary.seed}, "
                f"{summary.activation}, {state}{at})")


def load_run(path: str, *, dataset: str | None = None, data_dir: str | None = None,
             max_test_samples: int | None = None) -> Run:
    """One finished training run (a directory holding ``summary.json``).

    The keyword arguments are ``analyze``'s flags of the same names: with
    the same values, `Run.test_data` is the analysis' test set.

    Args:
        path: the run directory (or its ``summary.json``).
        dataset: test data to use instead of the run's own (e.g.
            ``"imagefolder:PATH"`` where the run's recorded path is gone).
        data_dir: tensorflow-datasets directory for ``dataset="cifar10"``.
        max_test_samples: use the class-balanced subset of this many test
            images (`data.subsets.balanced_subset`).

    Returns:
        The `Run`; nothing is loaded until asked for.

    Raises:
        RunLoadError: `path` is not one finished run: it does not exist, is
            a file other than ``summary.json``, holds an unfinished run (no
            ``summary.json`` yet), several runs (a sweep) or none, or its
            ``summary.json`` or ``config.json`` cannot be read. The message
            names the path and what to do.
        ParameterError: a bad ``max_test_samples``.
    """
    given = os.fspath(path)
    full = os.path.abspath(os.path.expanduser(given))
    if os.path.isfile(full) and os.path.basename(full) != "summary.json":
        raise RunLoadError(
            f"{given} is a file, not a run: load_run takes the run's directory (the folder holding "
            f"summary.json, e.g. {os.path.dirname(full)})"
        )
    records, errors = discover_runs([glob.escape(given)])
    run_dir = os.path.dirname(full) if os.path.isfile(full) else full
    if not records:
        where, message = errors[0] if errors else (given, "holds no finished run")
        raise RunLoadError(f"{where}: {message}")
    if len(records) > 1 or records[0].run_dir != run_dir:
        listed = ", ".join(record.run_dir for record in records[:3]) + (", ..." if len(records) > 3 else "")
        raise RunLoadError(
            f"{given} is not a run directory: it holds {len(records)} run{'s' if len(records) > 1 else ''} "
            f"({listed}); load one of them (each directory holding a summary.json is a run)"
        )
    options = AnalysisOptions(dataset=dataset, data_dir=data_dir, max_test_samples=max_test_samples)
    return Run(records[0], TestDataLoader(options.validate()))

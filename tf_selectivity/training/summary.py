"""`RunSummary`: a finished run's record, its ``summary.json``.

A run directory is finished when its ``summary.json`` exists (it is written
last). Every reader and writer of that file goes through `RunSummary`, which
defines once its fields and their types, its schema version, and the values
a summary written before a field existed is read with.

A finished run has a ``status``:

* ``"completed"``: trained for every epoch; the summary holds its test
  metrics (``test_accuracy``, ``test_mean_selectivity``, ...), its probes
  and the paths of its exported models.
* ``"diverged"``: training met a non-finite loss (or non-finite weights) and
  stopped (`RunSummary.as_diverged`). The summary holds the run's settings
  and data (model, alpha, seed, activation, leaky_slope, selectivity index,
  epochs, dataset...) and ``diverged_epoch`` (the 1-based epoch in which
  the first non-finite loss was seen), ``reason`` (one sentence, e.g.
  ``"loss is nan"``) and ``epochs_completed`` (``diverged_epoch - 1``), and
  no metric that could pass for a result (`RESULT_FIELDS`). Analyses list
  such runs apart and keep them out of every mean, test and figure; sweeps
  record the trial as diverged and go on. No model is exported;
  ``checkpoint/`` keeps the state after the last finite epoch.

Schema versions (``schema_version``; a summary without one is version 1):

1. ``status`` and ``selectivity_index`` may be missing: a summary without
   them is a completed run (divergence was not recorded yet) that
   regularized the bounded index (the fields' defaults).
2. Writes ``schema_version``; a diverged run also records its
   ``selectivity_index``. A completed run's other keys and values are those
   of version 1.

Keys this module does not know are kept (`RunSummary.extra`) and written
back, not refused: ``summary.json`` is the run's lasting record, which
people and other tools annotate, and a note added to it must neither make
the run unreadable nor be lost when the summary is written again. A summary
of a *newer* schema version than `SCHEMA_VERSION` is refused instead: its
known keys may have changed meaning.

This module needs only the standard library (command lines read summaries
before a backend starts).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from tf_selectivity.core.files import DamagedFileError, read_json, write_json_atomic
from tf_selectivity.training.config import LEGACY_IDENTITY_DEFAULTS

__all__ = [
    "RunSummary",
    "SCHEMA_VERSION",
    "COMPLETED",
    "DIVERGED",
    "RESULT_FIELDS",
]

SCHEMA_VERSION = 2
_UNVERSIONED = 1  # the version of a summary that records none

COMPLETED = "completed"
DIVERGED = "diverged"

# Fields of a completed summary that a diverged one must not carry.
RESULT_FIELDS = (
    "best_epoch", "val_accuracy", "test_accuracy", "test_layer_selectivity", "test_mean_selectivity",
    "test_layer_dead_fraction", "saved_model", "keras_model",
)

# The run's condition: every summary has them.
_REQUIRED = ("model", "alpha", "seed", "activation", "leaky_slope")


def _recorded(default=None):
    """A field written only when it holds something (not its default)."""
    return dataclasses.field(default=default, metadata={"omit_default": True})


@dataclasses.dataclass
class RunSummary:
    """The contents of a finished run's ``summary.json`` (see the module docstring).

    Attributes:
        model: the network (a registry name or ``module.path:function``).
        alpha: the selectivity regularizer's scale.
        seed: the run's seed.
        activation: ``relu`` or ``leaky_relu``.
        leaky_slope: the negative slope of leaky ReLU (0 for ReLU).
        status: `COMPLETED` or `DIVERGED`; a summary without one is
            completed (it was written before divergence was recorded).
        schema_version: the version of the record it was read from
            (`SCHEMA_VERSION` for a new one); `write` always writes the
            current version, the values having been read into its form.
        selectivity_index: the index the run's loss regularized; a summary
            without one (written before the paper's eq. 1 became the
            default, or an imported run, which says nothing of its training)
            has the bounded index, as a run configuration without it
            (`config.LEGACY_IDENTITY_DEFAULTS`).
        epochs: the epochs the run was configured for.
        dataset: the data it was trained and tested on (a dataset spec).
        num_classes: the data's number of classes.
        image_shape: the data's image shape (height, width, channels).
        num_train: training images.
        num_validation: validation images.
        num_test: test images.
        backend: the Keras backend it was trained on.
        keras_version: the Keras version it was trained with.
        train_seconds_this_session: seconds of training in the session that
            finished it (a pack's time for packed replicates).
        packed_replicates: the number of replicates trained together with it
            in one program, if it was packed.
        kept_checkpoints: the epochs whose weights it kept
            (``checkpoints/``, `training.kept_checkpoints`), sorted; empty
            for a run that kept none.
        devices: the devices one step ran on, data-parallel, in the session
            that finished it (`training.devices`).
        per_device_batch_size: the batch of one device (the global batch
            over `devices`).
        learning_rate: the initial learning rate the optimizer used (after
            `TrainConfig.lr_scaling`).
        best_epoch: (completed) the epoch with the best validation accuracy.
        val_accuracy: (completed) that accuracy.
        test_accuracy: (completed) the best epoch's model's accuracy on the
            test split.
        test_layer_selectivity: (completed) its mean selectivity per layer,
            in the order of `probe_names`.
        test_mean_selectivity: (completed) its mean over layers (eq. 3).
        test_layer_dead_fraction: (completed) its fraction of dead units per
            layer, in the order of `probe_names`.
        probe_names: (completed) the probed layers, input side first.
        jit_compile: whether the steps were XLA-compiled.
        input_pipeline: "tf.data", "host" or "device" (`training.placement`).
        saved_model: the exported SavedModel, relative to the run directory
            (none without TensorFlow).
        keras_model: the exported ``model.keras``, relative to the run
            directory.
        diverged_epoch: (diverged) the 1-based epoch in which the first
            non-finite loss was seen.
        epochs_completed: (diverged) ``diverged_epoch - 1``.
        reason: (diverged) why, in one sentence.
        imported: the model was trained elsewhere (`save_as_run`).
        source: where an imported model's weights came from.
        extra: keys of the file that this class does not know, kept as read.
    """

    model: str
    alpha: float
    seed: int
    activation: str
    leaky_slope: float
    status: str = COMPLETED
    schema_version: int = SCHEMA_VERSION
    selectivity_index: str = LEGACY_IDENTITY_DEFAULTS["selectivity_index"]
    epochs: Optional[int] = _recorded()
    dataset: Optional[str] = _recorded()
    num_classes: Optional[int] = _recorded()
    image_shape: Optional[list] = _recorded()
    num_train: Optional[int] = _recorded()
    num_validation: Optional[int] = _recorded()
    num_test: Optional[int] = _recorded()
    backend: Optional[str] = _recorded()
    keras_version: Optional[str] = _recorded()
    train_seconds_this_session: Optional[float] = _recorded()
    packed_replicates: Optional[int] = _recorded()
    kept_checkpoints: tuple = _recorded(())
    devices: Optional[int] = _recorded()
    per_device_batch_size: Optional[int] = _recorded()
    learning_rate: Optional[float] = _recorded()
    best_epoch: Optional[int] = _recorded()
    val_accuracy: Optional[float] = _recorded()
    test_accuracy: Optional[float] = _recorded()
    test_layer_selectivity: Optional[list] = _recorded()
    test_mean_selectivity: Optional[float] = _recorded()
    test_layer_dead_fraction: Optional[list] = _recorded()
    probe_names: Optional[list] = _recorded()
    jit_compile: Optional[bool] = _recorded()
    input_pipeline: Optional[str] = _recorded()
    saved_model: Optional[str] = _recorded()
    keras_model: Optional[str] = _recorded()
    diverged_epoch: Optional[int] = _recorded()
    epochs_completed: Optional[int] = _recorded()
    reason: Optional[str] = _recorded()
    imported: bool = _recorded(False)
    source: Optional[str] = _recorded()
    extra: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.kept_checkpoints = tuple(sorted(float(epoch) for epoch in self.kept_checkpoints or ()))

    @property
    def completed(self) -> bool:
        return self.status == COMPLETED

    @property
    def diverged(self) -> bool:
        """The run stopped at a non-finite loss: it has no results."""
        return self.status == DIVERGED

    def as_diverged(self, diverged_epoch: int, reason: str) -> "RunSummary":
        """This run's summary as a diverged run's: its results dropped.

        Args:
            diverged_epoch: the 1-based epoch in which the first non-finite
                loss was seen.
            reason: why, in one sentence (e.g. ``"loss is nan"``).
        """
        return dataclasses.replace(
            self,
            status=DIVERGED,
            diverged_epoch=int(diverged_epoch),
            epochs_completed=int(diverged_epoch) - 1,
            reason=str(reason),
            **{name: None for name in RESULT_FIELDS},
        )

    # ------------------------------------------------------------ the file
    def to_dict(self, *, schema_version: bool = True) -> dict:
        """The summary as ``summary.json`` holds it (JSON-compatible values).

        Args:
            schema_version: include ``schema_version`` (`SCHEMA_VERSION`).
                Without it, the dict holds only what the run recorded: the
                same for one run however its file was versioned.
        """
        values = {"schema_version": SCHEMA_VERSION} if schema_version else {}
        for field in dataclasses.fields(self):
            if field.name in ("schema_version", "extra"):
                continue
            value = getattr(self, field.name)
            if field.metadata.get("omit_default") and value is field.default:  # None or False
                continue
            values[field.name] = list(value) if isinstance(value, tuple) else value
        values.update(self.extra)
        return values

    @classmethod
    def from_dict(cls, values, path: str = "summary.json") -> "RunSummary":
        """The summary that `values` (a parsed ``summary.json``) records.

        Fields the summary lacks take their defaults (those of the runs
        recorded before the field existed, or None); unknown keys go to
        `extra`.

        Args:
            values: the parsed JSON.
            path: the file, for the error message.

        Raises:
            DamagedFileError: `values` is not a summary (not an object, a
                missing or non-numeric condition field, a completed run
                without its probes, an unknown status) or is of a newer
                schema version than this code reads.
        """
        if not isinstance(values, dict):
            raise DamagedFileError(path, "it does not hold a JSON object")
        version = values.get("schema_version", _UNVERSIONED)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise DamagedFileError(path, f"its schema_version {version!r} is not a positive integer")
        if version > SCHEMA_VERSION:
            raise DamagedFileError(
                path,
                f"its schema_version {version} is newer than this version of tf_selectivity reads "
                f"({SCHEMA_VERSION}); update tf_selectivity",
            )
        values = dict(values)
        status = values.get("status", COMPLETED)
        if status not in (COMPLETED, DIVERGED):
            raise DamagedFileError(path, f"its status {status!r} is neither {COMPLETED!r} nor {DIVERGED!r}")
        required = _REQUIRED + (("probe_names",) if status == COMPLETED else ())
        missing = [name for name in required if name not in values]
        if missing:
            raise DamagedFileError(path, f"it lacks {', '.join(missing)}")
        try:
            values.update(
                alpha=float(values["alpha"]), leaky_slope=float(values["leaky_slope"]), seed=int(values["seed"])
            )
        except (TypeError, ValueError):
            raise DamagedFileError(path, "its alpha, leaky_slope or seed is not a number") from None
        if status == COMPLETED and not isinstance(values["probe_names"], list):
            raise DamagedFileError(path, "its probe_names is not a list of layer names")
        known = {field.name for field in dataclasses.fields(cls)} - {"schema_version", "extra"}
        return cls(
            **{name: value for name, value in values.items() if name in known},
            schema_version=version,
            extra={name: value for name, value in values.items() if name not in known and name != "schema_version"},
        )

    @classmethod
    def read(cls, path: str) -> "RunSummary":
        """The summary in the file `path`.

        Raises:
            FileNotFoundError: there is no such file.
            OSError: it cannot be read.
            DamagedFileError: it is not valid JSON or not a summary
                (`from_dict`).
        """
        return cls.from_dict(read_json(path), path)

    def write(self, path: str) -> None:
        """Writes the summary to `path` atomically (`to_dict`)."""
        write_json_atomic(path, self.to_dict())

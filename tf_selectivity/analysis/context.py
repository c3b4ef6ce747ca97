"""What the stages of an analysis are given: one `AnalysisContext`, one `RunContext` per run.

`RunContext` is a run as every stage sees it: its record, its Keras model
(loaded on first use, once for all stages), its test data (loaded once per
dataset for all runs), class-balanced subsets of it, the results of the
stages computed before, and its condition columns. `AnalysisContext` holds
what spans the runs: the options, the analysed runs, every stage's per-run
results and tables, resources shared between runs, and each stage's error
rows.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np

from tf_selectivity.analysis.runs import CONFIG_COLUMNS, RunLoadError, RunRecord, load_response_function, load_run_model
from tf_selectivity.report.condition_names import SHARED_FROM, own_rows

if TYPE_CHECKING:  # annotations only
    import pandas as pd

    from tf_selectivity.analysis.options import AnalysisOptions
    from tf_selectivity.analysis.stage import RunResult

__all__ = ["TestData", "TestDataLoader", "RunContext", "AnalysisContext", "with_condition", "insert_condition"]


def with_condition(frame: "pd.DataFrame", columns: Mapping) -> "pd.DataFrame":
    """`frame` with `columns` (name -> value) first, then its own columns (those not among them).

    The one way every stage attaches a run's condition (``run_dir``, model,
    alpha, seed, activation, leaky slope, and any further columns asked for)
    to its rows.
    """
    columns = dict(columns)
    rest = [c for c in frame.columns if c not in columns]
    return frame.assign(**columns)[[*columns, *rest]]


def insert_condition(frame: "pd.DataFrame", names: Mapping, shared: Mapping | None = None) -> "pd.DataFrame":
    """`frame` with a ``condition`` column: the name of each row's condition, from its
    ``run_dir`` (`names`: run directory -> condition name), placed after the condition
    columns it has (`CONFIG_COLUMNS`). A frame without ``run_dir`` is returned as it is.

    The rows of a run that is also the alpha = 0 baseline of other conditions
    (`shared`: run directory -> their names; `report.condition_names`) appear
    once more for each of them, with ``baseline_shared_from`` naming the run's
    own condition ("" on every other row), and the rows are then ordered by
    condition (stably). Without such runs the frame keeps its rows and order.

    Conditions depend on every analysed run (`report.condition_names`), so per-run
    results, cached one run at a time, get theirs when the stages combine them.
    """
    if "run_dir" not in frame.columns:
        return frame
    frame = frame.drop(columns=["condition", SHARED_FROM], errors="ignore")
    present = [c for c in ("run_dir", *CONFIG_COLUMNS) if c in frame.columns]
    position = max(frame.columns.get_loc(c) for c in present) + 1
    frame = frame.copy()
    frame.insert(position, "condition", frame["run_dir"].map(lambda run_dir: names.get(run_dir, "")))
    copies = [(run_dir, other) for run_dir in frame["run_dir"].unique() for other in (shared or {}).get(run_dir, ())]
    if not copies:
        return frame
    import pandas as pd

    frame.insert(position + 1, SHARED_FROM, "")
    parts = [frame]
    for run_dir, other in copies:
        rows = frame[frame["run_dir"] == run_dir].copy()
        rows[SHARED_FROM] = rows["condition"]
        rows["condition"] = other
        parts.append(rows)
    return pd.concat(parts, ignore_index=True).sort_values("condition", kind="stable", ignore_index=True)


@dataclasses.dataclass
class TestData:
    """A run's test images (uint8, N x H x W x C), their integer labels and the class names.

    ``chosen``: positions of these images in the dataset's test split when
    they are a part of it (``max_test_samples``, `RunContext.subset`), else
    None: a published corrupted set, which holds the whole split in its
    order, is indexed by them.
    """

    __test__ = False  # not a pytest test class

    spec: str
    images: np.ndarray
    labels: np.ndarray
    class_names: list
    chosen: np.ndarray | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, size: int | None) -> "TestData":
        """The class-balanced subset of `size` of these images (`data.subsets.balanced_subset`),
        ``chosen`` holding their positions in the test split; None: these images themselves."""
        if not size:
            return self
        from tf_selectivity.data.subsets import balanced_subset

        chosen = balanced_subset(self.labels, size)
        return dataclasses.replace(self, images=self.images[chosen], labels=self.labels[chosen],
                                   chosen=chosen if self.chosen is None else self.chosen[chosen])


def _stream_settings(spec: str, record: RunRecord) -> dict:
    """A streamed dataset's evaluation transform and size, as the run recorded them (none for other data)."""
    from tf_selectivity.data.streams import is_stream

    if not is_stream(spec):
        return {}
    shape = record.summary.image_shape
    return {"image_size": int(shape[0]) if shape else record.config.get("image_size"),
            "augmentation": record.config.get("augmentation") or "random_resized_crop"}


class TestDataLoader:
    """Loads each dataset's test split once, whatever the number of runs.

    With ``options.max_test_samples``, the analysis' test set is the
    class-balanced subset of that size (`data.subsets.balanced_subset`).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, options: "AnalysisOptions", verbose: int = 0):
        self.options = options
        self.verbose = verbose
        self._cache = {}

    def spec_of(self, record: RunRecord) -> str:
        """The dataset `record` is analysed on (the option, else the run's own)."""
        spec = self.options.dataset or record.summary.dataset or record.config.get("dataset")
        if not spec:
            raise RunLoadError(f"{record.run_dir}: summary.json names no dataset; pass `dataset`")
        return spec

    def key_of(self, record: RunRecord) -> tuple:
        """What identifies `record`'s test data in cache keys: the dataset and the number of images."""
        return (self.spec_of(record), self.options.max_test_samples)

    def _unavailable(self, spec: str, error: Exception) -> str:
        """Why `spec`'s test data cannot be read, and how to point the analysis at them."""
        if self.options.dataset:
            return f"the test data named by --dataset={spec} cannot be read: {error}"
        kind, _, place = spec.partition(":")
        text = f"the test data the run recorded, {spec}, cannot be read: {error}"
        if kind == "imagefolder" and place and not os.path.exists(os.path.expanduser(place)):
            return (f"{text}. The run's data are no longer at {place}: if they moved, analyse them where they are "
                    f"now with --dataset={kind}:NEW_PATH")
        return f"{text}. To analyse the run on test data that can be read, pass --dataset=..."

    def for_run(self, record: RunRecord) -> TestData:
        """`record`'s test data.

        Raises:
            RunLoadError: no dataset named, one that cannot be read (the
                message says how to name it, e.g. a moved image folder), or
                one whose image shape or number of classes is not the model's.
        """
        from tf_selectivity.data import describe_classes, load_test_split

        spec = self.spec_of(record)
        data_dir = self.options.data_dir or record.config.get("data_dir")
        settings = _stream_settings(spec, record)
        key = (spec, data_dir, tuple(sorted(settings.items())))
        if key not in self._cache:
            from tf_selectivity.data.sources import DatasetUnavailableError

            skip_bad = self.options.skip_bad_images or bool(record.config.get("skip_bad_images"))
            try:
                images, labels, class_names = load_test_split(spec, data_dir=data_dir, skip_bad_images=skip_bad,
                                                               verbose=self.verbose, **settings)
            except DatasetUnavailableError as error:
                raise RunLoadError(f"{record.run_dir}: {self._unavailable(spec, error)}") from None
            if self.verbose:
                print(f"Test data {spec}: {describe_classes(class_names)}; {len(labels):,} images", flush=True)
            if self.options.max_test_samples:
                from tf_selectivity.data.subsets import balanced_subset

                chosen = balanced_subset(labels, self.options.max_test_samples)
                if len(chosen) == len(labels):
                    chosen = None  # the whole split, in order
                else:
                    images, labels = images[chosen], labels[chosen]
            else:
                chosen = None
            self._cache[key] = TestData(spec, images, labels, [str(name) for name in class_names], chosen)
        data = self._cache[key]
        expected = record.summary.image_shape
        if expected and list(data.images.shape[1:]) != list(expected):
            raise RunLoadError(
                f"{record.run_dir}: the model takes images of shape {tuple(expected)} but "
                f"{spec} has {data.images.shape[1:]}; pass the run's own `dataset`"
            )
        if record.summary.num_classes is not None and int(record.summary.num_classes) != data.num_classes:
            raise RunLoadError(f"{record.run_dir}: the model has a different number of classes than {spec}")
        return data


@dataclasses.dataclass
class AnalysisContext:
    """What spans the runs of one analysis.

    Attributes:
        options: the `AnalysisOptions`.
        records: the runs: every run to analyse while the per-run results are
            computed, then the analysed runs (those every essential stage
            computed), in the order of the runs table.
        test_data: the `TestDataLoader` (each dataset loaded once).
        active: the names of the stages this analysis runs, in order.
        results: stage name -> {run directory: `RunResult`}.
        tables: stage name -> {table name: table}, filled as stages combine
            (names starting with ``_`` are kept here but not written).
        staging: the folder of this analysis' outputs while it runs (tables,
            ``figures/``; a stage may write further files under it, e.g.
            ``units/``); None until the first output is written.
        verbose: 1 progress lines and bars, 0 silent.
        stage: the stage this view belongs to (`for_stage`), or None.
        conditions: the analysed runs' `report.condition_names.Conditions`
            (each run's condition name), set before the stages combine; None
            when figures and report are redrawn from tables (which carry the
            names in their ``condition`` column).
        claims: every stage's claims with their gated verdicts (the
            ``claims`` table, `claims.gate`), once the report is drawn.
    """

    options: "AnalysisOptions"
    records: list
    test_data: TestDataLoader
    active: list = dataclasses.field(default_factory=list)
    results: dict = dataclasses.field(default_factory=dict)
    tables: dict = dataclasses.field(default_factory=dict)
    staging: str | None = None
    verbose: int = 0
    stage: str | None = None
    conditions: object = None
    claims: object = None
    _errors: dict = dataclasses.field(default_factory=dict)
    _warnings: dict = dataclasses.field(default_factory=dict)
    _shared: dict = dataclasses.field(default_factory=dict)

    def for_stage(self, name: str) -> "AnalysisContext":
        """This context as stage `name` sees it: `add_error` files its rows under it."""
        return dataclasses.replace(self, stage=name)

    def add_error(self, path: str, message: str) -> None:
        """An error row ``(path, message)`` of this view's stage (errors.csv, the report)."""
        self._errors.setdefault(self.stage, []).append((path, message))

    def errors_in(self, order: Sequence[str]) -> list:
        """Every stage's error rows, stage by stage in `order`."""
        return [row for name in order for row in self._errors.get(name, [])]

    def add_warning(self, message: str) -> None:
        """A warning of this view's stage: something a reader must know before trusting the
        results (a run whose weights are not finite, a request capped, a test that cannot be
        done). The report opens with every warning; ``warnings.csv`` lists them. Said once:
        a repeated message is kept once."""
        found = self._warnings.setdefault(self.stage, [])
        if message not in found:
            found.append(message)

    def warnings_in(self, order: Sequence[str]) -> list:
        """``(stage, message)`` of every warning, stage by stage in `order`."""
        return [(name, message) for name in order for message in self._warnings.get(name, [])]

    def shared(self, key: str, make: Callable):
        """A resource shared by all runs (made by ``make()`` on first use; closed at the end if it has ``close``)."""
        if key not in self._shared:
            self._shared[key] = make()
        return self._shared[key]

    def close(self) -> None:
        """Closes the shared resources (temporary folders, ...)."""
        for resource in self._shared.values():
            if hasattr(resource, "close"):
                resource.close()
        self._shared.clear()

    def run_row(self, run_dir: str):
        """The run's row of the runs table (a pandas Series), or None."""
        runs = self.tables.get("selectivity", {}).get("runs")
        if runs is None:
            return None
        rows = own_rows(runs.loc[runs["run_dir"] == run_dir])
        return None if rows.empty else rows.iloc[0]

    def run_columns(self, run_dir: str, extra: Sequence[str] = ()) -> dict:
        """``run_dir``, the condition columns (its condition's name included) and the `extra`
        columns of the run's row of the runs table."""
        row = self.run_row(run_dir)
        if row is None:
            return {"run_dir": run_dir}
        return {"run_dir": run_dir, **{c: row[c] for c in (*CONFIG_COLUMNS, "condition", *extra) if c in row.index}}

    def condition_of(self, run_dir: str) -> str:
        """The name of the run's condition ("" when unknown)."""
        return self.conditions.of.get(run_dir, "") if self.conditions is not None else ""

    def with_condition_names(self, frame: "pd.DataFrame", share_baselines: bool = False) -> "pd.DataFrame":
        """`frame` with the ``condition`` column of its runs (`insert_condition`).

        With `share_baselines`, the rows of an alpha = 0 run that is also
        the baseline of other conditions (a window's) appear once more for
        each: for the tables of per-run and per-layer results whose tests
        and figures compare alphas within a condition (runs, layers,
        training curves, over training); per-unit and per-image tables keep
        one copy of each run.
        """
        if self.conditions is None:
            return insert_condition(frame, {})
        return insert_condition(frame, self.conditions.of, self.conditions.shared if share_baselines else None)

    def output_path(self, *parts: str) -> str:
        """A path under this analysis' outputs (for files other than tables and figures)."""
        return os.path.join(self.staging, *parts)


class RunContext:
    """One run as the stages see it.

    Everything is loaded on first use and kept for the other stages of the
    same run: the model, the response functions, the test data and its
    subsets. The engine makes one per run, sets `directory` before each
    stage's `compute`, and closes it when the run's stages are done.

    Args:
        record: the run's `RunRecord`.
        analysis: the `AnalysisContext`.
    """

    def __init__(self, record: RunRecord, analysis: AnalysisContext):
        self.record = record
        self.analysis = analysis
        self._directory_factory = None
        self._directory = None
        self._model = None
        self._responders = {}
        self._subsets = {}

    # -------------------------------------------------------------- the run
    @property
    def run_dir(self) -> str:
        return self.record.run_dir

    @property
    def summary(self) -> dict:
        """The run's summary.json."""
        return self.record.summary

    @property
    def options(self) -> "AnalysisOptions":
        return self.analysis.options

    @property
    def data_key(self) -> tuple:
        """What identifies the run's test data (part of every cache key)."""
        return self.analysis.test_data.key_of(self.record)

    def condition(self) -> dict:
        """``run_dir`` and the run's condition columns (model, alpha, seed, activation, leaky slope)."""
        return {"run_dir": self.run_dir, **self.record.condition()}

    def with_condition(self, frame: "pd.DataFrame", extra: Mapping | None = None) -> "pd.DataFrame":
        """`frame` with `condition` (and the `extra` columns) first."""
        return with_condition(frame, {**self.condition(), **dict(extra or {})})

    def result(self, stage: str) -> "RunResult | None":
        """An earlier stage's result for this run (None if it has none)."""
        return self.analysis.results.get(stage, {}).get(self.run_dir)

    # ------------------------------------------------------------- the files
    @property
    def directory(self) -> str:
        """The folder for files the current stage writes for this run (its cache
        entry, kept with it); created on first use."""
        if self._directory is None:
            if self._directory_factory is None:
                raise RuntimeError("this stage's results are not cached: it has no folder for files")
            self._directory = self._directory_factory()
        return self._directory

    def _use_directory(self, factory) -> None:
        """The engine, before a stage's `compute`: where its files go (`factory()` makes the folder)."""
        self._directory_factory, self._directory = factory, None

    # ------------------------------------------------------------- the model
    @property
    def model(self):
        """The run's Keras model (`runs.load_run_model`), loaded once for every stage.

        Raises:
            RunLoadError: no loadable ``model.keras``.
        """
        if self._model is None:
            self._model = load_run_model(self.record)
        return self._model

    def response_function(self, endpoint: str = "unit_responses"):
        """images -> {"logits", layer: responses} (`runs.load_response_function`), loaded once per endpoint."""
        if endpoint not in self._responders:
            self._responders[endpoint] = load_response_function(self.record, endpoint)
        return self._responders[endpoint]

    # -------------------------------------------------------------- the data
    @property
    def test_data(self) -> TestData:
        """The run's test data (the analysis' test set)."""
        return self.analysis.test_data.for_run(self.record)

    def subset(self, size: int | None) -> TestData:
        """The class-balanced subset of `size` test images (`data.subsets.balanced_subset`;
        None: the whole test set), made once per size; ``chosen`` holds its positions."""
        if not size:
            return self.test_data
        if size not in self._subsets:
            self._subsets[size] = self.test_data.subset(size)
        return self._subsets[size]

    def close(self) -> None:
        """Drops the model, response functions and subsets (the run's stages are done)."""
        self._model = None
        self._responders.clear()
        self._subsets.clear()

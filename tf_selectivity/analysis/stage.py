"""`Stage`: the one protocol of every analysis that `analyze` runs.

A stage is one question asked of the runs (selectivity, similarity,
ablation, robustness, ...). It lives in one folder, ``analysis/stages/<name>/``
(its settings, its per-run computation, its figures and its report section),
and is listed once in the registry (`tf_selectivity.analysis.stages.REGISTRY`).
The engine (`tf_selectivity.analysis.pipeline`) runs every registered stage
the same way:

1. ``enabled(options)``: whether the settings ask for the stage at all.
2. ``check(runs, options)``, for every enabled stage, before any pass over
   the data and before anything is written: names of layers and units,
   whether the stage can be computed with these runs. A request that cannot
   be met raises `ParameterError` (the analysis stops, nothing written); a
   stage that has nothing to do with these runs raises `StageSkipped` (it is
   left out, with its reason in `AnalysisResult.skipped`).
3. Per run, ``compute(run)`` -> `RunResult`: the run's tables and values.
   The engine caches each result under ``cache/<name>/`` in the output
   directory, keyed by the run (its id), its test data and
   ``cache_key(options)``: an analysis that is repeated, or interrupted and
   started again, computes no result twice. A run whose computation fails
   gets an error row (``run_error``) and is left out of this stage only
   (of the whole analysis for an `essential` stage).
4. ``combine(results, context)`` -> ``{table name: DataFrame}``: the
   cross-run tables, written as CSV and Parquet.
5. ``figures(tables, context)`` -> ``(name, Figure)`` pairs, saved as PNG
   and PDF under ``figures/`` (only with ``options.figures``), each
   captioned in the report by the stage's `captions`.
6. ``headlines(tables, context)`` and ``section(tables, context)``: the
   stage's sentences in the report's headline results (per condition) and
   its section of ``report.md``; `tf_selectivity.report` only assembles them.
7. ``claims(tables, context)`` and ``premises(tables, context)``: the tests
   the stage reports, each as a `claims.Claim` naming the premises it rests
   on, and the facts about the runs the stage can vouch for
   (`claims.Premise`: the networks learned, a condition has its baseline).
   The engine gathers every stage's into ``claims.csv`` and the report's
   claims section, marking "not testable" a claim whose premise fails or
   whose test cannot reach significance with these runs (`claims.gate`).

Every table with a ``run_dir`` column carries the run's ``condition`` (its
condition's name, `report.condition_names`): conditions span the analysed
runs, so ``combine`` adds the column (`AnalysisContext.with_condition_names`),
and stages group, test and draw per condition (`stats.split_by_condition`).

``restore(tables, context)`` rebuilds what ``combine`` returned from the
tables as written (read back from their files), so that figures and report
can be drawn again from a finished analysis without its runs or a backend
(`tf_selectivity.analysis.from_tables.redraw`).

A stage reads another stage's tables (``context.tables[name]``) or per-run
results (``run.result(name)``, ``context.results[name]``) only when it names
that stage in `requires` (its per-run results are needed: a run the other
stage could not compute is left out of this one) or `reads` (its tables
are read when present). The engine runs stages in registry order, so
a stage names only stages registered before it, except in `reads`, whose
tables are read by `figures`, `headlines` and `section` (which run after
every `combine`).

Example (a complete stage: the folder ``stages/mean_response/`` with this
class in its ``stage.py``, and ``"mean_response:MeanResponseStage"`` in the
registry)::

    class MeanResponseStage(Stage):
        name = "mean_response"
        requires = ("selectivity",)

        def cache_key(self, options):
            return (options.batch_size,)  # the engine adds the run and its test data

        def compute(self, run):  # once per run; read from the cache afterwards
            data = run.subset(1000)
            outputs = run.response_function()(data.images.astype(np.float32))
            probes = run.record.probe_names
            frame = pd.DataFrame({"layer": probes,
                                  "mean_response": [float(np.mean(outputs[p])) for p in probes]})
            return RunResult(tables={"mean_response": run.with_condition(frame)})

        def combine(self, results, context):
            return {"mean_response": pd.concat([r.tables["mean_response"] for r in results.values()])}

        def section(self, tables, context):
            means = tables["mean_response"].groupby("alpha")["mean_response"].mean()
            return ["## Mean responses", "", *(f"- alpha = {a:g}: {m:.3f}" for a, m in means.items())]
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

from tf_selectivity.analysis.runs import RunLoadError, error_for
from tf_selectivity.core.settings import ParameterError

if TYPE_CHECKING:  # annotations only: the engine's types
    import pandas as pd

    from tf_selectivity.analysis.context import AnalysisContext, RunContext
    from tf_selectivity.analysis.options import AnalysisOptions
    from tf_selectivity.analysis.runs import RunRecord

__all__ = ["Stage", "RunResult", "StageSkipped", "settings_key"]


def settings_key(settings) -> tuple:
    """A group of settings (a dataclass) as ``((name, value), ...)``: a `Stage.cache_key` of all of them."""
    return tuple((field.name, getattr(settings, field.name)) for field in dataclasses.fields(settings))


class StageSkipped(Exception):
    """Raised by `Stage.check`: the stage has nothing to do with these runs (the message says why)."""


@dataclasses.dataclass
class RunResult:
    """What `Stage.compute` returns for one run, and what the cache keeps of it.

    Attributes:
        tables: ``{name: DataFrame}``, stored as Parquet.
        values: JSON-serializable values (numbers, strings, lists, dicts),
            stored as JSON.
        directory: the cache entry's folder, where the stage's files lie
            (those `compute` wrote under ``run.directory``); set by the
            engine, None for a result that is not cached.
        warnings: sentences a reader must see about this run's result (e.g.
            its weights are not finite); cached with it, and given to the
            report by every analysis that uses the result.
    """

    tables: dict = dataclasses.field(default_factory=dict)
    values: dict = dataclasses.field(default_factory=dict)
    directory: str | None = None
    warnings: list = dataclasses.field(default_factory=list)


class Stage:
    """Base class of the analyses of `analyze` (see the module docstring for the protocol).

    Class attributes:
        name: the stage's name: its folder under ``analysis/stages/``, its
            group of settings in `AnalysisOptions` (``options.<name>``, if
            it has settings), its cache folder (``cache/<name>/``) and the key
            of its tables and results in the `AnalysisContext`.
        options_class: the dataclass of its settings (`setting` fields), or
            None. `AnalysisOptions` holds it as ``options.<name>``.
        requires: stages whose per-run results this one needs (runs they
            could not compute are left out of this stage).
        reads: stages whose tables this one reads when they are present.
        essential: a run that this stage cannot compute is left out of the
            whole analysis (the stage of the runs table).
        captions: ``{start of a figure name: caption}`` of the stage's
            figures in the report (a figure gets the caption of the longest
            start of its name; none when no start matches).
    """

    name: str = ""
    options_class: type | None = None
    requires: Sequence[str] = ()
    reads: Sequence[str] = ()
    essential: bool = False
    captions: Mapping[str, str] = {}

    # ------------------------------------------------------------ before the data
    def enabled(self, options: "AnalysisOptions") -> bool:
        """Whether `options` ask for this stage (by default always)."""
        return True

    def check(self, runs: Sequence["RunRecord"], options: "AnalysisOptions") -> None:
        """Every check that needs no pass over the data.

        Reads only the runs' JSON and model configuration files (no weights,
        no test data, no backend): e.g. that named layers and units exist,
        that the runs allow the stage at all.

        Args:
            runs: every run to analyse (`RunRecord`s; diverged runs excluded).
            options: the `AnalysisOptions`.

        Raises:
            ParameterError: a request that cannot be met with these runs.
            StageSkipped: the stage has nothing to do with these runs.
        """

    def cache_key(self, options: "AnalysisOptions"):
        """The settings that change this stage's per-run results (a repr-able value).

        The engine adds the run's id and its test data (dataset, the
        number of test images). Return None when `compute` is not worth
        caching (e.g. it only reads a small file of the run).
        """
        return ()

    # ------------------------------------------------------------------- per run
    def compute(self, run: "RunContext") -> RunResult | None:
        """The stage's results for one run.

        Args:
            run: the run's `RunContext` (its record, model, test data,
                class-balanced subsets, condition columns, earlier stages'
                results); files the stage writes go under ``run.directory``.

        Returns:
            A `RunResult`, or None when the run has nothing for this stage
            (it is left out of it without an error).

        Raises:
            Exception: what `run_error` turns into one run's error row;
                anything else stops the analysis.

        A stage without per-run work does not override this method: the
        engine then never calls it (`implements_compute`).
        """
        return None

    def accepts(self, cached: RunResult, run: "RunContext") -> bool:
        """Whether a cached result serves this analysis (by default: always).

        For a result whose files depend on what the other stages need (e.g.
        unit responses written only when similarity is computed).
        """
        return True

    def run_error(self, run: "RunContext", error: BaseException) -> str | None:
        """The error row of a run whose `compute` raised `error`, or None to stop the analysis.

        By default a run that cannot be loaded or read (`RunLoadError`,
        `OSError`, `ValueError`, `KeyError`) gets the row
        ``"<name>: <message>"``; a `ParameterError` (a bad request) and any
        other error stop the analysis.
        """
        if isinstance(error, ParameterError) or not isinstance(error, (RunLoadError, OSError, ValueError, KeyError)):
            return None
        return f"{self.name}: {error_for(run.run_dir, error)}"

    # --------------------------------------------------------------- across runs
    def combine(self, results: Mapping[str, RunResult], context: "AnalysisContext") -> dict:
        """The stage's tables across runs.

        Args:
            results: run directory -> `RunResult`, in the order of the
                analysed runs, for the runs this stage computed.
            context: the `AnalysisContext` (options, analysed runs, earlier
                stages' tables, ``add_error``).

        Returns:
            ``{table name: DataFrame}``, written as ``<name>.csv`` and
            ``<name>.parquet`` in that order; empty when there is nothing to
            write.
        """
        return {}

    def restore(self, tables: Mapping[str, "pd.DataFrame"], context: "AnalysisContext") -> dict | None:
        """What `combine` returned, rebuilt from the tables an analysis wrote.

        Args:
            tables: ``{table name: DataFrame}`` of every stage, as written
                (read back from CSV or Parquet); the stage takes its own.
            context: the `AnalysisContext` (its options; no runs).

        Returns:
            The stage's tables as `combine` returns them (``_name`` entries
            included), for `figures`, `headlines` and `section`; None when
            `tables` hold none of the stage's or it cannot be rebuilt from
            them (by default: the stage is left out of a redrawn report).
        """
        return None

    def figures(self, tables: Mapping[str, "pd.DataFrame"], context: "AnalysisContext") -> Iterable:
        """``(figure name, matplotlib Figure or None)`` pairs, saved as ``figures/<name>.png/.pdf``."""
        return ()

    def headlines(self, tables: Mapping[str, "pd.DataFrame"], context: "AnalysisContext") -> list:
        """The stage's headline sentences: ``[(condition, [sentence, ...]), ...]``.

        A condition is ``{"model", "activation", "leaky_slope", "condition"}``; the
        report joins each condition's sentences of every stage, in registry
        order, under that condition's title.
        """
        return []

    def warnings(self, tables: Mapping[str, "pd.DataFrame"], context: "AnalysisContext") -> list:
        """Warnings that follow from the stage's tables (each a sentence), e.g. a test
        whose premise fails. They open the report, after those the stage gave while
        computing (`AnalysisContext.add_warning`), and go to ``warnings.csv``."""
        return []

    def section(self, tables: Mapping[str, "pd.DataFrame"], context: "AnalysisContext") -> list | None:
        """The stage's section of ``report.md`` (Markdown lines, its ``## `` heading first), or None."""
        return None

    def claims(self, tables: Mapping[str, "pd.DataFrame"], context: "AnalysisContext") -> list:
        """The tests the stage reports, as `claims.Claim`s (their verdicts from the numbers;
        the engine applies the premises, `claims.gate`)."""
        return []

    def premises(self, tables: Mapping[str, "pd.DataFrame"], context: "AnalysisContext") -> list:
        """The facts about each condition's runs that the stage can vouch for (`claims.Premise`)."""
        return []

    # ------------------------------------------------------------------ helpers
    def implements_compute(self) -> bool:
        """Whether the stage has per-run work (overrides `compute`)."""
        return type(self).compute is not Stage.compute

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

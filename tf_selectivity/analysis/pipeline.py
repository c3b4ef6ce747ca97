"""`analyze`: the engine that runs every analysis stage over saved runs.

The analyses themselves are stages (`tf_selectivity.analysis.stage`, listed
in `tf_selectivity.analysis.stages.REGISTRY`); this module only runs them:

1. find the runs (`find_runs`); runs that diverged (`training.status`) are
   listed in ``diverged.csv`` and kept out of every table, test and figure;
2. check every enabled stage before any pass over the data (`check_stages`);
3. per run, compute each stage's result or read it from the cache
   (``OUTPUT_DIR/cache/<stage>/``, `analysis.cache`): analysing a growing
   sweep again only computes what is new, and an interrupted analysis
   resumes where it stopped. One `RunContext` per run gives every stage the
   same model, test data and subsets;
4. combine each stage's results across runs into tables, draw its figures,
   and assemble the report from the stages' headlines, sections and
   captions (`from_tables.draw_and_report`, which also redraws them from
   saved tables).

Tables, figures and the report of one analysis replace those of the
previous one as a whole (`analysis.outputs`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import pandas as pd

from tf_selectivity.analysis.cache import MISSING, ResultCache
from tf_selectivity.analysis.context import AnalysisContext, RunContext, TestDataLoader
from tf_selectivity.analysis.from_tables import CLAIMS_TABLE, CONDITIONS_TABLE, WARNINGS_TABLE, draw_and_report
from tf_selectivity.analysis.options import AnalysisOptions
from tf_selectivity.analysis.outputs import (
    OutputDirectory,
    check_unlocked,
    output_dir_problem,
    unfinished_state,
    write_table,
)
from tf_selectivity.analysis.runs import CONFIG_COLUMNS, discover_runs, run_conditions
from tf_selectivity.analysis.stage import StageSkipped
from tf_selectivity.core.files import NoSpaceError, free_bytes, is_no_space, naming_full_disk
from tf_selectivity.core.progress import Progress
from tf_selectivity.core.signals import raise_if_interrupted
from tf_selectivity.core.settings import ParameterError

__all__ = ["AnalysisOptions", "AnalysisResult", "analyze", "check_stages", "find_runs", "write_table"]

DIVERGED_COLUMNS = ("run_dir", *CONFIG_COLUMNS, "epochs", "diverged_epoch", "reason")


@dataclasses.dataclass
class AnalysisResult:
    """Tables (pandas) and paths written by `analyze`.

    ``tables`` holds every table written, by name; ``runs``, ``layers``,
    ``units`` and the CCA tables are the most used of them.
    """

    runs: pd.DataFrame
    layers: pd.DataFrame
    units: pd.DataFrame
    cca: pd.DataFrame | None
    cca_ratio: pd.DataFrame | None
    cca_tests: pd.DataFrame | None
    errors: list
    report: str | None
    figures: dict
    # Runs whose training diverged: listed apart, in no other table.
    diverged: pd.DataFrame | None = None
    tables: dict = dataclasses.field(default_factory=dict)
    # Stage name -> why it had nothing to do with these runs (`StageSkipped`).
    skipped: dict = dataclasses.field(default_factory=dict)


# ------------------------------------------------------------------- main
def analyze(patterns, output_dir: str, options: AnalysisOptions | None = None, *, verbose: int = 1,
            stages: Sequence | None = None) -> AnalysisResult:
    """Analyses every completed run matched by `patterns` into `output_dir`.

    Writes every stage's tables (``runs``, ``layers``, ``units``, with CCA
    ``cca_distances``, ``cca_ratios``, ``cca_tests``, ...) as CSV and
    Parquet, the figures, and ``report.md``. Runs that cannot be analysed
    are reported (in the result, the report and ``errors.csv``) and the
    others are analysed. Runs that diverged are listed in ``diverged.csv``
    (and the result's `diverged`) and left out of everything else. The
    outputs replace those of an earlier analysis in `output_dir` as a whole;
    if this one fails, the earlier one stays as it was (and a directory this
    analysis created is removed).

    Args:
        patterns: run directories, directories of runs (sweeps) or globs.
        output_dir: where the tables, figures and report go.
        options: `AnalysisOptions`.
        verbose: 1 progress bars, 0 silent.
        stages: the `Stage`s to run, in report order (default: the registry's,
            `stages.registered_stages`).

    Returns:
        An `AnalysisResult`.

    Interrupted (Ctrl-C, SIGTERM) or stopped by a full disk, it leaves the
    earlier outputs as they were and keeps the per-run results it finished
    in the cache: the same call then computes only what is missing, and its
    tables equal those of an analysis that was never interrupted.

    Raises:
        ValueError: no analysable run, or a bad output directory/option
            (`ParameterError`, raised before anything is written).
        AnalysisLockedError: another process writes into `output_dir`
            (nothing is written).
        NoSpaceError: the file system filled up; it names the file or
            folder that could not be written and the space left.
    """
    options = (options or AnalysisOptions()).validate()
    output_dir = os.path.abspath(os.path.expanduser(output_dir))
    problem = output_dir_problem(output_dir)
    if problem:
        raise ParameterError("output_dir", problem)
    check_unlocked(output_dir)
    records, diverged, errors = find_runs(patterns)
    active, skipped = check_stages(records, options, stages)
    # Created only when there is something to write (the first cache entry):
    # an analysis in which no run can be evaluated leaves no trace.
    out = OutputDirectory(output_dir, record={"patterns": list(patterns), "options": dataclasses.asdict(options)})
    try:
        result = _analyze_into(out, records, diverged, errors, options, verbose, active)
        out.commit()
    except BaseException as error:
        out.abort()
        if is_no_space(error):
            raise _full_disk(error, out) from None
        raise
    figures = {name: [out.final_path(p) for p in paths] for name, paths in result.figures.items()}
    return dataclasses.replace(result, report=out.final_path(result.report), figures=figures, skipped=skipped)


def _full_disk(error: OSError, out: OutputDirectory) -> NoSpaceError:
    """`error` (a full file system) as the one error the analysis reports: the
    path as it would have been after the analysis, the space left, what is intact."""
    path = error.path if isinstance(error, NoSpaceError) else (error.filename or out.path)
    path = os.fspath(path)
    if out.staging and os.path.commonpath([out.staging, os.path.abspath(path)]) == out.staging:
        path = out.final_path(path)
    return NoSpaceError(path, free_bytes(path), f"{unfinished_state(out.path)}; free space, then run the same command")


def find_runs(patterns):
    """The runs `analyze` would analyse; reads only their JSON files.

    Returns:
        (records, diverged, errors): the completed runs' `RunRecord`s, the
        diverged ones, and (path, message) of patterns or runs that cannot
        be used.

    Raises:
        ValueError: no completed run (none found, or every one diverged).
    """
    records, errors = discover_runs(patterns)
    if not records:
        details = "; ".join(f"{path}: {message}" for path, message in errors) or "no patterns given"
        raise ValueError(f"no run to analyse ({details})")
    diverged = [r for r in records if r.diverged]
    records = [r for r in records if not r.diverged]
    if not records:
        raise ValueError(
            f"all {len(diverged)} run(s) found diverged (non-finite loss; e.g. {diverged[0].run_dir}, in epoch "
            f"{diverged[0].summary.diverged_epoch}): nothing to analyse"
        )
    return records, diverged, list(errors)


def check_stages(records, options: AnalysisOptions, stages: Sequence | None = None) -> tuple:
    """The stages this analysis runs, after every check that needs no pass over the data.

    Args:
        records: the runs (`find_runs`).
        options: the validated `AnalysisOptions`.
        stages: the candidate stages (default: the registry's).

    Returns:
        (active, skipped): the enabled stages whose checks passed, in order,
        and ``{name: reason}`` of those with nothing to do with these runs
        (a stage whose required stage is not active is skipped too).

    Raises:
        ParameterError: a stage cannot do what the options ask with these runs.
    """
    if stages is None:
        from tf_selectivity.analysis.stages import registered_stages

        stages = registered_stages()
    active, skipped = [], {}
    for stage in stages:
        if not stage.enabled(options):
            continue
        missing = [name for name in stage.requires if name not in {s.name for s in active}]
        if missing:
            skipped[stage.name] = f"needs the {', '.join(missing)} stage"
            continue
        try:
            stage.check(records, options)
        except StageSkipped as reason:
            skipped[stage.name] = str(reason)
            continue
        active.append(stage)
    return active, skipped


# ------------------------------------------------------------------ engine
def _analyze_into(out: OutputDirectory, records, diverged, errors, options, verbose, stages) -> AnalysisResult:
    """`analyze` into `out`: per-run results (computed or cached), then the staged outputs."""
    context = AnalysisContext(options=options, records=list(records), test_data=TestDataLoader(options, verbose),
                              active=[stage.name for stage in stages], verbose=verbose)
    try:
        context.records = _per_run(context, stages, ResultCache(out.cache, before_write=out.begin))
        if not context.records:
            details = "; ".join(f"{path}: {message}" for path, message in [*errors, *context.errors_in(
                context.active)])
            raise ValueError(f"no run could be analysed ({details})")
        context.staging = out.begin().staging
        # Conditions span the analysed runs: the stages name each run's when they combine.
        context.conditions = run_conditions(context.records, options.pool_over)
        written = {CONDITIONS_TABLE: context.conditions.table()}
        write_table(written[CONDITIONS_TABLE], context.staging, CONDITIONS_TABLE)
        for stage in stages:
            view = context.for_stage(stage.name)
            results = context.results.get(stage.name, {})
            with naming_full_disk(context.staging):  # files a stage writes beside its tables
                tables = stage.combine(
                    {r.run_dir: results[r.run_dir] for r in context.records if r.run_dir in results}, view)
            context.tables[stage.name] = tables
            for name, table in tables.items():
                if not name.startswith("_"):
                    write_table(table, context.staging, name)
                    written[name] = table
        if diverged:
            _write_csv(_diverged_table(diverged), os.path.join(context.staging, "diverged.csv"))
        errors = [*errors, *context.errors_in(context.active)]
        _write_csv(pd.DataFrame(errors, columns=["path", "error"]), os.path.join(context.staging, "errors.csv"))
        figures, report_path = draw_and_report(context, stages, context.staging, errors=errors,
                                               diverged=_diverged_table(diverged) if diverged else None)
        written[CLAIMS_TABLE] = context.claims
        warnings = pd.DataFrame(context.warnings_in([*context.active, CLAIMS_TABLE]), columns=["stage", "warning"])
        _write_csv(warnings, os.path.join(context.staging, f"{WARNINGS_TABLE}.csv"))
    finally:
        context.close()

    return AnalysisResult(
        written.get("runs"), written.get("layers"), written.get("units"), written.get("cca_distances"),
        written.get("cca_ratios"), written.get("cca_tests"), errors, report_path, figures,
        diverged=_diverged_table(diverged), tables=written,
    )


def _per_run(context: AnalysisContext, stages, cache: ResultCache) -> list:
    """Every stage's result for every run, computed or read from the cache; returns the analysed runs.

    Run by run (so that a run's model is loaded once for all its stages),
    stage by stage in order. A run that an essential stage cannot compute
    is left out of every later stage and of the analysis.
    """
    computing = [stage for stage in stages if stage.implements_compute()]
    analysed = []
    # Each computed run is announced with the time left; its passes show their own progress below.
    runs = Progress("Per-run analysis", len(context.records), unit="run", enabled=bool(context.verbose), nested=True)
    for record in context.records:
        run = RunContext(record, context)
        announced = False
        try:
            for stage in computing:
                raise_if_interrupted()  # a Ctrl-C dropped in a garbage-collection callback
                if any(record.run_dir not in context.results.get(name, {}) for name in stage.requires):
                    continue
                try:
                    found, result = _cached(stage, run, cache)
                    if not found:
                        if not announced:
                            runs.announce(record.run_dir)
                            announced = True
                        result = _compute(stage, run, cache)
                except Exception as error:
                    if is_no_space(error):  # not one run's problem: the analysis stops
                        raise
                    message = stage.run_error(run, error)
                    if message is None:
                        raise
                    context.for_stage(stage.name).add_error(record.run_dir, message)
                    if stage.essential:
                        break
                    continue
                if result is not None:
                    context.results.setdefault(stage.name, {})[record.run_dir] = result
                    for message in result.warnings:
                        context.for_stage(stage.name).add_warning(message)
                elif stage.essential:
                    break
            else:
                analysed.append(record)
        finally:
            run.close()
            if announced:
                runs.update()
            else:
                runs.skip()
    raise_if_interrupted()
    if runs.worked:
        runs.close()
    return analysed


def _cached(stage, run, cache: ResultCache) -> tuple:
    """(found, result) of `stage` for `run` in the cache."""
    entry = cache.entry(stage, run)
    if entry is None:
        return False, None
    result = cache.load(entry)
    if result is MISSING or (result is not None and not stage.accepts(result, run)):
        return False, None
    return True, result


def _compute(stage, run, cache: ResultCache):
    """`stage`'s result for `run`, computed (and stored in the cache when the stage is cached)."""
    entry = cache.entry(stage, run)
    if entry is None:
        run._use_directory(None)
        return stage.compute(run)
    with cache.writing(entry) as (make_folder, store):
        run._use_directory(make_folder)
        stored = store(stage.compute(run))
    if stored is None:
        return None
    # The result as the cache gives it back: the same whether this analysis
    # computed it or an earlier, interrupted one did (float32 values are
    # float64 after JSON, tables as Parquet reads them).
    loaded = cache.load(entry)
    return stored if loaded is MISSING else loaded


def _write_csv(frame: pd.DataFrame, path: str) -> None:
    with naming_full_disk(path):
        frame.to_csv(path, index=False)


def _diverged_table(diverged) -> pd.DataFrame:
    rows = [
        {
            "run_dir": r.run_dir,
            **r.condition(),
            "epochs": r.summary.epochs,
            "diverged_epoch": r.summary.diverged_epoch,
            "reason": r.summary.reason,
        }
        for r in diverged
    ]
    return pd.DataFrame(rows, columns=list(DIVERGED_COLUMNS))

"""`analyze`: test-set metrics of saved runs, CCA, tables, figures and report.

Per run (streaming over the test set, memory independent of its size):
accuracy, the class selectivity index of every unit, the precision metric
(Appendix A.5), dead units (A.6), and -- for CCA -- every unit's responses
written to a memory-mapped file. With ``selectivity_null=B`` the responses
are also kept in memory (float32, every layer's during the run's pass)
for every unit's label-permutation null (`analysis.selectivity_null`). Per-run results are cached in
``OUTPUT_DIR/cache/<run id>/`` so that analysing a growing sweep again only
evaluates the new runs. Tables, figures and the report of one analysis
replace those of the previous one as a whole (`analysis.outputs`). Runs that
diverged (`training.status`) are listed in ``diverged.csv`` and kept out of
every table, mean, test and figure.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from tf_selectivity.analysis.options import AnalysisOptions
from tf_selectivity.analysis.outputs import OutputDirectory, output_dir_problem, write_table
from tf_selectivity.analysis.runs import (
    CONFIG_COLUMNS,
    RunLoadError,
    RunRecord,
    discover_runs,
    error_for,
    load_response_function,
)
from tf_selectivity.core.files import read_json, temporary_path, write_json_atomic
from tf_selectivity.core.settings import ParameterError

__all__ = ["AnalysisOptions", "AnalysisResult", "analyze", "evaluate_run", "find_runs", "write_table"]

# Column order of the tables (tidy: one row per run / run x layer).
RUN_COLUMNS = (
    "run_dir", *CONFIG_COLUMNS, "epochs", "best_epoch", "val_accuracy", "test_accuracy",
    "test_mean_selectivity", "test_mean_selectivity_alive", "mean_precision",
    "dead_unit_fraction", "eq1_guarded_fraction", "num_units", "num_test_samples",
    "precision_top_n", "selectivity_index", "trained_selectivity_index", "dataset",
)
LAYER_COLUMNS = (
    "run_dir", *CONFIG_COLUMNS, "layer", "layer_index", "num_units", "mean_selectivity",
    "mean_selectivity_alive", "mean_precision", "dead_fraction", "eq1_guarded_fraction",
)
DIVERGED_COLUMNS = ("run_dir", *CONFIG_COLUMNS, "epochs", "diverged_epoch", "reason")


@dataclasses.dataclass
class AnalysisResult:
    """Tables (pandas) and paths written by `analyze`."""

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


# ---------------------------------------------------------------- test data
class _TestData:
    """Loads each dataset's test split once, whatever the number of runs."""

    def __init__(self, options: AnalysisOptions, verbose: int = 0):
        self.options = options
        self.verbose = verbose
        self._cache = {}

    def for_run(self, record: RunRecord):
        from tf_selectivity.data import describe_classes, load_test_split

        spec = self.options.dataset or record.summary.dataset or record.config.get("dataset")
        if not spec:
            raise RunLoadError(f"{record.run_dir}: summary.json names no dataset; pass `dataset`")
        data_dir = self.options.data_dir or record.config.get("data_dir")
        key = (spec, data_dir)
        if key not in self._cache:
            skip_bad = self.options.skip_bad_images or bool(record.config.get("skip_bad_images"))
            images, labels, class_names = load_test_split(spec, data_dir=data_dir, skip_bad_images=skip_bad)
            if self.verbose:
                print(f"Test data {spec}: {describe_classes(class_names)}; {len(labels):,} images", flush=True)
            if self.options.max_test_samples:
                from tf_selectivity.data.subsets import balanced_subset

                chosen = balanced_subset(labels, self.options.max_test_samples)
                images, labels = images[chosen], labels[chosen]
            self._cache[key] = (spec, images, labels, class_names)
        spec, images, labels, class_names = self._cache[key]
        expected = record.summary.image_shape
        if expected and list(images.shape[1:]) != list(expected):
            raise RunLoadError(
                f"{record.run_dir}: the model takes images of shape {tuple(expected)} but "
                f"{spec} has {images.shape[1:]}; pass the run's own `dataset`"
            )
        if record.summary.num_classes is not None and int(record.summary.num_classes) != len(class_names):
            raise RunLoadError(f"{record.run_dir}: the model has a different number of classes than {spec}")
        return spec, images, labels, len(class_names)

    def class_names(self, record: RunRecord) -> list:
        """The names of the classes of `record`'s test data (loaded by `for_run` if not yet)."""
        spec = self.for_run(record)[0]
        data_dir = self.options.data_dir or record.config.get("data_dir")
        return [str(name) for name in self._cache[(spec, data_dir)][3]]


def _batches(images, labels, batch_size):
    for start in range(0, len(labels), batch_size):
        yield images[start : start + batch_size].astype(np.float32), labels[start : start + batch_size]


# ------------------------------------------------------------- one run
def evaluate_run(
    record: RunRecord,
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    batch_size: int = 500,
    precision_top_n: int = 1000,
    response_dir: str | None = None,
    progress: Callable[[int], None] | None = None,
    selectivity_index: str = "eq1",
    selectivity_null: int = 0,
    selectivity_null_seed: int = 0,
):
    """Test-set statistics of one run.

    Args:
        record: the run.
        images, labels: the test set (uint8 images, integer labels).
        num_classes: number of classes.
        batch_size: images per batch.
        precision_top_n: N of the precision metric (paper: 1000, the number
            of CIFAR-10 test images per class). Capped at the number of test
            images per class: with more, a unit's top N must mix classes and
            precision loses its meaning (N = all images gives 1/C always).
        response_dir: where to write unit responses for CCA (None: don't).
        progress: called with each batch's size.
        selectivity_index: the index reported, "eq1" (the paper's) or
            "bounded", whatever index the run was trained with.
        selectivity_null: B > 0: every unit's label-permutation null from
            the responses of this pass (`analysis.selectivity_null`): the
            units frame gains ``si_null_mean`` and ``si_p`` (q-values come
            later, `selectivity_null.add_fdr`). 0: none.
        selectivity_null_seed: seed of the permutations.

    Returns:
        (run_row, layer_rows, units_frame): the run's row of the runs table,
        its rows of the layers table, and its per-unit DataFrame.
    """
    from tf_selectivity.measures.unit_statistics import evaluate_responses  # imports Keras

    respond = load_response_function(record, "unit_responses")
    layer_names = record.probe_names
    precision_top_n = max(1, min(precision_top_n, len(labels) // num_classes))
    result = evaluate_responses(
        respond,
        _batches(images, labels, batch_size),
        num_classes=num_classes,
        layer_names=layer_names,
        num_samples=len(labels),
        precision_top_n=precision_top_n,
        response_dir=response_dir,
        progress=progress,
        selectivity_index=selectivity_index,
        keep_responses=selectivity_null > 0,
    )
    nulls = {}
    if selectivity_null > 0:
        from tf_selectivity.analysis.selectivity_null import layer_null_columns

        nulls = layer_null_columns(
            result.responses, labels, num_classes,
            num_permutations=selectivity_null, seed=selectivity_null_seed, index=selectivity_index,
        )
        result.responses = None
    condition = {"run_dir": record.run_dir, **record.condition()}
    unit_frames, layer_rows = [], []
    for index, (name, statistics) in enumerate(result.layers.items()):
        table = statistics.unit_table()
        units = len(table["selectivity"])
        null_columns = nulls.get(name, {})
        unit_frames.append(
            pd.DataFrame(
                {
                    **{k: [v] * units for k, v in condition.items()},
                    "layer": name,
                    "layer_index": index,
                    "unit": np.arange(units),
                    "selectivity": table["selectivity"],
                    "precision": table["precision"],
                    "dead": table["dead"],
                    "eq1_guarded": table["eq1_guarded"],
                    "preferred_class": table["preferred_class"],
                    **null_columns,
                }
            )
        )
        alive = ~table["dead"]
        layer_rows.append(
            {
                **condition,
                "layer": name,
                "layer_index": index,
                "num_units": units,
                "mean_selectivity": float(np.mean(table["selectivity"])),
                "mean_selectivity_alive": float(np.mean(table["selectivity"][alive])) if alive.any() else np.nan,
                "mean_precision": float(np.nanmean(table["precision"])) if alive.any() else np.nan,
                "dead_fraction": float(np.mean(table["dead"])),
                # Units whose eq. 1 denominator was replaced by its guard
                # (negative responses only; 0 for ReLU networks).
                "eq1_guarded_fraction": float(np.mean(table["eq1_guarded"])),
            }
        )
    layers = pd.DataFrame(layer_rows, columns=list(LAYER_COLUMNS))
    num_units = int(layers["num_units"].sum())
    summary = record.summary
    run_row = {
        **condition,
        "epochs": summary.epochs,
        "best_epoch": summary.best_epoch,
        "val_accuracy": summary.val_accuracy,
        "test_accuracy": result.accuracy,
        # Eq. 3: mean over layers of each layer's mean over units.
        "test_mean_selectivity": float(layers["mean_selectivity"].mean()),
        "test_mean_selectivity_alive": float(layers["mean_selectivity_alive"].mean()),
        # Over live units (NaN for a dead unit, whose SI counts as 0 above).
        "mean_precision": float(layers["mean_precision"].mean()),
        "dead_unit_fraction": float((layers["dead_fraction"] * layers["num_units"]).sum() / num_units),
        "eq1_guarded_fraction": float(
            (layers["eq1_guarded_fraction"] * layers["num_units"]).sum() / num_units
        ),
        "num_units": num_units,
        "num_test_samples": result.num_samples,
        "precision_top_n": precision_top_n,
        "selectivity_index": selectivity_index,
        # What the run's loss regularized (`RunSummary.selectivity_index`
        # gives runs recorded before the field existed theirs).
        "trained_selectivity_index": summary.selectivity_index,
    }
    return run_row, layer_rows, pd.concat(unit_frames, ignore_index=True)


# ------------------------------------------------------------------ tables
def _check_output_dir(output_dir: str) -> None:
    problem = output_dir_problem(output_dir)
    if problem:
        raise ParameterError("output_dir", problem)


# --------------------------------------------------------------------- CCA
def _cca_groups(records: Sequence[RunRecord], options: AnalysisOptions, errors: list):
    """(group key, baseline runs, {alpha: treated runs}) per model/activation."""
    groups = {}
    for record in records:
        s = record.summary
        groups.setdefault((s.model, s.activation, s.leaky_slope), []).append(record)
    for key, members in groups.items():
        architecture = members[0].architecture()
        same = [r for r in members if r.architecture() == architecture]
        for record in members:
            if record.architecture() != architecture:
                errors.append((record.run_dir, f"left out of the CCA of {key[0]}: its layers differ from {members[0].run_dir}"))
        baseline = [r for r in same if r.summary.alpha == options.baseline_alpha]
        treated = {}
        for record in same:
            alpha = record.summary.alpha
            if alpha == options.baseline_alpha:
                continue
            if options.cca_alphas is not None and not any(np.isclose(alpha, a) for a in options.cca_alphas):
                continue
            treated.setdefault(alpha, []).append(record)
        treated = {a: runs for a, runs in sorted(treated.items()) if len(runs) >= 2}
        if baseline and treated:
            yield key, baseline, treated


def _run_cca(records, options, response_dirs, errors, verbose):
    from tf_selectivity.measures import stats
    from tf_selectivity.analysis.cca_experiment import distance_ratios, figure3_distances

    groups = list(_cca_groups(records, options, errors))
    if not groups:
        if options.cca == "true":
            errors.append(("CCA", f"needs runs at alpha={options.baseline_alpha} and >= 2 replicates at another alpha of the same model"))
        return None, None, None
    distances, ratios = [], []
    for (model, activation, slope), baseline, treated in groups:
        layers = baseline[0].probe_names
        for alpha, runs in treated.items():
            # One pass over the responses for every measure.
            methods = options.similarity
            if verbose:
                print(f"Similarity ({', '.join(methods)}) {model} {activation}: alpha={alpha:g} ({len(runs)} runs) vs alpha={options.baseline_alpha:g} ({len(baseline)} runs)")

            def load(run_dir, layer):
                return np.load(os.path.join(response_dirs[run_dir], f"{layer}.npy"))

            try:
                frame = figure3_distances(
                    [r.run_dir for r in runs],
                    [r.run_dir for r in baseline],
                    layers,
                    load,
                    method=methods,
                    pwcca_variant=options.cca_pwcca_variant,
                    procrustes_alpha=options.procrustes_alpha,
                    progress=_progress_bar(verbose),
                    run_seeds=None if options.cca_same_seed_pairs else {
                        r.run_dir: r.summary.seed for r in [*runs, *baseline]
                    },
                )
            except ValueError as error:  # e.g. no pair of different seeds, unusable activations
                errors.append((f"CCA of {model} {activation} alpha={alpha:g}", str(error)))
                continue
            # One frame holds every measure (and, with
            # --cca_pwcca_variant=both, both PWCCA variants).
            for (method, variant), part in frame.groupby(["method", "pwcca_variant"], sort=False):
                context = {"model": model, "activation": activation, "leaky_slope": slope, "alpha": alpha,
                           "method": method, "pwcca_variant": variant}
                distances.append(part.assign(**context))
                ratios.append(distance_ratios(part).assign(**context))
    if not distances:
        return None, None, None
    ratios = pd.concat(ratios, ignore_index=True)
    # The same function gives the report's and Figure 3b's numbers: one
    # paired t-test per condition and alpha, Bonferroni over its alphas.
    tests = stats.cca_ratio_summary(ratios, n_resamples=options.n_resamples)
    return pd.concat(distances, ignore_index=True), ratios, tests


def _run_similarity_maps(records, options, response_dirs, errors):
    """The `similarity_maps` table: per condition and treated alpha, the layer
    map of one within-alpha and one to-baseline pair (or None)."""
    from tf_selectivity.analysis.similarity_maps import map_pairs, map_table

    def load(run_dir, layer):
        return np.load(os.path.join(response_dirs[run_dir], f"{layer}.npy"))

    tables = []
    for (model, activation, slope), baseline, treated in _cca_groups(records, options, []):
        layers = baseline[0].probe_names
        for alpha, runs in treated.items():
            seeds = None if options.cca_same_seed_pairs else {
                r.run_dir: r.summary.seed for r in [*runs, *baseline]}
            pairs = map_pairs([r.run_dir for r in runs], [r.run_dir for r in baseline], seeds)
            try:
                table = map_table(pairs, layers, load, options.similarity_map_measure)
            except ValueError as error:
                errors.append((f"Similarity maps of {model} {activation} alpha={alpha:g}", str(error)))
                continue
            tables.append(table.assign(model=model, activation=activation, leaky_slope=slope, alpha=alpha))
    if not tables:
        return None
    return pd.concat(tables, ignore_index=True)


def _progress_bar(verbose):
    if not verbose:
        return None
    import keras

    state = {}

    def update(done, total):
        if "bar" not in state:
            state["bar"] = keras.utils.Progbar(total, unit_name="comparison", verbose=_progbar_verbosity())
        state["bar"].update(done)

    return update


# ------------------------------------------------------------------- main
def analyze(patterns, output_dir: str, options: AnalysisOptions | None = None, *, verbose: int = 1) -> AnalysisResult:
    """Analyses every completed run matched by `patterns` into `output_dir`.

    Writes ``runs``, ``layers``, ``units`` (and with CCA ``cca_distances``,
    ``cca_ratios``, ``cca_tests``) as CSV and Parquet, the figures, and
    ``report.md``. Runs that cannot be analysed are reported (in the result,
    the report and ``errors.csv``) and the others are analysed. Runs that
    diverged are listed in ``diverged.csv`` (and the result's `diverged`)
    and left out of everything else. The outputs replace those of an earlier
    analysis in `output_dir` as a whole; if this one fails, the earlier one
    stays as it was (and a directory this analysis created is removed).

    Args:
        patterns: run directories, directories of runs (sweeps) or globs.
        output_dir: where the tables, figures and report go.
        options: `AnalysisOptions`.
        verbose: 1 progress bars, 0 silent.

    Returns:
        An `AnalysisResult`.

    Raises:
        ValueError: no analysable run, or a bad output directory/option.
    """
    options = (options or AnalysisOptions()).validate()
    output_dir = os.path.abspath(os.path.expanduser(output_dir))
    _check_output_dir(output_dir)
    records, diverged, errors = find_runs(patterns)
    if options.units_page:  # named layers and unit indices, before the first pass over the data
        from tf_selectivity.analysis.units_stage import check_unit_choices

        check_unit_choices(records, options)
    # Created only when there is something to write (the first run's cache
    # entry): an analysis in which no run can be evaluated leaves no trace.
    out = OutputDirectory(output_dir, record={"patterns": list(patterns), "options": dataclasses.asdict(options)})
    try:
        result = _analyze_into(out, records, diverged, errors, options, verbose)
        out.commit()
    except BaseException:
        out.abort()
        raise
    figures = {name: [out.final_path(p) for p in paths] for name, paths in result.figures.items()}
    return dataclasses.replace(result, report=out.final_path(result.report), figures=figures)


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


def _analyze_into(out: OutputDirectory, records, diverged, errors, options, verbose) -> AnalysisResult:
    """`analyze` into `out`: per-run cache entries, then the staged outputs."""
    want_cca = options.cca != "false" and any(True for _ in _cca_groups(records, options, []))
    test_data = _TestData(options, verbose)
    run_rows, layer_rows, unit_frames, response_dirs, analysed = [], [], [], {}, []
    for number, record in enumerate(records, start=1):
        try:
            spec, images, labels, num_classes = test_data.for_run(record)
            cache = os.path.join(out.cache, _cache_key(record, options, spec))
            response_dir = os.path.join(cache, "responses") if want_cca else None
            cached = _read_cached(cache, response_dir, record)
            if cached is None:
                if verbose:
                    print(f"[{number}/{len(records)}] {record.run_dir}")
                positions = response_dir is not None and options.cca_spatial == "positions"
                if response_dir is not None:
                    out.begin()  # CCA responses stream into the cache
                run_row, layers, units = evaluate_run(
                    record, images, labels, num_classes,
                    batch_size=options.batch_size,
                    precision_top_n=options.precision_top_n,
                    selectivity_index=options.selectivity_index,
                    selectivity_null=options.selectivity_null,
                    selectivity_null_seed=options.selectivity_null_seed,
                    # Averaged responses come with the streaming pass; CCA
                    # with positions as datapoints needs the feature maps.
                    response_dir=None if positions else response_dir,
                    progress=_sample_progress(len(labels)) if verbose else None,
                )
                if positions:
                    _write_position_responses(record, images, options, response_dir)
                run_row["dataset"] = spec
                out.begin()
                _write_cache(cache, run_row, layers, units)
            else:
                run_row, layers, units = cached
            if options.selectivity_null:
                from tf_selectivity.analysis.selectivity_null import add_fdr

                run_row, layers, units = add_fdr(
                    run_row, layers, units, num_permutations=options.selectivity_null,
                    fdr=options.fdr, method=options.fdr_method,
                )
        except (RunLoadError, OSError, ValueError, KeyError) as error:
            errors.append((record.run_dir, error_for(record.run_dir, error)))
            continue
        except Exception as error:  # a broken model must not stop the others
            errors.append((record.run_dir, f"{type(error).__name__}: {error}"))
            continue
        run_rows.append(run_row)
        layer_rows.extend(layers)
        unit_frames.append(units)
        analysed.append(record)
        if response_dir:
            response_dirs[record.run_dir] = response_dir

    if not analysed:
        details = "; ".join(f"{path}: {message}" for path, message in errors)
        raise ValueError(f"no run could be analysed ({details})")
    staging = out.begin().staging
    run_columns, layer_columns = list(RUN_COLUMNS), list(LAYER_COLUMNS)
    if options.selectivity_null:
        from tf_selectivity.analysis.selectivity_null import NULL_LAYER_COLUMNS, NULL_RUN_COLUMNS

        run_columns += NULL_RUN_COLUMNS
        layer_columns += NULL_LAYER_COLUMNS
    runs = pd.DataFrame(run_rows, columns=run_columns)
    layers = pd.DataFrame(layer_rows, columns=layer_columns)
    units = pd.concat(unit_frames, ignore_index=True)
    write_table(runs, staging, "runs")
    write_table(layers, staging, "layers")
    write_table(units, staging, "units")
    if diverged:
        _diverged_table(diverged).to_csv(os.path.join(staging, "diverged.csv"), index=False)

    cca = cca_ratio = cca_tests = None
    if want_cca:
        cca, cca_ratio, cca_tests = _run_cca(analysed, options, response_dirs, errors, verbose)
        if cca is not None:
            write_table(cca, staging, "cca_distances")
            write_table(cca_ratio, staging, "cca_ratios")
            write_table(cca_tests, staging, "cca_tests")
    maps = None
    if want_cca and options.similarity_maps:
        maps = _run_similarity_maps(analysed, options, response_dirs, errors)
        if maps is not None:
            write_table(maps, staging, "similarity_maps")

    # Figures and report show one CCA method (PWCCA, the paper's, if computed)
    # and one PWCCA variant (google/svcca's, the paper's, unless only the
    # textbook one was computed).
    cca_shown = cca_ratio_shown = None
    if cca is not None:
        method = "pwcca" if "pwcca" in options.similarity else options.similarity[0]
        variant = ""
        if method == "pwcca":
            variant = "textbook" if options.cca_pwcca_variant == "textbook" else "svcca"
        cca_shown = cca.loc[(cca["method"] == method) & (cca["pwcca_variant"] == variant)]
        cca_ratio_shown = cca_ratio.loc[(cca_ratio["method"] == method) & (cca_ratio["pwcca_variant"] == variant)]
    figures = {}
    if options.figures:
        from tf_selectivity import plots

        # Figure 3 once more for each other measure (fig3_<measure>_<model>).
        other_measures = {}
        if cca is not None:
            for measure in options.similarity:
                if measure not in ("pwcca", method):
                    other_measures[measure] = (cca.loc[cca["method"] == measure],
                                               cca_ratio.loc[cca_ratio["method"] == measure])
        figures = plots.draw_all(
            runs, layers, cca_shown, cca_ratio_shown,
            output_dir=os.path.join(staging, "figures"), n_resamples=options.n_resamples,
            other_measures=other_measures, similarity_maps=maps,
        )

    # Optional stages that need each run's Keras model (ablation, robustness,
    # unit pages): each writes its tables and figures into the staging
    # directory and returns its report section.
    stage_context = StageContext(
        records=analysed, runs=runs, layers=layers, units=units, options=options, test_data=test_data,
        staging=staging, errors=errors, figures=figures, verbose=verbose,
    )
    sections = [section for stage in optional_stages(options) if (section := stage(stage_context))]

    pd.DataFrame(errors, columns=["path", "error"]).to_csv(os.path.join(staging, "errors.csv"), index=False)
    from tf_selectivity import report

    report_path = report.write_report(
        # The report's CCA section shows one measure (its _one_method rule),
        # and beside it the ratio under every measure of --similarity.
        staging, runs, layers, cca=cca_shown, cca_ratio=cca_ratio,
        figures=figures, errors=errors, n_resamples=options.n_resamples,
        diverged=_diverged_table(diverged) if diverged else None, sections=sections,
    )
    return AnalysisResult(
        runs, layers, units, cca, cca_ratio, cca_tests, errors, str(report_path), figures,
        diverged=_diverged_table(diverged),
    )


@dataclasses.dataclass
class StageContext:
    """What an optional analysis stage gets: the analysed runs and their tables.

    A stage is a function ``stage(context) -> list[str] | None``: it writes
    its tables (`write_table` into `staging`) and figures (under
    ``staging/figures``, added to `figures` as ``{name: [paths]}``), appends
    ``(path, message)`` to `errors` for a run it cannot handle (and goes on
    with the others), and returns its report section (Markdown lines,
    ``## `` heading first) or None.
    """

    records: list  # the analysed `RunRecord`s, in the order of `runs`
    runs: pd.DataFrame
    layers: pd.DataFrame
    units: pd.DataFrame
    options: AnalysisOptions
    test_data: "_TestData"  # .for_run(record) -> (spec, images, labels, num_classes)
    staging: str
    errors: list
    figures: dict
    verbose: int = 0


def optional_stages(options: AnalysisOptions) -> list:
    """The optional stages `options` asks for, in report order."""
    stages = []
    if options.ablation or options.unit_ablation:
        from tf_selectivity.analysis.ablation_stage import ablation_stage

        stages.append(ablation_stage)
    if options.units_page:
        from tf_selectivity.analysis.units_stage import units_stage

        stages.append(units_stage)
    if options.training_curves:
        from tf_selectivity.analysis.training_curves_stage import training_curves_stage

        stages.append(training_curves_stage)
    if options.robustness:
        from tf_selectivity.analysis.robustness_stage import robustness_stage

        stages.append(robustness_stage)
    return stages


def _progbar_verbosity() -> int:
    """Keras' live bar on a terminal, one plain line per bar otherwise (logs)."""
    import sys

    return 1 if hasattr(sys.stdout, "isatty") and sys.stdout.isatty() else 2


def _sample_progress(total):
    import keras

    bar = keras.utils.Progbar(total, unit_name="image", verbose=_progbar_verbosity())
    state = {"seen": 0}

    def update(count):
        state["seen"] += count
        bar.update(state["seen"])

    return update


# ------------------------------------------------------------ run cache
def _cache_key(record: RunRecord, options: AnalysisOptions, spec: str) -> str:
    """The run id plus every option that changes its per-run results."""
    import hashlib

    settings = (
        spec, options.max_test_samples, options.precision_top_n, options.cca_spatial,
        options.cca_max_datapoints, options.selectivity_index,
    )
    if options.max_test_samples:  # a class-balanced subset since 2026-12-03, no longer the first N
        settings += ("balanced",)
    if options.selectivity_null:  # (keeps the keys of analyses without the null)
        settings += (options.selectivity_null, options.selectivity_null_seed)
    return f"{record.run_id}-{hashlib.sha256(repr(settings).encode()).hexdigest()[:8]}"


def _write_cache(cache: str, run_row: dict, layers: list, units: pd.DataFrame) -> None:
    os.makedirs(cache, exist_ok=True)
    units.to_parquet(os.path.join(cache, "units.parquet"), index=False)
    write_json_atomic(os.path.join(cache, "run.json"), {"run": run_row, "layers": layers})


def _read_cached(cache: str, response_dir: str | None, record: RunRecord):
    meta_path = os.path.join(cache, "run.json")
    units_path = os.path.join(cache, "units.parquet")
    if not (os.path.exists(meta_path) and os.path.exists(units_path)):
        return None
    if response_dir and not all(
        os.path.exists(os.path.join(response_dir, f"{name}.npy")) for name in record.probe_names
    ):
        return None
    meta = read_json(meta_path)
    return meta["run"], meta["layers"], pd.read_parquet(units_path)


def _write_position_responses(record, images, options, response_dir):
    """CCA with positions as datapoints: (units, datapoints) per layer.

    The same seeded subset of (sample, row, column) positions is taken from
    every network, so that datapoints stay aligned across the compared runs.
    """
    respond = load_response_function(record, "activations")
    sinks, chosen = {}, {}
    os.makedirs(response_dir, exist_ok=True)
    for start in range(0, len(images), options.batch_size):
        outputs = respond(images[start : start + options.batch_size].astype(np.float32))
        for name in record.probe_names:
            maps = np.asarray(outputs[name])
            batch, height, width, units = maps.shape
            if name not in chosen:
                total = len(images) * height * width
                count = min(options.cca_max_datapoints, total)
                chosen[name] = np.sort(np.random.default_rng(0).choice(total, size=count, replace=False))
                sinks[name] = np.lib.format.open_memmap(
                    temporary_path(os.path.join(response_dir, f"{name}.npy"), suffix=".npy"),
                    mode="w+", dtype=np.float32, shape=(units, count),
                )
            first, last = start * height * width, (start + batch) * height * width
            selected = chosen[name]
            lo, hi = np.searchsorted(selected, [first, last])
            flat = maps.reshape(-1, units)
            sinks[name][:, lo:hi] = flat[selected[lo:hi] - first].T
    for name, sink in sinks.items():
        sink.flush()
        final = os.path.join(response_dir, f"{name}.npy")
        os.replace(temporary_path(final, suffix=".npy"), final)

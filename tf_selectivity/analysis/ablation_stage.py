"""`analyze --ablation / --unit_ablation`: what the ablation stage (`stages.ablation`) computes and reports.

Per analysed run, its Keras model is ablated on the run's test set
(`ablate_run`: `analysis.ablation`, the suffix path). Across runs
(`combine_ablation`), the tables ``ablation_curves``, ``ablation_auc`` (per run and
layer), ``unit_importance`` and ``importance_correlations``, the figures
``ablation_curves_<model>_<activation>`` and
``si_vs_importance_<model>_<activation>`` (`ablation_figures`), and the report section (`ablation_section`):
the units selective above chance per layer and alpha (from the null of
``--selectivity_null``), the ablation curves and the test of whether
selective-first ablation hurts more than random ablation, beside the
regularization result (SI and accuracy per alpha), and the correlation of
SI with single-unit importance.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from tf_selectivity.analysis.runs import CONFIG_COLUMNS
from tf_selectivity.core.settings import ParameterError
from tf_selectivity.report.formatting import format_number as _number

__all__ = ["ablate_run", "ablation_figures", "ablation_section", "check_ablation_layers", "combine_ablation",
           "selective_vs_random", "sign_flip_test"]

_EXACT_SIGN_FLIPS = 16  # up to 2**16 sign patterns enumerated; more: sampled


def check_ablation_layers(requested, probes) -> None:
    """Raises ParameterError when a name of ``ablation.layers`` is a probe of no analysed run.

    Args:
        requested: the names (None: all probes, always fine).
        probes: every analysed run's probe names, in order (repeats allowed).
    """
    if requested is None:
        return
    known = list(dict.fromkeys(str(name) for name in probes))
    unknown = [name for name in requested if name not in known]
    if unknown:
        raise ParameterError(
            "ablation.layers",
            f"must name probes of the analysed runs ({', '.join(known)}); no run has {', '.join(unknown)}")


def sign_flip_test(differences, n_resamples: int = 10_000, seed: int = 0) -> float:
    """Two-sided sign-flip permutation p-value of the mean of paired differences.

    Exact (every sign pattern) for up to 16 differences, else `n_resamples`
    random patterns (p = (1 + #{|mean*| >= |mean|}) / (1 + n_resamples)).
    NaN for no difference.
    """
    d = np.asarray(differences, np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan")
    observed = abs(d.mean())
    tolerance = 1e-12 * max(1.0, observed)
    if d.size <= _EXACT_SIGN_FLIPS:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
        return float(np.mean(np.abs(signs @ d / d.size) >= observed - tolerance))
    rng = np.random.default_rng(seed)
    signs = rng.choice((1.0, -1.0), size=(n_resamples, d.size))
    extreme = np.sum(np.abs(signs @ d / d.size) >= observed - tolerance)
    return float((1 + extreme) / (1 + n_resamples))


def _auc(rows: pd.DataFrame) -> float:
    """Area under accuracy vs fraction (trapezoid), divided by the fractions' span."""
    rows = rows.sort_values("fraction")
    x, y = rows["fraction"].to_numpy(float), rows["accuracy"].to_numpy(float)
    if len(x) < 2 or x[-1] == x[0]:
        return float(y.mean())
    return float(np.trapezoid(y, x) / (x[-1] - x[0]))


def ablation_auc(curves: pd.DataFrame) -> pd.DataFrame:
    """Per run and layer: the normalized area under each order's curve.

    Returns:
        One row per (run, layer): the condition columns, ``layer``,
        ``layer_index``, ``auc_selective_first``, ``auc_random`` (mean over
        the random seeds), ``auc_least_selective_first`` and
        ``auc_difference`` (selective first minus random: negative when
        ablating the most selective units first hurts more).
    """
    keys = [c for c in ("run_dir", *CONFIG_COLUMNS, "layer", "layer_index") if c in curves.columns]
    rows = []
    for key, frame in curves.groupby(keys, sort=False):
        row = dict(zip(keys, key))
        for order in ("selective_first", "random", "least_selective_first"):
            part = frame[frame["order"] == order]
            values = [_auc(seed_rows) for _, seed_rows in part.groupby("order_seed")]
            row[f"auc_{order}"] = float(np.mean(values)) if values else np.nan
        row["auc_difference"] = row["auc_selective_first"] - row["auc_random"]
        rows.append(row)
    return pd.DataFrame(rows)


def selective_vs_random(auc: pd.DataFrame, n_resamples: int = 10_000) -> pd.DataFrame:
    """Does ablating the most selective units first hurt more than random orders?

    Per condition and alpha, the paired difference AUC(selective first) -
    AUC(random) is averaged over each run's layers (the run, an independent
    replicate, is the unit), and its mean is tested against 0 with a
    two-sided sign-flip permutation test (`sign_flip_test`).

    Returns:
        One row per (model, activation, leaky_slope, alpha): ``runs``,
        ``mean_difference``, ``sd_difference``, ``effect_size`` (Cohen's
        d_z: mean / sd, NaN for one run), ``p_value``, ``layer_pairs`` and
        ``layers_hurt_more`` (the fraction of (run, layer) pairs whose
        difference is negative).
    """
    condition = [c for c in ("model", "activation", "leaky_slope", "alpha") if c in auc.columns]
    rows = []
    for key, frame in auc.groupby(condition, sort=True):
        per_run = frame.groupby("run_dir")["auc_difference"].mean().to_numpy(float)
        sd = float(per_run.std(ddof=1)) if len(per_run) > 1 else np.nan
        mean = float(per_run.mean())
        rows.append({
            **dict(zip(condition, key if isinstance(key, tuple) else (key,))),
            "runs": len(per_run), "mean_difference": mean, "sd_difference": sd,
            "effect_size": mean / sd if sd and np.isfinite(sd) and sd > 0 else np.nan,
            "p_value": sign_flip_test(per_run, n_resamples=n_resamples),
            "layer_pairs": len(frame), "layers_hurt_more": float((frame["auc_difference"] < 0).mean()),
        })
    return pd.DataFrame(rows)


def ablate_run(run):
    """One run's ablation (a `RunContext`): ``{"curves": ..., "importance": ...}``, each table
    present when asked for, with the run's condition columns first."""
    from tf_selectivity.analysis.ablation import ablation_curves, probe_layers, unit_importance

    options = run.options
    settings = options.ablation
    model = run.model
    probes = probe_layers(model)
    layers = probes if settings.layers is None else [n for n in settings.layers if n in probes]
    if not layers:
        raise ValueError(f"none of --ablation_layers is a probe of this run (its probes: {', '.join(probes)})")
    data = run.subset(settings.max_samples)
    common = dict(layers=layers, mode=settings.mode, index=options.selectivity_index,
                  batch_size=options.batch_size)
    tables = {}
    if settings.curves:
        tables["curves"] = run.with_condition(ablation_curves(
            model, data.images, data.labels, fractions=settings.fractions,
            random_seeds=tuple(range(settings.random_orders)), **common))
    if settings.unit_importance:
        tables["importance"] = run.with_condition(unit_importance(model, data.images, data.labels, **common))
    return tables


def combine_ablation(curve_frames, importance_frames, units: pd.DataFrame, n_resamples: int) -> dict:
    """The ablation tables across runs (the null's mean of each unit joined where `units` has it)."""
    from tf_selectivity.analysis.ablation import importance_correlations

    if "si_null_mean" in units.columns:
        joined = []
        for importance in importance_frames:
            run_dir = importance["run_dir"].iloc[0] if len(importance) else None
            null = units.loc[units["run_dir"] == run_dir, ["layer", "unit", "si_null_mean"]]
            importance = importance.merge(null, on=["layer", "unit"], how="left")
            importance["si_chance_corrected"] = importance["selectivity"] - importance["si_null_mean"]
            joined.append(importance)
        importance_frames = joined
    tables = {}
    if curve_frames:
        curves = pd.concat(curve_frames, ignore_index=True)
        auc = ablation_auc(curves)
        tables.update(ablation_curves=curves, ablation_auc=auc,
                      _tests=selective_vs_random(auc, n_resamples=n_resamples))
    if importance_frames:
        importance = pd.concat(importance_frames, ignore_index=True)
        group = [c for c in ("run_dir", *CONFIG_COLUMNS, "layer", "layer_index") if c in importance.columns]
        tables.update(unit_importance=importance, importance_correlations=importance_correlations(
            importance, group=group, n_resamples=min(n_resamples, 2000)))
    return tables


def _conditions(frame):
    from tf_selectivity.measures.stats import split_by_condition

    return split_by_condition(frame, ("model", "activation", "leaky_slope"))


def ablation_figures(curves, importance, n_resamples):
    """Yields ``(name, figure)``: per condition, the ablation curves and SI vs importance."""
    from tf_selectivity.plots.ablation import plot_ablation_curves, plot_si_vs_importance
    from tf_selectivity.plots.style import condition_slug, file_safe

    for frame, prefix, plot in ((curves, "ablation_curves", lambda f: plot_ablation_curves(f, n_resamples)),
                                (importance, "si_vs_importance", plot_si_vs_importance)):
        for condition, rows in _conditions(frame) if frame is not None else []:
            yield file_safe(f"{prefix}_{condition.get('model', 'model')}_{condition_slug(condition)}"), plot(rows)


def _percent(value) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.1f}%"


def _table(headers, rows) -> list[str]:
    from tf_selectivity.report.formatting import markdown_table

    return markdown_table(headers, rows).split("\n")


def _alpha_text(alpha) -> str:
    return f"{float(alpha):g}"


def ablation_section(options, runs, layers, tests, importance, correlations) -> list[str]:
    """The report section (Markdown lines), beside the runs and layers tables of the selectivity stage."""
    lines = ["## Ablation: do selective units matter?", ""]
    if options.ablation.max_samples:
        lines += [f"Ablation accuracies are on {options.ablation.max_samples:,} test images, the classes in turn "
                  "(--ablation_max_samples); the test accuracy and SI columns on the analysis' test set.", ""]
    for condition, rows in _conditions(runs):
        from tf_selectivity.plots.style import condition_label

        lines += [f"### {condition_label(condition)}", ""]
        layer_rows = layers[layers["run_dir"].isin(rows["run_dir"])]
        alphas = sorted(rows["alpha"].unique())
        # Selectivity above chance.
        if "selective_fraction" in layer_rows.columns:
            means = layer_rows.groupby(["layer_index", "layer", "alpha"])["selective_fraction"].mean().unstack("alpha")
            lines += [f"Units selective above chance (q < {options.selectivity.fdr:g}, "
                      f"{options.selectivity.fdr_method.upper()} over each run's units, "
                      f"B = {options.selectivity.null_permutations} label permutations), mean over runs:", ""]
            lines += _table(["layer", *[f"α = {_alpha_text(a)}" for a in alphas]],
                            [[name, *[_percent(values.get(a, np.nan)) for a in alphas]]
                             for (_, name), values in means.iterrows()])
            lines.append("")
        else:
            lines += ["Which units are selective above chance: run with --selectivity_null=B (e.g. 1000).", ""]
        # The regularization result beside the ablation result.
        regular = rows.groupby("alpha").agg(runs=("run_dir", "nunique"), si=("test_mean_selectivity", "mean"),
                                            accuracy=("test_accuracy", "mean"))
        test_rows = None
        if tests is not None:
            test_rows = tests
            for column, value in condition.items():
                if column in test_rows.columns:
                    test_rows = test_rows[test_rows[column] == value]
        headers = ["α", "runs", "mean SI", "test accuracy"]
        if test_rows is not None and not test_rows.empty:
            headers += ["AUC selective-first − random", "d_z", "p (sign flip)", "layers where selective-first hurts more"]
        table = []
        for alpha, values in regular.iterrows():
            row = [_alpha_text(alpha), int(values["runs"]), _number(values["si"]), _percent(values["accuracy"])]
            if len(headers) > 4:
                match = test_rows[test_rows["alpha"] == alpha]
                if match.empty:
                    row += ["n/a"] * 4
                else:
                    t = match.iloc[0]
                    row += [f"{100 * t['mean_difference']:+.2f} pts", _number(t["effect_size"], 2),
                            _number(t["p_value"], 3), _percent(t["layers_hurt_more"])]
            table.append(row)
        lines += ["Regularization (the paper's result) and ablation, per α:", ""] + _table(headers, table) + [""]
        if len(headers) > 4:
            lines += [
                "AUC: the area under test accuracy vs the fraction of a layer's units ablated (normalized to the "
                "fractions' span), most selective units first minus random orders (mean of "
                f"{options.ablation.random_orders} seeds), averaged over the run's layers; negative: ablating "
                "selective units first hurts more. d_z: mean over runs / its SD; p: two-sided sign-flip "
                "permutation test over runs (exact for up to 16 runs).", ""]
            strongest = test_rows.sort_values("mean_difference").iloc[0]
            verdict = "hurts more" if strongest["mean_difference"] < 0 else "hurts less"
            lines += [f"Largest effect at α = {_alpha_text(strongest['alpha'])}: selective-first ablation "
                      f"{verdict} than random ablation by {abs(100 * strongest['mean_difference']):.2f} accuracy "
                      f"points of AUC (p = {_number(strongest['p_value'], 3)}, {int(strongest['runs'])} runs).", ""]
        if correlations is not None:
            corr = correlations[correlations["run_dir"].isin(rows["run_dir"])]
            if not corr.empty:
                summary = corr.groupby(["alpha", "si_column"])["spearman"].agg(["mean", "count"]).reset_index()
                lines += ["Single-unit importance (accuracy drop with the unit alone ablated): Spearman correlation "
                          "of SI with importance, mean over runs and layers (per-layer values with bootstrap CIs "
                          "in importance_correlations):", ""]
                imp = importance[importance["run_dir"].isin(rows["run_dir"])]
                drops = imp.groupby("alpha").agg(drop=("importance", "mean"), class_drop=("max_class_drop", "mean"))
                lines += _table(
                    ["α", "ρ(SI, importance)", "ρ(chance-corrected SI, importance)", "mean drop", "mean largest class drop"],
                    [[_alpha_text(a),
                      _number(summary.loc[(summary["alpha"] == a) & (summary["si_column"] == "selectivity"), "mean"].mean(), 2),
                      _number(summary.loc[(summary["alpha"] == a) & (summary["si_column"] == "si_chance_corrected"), "mean"].mean(), 2),
                      f"{100 * drops.loc[a, 'drop']:.2f} pts", f"{100 * drops.loc[a, 'class_drop']:.2f} pts"]
                     for a in sorted(imp["alpha"].unique())])
                lines.append("")
    return lines

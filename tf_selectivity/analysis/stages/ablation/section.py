"""The ablation stage's section of report.md: do selective units matter?

Per condition (model, activation, leaky slope): the units selective above
chance per layer and alpha (from the null of ``--selectivity_null``), the
regularization result (SI and accuracy per alpha) beside the ablation
result (whether selective-first ablation hurts more than random ablation,
`tables.selective_vs_random`), and the correlation of SI with single-unit
importance.
"""

from __future__ import annotations

import numpy as np

from tf_selectivity.measures.stats import split_by_condition
from tf_selectivity.plots.style import condition_label
from tf_selectivity.report.formatting import format_number as _number
from tf_selectivity.report.formatting import markdown_table

__all__ = ["ablation_section"]


def _percent(value) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.1f}%"


def _table(headers, rows) -> list[str]:
    return markdown_table(headers, rows).split("\n")


def _alpha_text(alpha) -> str:
    return f"{float(alpha):g}"


def ablation_section(options, runs, layers, tests, importance, correlations) -> list[str]:
    """The report section (Markdown lines), beside the runs and layers tables of the selectivity stage."""
    lines = ["## Ablation: do selective units matter?", ""]
    if options.ablation.max_samples:
        lines += [f"Ablation accuracies are on {options.ablation.max_samples:,} test images, the classes in turn "
                  "(--ablation_max_samples); the test accuracy and SI columns on the analysis' test set.", ""]
    for condition, rows in split_by_condition(runs):
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

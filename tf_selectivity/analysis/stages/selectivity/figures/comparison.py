"""Figures 5 / A6 / A11 (promoting vs suppressing selectivity) and A12 (models side by side)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tf_selectivity.measures import stats
from tf_selectivity.plots.drawing import (
    alpha_legend,
    draw_marks_at_points,
    draw_scatter_with_ci,
    errorbar_curve,
)
from tf_selectivity.plots.labels import marks_legend
from tf_selectivity.plots.style import (
    ACCURACY_LABEL,
    BASELINE_COLOR,
    DEFAULT_N_RESAMPLES,
    MODEL_COLORS,
    NEGATIVE_COLOR,
    POSITIVE_COLOR,
    SELECTIVITY_LABEL,
    add_footnote,
    alpha_colors,
    alpha_tick_formatter,
    display_model_name,
    new_figure,
    replicates_text,
    set_alpha_axis,
    styled,
)
from tf_selectivity.plots.tables import error_bars, has_direction, has_values, per_alpha, select_runs


@styled
def plot_promote_vs_suppress(
    runs: pd.DataFrame,
    model: str,
    n_resamples: int = DEFAULT_N_RESAMPLES,
) -> Figure | None:
    """Figure 5 / A6: promoting vs suppressing selectivity at equal |alpha|.

    (a) Test accuracy vs |alpha| for alpha < 0 (blue) and alpha > 0 (red)
    with bootstrapped 95% CIs, the alpha = 0 mean as a grey band, and
    marks for Bonferroni-corrected Wilcoxon rank-sum tests between the
    signs at the alpha > 0 point: ▲ above it where promoting gave higher
    accuracy than suppressing, ▼ below it where lower (the direction of the
    rank statistic U); (b) test accuracy vs mean class selectivity for
    every alpha.

    Args:
        runs: The `runs` table.
        model: Model to draw (ReLU runs).
        n_resamples: Bootstrap resamples per confidence interval.

    Returns:
        The figure, or None unless both signs of alpha are present.
    """
    model_runs = select_runs(runs, model)
    if not (has_direction(model_runs, "suppress") and has_direction(model_runs, "promote")):
        return None
    if not has_values(model_runs, "test_accuracy"):
        return None
    accuracy = per_alpha(model_runs, "test_accuracy", n_resamples)
    figure, (magnitude_ax, scatter_ax) = new_figure(2, panel_width=3.9)

    handles = {}
    promote_points = None
    for sign, color, label in ((-1, NEGATIVE_COLOR, "α < 0 (suppress)"),
                               (1, POSITIVE_COLOR, "α > 0 (promote)")):
        side = accuracy.loc[np.sign(accuracy["alpha"]) == sign].copy()
        side["alpha"] = side["alpha"].abs()
        side = side.sort_values("alpha")
        errors = error_bars(side, 100)
        handles[label] = errorbar_curve(
            magnitude_ax, side["alpha"], side["mean"] * 100, yerr=errors, fmt="-o",
            color=color, label=label, markeredgecolor="white", markeredgewidth=0.5,
            gid=f"accuracy_{'negative' if sign < 0 else 'positive'}")
        if sign > 0:
            promote_points = (side["alpha"].to_numpy(dtype=float),
                              side["mean"].to_numpy(dtype=float) * 100, errors)
    baseline = accuracy.loc[accuracy["alpha"] == 0]
    if not baseline.empty:
        row = baseline.iloc[0]
        handles["α = 0"] = magnitude_ax.axhline(row["mean"] * 100, color=BASELINE_COLOR,
                                                linewidth=0.8, linestyle="--", label="α = 0")
        if row["n"] >= 2:
            magnitude_ax.axhspan(row["ci_low"] * 100, row["ci_high"] * 100,
                                 color="0.5", alpha=0.15, linewidth=0)
    tests = stats.ranksum_promote_vs_suppress(model_runs)
    # U counts the (negative, positive) pairs in which the negative value is
    # larger: above half of the pairs, promoting ranked lower.
    half_of_pairs = tests["n_negative"] * tests["n_positive"] / 2
    promote_direction = half_of_pairs - tests["u_statistic"]
    significance = {round(float(a), 12): (float(p), float(d)) for a, p, d in
                    zip(tests["abs_alpha"], tests["p_bonferroni"], promote_direction)}
    magnitudes, means, errors = promote_points
    draw_marks_at_points(magnitude_ax, magnitudes, means, errors, significance,
                         [round(float(m), 12) for m in magnitudes], color=POSITIVE_COLOR)
    magnitude_ax.set_xscale("log")
    magnitude_ax.xaxis.set_major_formatter(alpha_tick_formatter())
    magnitude_ax.set_xlabel("Regularization scale magnitude |α|")
    magnitude_ax.set_ylabel(ACCURACY_LABEL)
    # Ordered as on a signed alpha axis: suppressing, baseline, promoting.
    order = [label for label in ("α < 0 (suppress)", "α = 0", "α > 0 (promote)") if label in handles]
    magnitude_ax.legend([handles[label] for label in order], order, loc="best")

    colors = alpha_colors(model_runs["alpha"])
    if has_values(model_runs, "test_mean_selectivity"):
        selectivity = per_alpha(model_runs, "test_mean_selectivity", n_resamples)
        draw_scatter_with_ci(scatter_ax, selectivity, accuracy, colors, y_scale=100)
        scatter_ax.set_xlabel(SELECTIVITY_LABEL)
        scatter_ax.set_ylabel(ACCURACY_LABEL)
        alpha_legend(figure, accuracy["alpha"], colors)
    else:
        scatter_ax.set_axis_off()
    figure.suptitle(
        f"{display_model_name(model)}: promoting vs suppressing class selectivity"
    )
    add_footnote(
        figure,
        f"{replicates_text(accuracy['n'])}; error bars: bootstrapped 95% CI. (a) "
        + marks_legend("accuracy at α > 0 higher", "lower than α < 0 at equal |α|",
                       "Wilcoxon rank-sum, Bonferroni-corrected over |α|"),
    )
    return figure


@styled
def plot_model_comparison(
    runs: pd.DataFrame, n_resamples: int = DEFAULT_N_RESAMPLES
) -> Figure | None:
    """Figure A12: models side by side (ReLU runs).

    (a) Test accuracy vs alpha per model; (b) mean class selectivity vs
    alpha per model.

    Args:
        runs: The `runs` table.
        n_resamples: Bootstrap resamples per confidence interval.

    Returns:
        The figure, or None with fewer than two models.
    """
    relu_runs = select_runs(runs, None)
    models = sorted(relu_runs["model"].astype(str).unique()) if not relu_runs.empty else []
    if len(models) < 2:
        return None
    figure, axes = new_figure(2, panel_width=3.9)
    panels = (("test_accuracy", 100, ACCURACY_LABEL), ("test_mean_selectivity", 1, SELECTIVITY_LABEL))
    for ax, (column, scale, label) in zip(axes, panels):
        for index, model in enumerate(models):
            model_runs = relu_runs.loc[relu_runs["model"].astype(str) == model]
            if not has_values(model_runs, column):
                continue
            summary = per_alpha(model_runs, column, n_resamples)
            errorbar_curve(ax, summary["alpha"], summary["mean"] * scale,
                           yerr=error_bars(summary, scale), fmt="-o", markersize=3.5,
                           color=MODEL_COLORS[index % len(MODEL_COLORS)],
                           label=display_model_name(model), gid=f"{column}_{model}")
        set_alpha_axis(ax, relu_runs["alpha"])
        ax.set_ylabel(label)
        ax.legend(loc="best")
    figure.suptitle("Differences between models")
    add_footnote(figure, "Error bars: bootstrapped 95% CI over networks.")
    return figure

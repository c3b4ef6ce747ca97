"""Figures 2 and 4: test accuracy vs alpha, its distribution, and vs selectivity."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from tf_selectivity.plots.drawing import (
    alpha_legend,
    direction_phrase,
    draw_points_vs_alpha,
    draw_scatter_with_ci,
)
from tf_selectivity.plots.labels import marks_legend
from tf_selectivity.plots.style import (
    ACCURACY_LABEL,
    ALPHA_LABEL,
    DEFAULT_N_RESAMPLES,
    SELECTIVITY_LABEL,
    add_footnote,
    alpha_colors,
    display_model_name,
    format_alpha,
    new_figure,
    replicates_text,
    set_alpha_axis,
    styled,
)
from tf_selectivity.plots.tables import (
    accuracy_tests,
    has_direction,
    has_values,
    per_alpha,
    select_runs,
    significance_by_alpha,
    with_sign,
)


def _violin_alphas(alphas: Sequence[float], max_violins: int) -> list[float]:
    """Evenly spaced subset (in |alpha| rank) that keeps 0 and the extreme.

    Returned in increasing alpha, the order of the alpha axis of panel (a)
    and of the legend.
    """
    by_magnitude = sorted(set(float(a) for a in alphas), key=abs)
    if len(by_magnitude) > max_violins:
        picks = np.unique(np.round(np.linspace(0, len(by_magnitude) - 1, max_violins)).astype(int))
        by_magnitude = [by_magnitude[i] for i in picks]
    return sorted(by_magnitude)


def _draw_violins(
    ax: Axes,
    df: pd.DataFrame,
    column: str,
    alphas: Sequence[float],
    colors: dict[float, tuple],
    scale: float = 1.0,
):
    """Violins (with an inner box of the central two quartiles) per alpha.

    Groups with fewer than two distinct values have no density to draw; they
    are shown as their individual points only.
    """
    for position, alpha in enumerate(alphas):
        values = df.loc[df["alpha"] == alpha, column].to_numpy(dtype=float) * scale
        values = values[np.isfinite(values)]
        color = colors[alpha]
        if values.size >= 2 and np.ptp(values) > 0:
            body = ax.violinplot(
                [values], positions=[position], widths=0.8,
                showextrema=False, showmedians=False,
            )["bodies"][0]
            body.set_facecolor(color)
            body.set_edgecolor(color)
            body.set_alpha(0.45)
            q1, median, q3 = np.percentile(values, [25, 50, 75])
            # The box goes above the individual points so it stays readable.
            ax.vlines(position, values.min(), values.max(), color="0.25", linewidth=0.8, zorder=4)
            ax.vlines(position, q1, q3, color="0.15", linewidth=4, zorder=4)
            ax.plot(position, median, "o", color="white", markersize=2.5, zorder=5)
        jitter = np.linspace(-0.12, 0.12, values.size) if values.size > 1 else [0.0]
        ax.scatter(position + np.asarray(jitter), values, s=6, color=color,
                   edgecolors="0.2", linewidths=0.3, zorder=3)
    ax.set_xticks(range(len(alphas)))
    ax.set_xticklabels([format_alpha(a) for a in alphas])
    ax.set_xlim(-0.6, len(alphas) - 0.4)
    ax.set_xlabel(ALPHA_LABEL)


@styled
def plot_accuracy(
    runs: pd.DataFrame,
    model: str,
    direction: str = "suppress",
    n_resamples: int = DEFAULT_N_RESAMPLES,
    max_violins: int = 7,
) -> Figure | None:
    """Figure 2 (direction="suppress") / Figure 4 (direction="promote").

    (a) Test accuracy vs alpha with bootstrapped 95% CIs and marks for
    Bonferroni-corrected Welch t-tests against alpha = 0 (▲ above a higher
    accuracy, ▼ below a lower one); (b) violins of the test accuracy of
    individual networks for a subset of alphas, in increasing alpha;
    (c) test accuracy vs mean class selectivity with CIs on both axes.

    Args:
        runs: The `runs` table.
        model: Model to draw (ReLU runs).
        direction: "suppress" draws alpha <= 0, "promote" alpha >= 0.
        n_resamples: Bootstrap resamples per confidence interval.
        max_violins: Largest number of alphas shown as violins in (b).

    Returns:
        The figure, or None without runs of that sign.
    """
    model_runs = select_runs(runs, model)
    if not has_direction(model_runs, direction) or not has_values(model_runs, "test_accuracy"):
        return None
    colors = alpha_colors(model_runs["alpha"])
    significance = significance_by_alpha(accuracy_tests(model_runs))
    shown = with_sign(model_runs, direction)
    accuracy = per_alpha(shown, "test_accuracy", n_resamples)

    figure, (alpha_ax, violin_ax, scatter_ax) = new_figure(3, panel_width=3.3)
    draw_points_vs_alpha(alpha_ax, accuracy, colors, scale=100,
                         line_gid="accuracy_mean", significance=significance)
    set_alpha_axis(alpha_ax, accuracy["alpha"])
    alpha_ax.set_ylabel(ACCURACY_LABEL)

    _draw_violins(violin_ax, shown, "test_accuracy",
                  _violin_alphas(accuracy["alpha"], max_violins), colors, scale=100)
    violin_ax.set_ylabel(ACCURACY_LABEL)

    if has_values(shown, "test_mean_selectivity"):
        selectivity = per_alpha(shown, "test_mean_selectivity", n_resamples)
        draw_scatter_with_ci(scatter_ax, selectivity, accuracy, colors,
                             y_scale=100, significance=significance)
        scatter_ax.set_xlabel(SELECTIVITY_LABEL)
        scatter_ax.set_ylabel(ACCURACY_LABEL)
    else:
        scatter_ax.set_axis_off()

    alpha_legend(figure, accuracy["alpha"], colors)
    figure.suptitle(f"{display_model_name(model)}: test accuracy, {direction_phrase(direction)}")
    add_footnote(
        figure,
        f"{replicates_text(accuracy['n'])}; error bars: bootstrapped 95% CI. "
        + marks_legend("accuracy higher", "lower than at α = 0",
                       "Welch t-test, Bonferroni-corrected over all α of this model"),
    )
    return figure

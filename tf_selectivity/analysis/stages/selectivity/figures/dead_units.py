"""Figure A9: dead units, and the selectivity of the units that are alive."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from tf_selectivity.plots.drawing import (
    alpha_legend,
    draw_layer_profiles,
    draw_points_vs_alpha,
    draw_scatter_with_ci,
)
from tf_selectivity.plots.labels import marks_legend
from tf_selectivity.plots.style import (
    ACCURACY_LABEL,
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
    name_layer_ticks,
)
from tf_selectivity.plots.tables import (
    accuracy_tests,
    has_values,
    per_alpha,
    per_alpha_and_layer,
    select_runs,
    significance_by_alpha,
)

# Smallest top of the dead-unit axis, in percent: a panel of a few tenths of
# a percent should not look like a panel of many dead units.
_MIN_DEAD_PERCENT_RANGE = 1.0


def _alphas_without_dead_units(layers: pd.DataFrame) -> list[float]:
    """Alphas at which no layer of any network has a dead unit."""
    dead = pd.to_numeric(layers["dead_fraction"], errors="coerce")
    measured = layers.assign(dead=dead).dropna(subset=["dead"])
    largest = measured.groupby("alpha")["dead"].max()
    return sorted(float(a) for a, value in largest.items() if value == 0)


def _set_dead_unit_range(ax: Axes, summary: pd.DataFrame, no_dead_units: bool):
    """y from 0 (a fraction is never negative) to above the highest CI band.

    Without any dead unit, every curve lies on 0: the panel says so in its
    free upper part instead of showing an autoscaled range around 0.
    """
    highest = np.nanmax(summary[["mean", "ci_high"]].to_numpy(dtype=float) * 100)
    top = max(_MIN_DEAD_PERCENT_RANGE, 1.08 * highest if np.isfinite(highest) else 0.0)
    ax.set_ylim(0.0, top)
    # Curves at 0 lie on the bottom spine: draw their markers whole.
    for line in ax.lines:
        line.set_clip_on(False)
    if no_dead_units:
        ax.text(0.5, 0.55, "No dead units\n(0% in every layer, α and network)",
                transform=ax.transAxes, ha="center", va="center", fontsize="small",
                color="0.3", gid="no_dead_units_note")


@styled
def plot_dead_units(
    runs: pd.DataFrame,
    layers: pd.DataFrame,
    model: str,
    n_resamples: int = DEFAULT_N_RESAMPLES,
) -> Figure | None:
    """Figure A9: the role of dead units.

    (a) Percentage of dead units per layer for each alpha, on an axis from
    0 (with a note in the panel when there is no dead unit at all, and in
    the footnote the alphas without any); (b) mean class selectivity
    computed without dead units vs alpha; (c) test accuracy vs that
    selectivity, with marks for Bonferroni-corrected Welch t-tests of
    accuracy against alpha = 0 (▲ higher, ▼ lower).

    Args:
        runs: The `runs` table.
        layers: The `layers` table.
        model: Model to draw (ReLU runs).
        n_resamples: Bootstrap resamples per confidence interval.

    Returns:
        The figure, or None without dead-unit data or regularized runs.
    """
    model_runs = select_runs(runs, model)
    model_layers = select_runs(layers, model)
    if model_runs.empty or not (model_runs["alpha"] != 0).any():
        return None
    if not (has_values(model_layers, "dead_fraction")
            and has_values(model_runs, "test_mean_selectivity_alive")):
        return None
    colors = alpha_colors(model_runs["alpha"])
    figure, (layer_ax, alpha_ax, scatter_ax) = new_figure(3, panel_width=3.3)
    dead_summary = per_alpha_and_layer(model_layers, "dead_fraction", n_resamples)
    draw_layer_profiles(layer_ax, dead_summary, colors, scale=100)
    without_dead = _alphas_without_dead_units(model_layers)
    all_without_dead = set(without_dead) == set(dead_summary["alpha"].astype(float))
    _set_dead_unit_range(layer_ax, dead_summary, no_dead_units=all_without_dead)
    name_layer_ticks(layer_ax, model_layers)
    layer_ax.set_ylabel("Dead units (% of layer)")

    selectivity = per_alpha(model_runs, "test_mean_selectivity_alive", n_resamples)
    draw_points_vs_alpha(alpha_ax, selectivity, colors, line_gid="selectivity_alive_mean")
    set_alpha_axis(alpha_ax, selectivity["alpha"])
    alpha_ax.set_ylabel(f"{SELECTIVITY_LABEL}\n(dead units excluded)")

    if has_values(model_runs, "test_accuracy"):
        accuracy = per_alpha(model_runs, "test_accuracy", n_resamples)
        draw_scatter_with_ci(scatter_ax, selectivity, accuracy, colors, y_scale=100,
                             significance=significance_by_alpha(accuracy_tests(model_runs)))
        scatter_ax.set_xlabel(f"{SELECTIVITY_LABEL}\n(dead units excluded)")
        scatter_ax.set_ylabel(ACCURACY_LABEL)
    else:
        scatter_ax.set_axis_off()
    alpha_legend(figure, selectivity["alpha"], colors)
    figure.suptitle(f"{display_model_name(model)}: dead units and selectivity of live units")
    if all_without_dead:
        dead_note = "(a) No dead units in any network. "
    elif without_dead:
        dead_note = (f"(a) No dead units at α = {', '.join(format_alpha(a) for a in without_dead)} "
                     "(curves at 0). ")
    else:
        dead_note = ""
    add_footnote(
        figure,
        f"{replicates_text(selectivity['n'])}; bands / error bars: bootstrapped 95% CI. "
        + dead_note
        + marks_legend("accuracy higher", "lower than at α = 0",
                       "Welch t-test, Bonferroni-corrected"),
    )
    return figure

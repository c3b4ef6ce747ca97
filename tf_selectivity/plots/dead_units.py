"""Figure A9: dead units, and the selectivity of the units that are alive."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from tf_selectivity import stats
from tf_selectivity.plots.drawing import (
    alpha_legend,
    draw_layer_profiles,
    draw_points_vs_alpha,
    draw_scatter_with_ci,
)
from tf_selectivity.plots.style import (
    ACCURACY_LABEL,
    DEFAULT_N_RESAMPLES,
    SELECTIVITY_LABEL,
    add_footnote,
    alpha_colors,
    display_model_name,
    new_figure,
    replicates_text,
    set_alpha_axis,
    styled,
)
from tf_selectivity.plots.tables import (
    accuracy_tests,
    has_values,
    p_by_alpha,
    per_alpha,
    per_alpha_and_layer,
    select_runs,
)


@styled
def plot_dead_units(
    runs: pd.DataFrame,
    layers: pd.DataFrame,
    model: str,
    n_resamples: int = DEFAULT_N_RESAMPLES,
) -> Figure | None:
    """Figure A9: the role of dead units.

    (a) Percentage of dead units per layer for each alpha; (b) mean class
    selectivity computed without dead units vs alpha; (c) test accuracy vs
    that selectivity, with asterisks for Bonferroni-corrected Welch t-tests
    of accuracy against alpha = 0.

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
    draw_layer_profiles(
        layer_ax, per_alpha_and_layer(model_layers, "dead_fraction", n_resamples),
        colors, scale=100,
    )
    layer_ax.set_ylabel("Dead units (% of layer)")

    selectivity = per_alpha(model_runs, "test_mean_selectivity_alive", n_resamples)
    draw_points_vs_alpha(alpha_ax, selectivity, colors, line_gid="selectivity_alive_mean")
    set_alpha_axis(alpha_ax, selectivity["alpha"])
    alpha_ax.set_ylabel(f"{SELECTIVITY_LABEL}\n(dead units excluded)")

    if has_values(model_runs, "test_accuracy"):
        accuracy = per_alpha(model_runs, "test_accuracy", n_resamples)
        draw_scatter_with_ci(scatter_ax, selectivity, accuracy, colors, y_scale=100,
                             p_values=p_by_alpha(accuracy_tests(model_runs)))
        scatter_ax.set_xlabel(f"{SELECTIVITY_LABEL}\n(dead units excluded)")
        scatter_ax.set_ylabel(ACCURACY_LABEL)
    else:
        scatter_ax.set_axis_off()
    alpha_legend(figure, selectivity["alpha"], colors)
    figure.suptitle(f"{display_model_name(model)}: dead units and selectivity of live units")
    add_footnote(
        figure,
        f"{replicates_text(selectivity['n'])}; bands / error bars: bootstrapped 95% CI. "
        f"{stats.stars_legend()}: accuracy vs α = 0 (Welch t-test, Bonferroni-corrected).",
    )
    return figure

"""Figure A10: leaky-ReLU networks (no dead units) do not rescue accuracy."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tf_selectivity.measures import stats
from tf_selectivity.plots.drawing import draw_points_vs_alpha, errorbar_curve
from tf_selectivity.plots.labels import marks_legend
from tf_selectivity.plots.style import (
    ACCURACY_LABEL,
    DEFAULT_N_RESAMPLES,
    SELECTIVITY_LABEL,
    add_footnote,
    alpha_colors,
    display_model_name,
    leaky_slope_colors,
    new_figure,
    replicates_text,
    set_alpha_axis,
    styled,
)
from tf_selectivity.plots.tables import (
    error_bars,
    has_values,
    per_alpha,
    select_runs,
    significance_by_alpha,
)


# The paper's Figure A10b uses leaky-ReLU negative slope 0.5.
DEFAULT_LEAKY_SLOPE = 0.5


def _choose_leaky_slope(slopes: Sequence[float], requested: float | None) -> float:
    """Requested slope if present, else the paper's 0.5, else the largest."""
    slopes = sorted(float(s) for s in slopes)
    for preferred in (requested, DEFAULT_LEAKY_SLOPE):
        if preferred is not None and any(np.isclose(preferred, slopes)):
            return float(preferred)
    return slopes[-1]


@styled
def plot_leaky_relu(
    runs: pd.DataFrame,
    model: str,
    slope: float | None = None,
    n_resamples: int = DEFAULT_N_RESAMPLES,
) -> Figure | None:
    """Figure A10: leaky ReLUs do not rescue accuracy.

    (a) Test accuracy vs alpha for each leaky-ReLU negative slope (green,
    darker = larger slope, as in Figure 3: red and blue mean the sign of
    alpha; the ReLU runs, slope 0, in grey for reference);
    (b) mean class selectivity vs alpha for one slope, with marks for
    Bonferroni-corrected Welch t-tests against alpha = 0 at that slope
    (▲ higher, ▼ lower).

    Args:
        runs: The `runs` table.
        model: Model to draw.
        slope: Negative slope shown in (b); default 0.5 or the largest.
        n_resamples: Bootstrap resamples per confidence interval.

    Returns:
        The figure, or None without leaky-ReLU runs of `model`.
    """
    leaky_runs = select_runs(runs, model, leaky=True)
    if leaky_runs.empty or not has_values(leaky_runs, "test_accuracy"):
        return None
    leaky_runs["leaky_slope"] = leaky_runs["leaky_slope"].astype(float)
    slopes = sorted(leaky_runs["leaky_slope"].unique())
    slope_colors = leaky_slope_colors(slopes)
    figure, (accuracy_ax, selectivity_ax) = new_figure(2, panel_width=3.9)

    relu_runs = select_runs(runs, model)
    curves = [(0.0, relu_runs, "0.55", "ReLU (slope 0)")] if not relu_runs.empty else []
    curves += [(s, leaky_runs.loc[leaky_runs["leaky_slope"] == s], slope_colors[s],
                f"leaky ReLU, slope {s:g}") for s in slopes]
    all_alphas = []
    for curve_slope, curve_runs, color, label in curves:
        summary = per_alpha(curve_runs, "test_accuracy", n_resamples)
        all_alphas += list(summary["alpha"])
        errorbar_curve(accuracy_ax, summary["alpha"], summary["mean"] * 100,
                       yerr=error_bars(summary, 100), fmt="-o", color=color,
                       markersize=3.5, label=label, gid=f"accuracy_slope_{curve_slope:g}")
    set_alpha_axis(accuracy_ax, all_alphas)
    accuracy_ax.set_ylabel(ACCURACY_LABEL)
    accuracy_ax.legend(loc="best")

    chosen = _choose_leaky_slope(slopes, slope)
    chosen_runs = leaky_runs.loc[leaky_runs["leaky_slope"] == chosen]
    if has_values(chosen_runs, "test_mean_selectivity"):
        summary = per_alpha(chosen_runs, "test_mean_selectivity", n_resamples)
        tests = stats.ttests_vs_baseline(chosen_runs, value="test_mean_selectivity")
        draw_points_vs_alpha(selectivity_ax, summary, alpha_colors(summary["alpha"]),
                             line_gid="leaky_selectivity_mean",
                             significance=significance_by_alpha(tests))
        set_alpha_axis(selectivity_ax, summary["alpha"])
        selectivity_ax.set_ylabel(SELECTIVITY_LABEL)
        selectivity_ax.set_title(f"leaky ReLU, negative slope {chosen:g}",
                                 loc="center", fontweight="normal")
    else:
        selectivity_ax.set_axis_off()
    figure.suptitle(f"{display_model_name(model)}: leaky ReLUs (no dead units)")
    add_footnote(
        figure,
        f"{replicates_text(leaky_runs.groupby(['leaky_slope', 'alpha']).size())}; "
        "error bars: bootstrapped 95% CI. (b) "
        + marks_legend("selectivity higher", "lower than at α = 0",
                       "Welch t-test, Bonferroni-corrected"),
    )
    return figure

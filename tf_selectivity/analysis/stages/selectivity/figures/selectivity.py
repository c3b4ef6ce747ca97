"""Figures 1 and A1: class selectivity per layer and vs alpha."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from tf_selectivity.plots.drawing import layer_and_network_figure
from tf_selectivity.plots.style import DEFAULT_N_RESAMPLES, SELECTIVITY_LABEL, styled


@styled
def plot_selectivity(
    runs: pd.DataFrame,
    layers: pd.DataFrame,
    model: str,
    direction: str = "suppress",
    n_resamples: int = DEFAULT_N_RESAMPLES,
) -> Figure | None:
    """Figure 1 (direction="suppress") / Figure A1 (direction="promote").

    (a) Mean class selectivity index per layer for each alpha; (b) mean
    class selectivity over layers (eq. 3, test set) as a function of alpha.
    Dead units count as selectivity 0, as in eq. 3 (Figure A9 leaves them
    out). The line joining the means in (b) has `gid="network_mean"`.

    Args:
        runs: The `runs` table.
        layers: The `layers` table.
        model: Model to draw (ReLU runs).
        direction: "suppress" draws alpha <= 0, "promote" alpha >= 0.
        n_resamples: Bootstrap resamples per confidence interval.

    Returns:
        The figure, or None without runs of that sign.
    """
    return layer_and_network_figure(
        runs, layers, model, direction,
        layer_column="mean_selectivity",
        run_column="test_mean_selectivity",
        y_label=SELECTIVITY_LABEL,
        what="class selectivity index",
        n_resamples=n_resamples,
        dead_units_note="Dead units count as selectivity 0 (eq. 3).",
    )

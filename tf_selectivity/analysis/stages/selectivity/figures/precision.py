"""Figures A7 and A8: the precision metric (Appendix A.5) per layer and vs alpha."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from tf_selectivity.plots.drawing import layer_and_network_figure
from tf_selectivity.plots.style import DEFAULT_N_RESAMPLES, styled


@styled
def plot_precision(
    runs: pd.DataFrame,
    layers: pd.DataFrame,
    model: str,
    direction: str = "suppress",
    n_resamples: int = DEFAULT_N_RESAMPLES,
) -> Figure | None:
    """Figure A7 (direction="suppress") / Figure A8 (direction="promote").

    Same layout as Figure 1 with the precision metric of Appendix A.5
    (fraction of a unit's top-N test images that belong to its most
    frequent class; chance = 1 / number of classes). Means are over live
    units: a dead unit has no most-activating images, so its precision is
    undefined (NaN) and left out, whereas Figure 1 counts it as SI 0.

    Args:
        runs: The `runs` table.
        layers: The `layers` table.
        model: Model to draw (ReLU runs).
        direction: "suppress" draws alpha <= 0, "promote" alpha >= 0.
        n_resamples: Bootstrap resamples per confidence interval.

    Returns:
        The figure, or None without precision data or runs of that sign.
    """
    return layer_and_network_figure(
        runs, layers, model, direction,
        layer_column="mean_precision",
        run_column="mean_precision",
        y_label="Mean precision (fraction of top-N)",
        what="precision metric",
        n_resamples=n_resamples,
        dead_units_note="Precision is averaged over live units: dead units have no "
                        "top-N images and are left out.",
    )

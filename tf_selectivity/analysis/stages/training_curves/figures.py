"""Selectivity while training: SI vs epoch per alpha beside validation accuracy vs epoch.

Drawn from `curves.summarize_training_curves`
(the mean over seeds with a percentile-bootstrap 95% CI per alpha and
epoch). Panel (a): the class selectivity index on the validation split of
one layer, or eq. 3's mean over layers (``layer="mean"``), with the epoch at
which it reaches half its final value marked where given; panel (b): the
validation accuracy. Colours follow the paper's alpha convention.

Where the table holds fractional epochs (runs that recorded the SI every N
steps, ``--selectivity_every_steps``), the epoch axis is symmetric-log:
linear from 0 (the initialization) to 1 epoch, logarithmic beyond, so the
first epoch takes as much width as epochs 1 to 10 and the emergence of
selectivity is visible beside the whole run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.figure import Figure

from tf_selectivity.core.settings import ParameterError
from tf_selectivity.plots.style import (
    add_footnote,
    alpha_colors,
    display_model_name,
    format_alpha,
    new_figure,
    replicates_text,
    styled,
)

__all__ = ["plot_training_curves"]

# The symmetric-log epoch axis: linear below this many epochs, logarithmic above.
LINEAR_EPOCHS = 1.0


@styled
def plot_training_curves(summary: pd.DataFrame, layer: str = "mean", half_rise: pd.DataFrame | None = None,
                         model: str | None = None) -> Figure | None:
    """SI vs epoch per alpha (a) beside validation accuracy vs epoch (b).

    Args:
        summary: a `summarize_training_curves` table.
        layer: the layer drawn in (a): a probe name, or "mean" (eq. 3).
        half_rise: optional `half_rise_epochs` table: the mean over seeds of
            each alpha's half-rise epoch of `layer` is marked on its curve.
        model: the model drawn (default: the table's only model).

    Returns:
        The figure, or None when the table holds no SI of `layer`.

    Raises:
        ParameterError: several models and no `model`, or an unknown one.
    """
    models = sorted(summary["model"].unique())
    if model is None:
        if len(models) > 1:
            raise ParameterError("model", f"must name one of {', '.join(models)}: the table holds several")
        model = models[0] if models else ""
    elif model not in models:
        raise ParameterError("model", f"must be one of {', '.join(models)}; got {model!r}")
    rows = summary[(summary["model"] == model) & (summary["layer"] == layer)]
    if rows.empty or rows["selectivity_mean"].notna().sum() == 0:
        return None
    alphas = sorted(rows["alpha"].unique())
    colors = alpha_colors(alphas)
    figure, (si_ax, accuracy_ax) = new_figure(2, panel_width=3.8, height=3.3)
    for alpha in alphas:
        curve = rows[rows["alpha"] == alpha].sort_values("epoch")
        color, label = colors[alpha], f"α = {format_alpha(alpha)}"
        si = curve.dropna(subset=["selectivity_mean"])
        si_ax.plot(si["epoch"], si["selectivity_mean"], color=color, marker="o" if len(si) < 12 else None,
                   markersize=3, label=label, gid=f"si-{format_alpha(alpha)}")
        si_ax.fill_between(si["epoch"], si["selectivity_ci_low"], si["selectivity_ci_high"], color=color,
                           alpha=0.2, linewidth=0)
        accuracy = curve.dropna(subset=["accuracy_mean"])
        accuracy_ax.plot(accuracy["epoch"], 100 * accuracy["accuracy_mean"], color=color, label=label,
                         gid=f"accuracy-{format_alpha(alpha)}")
        accuracy_ax.fill_between(accuracy["epoch"], 100 * accuracy["accuracy_ci_low"],
                                 100 * accuracy["accuracy_ci_high"], color=color, alpha=0.2, linewidth=0)
        if half_rise is not None:
            epochs = half_rise[(half_rise["model"] == model) & (half_rise["layer"] == layer)
                               & (half_rise["alpha"] == alpha)]["half_rise_epoch"].dropna()
            if len(epochs):
                epoch = float(epochs.mean())
                value = np.interp(epoch, si["epoch"], si["selectivity_mean"])
                si_ax.plot([epoch], [value], marker="|", markersize=12, markeredgewidth=2, color=color,
                           linestyle="none", gid=f"half-rise-{format_alpha(alpha)}")
    name = "mean over layers (eq. 3)" if layer == "mean" else layer
    si_ax.set_title(f"(a) class selectivity, {name}", loc="left")
    si_ax.set_xlabel("Epoch")
    si_ax.set_ylabel("Class selectivity index (validation split)")
    accuracy_ax.set_title("(b) validation accuracy", loc="left")
    accuracy_ax.set_xlabel("Epoch")
    accuracy_ax.set_ylabel("Validation accuracy (%)")
    accuracy_ax.legend(loc="lower right", fontsize=7)
    fractional = bool((rows["epoch"] % 1 != 0).any())
    for ax in (si_ax, accuracy_ax):
        if fractional:
            _symlog_epochs(ax, float(rows["epoch"].max()))
        else:
            ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    if fractional:
        # The accuracy is recorded at epochs' ends only: the same span as the SI's, initialization included.
        accuracy_ax.set_xlim(si_ax.get_xlim())
    seeds = rows.groupby("alpha")["n"].max().tolist()
    note = (f"{display_model_name(model)}. Lines: mean over seeds ({replicates_text(seeds)}); bands: "
            "percentile-bootstrap 95% CIs.")
    if fractional:
        note += (" Epoch axis: linear from 0 (initialization) to 1, logarithmic beyond (symmetric log); "
                 "SI inside an epoch recorded every N steps.")
    if half_rise is not None:
        note += " Ticks on (a): the epoch at which the SI reaches half its final value (mean over seeds)."
    add_footnote(figure, note)
    return figure


def _symlog_epochs(ax, last_epoch: float) -> None:
    """A symmetric-log epoch axis (linear below `LINEAR_EPOCHS`), ticked at 0, 0.5, 1 and 2, 5, 10, ... beyond."""
    ax.set_xscale("symlog", linthresh=LINEAR_EPOCHS, linscale=1.0)
    ticks = [0.0, 0.5, 1.0]
    decade = 1.0
    while decade * 2 <= last_epoch * 1.05:
        ticks += [t for t in (2 * decade, 5 * decade, 10 * decade) if t <= last_epoch * 1.05]
        decade *= 10
    ax.xaxis.set_major_locator(ticker.FixedLocator(ticks))
    ax.xaxis.set_minor_locator(ticker.FixedLocator([0.25, 0.75]))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))

"""The ablation stage's figures: accuracy vs the fraction of a layer's units ablated, and SI vs importance.

`ablation_figures` yields, per condition (model, activation, leaky slope),
``ablation_curves_<model>_<activation>`` (`plot_ablation_curves`) and
``si_vs_importance_<model>_<activation>`` (`plot_si_vs_importance`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tf_selectivity.measures import stats
from tf_selectivity.plots.style import (
    ACCURACY_LABEL,
    DEFAULT_N_RESAMPLES,
    add_footnote,
    alpha_colors,
    condition_label,
    condition_slug,
    file_safe,
    format_alpha,
    new_figure,
    styled,
)

__all__ = ["ORDER_STYLES", "ablation_figures", "layer_groups", "plot_ablation_curves", "plot_si_vs_importance"]

# order -> (label, colour, line style)
ORDER_STYLES = {
    "selective_first": ("most selective first", "#b2182b", "-"),
    "random": ("random order", "0.35", "--"),
    "least_selective_first": ("least selective first", "#2166ac", ":"),
}


def layer_groups(layer_indices, groups: int = 3) -> dict:
    """Layer index -> group name ("early", "middle", "late"): equal thirds of depth."""
    indices = sorted(set(int(i) for i in layer_indices))
    names = ("early", "middle", "late")[:groups] if len(indices) >= groups else ("all",)
    chunks = np.array_split(np.array(indices), len(names))
    return {int(i): name for name, chunk in zip(names, chunks) for i in chunk}


def _per_run(curves: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per (run, alpha, group, order, fraction): random orders
    averaged over their seeds, then over the group's layers."""
    return (curves.groupby(["run_dir", "alpha", "group", "order", "fraction"], sort=True)["accuracy"]
            .mean().reset_index())


@styled
def plot_ablation_curves(curves: pd.DataFrame, n_resamples: int = DEFAULT_N_RESAMPLES) -> Figure | None:
    """Morcos-style panel: test accuracy vs fraction of a layer's units ablated.

    One panel per alpha (columns) and layer group (rows: early / middle /
    late thirds of the probed layers); per order a line of the mean over
    runs (seeds) with its 95% bootstrap CI (a band).

    Args:
        curves: `ablation_curves` rows of ONE condition, with ``run_dir`` and
            ``alpha``.
        n_resamples: bootstrap resamples per CI.

    Returns:
        The figure, or None for an empty table.
    """
    if curves is None or curves.empty:
        return None
    groups = layer_groups(curves["layer_index"])
    data = _per_run(curves.assign(group=curves["layer_index"].map(groups)))
    alphas = sorted(data["alpha"].unique())
    group_names = [g for g in ("early", "middle", "late", "all") if g in set(groups.values())]
    figure, _ = new_figure(1)
    figure.clear()
    figure.set_size_inches(2.9 * len(alphas) + 1.2, 2.5 * len(group_names) + 0.8)
    axes = figure.subplots(len(group_names), len(alphas), squeeze=False, sharex=True, sharey=True)
    for row, group in enumerate(group_names):
        for column, alpha in enumerate(alphas):
            ax = axes[row][column]
            panel = data[(data["group"] == group) & (data["alpha"] == alpha)]
            for order, (label, color, style) in ORDER_STYLES.items():
                lines = panel[panel["order"] == order]
                if lines.empty:
                    continue
                summary = []
                for fraction, values in lines.groupby("fraction"):
                    low, high = stats.bootstrap_ci(values["accuracy"].to_numpy(), n_resamples=n_resamples)
                    summary.append((fraction, values["accuracy"].mean(), low, high))
                fraction, mean, low, high = (np.array(v, float) for v in zip(*summary))
                ax.plot(fraction, mean * 100, style, color=color, marker="o", markersize=3, label=label)
                ax.fill_between(fraction, low * 100, high * 100, color=color, alpha=0.15, linewidth=0)
            ax.set_title(f"α = {format_alpha(alpha)}, {group} layers", fontsize="small")
            if row == len(group_names) - 1:
                ax.set_xlabel("Fraction of the layer's units ablated")
            if column == 0:
                ax.set_ylabel(ACCURACY_LABEL)
    handles, labels = axes[0][0].get_legend_handles_labels()
    # Right of the panels: an "outside upper" legend and the suptitle share
    # the top strip under constrained layout and overlap.
    figure.legend(handles, labels, loc="outside right upper", fontsize="small", frameon=False)
    condition = {k: curves[k].iloc[0] for k in ("model", "activation", "leaky_slope", "condition") if k in curves.columns}
    runs = curves.groupby("alpha")["run_dir"].nunique()
    figure.suptitle(f"{condition_label(condition)}: ablation curves")
    add_footnote(figure, f"Mean over runs ({', '.join(f'α={format_alpha(a)}: {n}' for a, n in runs.items())}) "
                         "of the layers' mean; random orders averaged over their seeds; bands: 95% bootstrap CI.")
    return figure


@styled
def plot_si_vs_importance(importance: pd.DataFrame, max_panels: int = 20) -> Figure | None:
    """Per layer, each unit's SI against its importance (accuracy drop, %).

    Args:
        importance: `unit_importance` rows of ONE condition, with ``alpha``
            (the colour) and ``layer``/``layer_index``.
        max_panels: layers shown (the first ones by depth).

    Returns:
        The figure, or None for an empty table.
    """
    if importance is None or importance.empty:
        return None
    layers = (importance[["layer_index", "layer"]].drop_duplicates().sort_values("layer_index")["layer"]
              .tolist()[:max_panels])
    columns = min(5, len(layers))
    rows = int(np.ceil(len(layers) / columns))
    figure, _ = new_figure(1)
    figure.clear()
    figure.set_size_inches(2.6 * columns + 0.8, 2.3 * rows + 0.8)
    axes = figure.subplots(rows, columns, squeeze=False)
    colors = alpha_colors(importance["alpha"]) if "alpha" in importance.columns else {}
    for ax, layer in zip(axes.flat, layers):
        panel = importance[importance["layer"] == layer]
        for alpha, points in (panel.groupby("alpha") if "alpha" in panel.columns else [(None, panel)]):
            ax.scatter(points["selectivity"], points["importance"] * 100, s=5,
                       color=colors.get(float(alpha), "0.3") if alpha is not None else "0.3",
                       label=None if alpha is None else f"α={format_alpha(alpha)}", alpha=0.7, linewidths=0)
        ax.set_title(str(layer), fontsize="x-small")
    for ax in axes.flat[len(layers):]:
        ax.set_visible(False)
    axes[0][0].set_ylabel("Accuracy drop (% points)")
    axes[-1][0].set_xlabel("Class selectivity index")
    if "alpha" in importance.columns:
        axes[0][0].legend(fontsize="xx-small", markerscale=2)
    condition = {k: importance[k].iloc[0] for k in ("model", "activation", "leaky_slope", "condition") if k in importance.columns}
    figure.suptitle(f"{condition_label(condition)}: selectivity vs single-unit importance")
    add_footnote(figure, "Each point a unit of one run, ablated alone (the drop of overall test accuracy).")
    return figure


def ablation_figures(curves, importance, n_resamples):
    """Yields ``(name, figure)``: per condition, the ablation curves and SI vs importance.

    Args:
        curves: the ``ablation_curves`` table, or None.
        importance: the ``unit_importance`` table, or None.
        n_resamples: bootstrap resamples per CI of the curves.
    """
    for frame, prefix, plot in ((curves, "ablation_curves", lambda f: plot_ablation_curves(f, n_resamples)),
                                (importance, "si_vs_importance", plot_si_vs_importance)):
        for condition, rows in stats.split_by_condition(frame) if frame is not None else []:
            yield file_safe(f"{prefix}_{condition.get('model', 'model')}_{condition_slug(condition)}"), plot(rows)

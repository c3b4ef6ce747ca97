"""The over-training figures: each network measure against the epoch of its kept checkpoint.

One figure per condition (a window of alpha is a condition of its own, so
each window gets its figure), one line per alpha: the mean over seeds at
each kept epoch with a percentile-bootstrap 95% CI band. The epoch axis is
symmetric-logarithmic: logarithmic above the smallest positive epoch kept,
linear below it, so that epoch 0 (the initialization) is drawn at 0, at the
left end of that linear stretch (the footnote says so).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.figure import Figure

from tf_selectivity.measures import stats
from tf_selectivity.plots.drawing import drawn_figures
from tf_selectivity.plots.style import (
    add_footnote,
    alpha_colors,
    condition_label,
    condition_slug,
    file_safe,
    format_alpha,
    new_figure,
    replicates_text,
    styled,
)

__all__ = ["PANELS", "summarize_over_seeds", "plot_over_training", "over_training_figures"]

# (column of over_training_network, panel title, y label, scale) in panel order.
PANELS = (
    ("mean_selectivity", "mean SI (eq. 3)", "Class selectivity index", 1.0),
    ("selective_fraction", "selective above chance", "Units selective above chance (%)", 100.0),
    ("si_importance_spearman", "SI vs ablation importance", "Spearman ρ (mean over layers)", 1.0),
    ("nonlinearity", "nonlinearity of the logits", "Midpoint nonlinearity (0: linear)", 1.0),
    ("accuracy", "accuracy", "Accuracy on the images measured (%)", 100.0),
)


def summarize_over_seeds(network: pd.DataFrame, n_resamples: int) -> pd.DataFrame:
    """Per alpha, epoch and measure: ``n``, ``mean`` and the bootstrap 95% CI over runs."""
    rows = []
    for (alpha, epoch), frame in network.groupby(["alpha", "epoch"], sort=True):
        for column, *_ in PANELS:
            values = frame[column].to_numpy(float)
            values = values[np.isfinite(values)]
            low, high = stats.bootstrap_ci(values, n_resamples=n_resamples) if len(values) > 1 else (np.nan, np.nan)
            rows.append({"alpha": float(alpha), "epoch": float(epoch), "measure": column, "n": len(values),
                         "mean": float(values.mean()) if len(values) else np.nan, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)


@styled
def plot_over_training(network: pd.DataFrame, n_resamples: int, title: str = "") -> Figure | None:
    """The measures of `network` (one condition's rows of ``over_training_network``) vs epoch, per alpha.

    Returns:
        The figure, or None when the table has no rows.
    """
    if network.empty:
        return None
    summary = summarize_over_seeds(network, n_resamples)
    panels = [panel for panel in PANELS if summary.loc[summary["measure"] == panel[0], "mean"].notna().any()]
    alphas = sorted(summary["alpha"].unique())
    colors = alpha_colors(alphas)
    epochs = np.sort(summary["epoch"].unique())
    positive = epochs[epochs > 0]
    figure, axes = new_figure(len(panels), panel_width=3.0, height=3.0)
    for ax, (column, name, label, scale) in zip(axes, panels):
        rows = summary[summary["measure"] == column]
        for alpha in alphas:
            curve = rows[(rows["alpha"] == alpha) & rows["mean"].notna()].sort_values("epoch")
            ax.plot(curve["epoch"], scale * curve["mean"], color=colors[alpha], marker="o", markersize=3,
                    label=f"α = {format_alpha(alpha)}", gid=f"{column}-{format_alpha(alpha)}")
            ax.fill_between(curve["epoch"], scale * curve["ci_low"], scale * curve["ci_high"], color=colors[alpha],
                            alpha=0.2, linewidth=0)
        if len(positive):
            ax.set_xscale("symlog", linthresh=float(positive.min()), linscale=0.5)
            if len(epochs) <= 8:
                ax.set_xticks(epochs)
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
            ax.xaxis.set_minor_locator(ticker.NullLocator())
        ax.set_title(f"{ax.get_title(loc='left')} {name}", loc="left")
        ax.set_xlabel("Epoch (log scale)")
        ax.set_ylabel(label)
    axes[0].legend(loc="best", fontsize=7)
    if title:
        figure.suptitle(title)
    counts = network.groupby("alpha")["run_dir"].nunique().tolist()
    add_footnote(figure, f"Lines: mean over seeds at each kept checkpoint ({replicates_text(counts)}); bands: "
                         "percentile-bootstrap 95% CIs. Epoch axis logarithmic above the smallest kept epoch "
                         f"({positive.min():g}), linear below it: epoch 0, the initialization, is drawn at 0."
                 if len(positive) else f"Lines: mean over seeds ({replicates_text(counts)}).")
    return figure


def over_training_figures(network: pd.DataFrame, n_resamples: int):
    """``(name, figure)`` per condition of `network`: ``over_training_<model>_<condition>``."""
    builders = {}
    for condition, frame in stats.split_by_condition(network):
        name = f"over_training_{file_safe(condition.get('model', 'model'))}_{condition_slug(condition)}"
        builders[name] = (
            lambda frame=frame, condition=condition: plot_over_training(frame, n_resamples, condition_label(condition)))
    return drawn_figures(builders)

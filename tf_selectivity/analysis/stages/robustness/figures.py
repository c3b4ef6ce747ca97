"""Robustness figures: accuracy under corruptions and attacks and
early-layer dimensionality, against alpha and against class selectivity.

Each function takes one model's tables of the robustness stage --
`robustness` (one row per run and input kind, with the run's condition
columns) or its per-run summary -- and returns a Figure, or None when there
is nothing to draw. Means over replicate networks (seeds) with percentile-
bootstrap 95% CIs, as in the paper's figures.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tf_selectivity.measures import stats
from tf_selectivity.plots.drawing import alpha_legend
from tf_selectivity.analysis.stages.robustness.claims import early_layers
from tf_selectivity.plots.style import (
    ACCURACY_LABEL,
    SELECTIVITY_LABEL,
    add_footnote,
    alpha_colors,
    display_model_name,
    file_safe,
    new_figure,
    replicates_text,
    set_alpha_axis,
    styled,
)

__all__ = ["group_figures", "robustness_vs_alpha", "robustness_vs_selectivity", "dimensionality_vs_alpha"]


def _mean_ci(values, n_resamples):
    values = np.asarray(values, dtype=float)
    low, high = stats.bootstrap_ci(values, n_resamples=n_resamples)
    return values.mean(), low, high


def _line_vs_alpha(ax, frame, column, label, color, n_resamples, scale=100.0):
    """Per-alpha mean over runs with a CI band; `frame` has one row per run."""
    rows = [(alpha, *_mean_ci(group[column], n_resamples)) for alpha, group in frame.groupby("alpha")]
    if not rows:
        return
    alphas, means, lows, highs = (np.array(v, dtype=float) for v in zip(*rows))
    ax.plot(alphas, means * scale, "o-", color=color, label=label, markersize=3, linewidth=1)
    ax.fill_between(alphas, lows * scale, highs * scale, color=color, alpha=0.15, linewidth=0)


def _colors(count, colormap="viridis"):
    from matplotlib import colormaps

    cmap = colormaps[colormap]
    return [cmap(v) for v in np.linspace(0.1, 0.85, max(count, 1))]


@styled
def robustness_vs_alpha(robustness: pd.DataFrame, n_resamples: int = 10_000):
    """(a) mean corruption accuracy per severity, (b) FGSM and (c) PGD
    accuracy per epsilon, each vs alpha."""
    corrupted = robustness[(robustness["kind"] == "corruption") & (robustness["name"] == "mean")
                           & robustness["severity"].notna()]
    panels = [("corruption", corrupted)] if len(corrupted) else []
    panels += [(a, robustness[robustness["kind"] == a]) for a in ("fgsm", "pgd") if (robustness["kind"] == a).any()]
    if not panels:
        return None
    figure, axes = new_figure(len(panels))
    alphas = sorted(robustness["alpha"].astype(float).unique())
    for ax, (kind, rows) in zip(axes, panels):
        key = "severity" if kind == "corruption" else "epsilon"
        levels = sorted(rows[key].unique())
        for level, color in zip(levels, _colors(len(levels))):
            label = f"severity {int(level)}" if kind == "corruption" else f"ε = {level:g}/255"
            _line_vs_alpha(ax, rows[rows[key] == level], "accuracy", label, color, n_resamples)
        set_alpha_axis(ax, alphas)
        ax.set_ylabel(ACCURACY_LABEL)
        ax.set_title(("mean over corruptions" if kind == "corruption" else kind.upper()), loc="right")
        ax.legend(fontsize=6)
    model = display_model_name(str(robustness["model"].iloc[0]))
    figure.suptitle(f"{model}: robustness vs α")
    counts = robustness.groupby("alpha")["run_dir"].nunique()
    add_footnote(figure, f"Mean over networks ({replicates_text(counts)}) with bootstrapped 95% CIs.")
    return figure


@styled
def robustness_vs_selectivity(summary: pd.DataFrame, claims: pd.DataFrame | None = None):
    """Per-run mean corruption accuracy, FGSM and PGD accuracy vs mean SI,
    with Spearman's rho (bootstrap CI) in each panel's title."""
    columns = [(c, t) for c, t in (("mean_corruption_accuracy", "corruptions"), ("fgsm_accuracy", "FGSM"),
                                   ("pgd_accuracy", "PGD")) if summary[c].notna().any()]
    if not columns:
        return None
    figure, axes = new_figure(len(columns))
    alphas = sorted(summary["alpha"].astype(float).unique())
    colors = alpha_colors(alphas)
    for ax, (column, title) in zip(axes, columns):
        ax.scatter(summary["mean_selectivity"], summary[column] * 100,
                   color=[colors[float(a)] for a in summary["alpha"]], s=14)
        r = stats.spearman_with_ci(summary["mean_selectivity"], summary[column])
        ax.set_title(f"{title}: ρ = {r['rho']:.2f} [{r['low']:.2f}, {r['high']:.2f}]", loc="right", fontsize=7)
        ax.set_xlabel(SELECTIVITY_LABEL)
        ax.set_ylabel(ACCURACY_LABEL)
    alpha_legend(figure, alphas, colors)
    figure.suptitle(f"{display_model_name(str(summary['model'].iloc[0]))}: robustness vs class selectivity")
    add_footnote(figure, f"One point per network (n = {len(summary)}). Adversarial accuracy averaged "
                         "over ε > 0. ρ: Spearman, bootstrapped 95% CI over networks.")
    return figure


@styled
def dimensionality_vs_alpha(dimensionality: pd.DataFrame, early: list, n_resamples: int = 10_000):
    """Early layers' participation ratio vs alpha: clean, corrupted (mean
    over corruptions and severities), each attack at its largest epsilon."""
    rows = dimensionality[dimensionality["layer_index"].isin(early)]
    if rows.empty:
        return None
    series = [("clean", rows[rows["kind"] == "clean"])]
    if (rows["kind"] == "corruption").any():
        series.append(("corruptions", rows[rows["kind"] == "corruption"]))
    for attack in ("fgsm", "pgd"):
        adv = rows[rows["kind"] == attack]
        if len(adv):
            top = adv["epsilon"].max()
            series.append((f"{attack.upper()} ε = {top:g}/255", adv[adv["epsilon"] == top]))
    figure, (ax,) = new_figure(1, panel_width=4.4)
    for (label, frame), color in zip(series, _colors(len(series), "plasma")):
        per_run = frame.groupby(["run_dir", "alpha"], as_index=False)["participation_ratio"].mean()
        _line_vs_alpha(ax, per_run, "participation_ratio", label, color, n_resamples, scale=1.0)
    set_alpha_axis(ax, sorted(rows["alpha"].astype(float).unique()))
    ax.set_ylabel("Participation ratio (early layers)")
    ax.legend(fontsize=6)
    figure.suptitle(f"{display_model_name(str(rows['model'].iloc[0]))}: early-layer dimensionality")
    add_footnote(figure, f"Early layers: probe indices {', '.join(map(str, early))} (the first third); mean over "
                         "those layers per network, then over networks with bootstrapped 95% CIs.")
    return figure


def group_figures(name: str, robustness: pd.DataFrame, dimensionality: pd.DataFrame, summary: pd.DataFrame,
                  n_resamples: int):
    """Yields ``(figure name, figure or None)`` of one model group (``figR_<kind>_<name>``)."""
    drawn = {
        "figR_robustness_vs_alpha": lambda: robustness_vs_alpha(robustness, n_resamples=n_resamples),
        "figR_robustness_vs_selectivity": lambda: robustness_vs_selectivity(summary),
        "figR_dimensionality_vs_alpha": lambda: dimensionality_vs_alpha(
            dimensionality, early_layers(dimensionality), n_resamples=n_resamples),
    }
    for kind, draw in drawn.items():
        yield f"{kind}_{file_safe(name)}", draw()

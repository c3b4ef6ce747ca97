"""Figure 3: CCA distance to unregularized networks vs between replicates."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from tf_selectivity import stats
from tf_selectivity.plots.drawing import draw_points_vs_alpha
from tf_selectivity.plots.style import (
    DEFAULT_N_RESAMPLES,
    add_footnote,
    alpha_colors,
    display_model_name,
    format_alpha,
    new_figure,
    set_alpha_axis,
    set_layer_axis,
    styled,
)
from tf_selectivity.plots.tables import has_values

WITHIN_CCA_COLOR = "#b2abd2"  # Light purple, rho(alpha_r, alpha_r).
TO_BASELINE_CCA_COLOR = "#542788"  # Dark purple, rho(alpha_r, alpha_0).

# The paper uses alpha = -10 as its Figure 3a example.
DEFAULT_CCA_EXAMPLE_ALPHA = -10.0


def _cca_for_model(
    cca: pd.DataFrame | None, model: str, method: str | None
) -> tuple[pd.DataFrame, str]:
    """CCA rows of one model and one method (PWCCA preferred, as in the paper)."""
    if cca is None or cca.empty:
        return pd.DataFrame(), ""
    rows = cca.loc[cca["model"].astype(str) == str(model)].copy()
    if rows.empty:
        return rows, ""
    if "method" in rows.columns:
        methods = sorted(rows["method"].dropna().astype(str).unique())
        if method is None:
            method = "pwcca" if "pwcca" in methods else (methods[0] if methods else "")
        rows = rows.loc[rows["method"].astype(str) == method]
    rows["alpha"] = rows["alpha"].astype(float)
    return rows, method or ""


def _choose_cca_example_alpha(cca_rows: pd.DataFrame, requested: float | None) -> float | None:
    """The treated alpha of Figure 3a.

    The requested alpha if it has both comparisons, otherwise the one
    closest (in log |alpha|) to the paper's alpha = -10, negatives first.
    """
    comparisons = cca_rows.groupby("alpha")["comparison"].agg(set)
    candidates = [
        float(a) for a, c in comparisons.items()
        if {"within", "to_baseline"} <= c and float(a) != 0
    ]
    if not candidates:
        return None
    if requested is not None and any(np.isclose(requested, candidates)):
        return float(requested)
    return min(
        candidates,
        key=lambda a: (a > 0, abs(math.log10(abs(a)) - math.log10(abs(DEFAULT_CCA_EXAMPLE_ALPHA)))),
    )


def _rho_label(alpha: float, other: str) -> str:
    alpha_text = format_alpha(alpha)
    return rf"$\rho(\alpha_{{{alpha_text}}}, \alpha_{{{other}}})$"


@styled
def plot_cca(
    cca: pd.DataFrame | None,
    cca_ratio: pd.DataFrame | None,
    model: str,
    alpha: float | None = None,
    method: str | None = None,
    n_resamples: int = DEFAULT_N_RESAMPLES,
) -> Figure | None:
    """Figure 3: is selectivity suppressed or merely rotated off-axis?

    (a) Mean CCA distance per layer between replicate networks at one alpha,
    rho(alpha, alpha), and between those networks and alpha = 0 networks,
    rho(alpha, alpha_0), with bootstrapped 95% CI bands over network pairs.
    (b) CCA distance ratio rho(alpha, alpha_0) : rho(alpha, alpha) averaged
    over layers, vs alpha, with the panel-(a) alpha circled; asterisks mark
    paired t-tests (over layers) of to-baseline vs within distances,
    Bonferroni-corrected over alphas.

    Args:
        cca: The pairwise `cca` table (needed for panel a), or None.
        cca_ratio: The `cca_ratio` table (panel b); derived from `cca` when
            None.
        model: Model to draw.
        alpha: Treated alpha of panel (a); default -10 or the closest
            available.
        method: "pwcca" or "svcca"; default PWCCA when present.
        n_resamples: Bootstrap resamples per confidence interval.

    Returns:
        The figure, or None when there is no CCA data for `model`.
    """
    cca_rows, method = _cca_for_model(cca, model, method)
    if cca_ratio is None and not cca_rows.empty:
        cca_ratio = stats.cca_distance_ratio(cca_rows)
    ratio_rows = (
        cca_ratio.loc[cca_ratio["model"].astype(str) == str(model)].copy()
        if cca_ratio is not None and not cca_ratio.empty
        else pd.DataFrame()
    )
    example_alpha = _choose_cca_example_alpha(cca_rows, alpha) if not cca_rows.empty else None
    has_ratio = has_values(ratio_rows, "ratio")
    if example_alpha is None and not has_ratio:
        return None

    n_panels = int(example_alpha is not None) + int(has_ratio)
    figure, axes = new_figure(n_panels, panel_width=3.9)
    method_name = method.upper() if method else "CCA"
    if example_alpha is not None:
        _draw_cca_profiles(axes[0], cca_rows, example_alpha, method_name, n_resamples)
    if has_ratio:
        _draw_cca_ratio(axes[-1], ratio_rows, example_alpha, n_resamples)
    figure.suptitle(
        f"{display_model_name(model)}: {method_name} distance to unregularized "
        "networks vs between replicates"
    )
    add_footnote(
        figure,
        "Bands / error bars: bootstrapped 95% CI (over network pairs in a, over "
        f"layers in b). {stats.stars_legend()}: paired t-test over layers of "
        "to-baseline vs within distance, Bonferroni-corrected over α.",
    )
    return figure


def _draw_cca_profiles(
    ax: Axes, cca_rows: pd.DataFrame, alpha: float, method_name: str, n_resamples: int
):
    """Figure 3a: distance per layer, within vs to baseline, with CI bands."""
    at_alpha = cca_rows.loc[np.isclose(cca_rows["alpha"], alpha)]
    styles = (
        ("within", WITHIN_CCA_COLOR, _rho_label(alpha, format_alpha(alpha)) + " replicates"),
        ("to_baseline", TO_BASELINE_CCA_COLOR, _rho_label(alpha, "0") + " vs. α = 0"),
    )
    for comparison, color, label in styles:
        rows = at_alpha.loc[at_alpha["comparison"] == comparison]
        summary = stats.summarize_by_group(rows, "distance", "layer_index",
                                           n_resamples=n_resamples)
        summary = summary.loc[summary["n"] > 0]
        x = summary["layer_index"].to_numpy(dtype=float)
        mean = summary["mean"].to_numpy(dtype=float)
        ax.plot(x, mean, "-o", color=color, markersize=3, label=label,
                gid=f"cca_{comparison}")
        has_interval = summary["n"].to_numpy() >= 2
        ax.fill_between(
            x,
            np.where(has_interval, summary["ci_low"], mean),
            np.where(has_interval, summary["ci_high"], mean),
            color=color, alpha=0.3, linewidth=0,
        )
    set_layer_axis(ax, at_alpha["layer_index"])
    ax.set_ylabel(rf"Mean {method_name} distance $\rho$")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left")


def _draw_cca_ratio(
    ax: Axes, ratio_rows: pd.DataFrame, example_alpha: float | None, n_resamples: int
):
    """Figure 3b: layer-averaged distance ratio vs alpha."""
    summary = stats.cca_ratio_summary(ratio_rows, n_resamples=n_resamples)
    summary = summary.loc[summary["n_layers"] > 0]
    as_group_summary = summary.rename(columns={"mean_ratio": "mean", "n_layers": "n"})
    colors = alpha_colors(summary["alpha"])
    draw_points_vs_alpha(
        ax, as_group_summary, colors, line_gid="cca_ratio_mean",
        p_values=dict(zip(summary["alpha"], summary["p_bonferroni"])),
    )
    if example_alpha is not None:
        example = summary.loc[np.isclose(summary["alpha"], example_alpha)]
        ax.scatter(example["alpha"], example["mean_ratio"], s=170, facecolors="none",
                   edgecolors=TO_BASELINE_CCA_COLOR, linewidths=1.5, zorder=4)
    ax.axhline(1.0, color="0.5", linestyle="--", linewidth=0.8)
    # Labelled on the line rather than in a legend, which sat on the points and
    # their significance stars.
    ax.text(0.99, 1.0, "ratio = 1: no larger than between seeds", transform=ax.get_yaxis_transform(),
            ha="right", va="bottom", fontsize="small", color="0.4")
    set_alpha_axis(ax, summary["alpha"])
    ax.set_ylabel(r"CCA distance ratio $\rho(\alpha, \alpha_0) : \rho(\alpha, \alpha)$")

"""Figure 3: CCA distance to unregularized networks vs between replicates.

One series per condition (activation and leaky slope) of the model: a
leaky-ReLU run is compared with the alpha = 0 runs of its own slope, and the
numbers of different conditions are never averaged together. Panel (b)
shows `stats.cca_ratio_summary`, the numbers of the report and of the
analysis command's `cca_tests` table.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from tf_selectivity.measures import stats
from tf_selectivity.plots.drawing import draw_marks_at_points, draw_points_vs_alpha, errorbar_curve
from tf_selectivity.plots.labels import REFERENCE_LABEL_GID, marks_legend
from tf_selectivity.plots.style import (
    DEFAULT_N_RESAMPLES,
    add_footnote,
    alpha_colors,
    condition_label,
    condition_slug,
    display_model_name,
    format_alpha,
    leaky_slope_colors,
    new_figure,
    set_alpha_axis,
    set_layer_axis,
    styled,
    name_layer_ticks,
)
from tf_selectivity.plots.tables import error_bars, has_values, significance_by_alpha

WITHIN_CCA_COLOR = "#b2abd2"  # Light purple, rho(alpha_r, alpha_r).
TO_BASELINE_CCA_COLOR = "#542788"  # Dark purple, rho(alpha_r, alpha_0).

# How figures and report name each measure of `--similarity`.
MEASURE_NAMES = {
    "pwcca": "PWCCA",
    "svcca": "SVCCA",
    "mean_cca": "mean CCA",
    "linear_cka": "linear CKA",
    "debiased_cka": "debiased CKA",
    "procrustes": "Procrustes",
}

# The paper uses alpha = -10 as its Figure 3a example.
DEFAULT_CCA_EXAMPLE_ALPHA = -10.0

# With several conditions, ReLU keeps the purple of the paper and the
# leaky-ReLU slopes get greens (`style.leaky_slope_colors`).
_CONDITION_MARKERS = ("o", "s", "^", "D", "v", "P")
# Figure 3's series are per condition of the model (activation, and the training
# protocol where conditions differ in it: `plots.style.condition_protocol`); model
# and method are fixed per figure (the model is kept for the series' names).
_SERIES_COLUMNS = ("model", "activation", "leaky_slope", "condition")


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


def _ratio_for_model(
    cca_ratio: pd.DataFrame | None, model: str, method: str | None
) -> pd.DataFrame:
    """`cca_ratio` rows of one model and, where the table says, one method."""
    if cca_ratio is None or cca_ratio.empty:
        return pd.DataFrame()
    rows = cca_ratio.loc[cca_ratio["model"].astype(str) == str(model)].copy()
    if "method" in rows.columns and not rows.empty:
        methods = sorted(rows["method"].dropna().astype(str).unique())
        if not method:
            method = "pwcca" if "pwcca" in methods else methods[0]
        rows = rows.loc[rows["method"].astype(str) == method]
    rows["alpha"] = rows["alpha"].astype(float)
    return rows


def _condition_styles(conditions: list[dict]) -> dict[str, tuple]:
    """Colour and marker of each condition's series, by `condition_slug`."""
    slugs = list(dict.fromkeys(condition_slug(c) for c in conditions))
    if len(slugs) == 1:
        return {slugs[0]: (TO_BASELINE_CCA_COLOR, _CONDITION_MARKERS[0])}
    slopes = {condition_slug(c): float(c.get("leaky_slope", 0)) for c in conditions}
    leaky = [slug for slug in slugs if "leaky" in slug]
    by_slope = leaky_slope_colors(slopes[slug] for slug in leaky)
    colors = {slug: by_slope[slopes[slug]] for slug in leaky}
    return {
        slug: (
            colors.get(slug, TO_BASELINE_CCA_COLOR),
            _CONDITION_MARKERS[index % len(_CONDITION_MARKERS)],
        )
        for index, slug in enumerate(slugs)
    }


def _condition_legend(
    figure: Figure,
    conditions: list[dict],
    styles: dict[str, tuple],
    with_line_styles: bool,
    with_ratio_line: bool,
):
    """One legend for both panels: a colour and marker per condition."""
    labels = {condition_slug(c): condition_label(c, with_model=False) for c in conditions}
    handles = [
        Line2D([], [], color=color, marker=marker, markersize=4) for color, marker in styles.values()
    ]
    names = [labels[slug] for slug in styles]
    if with_line_styles:
        handles += [Line2D([], [], color="0.35", linestyle="-"),
                    Line2D([], [], color="0.35", linestyle="--")]
        names += ["(a) vs. α = 0 networks", "(a) between replicates"]
    if with_ratio_line:
        handles.append(Line2D([], [], color="0.5", linestyle="--", linewidth=0.8))
        names.append("(b) ratio = 1: no larger\nthan between seeds")
    # Centred: the long title takes the upper right, the footnote the bottom.
    figure.legend(handles, names, loc="outside center right", handlelength=2.2)


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
    over layers, vs alpha, with the panel-(a) alpha circled; marks show
    paired t-tests (over layers) of to-baseline vs within distances,
    Bonferroni-corrected over the alphas of each condition
    (`stats.cca_ratio_summary`): ▲ above a point whose distance to alpha = 0
    networks is larger than between its replicates, ▼ below one where it
    is smaller.

    With runs of several conditions (ReLU and leaky-ReLU slopes, other
    training protocols) each panel has one labelled series per condition
    (within distances dashed in (a)).
    The data lines carry `gid`s `cca_within_<slug>`, `cca_to_baseline_<slug>`
    and `cca_ratio_mean_<slug>`, with `plots.style.condition_slug` ("relu",
    "leaky_relu_0.5").

    Args:
        cca: The pairwise `cca` table (needed for panel a), or None.
        cca_ratio: The `cca_ratio` table (panel b); derived from `cca` when
            None.
        model: Model to draw.
        alpha: Treated alpha of panel (a); default -10 or the closest
            available.
        method: A measure of the tables' `method` column ("pwcca", "svcca",
            "linear_cka", "debiased_cka", "procrustes"); default PWCCA when
            present.
        n_resamples: Bootstrap resamples per confidence interval.

    Returns:
        The figure, or None when there is no CCA data for `model`.
    """
    cca_rows, method = _cca_for_model(cca, model, method)
    if cca_ratio is None and not cca_rows.empty:
        cca_ratio = stats.cca_distance_ratio(cca_rows)
    ratio_rows = _ratio_for_model(cca_ratio, model, method)
    example_alpha = _choose_cca_example_alpha(cca_rows, alpha) if not cca_rows.empty else None
    has_ratio = has_values(ratio_rows, "ratio")
    if example_alpha is None and not has_ratio:
        return None

    profiles = stats.split_by_condition(cca_rows, _SERIES_COLUMNS) if example_alpha is not None else []
    ratios = (
        stats.split_by_condition(stats.cca_ratio_summary(ratio_rows, n_resamples=n_resamples),
                                 _SERIES_COLUMNS)
        if has_ratio else []
    )
    styles = _condition_styles([condition for condition, _ in profiles + ratios])
    n_panels = int(example_alpha is not None) + int(has_ratio)
    figure, axes = new_figure(n_panels, panel_width=3.9)
    method_name = MEASURE_NAMES.get(method, method.upper()) if method else "CCA"
    if example_alpha is not None:
        _draw_cca_profiles(axes[0], profiles, example_alpha, method_name, styles, n_resamples)
    if has_ratio:
        _draw_cca_ratio(axes[-1], ratios, example_alpha, styles, method_name)
    several = len(styles) > 1
    if several:
        _condition_legend(figure, [condition for condition, _ in profiles + ratios], styles,
                          with_line_styles=example_alpha is not None, with_ratio_line=has_ratio)
    figure.suptitle(
        f"{display_model_name(model)}: {method_name} distance to unregularized "
        "networks vs between replicates"
    )
    add_footnote(
        figure,
        "Bands / error bars: bootstrapped 95% CI (over network pairs in a, over "
        "layers in b). (b) "
        + marks_legend("distance to α = 0 networks larger", "smaller than between replicates",
                       "paired t-test over layers, Bonferroni-corrected over the α of each "
                       "condition")
        + (" Each activation is compared with the α = 0 networks of "
                        "the same activation." if several else ""),
    )
    return figure


def _draw_cca_profiles(
    ax: Axes,
    conditions: list[tuple[dict, pd.DataFrame]],
    alpha: float,
    method_name: str,
    styles: dict[str, tuple],
    n_resamples: int,
):
    """Figure 3a: distance per layer, within vs to baseline, with CI bands."""
    several = len(styles) > 1
    layer_indices = []
    for condition, rows in conditions:
        at_alpha = rows.loc[np.isclose(rows["alpha"], alpha)]
        if at_alpha.empty:
            continue
        layer_indices += list(at_alpha["layer_index"])
        slug = condition_slug(condition)
        if several:
            name = condition_label(condition, with_model=False)
            color = styles[slug][0]
            series = (("within", color, "--", f"{name}, replicates"),
                      ("to_baseline", color, "-", f"{name}, vs. α = 0"))
        else:
            series = (
                ("within", WITHIN_CCA_COLOR, "-",
                 _rho_label(alpha, format_alpha(alpha)) + " replicates"),
                ("to_baseline", TO_BASELINE_CCA_COLOR, "-", _rho_label(alpha, "0") + " vs. α = 0"),
            )
        for comparison, color, linestyle, label in series:
            summary = stats.summarize_by_group(
                at_alpha.loc[at_alpha["comparison"] == comparison], "distance", "layer_index",
                n_resamples=n_resamples,
            )
            summary = summary.loc[summary["n"] > 0]
            x = summary["layer_index"].to_numpy(dtype=float)
            mean = summary["mean"].to_numpy(dtype=float)
            ax.plot(x, mean, marker=styles[slug][1], linestyle=linestyle, color=color, markersize=3,
                    label=label, gid=f"cca_{comparison}_{slug}")
            has_interval = summary["n"].to_numpy() >= 2
            ax.fill_between(
                x,
                np.where(has_interval, summary["ci_low"], mean),
                np.where(has_interval, summary["ci_high"], mean),
                color=color, alpha=0.15 if several else 0.3, linewidth=0,
            )
    set_layer_axis(ax, layer_indices)
    name_layer_ticks(ax, pd.concat([rows.loc[np.isclose(rows["alpha"], alpha)] for _, rows in conditions]))
    ax.set_ylabel(rf"Mean {method_name} distance $\rho$")
    ax.set_ylim(bottom=0)
    if several:
        # The figure legend names the conditions and line styles.
        ax.set_title(f"α = {format_alpha(alpha)}", loc="center", fontweight="normal")
    else:
        # Wherever the curves are not (distances usually grow with depth,
        # but need not).
        ax.legend(loc="best")


def _draw_cca_ratio(
    ax: Axes,
    conditions: list[tuple[dict, pd.DataFrame]],
    example_alpha: float | None,
    styles: dict[str, tuple],
    method_name: str = "CCA",
):
    """Figure 3b: layer-averaged distance ratio vs alpha, one series per condition."""
    several = len(styles) > 1
    all_alphas = []
    for condition, summary in conditions:
        summary = summary.loc[summary["n_layers"] > 0]
        as_group_summary = summary.rename(columns={"mean_ratio": "mean", "n_layers": "n"})
        slug = condition_slug(condition)
        color, marker = styles[slug]
        significance = significance_by_alpha(summary, direction="mean_difference")
        if several:
            errors = error_bars(as_group_summary)
            errorbar_curve(ax, summary["alpha"], summary["mean_ratio"], yerr=errors,
                           fmt=f"-{marker}", color=color, markersize=4,
                           markeredgecolor="white", markeredgewidth=0.5,
                           label=condition_label(condition, with_model=False),
                           gid=f"cca_ratio_mean_{slug}")
            draw_marks_at_points(ax, summary["alpha"], summary["mean_ratio"], errors,
                                 significance, summary["alpha"], color=color)
        else:
            draw_points_vs_alpha(ax, as_group_summary, alpha_colors(summary["alpha"]),
                                 line_gid=f"cca_ratio_mean_{slug}", significance=significance)
        if example_alpha is not None:
            example = summary.loc[np.isclose(summary["alpha"], example_alpha)]
            ax.scatter(example["alpha"], example["mean_ratio"], s=170, facecolors="none",
                       edgecolors=color, linewidths=1.5, zorder=4)
        all_alphas += list(summary["alpha"])
    ax.axhline(1.0, color="0.5", linestyle="--", linewidth=0.8)
    if not several:
        # Labelled on the line rather than in a legend, which sat on the points and
        # their marks (with several conditions: in the figure legend). The label
        # goes to a free end of the line once the figure is laid out
        # (`labels.keep_labels_clear`).
        ax.text(0.99, 1.0, "ratio = 1: no larger than between seeds",
                transform=ax.get_yaxis_transform(), ha="right", va="bottom",
                fontsize="small", color="0.4", gid=REFERENCE_LABEL_GID)
    set_alpha_axis(ax, all_alphas)
    # PWCCA and SVCCA keep the paper's label; other measures name themselves.
    measure = "CCA" if method_name in ("PWCCA", "SVCCA", "mean CCA") else method_name
    # Two lines: "debiased CKA distance ratio ..." on one is taller than the panel.
    ax.set_ylabel(measure + " distance ratio\n" + r"$\rho(\alpha, \alpha_0) : \rho(\alpha, \alpha)$")

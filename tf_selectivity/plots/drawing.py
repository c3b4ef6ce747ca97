"""Drawing primitives shared by the figures.

Per-alpha points with CIs and significance marks, error-bar curves that tests can
find by `gid`, per-layer profiles with CI bands, scatter plots with CIs on
both axes, the shared alpha legend, and the two-panel layout of Figures 1,
A1, A7 and A8 (a quantity per layer, and its mean over layers vs alpha).
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from tf_selectivity.plots.labels import draw_significance_marks
from tf_selectivity.plots.style import (
    add_footnote,
    alpha_colors,
    display_model_name,
    format_alpha,
    new_figure,
    replicates_text,
    set_alpha_axis,
    set_layer_axis,
    name_layer_ticks,
)
from tf_selectivity.plots.tables import (
    error_bars,
    has_direction,
    has_values,
    per_alpha,
    per_alpha_and_layer,
    select_runs,
    with_sign,
)


def draw_points_vs_alpha(
    ax: Axes,
    summary: pd.DataFrame,
    colors: dict[float, tuple],
    scale: float = 1.0,
    line_gid: str | None = None,
    significance: dict[float, tuple[float, float]] | None = None,
):
    """Per-alpha means with CIs, joined by a thin grey line.

    Args:
        ax: Target axes (x = alpha).
        summary: Output of `per_alpha` (columns alpha, n, mean, ci_*).
        colors: Alpha colour mapping.
        scale: Multiplier for the values (100 for percentages).
        line_gid: `gid` of the joining line, so tests and scripts can find
            the plotted means.
        significance: Optional (corrected p-value, direction of the effect)
            per alpha (`tables.significance_by_alpha`), drawn as marks above
            the error bar of a higher value, below that of a lower one.
    """
    alphas = summary["alpha"].to_numpy(dtype=float)
    means = summary["mean"].to_numpy(dtype=float) * scale
    ax.plot(alphas, means, color="0.6", linewidth=1.0, zorder=1, gid=line_gid)
    errors = error_bars(summary, scale)
    for index, alpha in enumerate(alphas):
        ax.errorbar(
            alpha,
            means[index],
            yerr=errors[:, index : index + 1],
            fmt="o",
            color=colors[alpha],
            markeredgecolor="white",
            markeredgewidth=0.5,
            zorder=3,
        )
    if significance:
        draw_marks_at_points(ax, alphas, means, errors, significance, alphas)


def draw_marks_at_points(
    ax: Axes,
    xs: Sequence[float],
    means: Sequence[float],
    errors: np.ndarray,
    significance: dict[float, tuple[float, float]],
    keys: Sequence[float],
    color="black",
):
    """Significance marks at points with asymmetric error bars `errors` (2, n).

    `keys` look up each point's (p-value, direction) in `significance`.
    """
    means = np.asarray(means, dtype=float)
    lows = np.where(np.isfinite(errors[0]), means - errors[0], means)
    highs = np.where(np.isfinite(errors[1]), means + errors[1], means)
    tests = [significance.get(float(key), (math.nan, math.nan)) for key in keys]
    draw_significance_marks(ax, xs, lows, highs, [p for p, _ in tests],
                            [direction for _, direction in tests], color=color)


def errorbar_curve(ax: Axes, x, y, *, gid: str, **kwargs):
    """`ax.errorbar` whose data line, and only it, carries `gid`.

    (`errorbar(gid=...)` would tag the caps and bars too, so the plotted
    means could not be looked up unambiguously.)
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    container = ax.errorbar(x, y, **kwargs)
    container.lines[0].set_gid(gid)
    return container


def draw_layer_profiles(
    ax: Axes, summary: pd.DataFrame, colors: dict[float, tuple], scale: float = 1.0
):
    """One line per alpha across layers, with a shaded 95% CI band."""
    for alpha, rows in summary.groupby("alpha", sort=True):
        rows = rows.sort_values("layer_index")
        x = rows["layer_index"].to_numpy(dtype=float)
        mean = rows["mean"].to_numpy(dtype=float) * scale
        color = colors[float(alpha)]
        ax.plot(x, mean, "-o", color=color, markersize=2.5, linewidth=1.2,
                label=format_alpha(alpha), gid=f"layer_profile_{format_alpha(alpha)}")
        has_interval = rows["n"].to_numpy() >= 2
        if has_interval.any():
            ax.fill_between(
                x,
                np.where(has_interval, rows["ci_low"] * scale, mean),
                np.where(has_interval, rows["ci_high"] * scale, mean),
                color=color,
                alpha=0.18,
                linewidth=0,
            )
    set_layer_axis(ax, summary["layer_index"])


def draw_scatter_with_ci(
    ax: Axes,
    x_summary: pd.DataFrame,
    y_summary: pd.DataFrame,
    colors: dict[float, tuple],
    x_scale: float = 1.0,
    y_scale: float = 1.0,
    significance: dict[float, tuple[float, float]] | None = None,
):
    """Per-alpha (x mean, y mean) with CIs on both axes (e.g. Figure 2c).

    Points are drawn in increasing alpha; `significance` as in
    `draw_points_vs_alpha` (marks above / below the y error bar).
    """
    merged = x_summary.merge(y_summary, on="alpha", suffixes=("_x", "_y")).sort_values("alpha")
    for _, row in merged.iterrows():
        alpha = float(row["alpha"])
        x_error = error_bars(
            pd.DataFrame({"n": [row["n_x"]], "mean": [row["mean_x"]],
                          "ci_low": [row["ci_low_x"]], "ci_high": [row["ci_high_x"]]}),
            x_scale,
        )
        y_error = error_bars(
            pd.DataFrame({"n": [row["n_y"]], "mean": [row["mean_y"]],
                          "ci_low": [row["ci_low_y"]], "ci_high": [row["ci_high_y"]]}),
            y_scale,
        )
        ax.errorbar(
            row["mean_x"] * x_scale,
            row["mean_y"] * y_scale,
            xerr=x_error,
            yerr=y_error,
            fmt="o",
            color=colors[alpha],
            markeredgecolor="white",
            markeredgewidth=0.5,
            label=format_alpha(alpha),
        )
        if significance:
            draw_marks_at_points(ax, [row["mean_x"] * x_scale], [row["mean_y"] * y_scale],
                                 y_error, significance, [alpha])


def alpha_legend(figure: Figure, alphas: Iterable[float], colors: dict[float, tuple]):
    """One shared legend of alpha colours, outside the panels on the right."""
    # Increasing alpha, as on every alpha axis (left to right) and in the
    # drawing order of the curves and points.
    ordered = sorted(set(float(a) for a in alphas))
    handles = [
        Line2D([], [], marker="o", linestyle="-", color=colors[a], markersize=4)
        for a in ordered
    ]
    figure.legend(
        handles,
        [format_alpha(a) for a in ordered],
        title="α",
        loc="outside right upper",
        ncols=1 if len(ordered) <= 16 else 2,
        handlelength=1.5,
    )


def direction_phrase(direction: str) -> str:
    """How the figure title names the sign of alpha shown."""
    if direction == "suppress":
        return "regularizing against selectivity (α ≤ 0)"
    return "regularizing for selectivity (α ≥ 0)"


def layer_and_network_figure(
    runs: pd.DataFrame,
    layers: pd.DataFrame,
    model: str,
    direction: str,
    layer_column: str,
    run_column: str,
    y_label: str,
    what: str,
    n_resamples: int,
    dead_units_note: str = "",
) -> Figure | None:
    """Panel (a): `layer_column` per layer per alpha; (b): `run_column` vs alpha.

    `dead_units_note` is added to the footnote: selectivity and precision
    treat dead units differently, and each figure says how.
    """
    model_runs = select_runs(runs, model)
    model_layers = select_runs(layers, model)
    if not has_direction(model_runs, direction):
        return None
    if not (has_values(model_runs, run_column) and has_values(model_layers, layer_column)):
        return None
    colors = alpha_colors(model_runs["alpha"])
    runs_shown = with_sign(model_runs, direction)
    layers_shown = with_sign(model_layers, direction)

    figure, (layer_ax, alpha_ax) = new_figure(2)
    draw_layer_profiles(
        layer_ax, per_alpha_and_layer(layers_shown, layer_column, n_resamples), colors
    )
    name_layer_ticks(layer_ax, layers_shown)
    layer_ax.set_ylabel(y_label)
    network_summary = per_alpha(runs_shown, run_column, n_resamples)
    draw_points_vs_alpha(alpha_ax, network_summary, colors, line_gid="network_mean")
    set_alpha_axis(alpha_ax, network_summary["alpha"])
    alpha_ax.set_ylabel(f"{y_label}\n(mean over layers)")
    alpha_legend(figure, network_summary["alpha"], colors)
    figure.suptitle(f"{display_model_name(model)}: {what}, {direction_phrase(direction)}")
    add_footnote(
        figure,
        f"{replicates_text(network_summary['n'])}; "
        "bands and error bars: bootstrapped 95% CI over networks."
        + (f" {dead_units_note}" if dead_units_note else ""),
    )
    return figure


def drawn_figures(builders: Mapping[str, Callable[[], Figure | None]], raise_errors: bool = False):
    """Draws each figure of `builders` (name -> function returning a figure, or None when the
    tables hold nothing to draw); yields (name, figure) for each drawn.

    A figure that fails to draw is reported as a `RuntimeWarning` and the
    others are still drawn, so one bad table costs one figure; with
    `raise_errors` the error propagates.
    """
    for name, build in builders.items():
        try:
            figure = build()
        except Exception as error:  # noqa: BLE001 - reported, see docstring.
            if raise_errors:
                raise
            warnings.warn(f"Figure {name} could not be drawn: {error!r}", RuntimeWarning)
            continue
        if figure is not None:
            yield name, figure

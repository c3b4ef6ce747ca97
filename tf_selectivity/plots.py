"""The paper's figures, drawn from the analysis tables.

Every figure function takes the plain tables written by the analysis command
(`runs`, `layers`, `cca`, `cca_ratio`, see `tf_selectivity.stats`), draws
one figure of "Selectivity considered harmful" (Leavitt & Morcos) for one
model, and returns a `matplotlib.figure.Figure`, or `None` when the tables
hold nothing to draw it from (e.g. no positive alphas, no leaky-ReLU runs,
no CCA table). `draw_all` draws everything drawable and saves each figure as
PNG and PDF.

Conventions, as in the paper:
  * Colour intensity encodes |alpha|: blues for alpha < 0 (selectivity
    suppressed), reds for alpha > 0 (promoted), near-black for alpha = 0.
  * Error bars and shaded bands are percentile-bootstrapped 95% confidence
    intervals of the mean over replicate networks (seeds). Groups with a
    single replicate are drawn as points without an interval.
  * Asterisks mark Bonferroni-corrected significance against alpha = 0
    (Welch t-test, corrected over all alphas of the model), or between
    alpha < 0 and alpha > 0 at equal |alpha| (Wilcoxon rank-sum).
  * Alpha axes use a symmetric-log scale because alphas span -100 .. +5
    including 0.
  * The main figures use the ReLU runs; Figure A10 uses the leaky-ReLU runs.

Figures are built with `matplotlib.figure.Figure` and the Agg canvas
directly, so nothing here touches the caller's pyplot state or backend.
"""

from __future__ import annotations

import functools
import math
import re
import textwrap
import warnings
from pathlib import Path
from typing import Callable, Iterable, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import colormaps, ticker
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from tf_selectivity import stats

# Typographic defaults for publication figures, applied only while a figure
# is being built or saved (`matplotlib.rc_context` restores the caller's
# settings afterwards). TrueType (42) fonts keep PDF text editable.
FIGURE_STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 7.5,
    "legend.title_fontsize": 8,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.8,
    "lines.linewidth": 1.4,
    "lines.markersize": 5,
    "errorbar.capsize": 2,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
}

DEFAULT_FORMATS = ("png", "pdf")
DEFAULT_DPI = 200
DEFAULT_N_RESAMPLES = stats.DEFAULT_N_RESAMPLES

BASELINE_COLOR = "0.15"
NEGATIVE_COLOR = "#2166ac"  # alpha < 0 when a single colour is needed.
POSITIVE_COLOR = "#b2182b"  # alpha > 0 when a single colour is needed.
WITHIN_CCA_COLOR = "#b2abd2"  # Light purple, rho(alpha_r, alpha_r).
TO_BASELINE_CCA_COLOR = "#542788"  # Dark purple, rho(alpha_r, alpha_0).
MODEL_COLORS = ("#17becf", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b")

# Colour-map range used for |alpha| intensity; the extreme ends of "Blues"
# and "Reds" are too pale to see on white or indistinguishable from black.
_INTENSITY_RANGE = (0.35, 0.95)

# The paper uses alpha = -10 as its Figure 3a example.
DEFAULT_CCA_EXAMPLE_ALPHA = -10.0
# The paper's Figure A10b uses leaky-ReLU negative slope 0.5.
DEFAULT_LEAKY_SLOPE = 0.5

MODEL_DISPLAY_NAMES = {
    "resnet20": "ResNet20",
    "resnet": "ResNet",
    "vgg16": "VGG16",
    "vgg": "VGG",
}

ALPHA_LABEL = "Regularization scale α"
ACCURACY_LABEL = "Test accuracy (%)"
SELECTIVITY_LABEL = "Mean class selectivity index"
LAYER_LABEL = "Layer (depth index, input side = 0)"


# --------------------------------------------------------------------------
# Small helpers: names, colours, axes.
# --------------------------------------------------------------------------


def display_model_name(model: str) -> str:
    """Name of a model as written in figures and reports (e.g. "ResNet20")."""
    return MODEL_DISPLAY_NAMES.get(str(model).lower(), str(model))


def format_alpha(alpha: float) -> str:
    """Compact text for an alpha value: -1.0 -> "-1", 0.25 -> "0.25"."""
    return f"{float(alpha):g}"


def _file_safe(text: str) -> str:
    """Makes `text` usable in a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_") or "model"


def _intensity_colors(
    values: Sequence[float], colormap_name: str
) -> dict[float, tuple]:
    """Colours of increasing intensity for increasing `values`.

    Intensity follows the rank of the value rather than the value itself:
    alphas are spaced roughly logarithmically, and rank spacing keeps every
    alpha distinguishable.
    """
    colormap = colormaps[colormap_name]
    ordered = sorted(set(float(v) for v in values))
    if len(ordered) == 1:
        return {ordered[0]: colormap(0.75)}
    low, high = _INTENSITY_RANGE
    return {
        value: colormap(low + (high - low) * rank / (len(ordered) - 1))
        for rank, value in enumerate(ordered)
    }


def alpha_colors(alphas: Iterable[float]) -> dict[float, tuple]:
    """Maps each alpha to its colour: blues (< 0), reds (> 0), black (0).

    Intensity grows with |alpha| within each sign. Build the mapping from
    all alphas of a model so that a given alpha keeps its colour across
    figures.

    Args:
        alphas: Regularization scales (duplicates are fine).

    Returns:
        Dict from float alpha to an RGBA tuple (or a grey string for 0).
    """
    alphas = [float(a) for a in alphas]
    colors: dict[float, tuple] = {}
    negative = [a for a in alphas if a < 0]
    positive = [a for a in alphas if a > 0]
    if negative:
        by_magnitude = _intensity_colors([abs(a) for a in negative], "Blues")
        colors.update({-magnitude: color for magnitude, color in by_magnitude.items()})
    if positive:
        colors.update(_intensity_colors(positive, "Reds"))
    if any(a == 0 for a in alphas):
        colors[0.0] = matplotlib.colors.to_rgba(BASELINE_COLOR)
    return colors


def _symlog_linthresh(alphas: Iterable[float]) -> float:
    """Linear range of the symlog alpha axis: the smallest non-zero |alpha|."""
    magnitudes = [abs(float(a)) for a in alphas if float(a) != 0]
    if not magnitudes:
        return 0.1
    # Round down to a power of ten so decade ticks land on the usual alphas.
    return 10.0 ** math.floor(math.log10(min(magnitudes)))


def _alpha_tick_formatter() -> ticker.Formatter:
    return ticker.FuncFormatter(lambda value, _: f"{value:g}")


def set_alpha_axis(ax: Axes, alphas: Iterable[float], label: str = ALPHA_LABEL):
    """Formats the x axis of `ax` as a symmetric-log alpha axis.

    A log scale cannot show alpha = 0 or mix signs, and a linear scale
    squeezes -0.1 .. 1 into a sliver next to -100, so the axis is linear
    within the smallest |alpha| and logarithmic beyond.

    Args:
        ax: Axes whose x axis shows alpha.
        alphas: The alphas plotted (to choose the linear range).
        label: Axis label.
    """
    alphas = [float(a) for a in alphas]
    ax.set_xscale("symlog", linthresh=_symlog_linthresh(alphas), linscale=0.6)
    if alphas:
        # Pad the limits in the transformed space: the default margins leave
        # the extreme alphas (and their asterisks) on the spine.
        transform = ax.xaxis.get_transform()
        low, high = transform.transform(np.array([min(alphas), max(alphas)]))
        pad = 0.06 * max(high - low, 1.0)
        ax.set_xlim(transform.inverted().transform(np.array([low - pad, high + pad])))
    ax.xaxis.set_major_formatter(_alpha_tick_formatter())
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel(label)


def _set_layer_axis(ax: Axes, layer_indices: Iterable[int]):
    """Integer layer ticks (every layer when few enough to stay readable)."""
    indices = sorted(set(int(i) for i in layer_indices))
    if indices and len(indices) <= 12:
        ax.set_xticks(indices)
    else:
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_xlabel(LAYER_LABEL)


def _name_layer_ticks(ax: Axes, rows: pd.DataFrame, max_named: int = 12):
    """Layer names (the probes' names without "probe_") as the ticks of a
    layer axis, when the rows name at most `max_named` layers; deeper
    networks keep depth indices (names are in the `layers` table)."""
    if rows is None or not {"layer", "layer_index"} <= set(rows.columns):
        return
    names = rows[["layer_index", "layer"]].drop_duplicates().sort_values("layer_index")
    if names.empty or len(names) > max_named or names["layer_index"].duplicated().any():
        return
    labels = [str(n)[len("probe_"):] if str(n).startswith("probe_") else str(n) for n in names["layer"]]
    ax.set_xticks(names["layer_index"].to_numpy(dtype=float))
    ax.set_xticklabels(labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=6.5)
    ax.set_xlabel("Layer (input side first)")


def _new_figure(n_panels: int, panel_width: float = 3.6, height: float = 3.2):
    """A figure with `n_panels` side-by-side axes on its own Agg canvas."""
    figure = Figure(figsize=(panel_width * n_panels + 1.2, height), layout="constrained")
    FigureCanvasAgg(figure)
    # Leave a strip at the bottom for the footnote (constrained layout does
    # not manage free-floating figure text).
    figure.get_layout_engine().set(rect=(0.0, 0.06, 1.0, 0.94), w_pad=0.06)
    axes = figure.subplots(1, n_panels, squeeze=False)[0]
    for letter, ax in zip("abcdefgh", axes):
        ax.set_title(f"({letter})", loc="left")
    return figure, list(axes)


def _add_footnote(figure: Figure, text: str):
    """Small grey note under the panels (sample sizes, CI and test legend)."""
    width_inches, height_inches = figure.get_size_inches()
    # About 19 characters of 6.5 pt text fit in an inch.
    lines = textwrap.wrap(text, width=max(40, int(width_inches * 19)))
    figure.text(0.01, 0.01, "\n".join(lines), fontsize=6.5, color="0.35",
                ha="left", va="bottom")
    line_height = 8.5 / 72 / height_inches  # 6.5 pt font, in figure fraction.
    bottom = 0.02 + line_height * len(lines)
    figure.get_layout_engine().set(rect=(0.0, bottom, 1.0, 1.0 - bottom))


def _replicates_text(counts: Iterable[int]) -> str:
    """ "n = 20 networks per α", "n = 2–3 networks per α (...)"."""
    counts = [int(c) for c in counts if c > 0]
    if not counts:
        return ""
    low, high = min(counts), max(counts)
    span = f"{low}" if low == high else f"{low}–{high}"
    text = f"n = {span} network{'s' if high > 1 else ''} per α"
    if low == 1:
        text += " (no interval where n = 1)"
    return text


def _styled(function: Callable) -> Callable:
    """Builds a figure under `FIGURE_STYLE` without leaking the style."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(FIGURE_STYLE):
            return function(*args, **kwargs)

    return wrapper


# --------------------------------------------------------------------------
# Table selection and summaries.
# --------------------------------------------------------------------------


def _has_values(df: pd.DataFrame | None, column: str) -> bool:
    """Whether `df` has `column` with at least one finite value."""
    if df is None or column not in df.columns or df.empty:
        return False
    return bool(np.isfinite(pd.to_numeric(df[column], errors="coerce")).any())


def _is_leaky(df: pd.DataFrame) -> pd.Series:
    """Rows trained with leaky ReLU (the Figure A10 control experiment)."""
    if "activation" in df.columns:
        return df["activation"].astype(str).str.lower().str.contains("leaky")
    if "leaky_slope" in df.columns:
        return df["leaky_slope"].fillna(0).astype(float) > 0
    return pd.Series(False, index=df.index)


def select_runs(
    df: pd.DataFrame | None, model: str | None, leaky: bool = False
) -> pd.DataFrame:
    """Rows of `runs` / `layers` for one model and activation family.

    Args:
        df: The `runs` or `layers` table (may be None).
        model: Model name, or None for all models.
        leaky: False selects the ReLU runs (main figures), True the
            leaky-ReLU runs.

    Returns:
        The selected rows (a copy, with a float `alpha` column).
    """
    if df is None or df.empty:
        return pd.DataFrame(columns=[] if df is None else df.columns)
    mask = _is_leaky(df) == leaky
    if model is not None:
        mask &= df["model"].astype(str) == str(model)
    selected = df.loc[mask].copy()
    selected["alpha"] = selected["alpha"].astype(float)
    return selected


def _with_sign(df: pd.DataFrame, direction: str) -> pd.DataFrame:
    """Rows with alpha <= 0 ("suppress") or alpha >= 0 ("promote")."""
    if direction == "suppress":
        return df.loc[df["alpha"] <= 0]
    if direction == "promote":
        return df.loc[df["alpha"] >= 0]
    raise ValueError(f'`direction` must be "suppress" or "promote", got {direction!r}.')


def _has_direction(df: pd.DataFrame, direction: str) -> bool:
    """Whether any alpha of the requested sign is present."""
    if df.empty:
        return False
    if direction == "suppress":
        return bool((df["alpha"] < 0).any())
    return bool((df["alpha"] > 0).any())


def _per_alpha(
    df: pd.DataFrame, column: str, n_resamples: int, group: str = "alpha"
) -> pd.DataFrame:
    """Mean and bootstrapped CI of `column` per alpha, groups without data dropped."""
    summary = stats.summarize_by_group(
        df, column, group=group, n_resamples=n_resamples
    )
    return summary.loc[summary["n"] > 0].reset_index(drop=True)


def _per_alpha_and_layer(
    layers: pd.DataFrame, column: str, n_resamples: int
) -> pd.DataFrame:
    """Mean and bootstrapped CI over seeds per alpha and layer."""
    summary = stats.summarize_by_group(
        layers, column, group=["alpha", "layer_index"], n_resamples=n_resamples
    )
    return summary.loc[summary["n"] > 0].reset_index(drop=True)


def _accuracy_tests(relu_runs: pd.DataFrame) -> pd.DataFrame:
    """Welch t-tests of test accuracy vs alpha = 0, over all alphas of a model.

    Correcting over every alpha of the model (not only those in one panel)
    keeps the asterisks of Figures 2, 4 and A9 consistent with the report.
    """
    return stats.ttests_vs_baseline(relu_runs, value="test_accuracy", group="alpha")


def _p_by_alpha(tests: pd.DataFrame) -> dict[float, float]:
    return {float(a): float(p) for a, p in zip(tests["alpha"], tests["p_bonferroni"])}


def _error(summary: pd.DataFrame, scale: float = 1.0) -> np.ndarray | None:
    """Asymmetric error-bar array (2, n) from CI columns; None where n < 2.

    Single-replicate groups get no bar (NaN), as their "interval" would be
    a misleading zero-width line.
    """
    mean = summary["mean"].to_numpy(dtype=float) * scale
    low = summary["ci_low"].to_numpy(dtype=float) * scale
    high = summary["ci_high"].to_numpy(dtype=float) * scale
    has_interval = summary["n"].to_numpy() >= 2
    lower = np.where(has_interval, mean - low, np.nan)
    upper = np.where(has_interval, high - mean, np.nan)
    return np.vstack([np.clip(lower, 0, None), np.clip(upper, 0, None)])


# --------------------------------------------------------------------------
# Drawing primitives.
# --------------------------------------------------------------------------


def _draw_points_vs_alpha(
    ax: Axes,
    summary: pd.DataFrame,
    colors: dict[float, tuple],
    scale: float = 1.0,
    line_gid: str | None = None,
    p_values: dict[float, float] | None = None,
):
    """Per-alpha means with CIs, joined by a thin grey line.

    Args:
        ax: Target axes (x = alpha).
        summary: Output of `_per_alpha` (columns alpha, n, mean, ci_*).
        colors: Alpha colour mapping.
        scale: Multiplier for the values (100 for percentages).
        line_gid: `gid` of the joining line, so tests and scripts can find
            the plotted means.
        p_values: Optional corrected p-value per alpha, drawn as asterisks.
    """
    alphas = summary["alpha"].to_numpy(dtype=float)
    means = summary["mean"].to_numpy(dtype=float) * scale
    ax.plot(alphas, means, color="0.6", linewidth=1.0, zorder=1, gid=line_gid)
    errors = _error(summary, scale)
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
    if p_values:
        tops = np.where(np.isfinite(errors[1]), means + errors[1], means)
        _draw_stars(ax, alphas, tops, [p_values.get(a, math.nan) for a in alphas])


def _errorbar_curve(ax: Axes, x, y, *, gid: str, **kwargs):
    """`ax.errorbar` whose data line, and only it, carries `gid`.

    (`errorbar(gid=...)` would tag the caps and bars too, so the plotted
    means could not be looked up unambiguously.)
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    container = ax.errorbar(x, y, **kwargs)
    container.lines[0].set_gid(gid)
    return container


def _draw_stars(
    ax: Axes, xs: Sequence[float], tops: Sequence[float], p_values: Sequence[float]
):
    """Asterisks above points whose corrected p-value is significant."""
    for x, top, p in zip(xs, tops, p_values):
        marker = stats.significance_stars(p)
        if marker:
            # Room above the highest point for the asterisks (text is not
            # part of the data limits).
            ax.set_ymargin(0.12)
            ax.annotate(
                marker,
                (x, top),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=9,
                fontweight="bold",
            )


def _draw_layer_profiles(
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
    _set_layer_axis(ax, summary["layer_index"])


def _draw_scatter_with_ci(
    ax: Axes,
    x_summary: pd.DataFrame,
    y_summary: pd.DataFrame,
    colors: dict[float, tuple],
    x_scale: float = 1.0,
    y_scale: float = 1.0,
    p_values: dict[float, float] | None = None,
):
    """Per-alpha (x mean, y mean) with CIs on both axes (e.g. Figure 2c)."""
    merged = x_summary.merge(y_summary, on="alpha", suffixes=("_x", "_y"))
    for _, row in merged.iterrows():
        alpha = float(row["alpha"])
        x_error = _error(
            pd.DataFrame({"n": [row["n_x"]], "mean": [row["mean_x"]],
                          "ci_low": [row["ci_low_x"]], "ci_high": [row["ci_high_x"]]}),
            x_scale,
        )
        y_error = _error(
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
        if p_values:
            top = row["mean_y"] * y_scale + np.nan_to_num(y_error[1, 0])
            _draw_stars(ax, [row["mean_x"] * x_scale], [top], [p_values.get(alpha, math.nan)])


def _draw_violins(
    ax: Axes,
    df: pd.DataFrame,
    column: str,
    alphas: Sequence[float],
    colors: dict[float, tuple],
    scale: float = 1.0,
):
    """Violins (with an inner box of the central two quartiles) per alpha.

    Groups with fewer than two distinct values have no density to draw; they
    are shown as their individual points only.
    """
    for position, alpha in enumerate(alphas):
        values = df.loc[df["alpha"] == alpha, column].to_numpy(dtype=float) * scale
        values = values[np.isfinite(values)]
        color = colors[alpha]
        if values.size >= 2 and np.ptp(values) > 0:
            body = ax.violinplot(
                [values], positions=[position], widths=0.8,
                showextrema=False, showmedians=False,
            )["bodies"][0]
            body.set_facecolor(color)
            body.set_edgecolor(color)
            body.set_alpha(0.45)
            q1, median, q3 = np.percentile(values, [25, 50, 75])
            # The box goes above the individual points so it stays readable.
            ax.vlines(position, values.min(), values.max(), color="0.25", linewidth=0.8, zorder=4)
            ax.vlines(position, q1, q3, color="0.15", linewidth=4, zorder=4)
            ax.plot(position, median, "o", color="white", markersize=2.5, zorder=5)
        jitter = np.linspace(-0.12, 0.12, values.size) if values.size > 1 else [0.0]
        ax.scatter(position + np.asarray(jitter), values, s=6, color=color,
                   edgecolors="0.2", linewidths=0.3, zorder=3)
    ax.set_xticks(range(len(alphas)))
    ax.set_xticklabels([format_alpha(a) for a in alphas])
    ax.set_xlim(-0.6, len(alphas) - 0.4)
    ax.set_xlabel(ALPHA_LABEL)


def _alpha_legend(figure: Figure, alphas: Iterable[float], colors: dict[float, tuple]):
    """One shared legend of alpha colours, outside the panels on the right."""
    # Baseline first, then suppression and promotion by increasing |alpha|.
    ordered = sorted(set(float(a) for a in alphas), key=lambda a: (a != 0, a > 0, abs(a)))
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


def _violin_alphas(alphas: Sequence[float], max_violins: int) -> list[float]:
    """Evenly spaced subset (in |alpha| rank) that keeps 0 and the extreme."""
    ordered = sorted(set(float(a) for a in alphas), key=abs)
    if len(ordered) <= max_violins:
        return ordered
    picks = np.unique(np.round(np.linspace(0, len(ordered) - 1, max_violins)).astype(int))
    return [ordered[i] for i in picks]


def _direction_phrase(direction: str) -> str:
    """How the figure title names the sign of alpha shown."""
    if direction == "suppress":
        return "regularizing against selectivity (α ≤ 0)"
    return "regularizing for selectivity (α ≥ 0)"


# --------------------------------------------------------------------------
# The figures.
# --------------------------------------------------------------------------


def _layer_and_network_figure(
    runs: pd.DataFrame,
    layers: pd.DataFrame,
    model: str,
    direction: str,
    layer_column: str,
    run_column: str,
    y_label: str,
    what: str,
    n_resamples: int,
) -> Figure | None:
    """Panel (a): `layer_column` per layer per alpha; (b): `run_column` vs alpha."""
    model_runs = select_runs(runs, model)
    model_layers = select_runs(layers, model)
    if not _has_direction(model_runs, direction):
        return None
    if not (_has_values(model_runs, run_column) and _has_values(model_layers, layer_column)):
        return None
    colors = alpha_colors(model_runs["alpha"])
    runs_shown = _with_sign(model_runs, direction)
    layers_shown = _with_sign(model_layers, direction)

    figure, (layer_ax, alpha_ax) = _new_figure(2)
    _draw_layer_profiles(
        layer_ax, _per_alpha_and_layer(layers_shown, layer_column, n_resamples), colors
    )
    _name_layer_ticks(layer_ax, layers_shown)
    layer_ax.set_ylabel(y_label)
    network_summary = _per_alpha(runs_shown, run_column, n_resamples)
    _draw_points_vs_alpha(alpha_ax, network_summary, colors, line_gid="network_mean")
    set_alpha_axis(alpha_ax, network_summary["alpha"])
    alpha_ax.set_ylabel(f"{y_label}\n(mean over layers)")
    _alpha_legend(figure, network_summary["alpha"], colors)
    figure.suptitle(f"{display_model_name(model)}: {what}, {_direction_phrase(direction)}")
    _add_footnote(
        figure,
        f"{_replicates_text(network_summary['n'])}; "
        "bands and error bars: bootstrapped 95% CI over networks.",
    )
    return figure


@_styled
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
    The line joining the means in (b) has `gid="network_mean"`.

    Args:
        runs: The `runs` table.
        layers: The `layers` table.
        model: Model to draw (ReLU runs).
        direction: "suppress" draws alpha <= 0, "promote" alpha >= 0.
        n_resamples: Bootstrap resamples per confidence interval.

    Returns:
        The figure, or None without runs of that sign.
    """
    return _layer_and_network_figure(
        runs, layers, model, direction,
        layer_column="mean_selectivity",
        run_column="test_mean_selectivity",
        y_label=SELECTIVITY_LABEL,
        what="class selectivity index",
        n_resamples=n_resamples,
    )


@_styled
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
    frequent class; chance = 1 / number of classes).

    Args:
        runs: The `runs` table.
        layers: The `layers` table.
        model: Model to draw (ReLU runs).
        direction: "suppress" draws alpha <= 0, "promote" alpha >= 0.
        n_resamples: Bootstrap resamples per confidence interval.

    Returns:
        The figure, or None without precision data or runs of that sign.
    """
    return _layer_and_network_figure(
        runs, layers, model, direction,
        layer_column="mean_precision",
        run_column="mean_precision",
        y_label="Mean precision (fraction of top-N)",
        what="precision metric",
        n_resamples=n_resamples,
    )


@_styled
def plot_accuracy(
    runs: pd.DataFrame,
    model: str,
    direction: str = "suppress",
    n_resamples: int = DEFAULT_N_RESAMPLES,
    max_violins: int = 7,
) -> Figure | None:
    """Figure 2 (direction="suppress") / Figure 4 (direction="promote").

    (a) Test accuracy vs alpha with bootstrapped 95% CIs and asterisks for
    Bonferroni-corrected Welch t-tests against alpha = 0; (b) violins of the
    test accuracy of individual networks for a subset of alphas; (c) test
    accuracy vs mean class selectivity with CIs on both axes.

    Args:
        runs: The `runs` table.
        model: Model to draw (ReLU runs).
        direction: "suppress" draws alpha <= 0, "promote" alpha >= 0.
        n_resamples: Bootstrap resamples per confidence interval.
        max_violins: Largest number of alphas shown as violins in (b).

    Returns:
        The figure, or None without runs of that sign.
    """
    model_runs = select_runs(runs, model)
    if not _has_direction(model_runs, direction) or not _has_values(model_runs, "test_accuracy"):
        return None
    colors = alpha_colors(model_runs["alpha"])
    p_values = _p_by_alpha(_accuracy_tests(model_runs))
    shown = _with_sign(model_runs, direction)
    accuracy = _per_alpha(shown, "test_accuracy", n_resamples)

    figure, (alpha_ax, violin_ax, scatter_ax) = _new_figure(3, panel_width=3.3)
    _draw_points_vs_alpha(alpha_ax, accuracy, colors, scale=100,
                          line_gid="accuracy_mean", p_values=p_values)
    set_alpha_axis(alpha_ax, accuracy["alpha"])
    alpha_ax.set_ylabel(ACCURACY_LABEL)

    _draw_violins(violin_ax, shown, "test_accuracy",
                  _violin_alphas(accuracy["alpha"], max_violins), colors, scale=100)
    violin_ax.set_ylabel(ACCURACY_LABEL)

    if _has_values(shown, "test_mean_selectivity"):
        selectivity = _per_alpha(shown, "test_mean_selectivity", n_resamples)
        _draw_scatter_with_ci(scatter_ax, selectivity, accuracy, colors,
                              y_scale=100, p_values=p_values)
        scatter_ax.set_xlabel(SELECTIVITY_LABEL)
        scatter_ax.set_ylabel(ACCURACY_LABEL)
    else:
        scatter_ax.set_axis_off()

    _alpha_legend(figure, accuracy["alpha"], colors)
    figure.suptitle(f"{display_model_name(model)}: test accuracy, {_direction_phrase(direction)}")
    _add_footnote(
        figure,
        f"{_replicates_text(accuracy['n'])}; error bars: bootstrapped 95% CI. "
        f"{stats.stars_legend()} vs α = 0 (Welch t-test, Bonferroni-corrected "
        "over all α of this model).",
    )
    return figure


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


@_styled
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
    has_ratio = _has_values(ratio_rows, "ratio")
    if example_alpha is None and not has_ratio:
        return None

    n_panels = int(example_alpha is not None) + int(has_ratio)
    figure, axes = _new_figure(n_panels, panel_width=3.9)
    method_name = method.upper() if method else "CCA"
    if example_alpha is not None:
        _draw_cca_profiles(axes[0], cca_rows, example_alpha, method_name, n_resamples)
    if has_ratio:
        _draw_cca_ratio(axes[-1], ratio_rows, example_alpha, n_resamples)
    figure.suptitle(
        f"{display_model_name(model)}: {method_name} distance to unregularized "
        "networks vs between replicates"
    )
    _add_footnote(
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
    _set_layer_axis(ax, at_alpha["layer_index"])
    _name_layer_ticks(ax, at_alpha)
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
    _draw_points_vs_alpha(
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


@_styled
def plot_promote_vs_suppress(
    runs: pd.DataFrame,
    model: str,
    n_resamples: int = DEFAULT_N_RESAMPLES,
) -> Figure | None:
    """Figure 5 / A6: promoting vs suppressing selectivity at equal |alpha|.

    (a) Test accuracy vs |alpha| for alpha < 0 (blue) and alpha > 0 (red)
    with bootstrapped 95% CIs, the alpha = 0 mean as a grey band, and
    asterisks for Bonferroni-corrected Wilcoxon rank-sum tests between the
    signs; (b) test accuracy vs mean class selectivity for every alpha.

    Args:
        runs: The `runs` table.
        model: Model to draw (ReLU runs).
        n_resamples: Bootstrap resamples per confidence interval.

    Returns:
        The figure, or None unless both signs of alpha are present.
    """
    model_runs = select_runs(runs, model)
    if not (_has_direction(model_runs, "suppress") and _has_direction(model_runs, "promote")):
        return None
    if not _has_values(model_runs, "test_accuracy"):
        return None
    accuracy = _per_alpha(model_runs, "test_accuracy", n_resamples)
    figure, (magnitude_ax, scatter_ax) = _new_figure(2, panel_width=3.9)

    tops = {}
    for sign, color, label in ((-1, NEGATIVE_COLOR, "α < 0 (suppress)"),
                               (1, POSITIVE_COLOR, "α > 0 (promote)")):
        side = accuracy.loc[np.sign(accuracy["alpha"]) == sign].copy()
        side["alpha"] = side["alpha"].abs()
        side = side.sort_values("alpha")
        errors = _error(side, 100)
        _errorbar_curve(magnitude_ax, side["alpha"], side["mean"] * 100, yerr=errors, fmt="-o",
                              color=color, label=label, markeredgecolor="white",
                              markeredgewidth=0.5, gid=f"accuracy_{'negative' if sign < 0 else 'positive'}")
        for magnitude, mean, upper in zip(side["alpha"], side["mean"] * 100, errors[1]):
            top = mean + (upper if np.isfinite(upper) else 0.0)
            tops[round(float(magnitude), 12)] = max(tops.get(round(float(magnitude), 12), -np.inf), top)
    baseline = accuracy.loc[accuracy["alpha"] == 0]
    if not baseline.empty:
        row = baseline.iloc[0]
        magnitude_ax.axhline(row["mean"] * 100, color=BASELINE_COLOR, linewidth=0.8,
                             linestyle="--", label="α = 0")
        if row["n"] >= 2:
            magnitude_ax.axhspan(row["ci_low"] * 100, row["ci_high"] * 100,
                                 color="0.5", alpha=0.15, linewidth=0)
    tests = stats.ranksum_promote_vs_suppress(model_runs)
    _draw_stars(magnitude_ax, tests["abs_alpha"],
                [tops.get(round(float(a), 12), np.nan) for a in tests["abs_alpha"]],
                tests["p_bonferroni"])
    magnitude_ax.set_xscale("log")
    magnitude_ax.xaxis.set_major_formatter(_alpha_tick_formatter())
    magnitude_ax.set_xlabel("Regularization scale magnitude |α|")
    magnitude_ax.set_ylabel(ACCURACY_LABEL)
    magnitude_ax.legend(loc="best")

    colors = alpha_colors(model_runs["alpha"])
    if _has_values(model_runs, "test_mean_selectivity"):
        selectivity = _per_alpha(model_runs, "test_mean_selectivity", n_resamples)
        _draw_scatter_with_ci(scatter_ax, selectivity, accuracy, colors, y_scale=100)
        scatter_ax.set_xlabel(SELECTIVITY_LABEL)
        scatter_ax.set_ylabel(ACCURACY_LABEL)
        _alpha_legend(figure, accuracy["alpha"], colors)
    else:
        scatter_ax.set_axis_off()
    figure.suptitle(
        f"{display_model_name(model)}: promoting vs suppressing class selectivity"
    )
    _add_footnote(
        figure,
        f"{_replicates_text(accuracy['n'])}; error bars: bootstrapped 95% CI. "
        f"{stats.stars_legend()}: α < 0 vs α > 0 at equal |α| (Wilcoxon rank-sum, "
        "Bonferroni-corrected).",
    )
    return figure


@_styled
def plot_dead_units(
    runs: pd.DataFrame,
    layers: pd.DataFrame,
    model: str,
    n_resamples: int = DEFAULT_N_RESAMPLES,
) -> Figure | None:
    """Figure A9: the role of dead units.

    (a) Percentage of dead units per layer for each alpha; (b) mean class
    selectivity computed without dead units vs alpha; (c) test accuracy vs
    that selectivity, with asterisks for Bonferroni-corrected Welch t-tests
    of accuracy against alpha = 0.

    Args:
        runs: The `runs` table.
        layers: The `layers` table.
        model: Model to draw (ReLU runs).
        n_resamples: Bootstrap resamples per confidence interval.

    Returns:
        The figure, or None without dead-unit data or regularized runs.
    """
    model_runs = select_runs(runs, model)
    model_layers = select_runs(layers, model)
    if model_runs.empty or not (model_runs["alpha"] != 0).any():
        return None
    if not (_has_values(model_layers, "dead_fraction")
            and _has_values(model_runs, "test_mean_selectivity_alive")):
        return None
    colors = alpha_colors(model_runs["alpha"])
    figure, (layer_ax, alpha_ax, scatter_ax) = _new_figure(3, panel_width=3.3)
    _draw_layer_profiles(
        layer_ax, _per_alpha_and_layer(model_layers, "dead_fraction", n_resamples),
        colors, scale=100,
    )
    _name_layer_ticks(layer_ax, model_layers)
    layer_ax.set_ylabel("Dead units (% of layer)")

    selectivity = _per_alpha(model_runs, "test_mean_selectivity_alive", n_resamples)
    _draw_points_vs_alpha(alpha_ax, selectivity, colors, line_gid="selectivity_alive_mean")
    set_alpha_axis(alpha_ax, selectivity["alpha"])
    alpha_ax.set_ylabel(f"{SELECTIVITY_LABEL}\n(dead units excluded)")

    if _has_values(model_runs, "test_accuracy"):
        accuracy = _per_alpha(model_runs, "test_accuracy", n_resamples)
        _draw_scatter_with_ci(scatter_ax, selectivity, accuracy, colors, y_scale=100,
                              p_values=_p_by_alpha(_accuracy_tests(model_runs)))
        scatter_ax.set_xlabel(f"{SELECTIVITY_LABEL}\n(dead units excluded)")
        scatter_ax.set_ylabel(ACCURACY_LABEL)
    else:
        scatter_ax.set_axis_off()
    _alpha_legend(figure, selectivity["alpha"], colors)
    figure.suptitle(f"{display_model_name(model)}: dead units and selectivity of live units")
    _add_footnote(
        figure,
        f"{_replicates_text(selectivity['n'])}; bands / error bars: bootstrapped 95% CI. "
        f"{stats.stars_legend()}: accuracy vs α = 0 (Welch t-test, Bonferroni-corrected).",
    )
    return figure


def _choose_leaky_slope(slopes: Sequence[float], requested: float | None) -> float:
    """Requested slope if present, else the paper's 0.5, else the largest."""
    slopes = sorted(float(s) for s in slopes)
    for preferred in (requested, DEFAULT_LEAKY_SLOPE):
        if preferred is not None and any(np.isclose(preferred, slopes)):
            return float(preferred)
    return slopes[-1]


@_styled
def plot_leaky_relu(
    runs: pd.DataFrame,
    model: str,
    slope: float | None = None,
    n_resamples: int = DEFAULT_N_RESAMPLES,
) -> Figure | None:
    """Figure A10: leaky ReLUs do not rescue accuracy.

    (a) Test accuracy vs alpha for each leaky-ReLU negative slope (red
    intensity = slope; the ReLU runs, slope 0, in grey for reference);
    (b) mean class selectivity vs alpha for one slope, with asterisks for
    Bonferroni-corrected Welch t-tests against alpha = 0 at that slope.

    Args:
        runs: The `runs` table.
        model: Model to draw.
        slope: Negative slope shown in (b); default 0.5 or the largest.
        n_resamples: Bootstrap resamples per confidence interval.

    Returns:
        The figure, or None without leaky-ReLU runs of `model`.
    """
    leaky_runs = select_runs(runs, model, leaky=True)
    if leaky_runs.empty or not _has_values(leaky_runs, "test_accuracy"):
        return None
    leaky_runs["leaky_slope"] = leaky_runs["leaky_slope"].astype(float)
    slopes = sorted(leaky_runs["leaky_slope"].unique())
    slope_colors = _intensity_colors(slopes, "Reds")
    figure, (accuracy_ax, selectivity_ax) = _new_figure(2, panel_width=3.9)

    relu_runs = select_runs(runs, model)
    curves = [(0.0, relu_runs, "0.55", "ReLU (slope 0)")] if not relu_runs.empty else []
    curves += [(s, leaky_runs.loc[leaky_runs["leaky_slope"] == s], slope_colors[s],
                f"leaky ReLU, slope {s:g}") for s in slopes]
    all_alphas = []
    for curve_slope, curve_runs, color, label in curves:
        summary = _per_alpha(curve_runs, "test_accuracy", n_resamples)
        all_alphas += list(summary["alpha"])
        _errorbar_curve(accuracy_ax, summary["alpha"], summary["mean"] * 100,
                             yerr=_error(summary, 100), fmt="-o", color=color,
                             markersize=3.5, label=label, gid=f"accuracy_slope_{curve_slope:g}")
    set_alpha_axis(accuracy_ax, all_alphas)
    accuracy_ax.set_ylabel(ACCURACY_LABEL)
    accuracy_ax.legend(loc="best")

    chosen = _choose_leaky_slope(slopes, slope)
    chosen_runs = leaky_runs.loc[leaky_runs["leaky_slope"] == chosen]
    if _has_values(chosen_runs, "test_mean_selectivity"):
        summary = _per_alpha(chosen_runs, "test_mean_selectivity", n_resamples)
        tests = stats.ttests_vs_baseline(chosen_runs, value="test_mean_selectivity")
        _draw_points_vs_alpha(selectivity_ax, summary, alpha_colors(summary["alpha"]),
                              line_gid="leaky_selectivity_mean", p_values=_p_by_alpha(tests))
        set_alpha_axis(selectivity_ax, summary["alpha"])
        selectivity_ax.set_ylabel(SELECTIVITY_LABEL)
        selectivity_ax.set_title(f"leaky ReLU, negative slope {chosen:g}",
                                 loc="center", fontweight="normal")
    else:
        selectivity_ax.set_axis_off()
    figure.suptitle(f"{display_model_name(model)}: leaky ReLUs (no dead units)")
    _add_footnote(
        figure,
        f"{_replicates_text(leaky_runs.groupby(['leaky_slope', 'alpha']).size())}; "
        f"error bars: bootstrapped 95% CI. (b) {stats.stars_legend()}: selectivity "
        "vs α = 0 (Welch t-test, Bonferroni-corrected).",
    )
    return figure


@_styled
def plot_model_comparison(
    runs: pd.DataFrame, n_resamples: int = DEFAULT_N_RESAMPLES
) -> Figure | None:
    """Figure A12: models side by side (ReLU runs).

    (a) Test accuracy vs alpha per model; (b) mean class selectivity vs
    alpha per model.

    Args:
        runs: The `runs` table.
        n_resamples: Bootstrap resamples per confidence interval.

    Returns:
        The figure, or None with fewer than two models.
    """
    relu_runs = select_runs(runs, None)
    models = sorted(relu_runs["model"].astype(str).unique()) if not relu_runs.empty else []
    if len(models) < 2:
        return None
    figure, axes = _new_figure(2, panel_width=3.9)
    panels = (("test_accuracy", 100, ACCURACY_LABEL), ("test_mean_selectivity", 1, SELECTIVITY_LABEL))
    for ax, (column, scale, label) in zip(axes, panels):
        for index, model in enumerate(models):
            model_runs = relu_runs.loc[relu_runs["model"].astype(str) == model]
            if not _has_values(model_runs, column):
                continue
            summary = _per_alpha(model_runs, column, n_resamples)
            _errorbar_curve(ax, summary["alpha"], summary["mean"] * scale,
                        yerr=_error(summary, scale), fmt="-o", markersize=3.5,
                        color=MODEL_COLORS[index % len(MODEL_COLORS)],
                        label=display_model_name(model), gid=f"{column}_{model}")
        set_alpha_axis(ax, relu_runs["alpha"])
        ax.set_ylabel(label)
        ax.legend(loc="best")
    figure.suptitle("Differences between models")
    _add_footnote(figure, "Error bars: bootstrapped 95% CI over networks.")
    return figure


# --------------------------------------------------------------------------
# Saving and drawing everything.
# --------------------------------------------------------------------------


def save_figure(
    figure: Figure,
    path_without_suffix: str | Path,
    formats: Sequence[str] = DEFAULT_FORMATS,
    dpi: int = DEFAULT_DPI,
) -> list[str]:
    """Saves `figure` once per format (PNG and PDF by default).

    Args:
        figure: The figure.
        path_without_suffix: Destination without extension; parent folders
            are created. Dots in the name are kept (no suffix stripping).
        formats: File formats / extensions.
        dpi: Resolution of raster formats.

    Returns:
        The written paths, in `formats` order.
    """
    base = Path(path_without_suffix)
    base.parent.mkdir(parents=True, exist_ok=True)
    written = []
    with matplotlib.rc_context(FIGURE_STYLE):
        for file_format in formats:
            path = base.parent / f"{base.name}.{file_format}"
            # Without a creation date the PDFs are byte-reproducible.
            metadata = {"CreationDate": None} if file_format == "pdf" else None
            figure.savefig(path, format=file_format, dpi=dpi, metadata=metadata,
                           facecolor="white")
            written.append(str(path))
    return written


def _figure_builders(
    runs: pd.DataFrame,
    layers: pd.DataFrame,
    cca: pd.DataFrame | None,
    cca_ratio: pd.DataFrame | None,
    model: str,
    n_resamples: int,
) -> dict[str, Callable[[], Figure | None]]:
    """Name -> zero-argument builder for every per-model figure."""
    suffix = _file_safe(model)
    kwargs = {"n_resamples": n_resamples}
    return {
        f"fig1_selectivity_{suffix}": lambda: plot_selectivity(runs, layers, model, "suppress", **kwargs),
        f"figA1_selectivity_promote_{suffix}": lambda: plot_selectivity(runs, layers, model, "promote", **kwargs),
        f"fig2_accuracy_suppress_{suffix}": lambda: plot_accuracy(runs, model, "suppress", **kwargs),
        f"fig3_cca_{suffix}": lambda: plot_cca(cca, cca_ratio, model, **kwargs),
        f"fig4_accuracy_promote_{suffix}": lambda: plot_accuracy(runs, model, "promote", **kwargs),
        f"fig5_promote_vs_suppress_{suffix}": lambda: plot_promote_vs_suppress(runs, model, **kwargs),
        f"figA7_precision_suppress_{suffix}": lambda: plot_precision(runs, layers, model, "suppress", **kwargs),
        f"figA8_precision_promote_{suffix}": lambda: plot_precision(runs, layers, model, "promote", **kwargs),
        f"figA9_dead_units_{suffix}": lambda: plot_dead_units(runs, layers, model, **kwargs),
        f"figA10_leaky_relu_{suffix}": lambda: plot_leaky_relu(runs, model, **kwargs),
    }


def draw_all(
    runs: pd.DataFrame,
    layers: pd.DataFrame,
    cca: pd.DataFrame | None = None,
    cca_ratio: pd.DataFrame | None = None,
    output_dir: str | Path = ".",
    formats: Sequence[str] = DEFAULT_FORMATS,
    dpi: int = DEFAULT_DPI,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    raise_errors: bool = False,
) -> dict[str, list[str]]:
    """Draws and saves every figure the tables allow, one set per model.

    Figures whose inputs are missing (no positive alphas, no leaky-ReLU
    runs, no CCA table, ...) are skipped. A figure that fails for another
    reason is reported with a `RuntimeWarning` and skipped too, so that one
    bad figure does not cost the others after a long sweep (set
    `raise_errors=True` to raise instead).

    Args:
        runs: The `runs` table.
        layers: The `layers` table.
        cca: The pairwise `cca` table, if computed.
        cca_ratio: The `cca_ratio` table, if computed.
        output_dir: Folder for the figure files (created if needed).
        formats: File formats written per figure.
        dpi: Resolution of raster formats.
        n_resamples: Bootstrap resamples per confidence interval.
        raise_errors: Raise instead of warning when a figure fails.

    Returns:
        Dict from figure name (file stem, e.g. "fig1_selectivity_resnet20")
        to the written paths, in drawing order.
    """
    output_dir = Path(output_dir)
    models = sorted(runs["model"].astype(str).unique()) if runs is not None and not runs.empty else []
    builders: dict[str, Callable[[], Figure | None]] = {}
    for model in models:
        builders.update(_figure_builders(runs, layers, cca, cca_ratio, model, n_resamples))
    builders["figA12_model_comparison"] = lambda: plot_model_comparison(runs, n_resamples=n_resamples)

    written: dict[str, list[str]] = {}
    for name, build in builders.items():
        try:
            figure = build()
            if figure is not None:
                written[name] = save_figure(figure, output_dir / name, formats, dpi)
        except Exception as error:  # noqa: BLE001 - reported, see docstring.
            if raise_errors:
                raise
            warnings.warn(f"Figure {name} could not be drawn: {error!r}", RuntimeWarning)
    return written

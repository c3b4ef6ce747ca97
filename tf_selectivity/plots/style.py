"""Shared look of the figures: style, colours, alpha and layer axes, saving.

Everything that makes the figures of `tf_selectivity.plots` look alike
lives here: the typographic defaults (`FIGURE_STYLE`, applied only while a
figure is built or saved), the alpha colours (blues for alpha < 0, reds for
alpha > 0, near-black for alpha = 0, intensity by |alpha|), the
symmetric-log alpha axis, the figure canvas with its lettered panels and
footnote, and `save_figure`.
"""

from __future__ import annotations

import functools
import math
import re
import textwrap
from pathlib import Path
from typing import Callable, Iterable, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import colormaps, ticker
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tf_selectivity.measures import stats
from tf_selectivity.plots.labels import keep_labels_clear


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
MODEL_COLORS = ("#17becf", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b")

# Colour-map range used for |alpha| intensity; the extreme ends of "Blues"
# and "Reds" are too pale to see on white or indistinguishable from black.
_INTENSITY_RANGE = (0.35, 0.95)
LEAKY_COLORMAP = "Greens"
_LEAKY_INTENSITY_RANGE = (0.55, 0.95)

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


def display_model_name(model: str) -> str:
    """Name of a model as written in figures and reports (e.g. "ResNet20")."""
    return MODEL_DISPLAY_NAMES.get(str(model).lower(), str(model))


def format_alpha(alpha: float) -> str:
    """Compact text for an alpha value: -1.0 -> "-1", 0.25 -> "0.25"."""
    return f"{float(alpha):g}"


def _title(condition: dict, with_model: bool) -> str:
    activation = str(condition.get("activation", "relu"))
    if "leaky" in activation.lower():
        slope = "negative slope" if with_model else "slope"
        activation_text = f"leaky ReLU ({slope} {float(condition.get('leaky_slope', 0)):g})"
    elif activation.lower() == "relu":
        activation_text = "" if with_model else "ReLU"
    else:
        activation_text = activation
    if not with_model:
        return activation_text
    title = display_model_name(condition.get("model", "model"))
    return f"{title}, {activation_text}" if activation_text else title


def condition_protocol(condition: dict) -> str:
    """What a condition's name says beyond model and activation ("dataset=cifar10_sample,
    epochs=5"), or "": the training settings that separate it from another condition of
    the same model and activation (`report.condition_names`)."""
    name = condition.get("condition")
    if not isinstance(name, str) or not name:
        return ""
    title = _title(condition, with_model=True)
    return name[len(title):].lstrip(", ") if name.startswith(title) else ""


def condition_label(condition: dict, with_model: bool = True) -> str:
    """Name of an experimental condition as written in figures and reports.

    Examples: "ResNet20", "ResNet20, leaky ReLU (negative slope 0.5)",
    "ResNet20, dataset=cifar10_sample" (a condition named by
    `report.condition_names`); without the model (legends): "ReLU",
    "leaky ReLU (slope 0.5)", "ReLU, dataset=cifar10_sample".

    Args:
        condition: Any of `model`, `activation`, `leaky_slope` and
            `condition` (the condition's name; see
            `stats.split_by_condition`); a missing activation is ReLU.
        with_model: Start with the model's display name.
    """
    name = condition.get("condition")
    if with_model and isinstance(name, str) and name:
        return name
    protocol = condition_protocol(condition)
    title = _title(condition, with_model)
    return f"{title}, {protocol}" if protocol else title


def condition_slug(condition: dict) -> str:
    """Short id of a condition's activation (and protocol): "relu", "leaky_relu_0.5",
    "relu_dataset_cifar10_sample"."""
    activation = str(condition.get("activation", "relu")).lower()
    if "leaky" in activation:
        activation = f"{activation}_{float(condition.get('leaky_slope', 0)):g}"
    protocol = condition_protocol(condition)
    return f"{activation}_{file_safe(protocol)}" if protocol else activation


def file_safe(text: str) -> str:
    """Makes `text` usable in a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_") or "model"


def intensity_colors(
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
        by_magnitude = intensity_colors([abs(a) for a in negative], "Blues")
        colors.update({-magnitude: color for magnitude, color in by_magnitude.items()})
    if positive:
        colors.update(intensity_colors(positive, "Reds"))
    if any(a == 0 for a in alphas):
        colors[0.0] = matplotlib.colors.to_rgba(BASELINE_COLOR)
    return colors


def leaky_slope_colors(slopes: Iterable[float]) -> dict[float, tuple]:
    """Greens, darker for larger leaky-ReLU negative slopes.

    Blues and reds already mean alpha < 0 and alpha > 0, so the series of
    different slopes (Figures 3 and A10) are green; the pale end of the
    map is left out.
    """
    ordered = sorted(set(float(s) for s in slopes))
    greens = colormaps[LEAKY_COLORMAP](np.linspace(*_LEAKY_INTENSITY_RANGE, len(ordered)))
    return {slope: tuple(green) for slope, green in zip(ordered, greens)}


def _symlog_linthresh(alphas: Iterable[float]) -> float:
    """Linear range of the symlog alpha axis: the smallest non-zero |alpha|."""
    magnitudes = [abs(float(a)) for a in alphas if float(a) != 0]
    if not magnitudes:
        return 0.1
    # Round down to a power of ten so decade ticks land on the usual alphas.
    return 10.0 ** math.floor(math.log10(min(magnitudes)))


def alpha_tick_formatter() -> ticker.Formatter:
    return ticker.FuncFormatter(lambda value, _: f"{value:g}")


def _tick_label_width_points(text: str) -> float:
    """Rough width of an alpha tick label (DejaVu Sans digits are ~0.64 em)."""
    return 0.64 * FIGURE_STYLE["xtick.labelsize"] * len(text)


def _is_decade(value: float) -> bool:
    return value != 0 and math.isclose(math.log10(abs(value)), round(math.log10(abs(value))),
                                       abs_tol=1e-9)


def _labelled_alphas(ax: Axes, alphas: Sequence[float]) -> list[float]:
    """The plotted alphas whose tick labels fit side by side.

    Chosen greedily: 0, the extremes, then decades (1, 10, ...), then the
    rest by decreasing |alpha|; an alpha is labelled only if its label
    keeps clear of those already chosen. Uses the axes' width before
    layout, less a fifth for the margins that the constrained layout takes.
    """
    ticks = sorted(set(alphas))
    transform = ax.xaxis.get_transform()
    low, high = transform.transform(np.array(ax.get_xlim(), dtype=float))
    figure = ax.get_figure(root=True)
    width_points = 0.8 * ax.get_position().width * figure.get_figwidth() * 72
    points_per_unit = width_points / max(high - low, 1e-12)
    extremes = (ticks[0], ticks[-1])
    chosen: list[tuple[float, float, float]] = []  # (alpha, centre, half width) in points.
    for alpha in sorted(ticks, key=lambda a: (a != 0, a not in extremes, not _is_decade(a), -abs(a))):
        centre = float(transform.transform(np.array([alpha]))[0]) * points_per_unit
        half = _tick_label_width_points(format_alpha(alpha)) / 2 + 2.0
        if all(abs(centre - other) >= half + other_half for _, other, other_half in chosen):
            chosen.append((alpha, centre, half))
    return sorted(alpha for alpha, _, _ in chosen)


def set_alpha_axis(ax: Axes, alphas: Iterable[float], label: str = ALPHA_LABEL):
    """Formats the x axis of `ax` as a symmetric-log alpha axis.

    A log scale cannot show alpha = 0 or mix signs, and a linear scale
    squeezes -0.1 .. 1 into a sliver next to -100, so the axis is linear
    within the smallest |alpha| and logarithmic beyond. Every plotted alpha
    has a tick, so that a point is never read off an axis labelled only at
    decades; ticks are labelled where their labels fit side by side (0, the
    extremes and decades first), the others are minor ticks. An axis with
    both signs has a labelled 0 even where alpha = 0 is not plotted.

    Args:
        ax: Axes whose x axis shows alpha.
        alphas: The alphas plotted (to choose the linear range and ticks).
        label: Axis label.
    """
    alphas = sorted(set(float(a) for a in alphas))
    linthresh = _symlog_linthresh(alphas)
    ax.set_xscale("symlog", linthresh=linthresh, linscale=0.6)
    if alphas:
        # Pad the limits in the transformed space: the default margins leave
        # the extreme alphas (and their marks) on the spine.
        transform = ax.xaxis.get_transform()
        low, high = transform.transform(np.array([min(alphas), max(alphas)]))
        pad = 0.06 * max(high - low, 1.0)
        ax.set_xlim(transform.inverted().transform(np.array([low - pad, high + pad])))
        # 0 marks where the axis turns linear, plotted or not (Figure 3b).
        spans_zero = alphas[0] < 0 < alphas[-1]
        labelled = _labelled_alphas(ax, sorted(set(alphas) | ({0.0} if spans_zero else set())))
        ax.set_xticks(labelled)
        ax.set_xticks([a for a in alphas if a not in labelled], minor=True)
    ax.xaxis.set_major_formatter(alpha_tick_formatter())
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel(label)


def set_layer_axis(ax: Axes, layer_indices: Iterable[int]):
    """Integer layer ticks (every layer when few enough to stay readable)."""
    indices = sorted(set(int(i) for i in layer_indices))
    if indices and len(indices) <= 12:
        ax.set_xticks(indices)
    else:
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_xlabel(LAYER_LABEL)


def name_layer_ticks(ax: Axes, rows: pd.DataFrame | None, max_named: int = 12):
    """Layer names (the probes' names without "probe_") as the ticks of a
    layer axis, when the rows name at most `max_named` layers; deeper
    networks keep depth indices (the names are in the `layers` table)."""
    if rows is None or not {"layer", "layer_index"} <= set(rows.columns):
        return
    names = rows[["layer_index", "layer"]].drop_duplicates().sort_values("layer_index")
    if names.empty or len(names) > max_named or names["layer_index"].duplicated().any():
        return
    labels = [str(n)[len("probe_"):] if str(n).startswith("probe_") else str(n) for n in names["layer"]]
    ax.set_xticks(names["layer_index"].to_numpy(dtype=float))
    ax.set_xticklabels(labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=6.5)
    ax.set_xlabel("Layer (input side first)")


def new_figure(n_panels: int, panel_width: float = 3.6, height: float = 3.2):
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


def add_footnote(figure: Figure, text: str):
    """Small grey note under the panels (sample sizes, CI and test legend)."""
    width_inches, height_inches = figure.get_size_inches()
    # About 19 characters of 6.5 pt text fit in an inch. Lines do not break
    # inside "p < 0.05" or "α = 0": the parts are joined by no-break spaces
    # (not whitespace to `textwrap`) while wrapping.
    protected = re.sub(r" ([<>=≤≥]) ", "\u00a0\\1\u00a0", text)
    lines = [line.replace("\u00a0", " ")
             for line in textwrap.wrap(protected, width=max(40, int(width_inches * 19)))]
    figure.text(0.01, 0.01, "\n".join(lines), fontsize=6.5, color="0.35",
                ha="left", va="bottom")
    line_height = 8.5 / 72 / height_inches  # 6.5 pt font, in figure fraction.
    bottom = 0.02 + line_height * len(lines)
    figure.get_layout_engine().set(rect=(0.0, bottom, 1.0, 1.0 - bottom))


def replicates_text(counts: Iterable[int]) -> str:
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


def styled(function: Callable) -> Callable:
    """Builds a figure under `FIGURE_STYLE` without leaking the style.

    The finished figure's significance marks and reference labels are then
    moved clear of the data (`labels.keep_labels_clear`).
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(FIGURE_STYLE):
            figure = function(*args, **kwargs)
            if isinstance(figure, Figure):
                keep_labels_clear(figure)
            return figure

    return wrapper


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

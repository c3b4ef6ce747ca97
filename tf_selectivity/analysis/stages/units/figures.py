"""Unit galleries: what drives a unit, drawn from a `UnitGallery`.

One figure per unit (`unit_figure`, saved by `save_unit_galleries`):

* two rows of the unit's top-k test images, by the spatial maximum of its
  feature map (NetDissect's convention) and by the spatial mean (the
  response the selectivity index uses); on each image the unit's feature
  map, upsampled bilinearly to the image size, is outlined where it exceeds
  the unit's top-0.5% threshold over the test set (a matplotlib contour);
  the area below it is dimmed;
* the class tuning curve: the mean response per class with its confidence
  band, the preferred class marked. With many classes (Tiny ImageNet's 200)
  the classes are sorted by response and only the top ones are named;
* the SI, the preferred class, the precision and, where given, the null
  p-value in the title.

`layer_grid` draws a layer's chosen units together: one row per unit, its
top images by the spatial maximum. `selectivity_histogram` draws the SI of
every unit of a layer (the unit pages' per-layer overview).
`save_compact_png` saves a figure as a 256-colour palette PNG (the pages').
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tf_selectivity.core.settings import ParameterError
from tf_selectivity.plots.style import FIGURE_STYLE, file_safe, save_figure

__all__ = [
    "upsample",
    "display_image",
    "unit_figure",
    "layer_grid",
    "save_compact_png",
    "save_unit_galleries",
    "selectivity_histogram",
]

OUTLINE_COLOR = "#ffd400"
PREFERRED_COLOR = "#b2182b"
CURVE_COLOR = "0.15"
# Classes up to this many are drawn in their own order and all named.
NAMED_CLASS_LIMIT = 20
GALLERY_DPI = 100


def upsample(feature_map: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Bilinear upsampling of a (h, w) map to (H, W), pixel centres aligned.

    Map pixel ``i`` covers image rows ``[i H/h, (i+1) H/h)``; its value sits
    at that span's centre, and values are interpolated in between (and held
    constant beyond the outer centres), as image resizing does.
    """
    feature_map = np.asarray(feature_map, dtype=np.float64)
    h, w = feature_map.shape
    height, width = int(size[0]), int(size[1])

    def centres(n_out, n_in):  # output pixel centres in input coordinates
        return (np.arange(n_out) + 0.5) * n_in / n_out - 0.5

    rows = np.stack([np.interp(centres(width, w), np.arange(w), row) for row in feature_map])  # (h, W)
    return np.stack([np.interp(centres(height, h), np.arange(h), column) for column in rows.T], axis=1)


def display_image(image: np.ndarray) -> np.ndarray:
    """An image as matplotlib shows it: values in [0, 1], grey images 2-D.

    Pixel values in [0, 255] (above 1) are divided by 255, values in [0, 1]
    kept; anything else (standardized inputs) is stretched to [0, 1].
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    low, high = image.min(), image.max()
    if low >= 0 and high <= 1:
        return image
    if low >= 0 and high <= 255:
        return image / 255.0
    return (image - low) / max(high - low, 1e-12)


def _class_name(names, c) -> str:
    return str(names[c]) if names is not None else str(c)


def _draw_image(ax, image, feature_map, threshold, outline=True):
    shown = display_image(image)
    ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    upsampled = upsample(feature_map, shown.shape[:2])
    above = upsampled >= threshold
    if outline:
        # Dim what lies below the threshold, so the outlined region stands out.
        ax.imshow(np.where(above, np.nan, 0.0), cmap="gray", vmin=0, vmax=1, alpha=0.45,
                  interpolation="nearest")
        if upsampled.min() < threshold < upsampled.max():
            ax.contour(upsampled, levels=[threshold], colors=[OUTLINE_COLOR], linewidths=1.2).set_gid("outline")
    ax.set_xticks([])
    ax.set_yticks([])
    return bool(above.any())


def _top(gallery, layer, unit, ranking):
    rows = gallery.top_images
    rows = rows[(rows["layer"] == layer) & (rows["unit"] == unit) & (rows["ranking"] == ranking)]
    return rows.sort_values("rank")


def _tuning_curve(gallery, layer, unit):
    """The unit's tuning rows, sorted by class, or by response with many classes; NaN CIs closed."""
    curve = gallery.tuning[(gallery.tuning["layer"] == layer) & (gallery.tuning["unit"] == unit)]
    curve = curve.sort_values("class")
    if gallery.num_classes > NAMED_CLASS_LIMIT:
        curve = curve.sort_values(["mean", "class"], ascending=[False, True], kind="stable")
    curve = curve.reset_index(drop=True)
    curve["ci_low"] = curve["ci_low"].fillna(curve["mean"])
    curve["ci_high"] = curve["ci_high"].fillna(curve["mean"])
    return curve


def _mark_preferred(ax, x, mean, curve):
    preferred = np.flatnonzero(curve["preferred"].to_numpy())
    if len(preferred):
        p = preferred[0]
        ax.plot([x[p]], [mean[p]], marker="*", markersize=11, color=PREFERRED_COLOR, linestyle="none",
                gid="preferred", label="preferred class", zorder=5)


def _draw_named_classes(ax, curve, class_names, rotate):
    """Points with CI error bars, every class named on the axis."""
    x = np.arange(len(curve))
    mean = curve["mean"].to_numpy()
    errors = np.stack([mean - curve["ci_low"].to_numpy(), curve["ci_high"].to_numpy() - mean])
    ax.errorbar(x, mean, yerr=np.maximum(errors, 0), color=CURVE_COLOR, marker="o", markersize=3.5,
                linewidth=1.0, capsize=2, label="mean response (CI)")
    _mark_preferred(ax, x, mean, curve)
    ax.set_xticks(x)
    ax.set_xticklabels([_class_name(class_names, c) for c in curve["class"]], rotation=45 if rotate else 0,
                       ha="right" if rotate else "center", fontsize=7)
    ax.set_xlim(-0.5, len(x) - 0.5)
    ax.set_ylabel("mean response")


def _draw_tuning(figure, cell, gallery, layer, unit, class_names, labelled_classes):
    """The tuning curve in `cell`; with many classes, the top ones named beside the full sorted curve."""
    curve = _tuning_curve(gallery, layer, unit)
    level = f"{gallery.confidence:.0%} CI"
    if gallery.num_classes <= NAMED_CLASS_LIMIT:
        ax = figure.add_subplot(cell)
        ax.set_gid("tuning")
        _draw_named_classes(ax, curve, class_names, rotate=class_names is not None)
        ax.set_xlabel(f"class (error bars: {level})")
        ax.legend(loc="upper right", fontsize=7)
        return [ax]
    cells = cell.subgridspec(1, 2, width_ratios=[1, 2.2])
    named = figure.add_subplot(cells[0, 0])
    named.set_gid("tuning-top")
    top = curve.iloc[: min(labelled_classes, len(curve))]
    _draw_named_classes(named, top, class_names, rotate=True)
    named.set_title(f"top {len(top)} classes", fontsize=8, fontweight="normal")
    ax = figure.add_subplot(cells[0, 1], sharey=named)
    ax.set_gid("tuning")
    x = np.arange(len(curve))
    mean = curve["mean"].to_numpy()
    ax.fill_between(x, curve["ci_low"], curve["ci_high"], color="0.78", linewidth=0, label=level)
    ax.plot(x, mean, color=CURVE_COLOR, linewidth=1.0, label="mean response")
    _mark_preferred(ax, x, mean, curve)
    ax.axvspan(-0.5, len(top) - 0.5, color="#fee8c8", zorder=0, label=f"top {len(top)} (left)")
    ax.set_xlim(-0.5, len(x) - 0.5)
    ax.set_xlabel(f"class rank by mean response (all {len(x)} classes)")
    ax.set_title(f"all {len(x)} classes, sorted", fontsize=8, fontweight="normal")
    ax.legend(loc="upper right", fontsize=7)
    return [named, ax]


def unit_figure(
    gallery,
    layer: str,
    unit: int,
    images,
    *,
    class_names: Sequence[str] | None = None,
    labelled_classes: int = 10,
    null_p: float | None = None,
    outline: bool = True,
) -> Figure:
    """One unit's gallery: top images by max and by mean with outlined maps, and its tuning curve.

    Args:
        gallery: a `gallery.UnitGallery`.
        layer: a probe name of the gallery.
        unit: a unit index of the gallery's `layer`.
        images: the (N, H, W, C) test images the gallery was computed on.
        class_names: names of the classes (default: their indices).
        labelled_classes: with more than 20 classes, how many of the
            strongest are named on the tuning curve's axis.
        null_p: the unit's label-permutation p-value, shown if given.
        outline: outline the maps at the threshold (and dim below it).

    Returns:
        A `matplotlib.figure.Figure` on its own Agg canvas.

    Raises:
        ParameterError: a unit not in the gallery, images that do not
            match it, or labelled_classes < 1.
    """
    row = gallery.unit(layer, unit)
    images = np.asarray(images)
    if len(images) != gallery.num_images or tuple(images.shape[1:]) != tuple(gallery.image_shape):
        raise ParameterError("images", f"must be the {gallery.num_images} images of shape {gallery.image_shape} "
                                       f"the gallery was computed on; got {images.shape}")
    if class_names is not None and len(class_names) != gallery.num_classes:
        raise ParameterError("class_names", f"must name {gallery.num_classes} classes; got {len(class_names)}")
    if labelled_classes < 1:
        raise ParameterError("labelled_classes", f"must be >= 1; got {labelled_classes}")
    k = gallery.k
    with matplotlib.rc_context(FIGURE_STYLE):
        figure = Figure(figsize=(max(1.25 * k + 0.9, 8.0), 6.6), layout="constrained")
        FigureCanvasAgg(figure)
        grid = figure.add_gridspec(3, k + 1, height_ratios=[1, 1, 1.5], width_ratios=[0.55] + [1] * k)
        for line, ranking in enumerate(("max", "mean")):
            label_ax = figure.add_subplot(grid[line, 0])
            label_ax.axis("off")
            label_ax.text(0.5, 0.5, f"top {k}\nby spatial\n{ranking}", ha="center", va="center", fontsize=8)
            top = _top(gallery, layer, unit, ranking)
            maps = gallery.maps[(layer, unit, ranking)]
            for rank, entry in enumerate(top.itertuples()):
                ax = figure.add_subplot(grid[line, rank + 1])
                ax.set_gid(f"image-{ranking}-{rank}")
                _draw_image(ax, images[entry.image], maps[rank], row.threshold, outline)
                ax.set_title(f"{_class_name(class_names, entry.label)}\n{entry.value:.3g}", fontsize=7,
                             fontweight="normal")
        _draw_tuning(figure, grid[2, :], gallery, layer, unit, class_names, labelled_classes)
        numbers = [f"SI {row.selectivity:.3f}", f"preferred {_class_name(class_names, row.preferred_class)}"]
        if np.isfinite(row.precision):
            numbers.append(f"precision {row.precision:.2f}")
        if null_p is not None:
            numbers.append(f"null p = {null_p:.3g}")
        if row.dead:
            numbers.append("dead")
        figure.suptitle(f"{layer}, unit {unit}: " + ", ".join(numbers), fontsize=10, fontweight="bold")
        figure.supxlabel(f"Outline: the unit's map (upsampled) above its top {gallery.top_fraction:.1%} "
                         f"over the test set ({row.threshold:.3g}); above each image: its label and score",
                         fontsize=6.5, color="0.35")
    return figure


def layer_grid(gallery, layer: str, images, *, class_names=None, ranking: str = "max") -> Figure:
    """A layer's units of the gallery, one row each: its top images by `ranking` with outlined maps.

    Raises:
        ParameterError: a layer not in the gallery or an unknown ranking.
    """
    if ranking not in ("max", "mean"):
        raise ParameterError("ranking", f"must be max or mean; got {ranking!r}")
    rows = gallery.units[gallery.units["layer"] == layer]
    if rows.empty:
        raise ParameterError("layer", f"{layer!r} is not in this gallery")
    images = np.asarray(images)
    k = gallery.k
    with matplotlib.rc_context(FIGURE_STYLE):
        figure = Figure(figsize=(1.1 * k + 1.4, 1.25 * len(rows) + 0.5), layout="constrained")
        FigureCanvasAgg(figure)
        grid = figure.add_gridspec(len(rows), k + 1, width_ratios=[1.2] + [1] * k)
        for line, row in enumerate(rows.itertuples()):
            label_ax = figure.add_subplot(grid[line, 0])
            label_ax.axis("off")
            label_ax.text(0.5, 0.5, f"unit {row.unit}\nSI {row.selectivity:.2f}\n"
                                    f"pref. {_class_name(class_names, row.preferred_class)}",
                          ha="center", va="center", fontsize=7)
            maps = gallery.maps[(layer, row.unit, ranking)]
            for rank, entry in enumerate(_top(gallery, layer, row.unit, ranking).itertuples()):
                ax = figure.add_subplot(grid[line, rank + 1])
                _draw_image(ax, images[entry.image], maps[rank], row.threshold)
        figure.suptitle(f"{layer}: top {k} images by spatial {ranking}", fontsize=10, fontweight="bold")
    return figure


def save_unit_galleries(
    gallery,
    images,
    directory,
    *,
    class_names: Sequence[str] | None = None,
    labelled_classes: int = 10,
    null_p: Mapping | None = None,
    dpi: int = GALLERY_DPI,
) -> list:
    """A PNG per unit of the gallery and a grid per layer, in `directory`.

    Files: ``<layer>_unit<unit>.png`` and ``<layer>_grid.png``.

    Args:
        gallery: a `UnitGallery`.
        images: the test images it was computed on.
        directory: where the PNGs go (created).
        class_names: names of the classes.
        labelled_classes: classes named on a many-class tuning curve.
        null_p: (layer, unit) -> the unit's null p-value, where computed.
        dpi: resolution.

    Returns:
        The written paths: the units' in gallery order, then the grids.
    """
    directory = Path(directory)
    written = []
    for row in gallery.units.itertuples():
        p = None if null_p is None else null_p.get((row.layer, row.unit))
        figure = unit_figure(gallery, row.layer, row.unit, images, class_names=class_names,
                             labelled_classes=labelled_classes, null_p=p)
        written += save_figure(figure, directory / f"{file_safe(row.layer)}_unit{row.unit}", ("png",), dpi)
    for layer in gallery.units["layer"].unique():
        figure = layer_grid(gallery, layer, images, class_names=class_names)
        written += save_figure(figure, directory / f"{file_safe(layer)}_grid", ("png",), dpi)
    return written


def selectivity_histogram(selectivity, *, layer: str, selective=None, dead=None, bins: int = 20) -> Figure:
    """Histogram of a layer's unit SIs, units selective above chance stacked apart where known.

    Args:
        selectivity: (units,) selectivity indices.
        layer: the layer's name (title).
        selective: optional (units,) booleans: selective above chance (the
            label-permutation null's q-value below the FDR); their share is
            in the title.
        dead: optional (units,) booleans: dead units, counted in the title.
        bins: number of bins over [min(0, SI), max(1, SI)].

    Returns:
        A small `matplotlib.figure.Figure` on its own Agg canvas.
    """
    selectivity = np.asarray(selectivity, dtype=np.float64)
    finite = np.isfinite(selectivity)
    low = min(0.0, float(selectivity[finite].min())) if finite.any() else 0.0
    high = max(1.0, float(selectivity[finite].max())) if finite.any() else 1.0
    edges = np.linspace(low, high, int(bins) + 1)
    with matplotlib.rc_context(FIGURE_STYLE):
        figure = Figure(figsize=(3.4, 2.3), layout="constrained")
        FigureCanvasAgg(figure)
        ax = figure.add_subplot()
        title = f"{layer}: {len(selectivity)} units, mean SI {np.nanmean(selectivity):.3f}"
        if selective is not None:
            selective = np.asarray(selective, dtype=bool)
            ax.hist([selectivity[finite & ~selective], selectivity[finite & selective]], bins=edges, stacked=True,
                    color=["0.6", PREFERRED_COLOR], label=["not selective", "selective (null)"])
            ax.legend(fontsize=6, loc="upper right")
            title += f"\n{selective.mean():.0%} selective above chance"
        else:
            ax.hist(selectivity[finite], bins=edges, color="0.45")
        if dead is not None and np.any(dead):
            title += f", {int(np.sum(dead))} dead"
        ax.set_title(title, fontsize=7, fontweight="normal")
        ax.set_xlabel("class selectivity index", fontsize=7)
        ax.set_ylabel("units", fontsize=7)
        ax.tick_params(labelsize=6)
    return figure


def save_compact_png(figure, path: str, dpi: int) -> str:
    """Saves `figure` as a palette PNG (256 colours, Pillow's median cut); returns `path`."""
    from PIL import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    buffer.seek(0)
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path

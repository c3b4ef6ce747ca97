"""Significance marks and text labels that keep clear of the data.

A significance mark says which way an effect goes as well as how strong it
is: "▲**" above the upper end of the error bar of a value that is higher
than its reference, "▼**" below the lower end of one that is lower. The
asterisks give the corrected p-value (`stats.significance_stars`).

Marks are drawn at a fixed offset in points from the end of their error
bar, which keeps them off their own bar at any axis scale. Neighbouring
points, their bars, other marks and the circle of a highlighted point can
still be in the way; `keep_labels_clear` (run by `style.styled` on every
figure once it is built) lays the figure out, moves each mark further away
from its point (in the direction of its effect) until it is clear of them,
moves a reference-line label (gid `REFERENCE_LABEL_GID`) to the first free
end of its line, and widens the x and y ranges until every label is inside
its panel, not under the panel title or outside the axes.

Tests find marks by gid: `MARK_GIDS` ("significance_higher",
"significance_lower").
"""

from __future__ import annotations

import math
from typing import Sequence

import matplotlib.collections
import matplotlib.container
import matplotlib.text
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.path import Path
from matplotlib.transforms import Bbox

from tf_selectivity.measures import stats

HIGHER_MARK = "▲"
LOWER_MARK = "▼"
HIGHER_GID = "significance_higher"
LOWER_GID = "significance_lower"
MARK_GIDS = (HIGHER_GID, LOWER_GID)
REFERENCE_LABEL_GID = "reference_label"

# Gap between the end of an error bar (or a marker) and its mark, in points.
MARK_PAD_POINTS = 4.0
# How far a mark may be pushed past neighbouring data, in points, and the step.
_MAX_SHIFT_POINTS = 60.0
_SHIFT_STEP_POINTS = 1.5
# Clearance kept around data and other labels, in points.
_CLEARANCE_POINTS = 1.0
_LAYOUT_PASSES = 5


def marks_legend(higher: str, lower: str, test: str) -> str:
    """Footnote text for the marks.

    Example: `marks_legend("accuracy higher", "lower than at α = 0", "Welch
    t-test")` is "▲ / ▼: accuracy higher / lower than at α = 0 (Welch
    t-test; *p < 0.05, **p < 0.001, ***p < 1e-6)."
    """
    return (
        f"{HIGHER_MARK} / {LOWER_MARK}: {higher} / {lower} "
        f"({test}; {stats.stars_legend()})."
    )


def draw_significance_marks(
    ax: Axes,
    xs: Sequence[float],
    lows: Sequence[float],
    highs: Sequence[float],
    p_values: Sequence[float],
    directions: Sequence[float],
    color: str | tuple = "black",
):
    """Marks at significant points, on the side of their effect.

    Args:
        ax: Target axes.
        xs: x of each point (data units).
        lows: Lower end of each point's error bar (or the value itself
            where it has none), in data units.
        highs: Upper end, likewise.
        p_values: Corrected p-value per point; NaN or not significant
            draws nothing.
        directions: Sign of the effect per point (> 0: higher than the
            reference, < 0: lower); its size is not used.
        color: Text colour.
    """
    for x, low, high, p, direction in zip(xs, lows, highs, p_values, directions):
        stars = stats.significance_stars(p)
        if not stars or not np.isfinite(direction) or direction == 0:
            continue
        higher = direction > 0
        anchor = high if higher else low
        if not (np.isfinite(x) and np.isfinite(anchor)):
            continue
        ax.annotate(
            (HIGHER_MARK if higher else LOWER_MARK) + stars,
            (float(x), float(anchor)),
            xytext=(0, MARK_PAD_POINTS if higher else -MARK_PAD_POINTS),
            textcoords="offset points",
            ha="center",
            va="bottom" if higher else "top",
            fontsize=8,
            fontweight="bold",
            color=color,
            gid=HIGHER_GID if higher else LOWER_GID,
        )


# ------------------------------------------------------------ layout pass


def _pixels(figure: Figure, points: float) -> float:
    return points * figure.dpi / 72.0


def _marker_boxes(ax: Axes, renderer) -> list[Bbox]:
    """Display boxes of the markers of lines, error-bar caps and scatters."""
    boxes = []
    for line in ax.lines:
        if not line.get_visible() or line.get_marker() in (None, "None", "", " "):
            continue
        half = renderer.points_to_pixels(line.get_markersize() / 2 + line.get_markeredgewidth() / 2)
        data = np.column_stack([line.get_xdata(), line.get_ydata()]).astype(float)
        xy = line.get_transform().transform(data)
        for x, y in xy[np.isfinite(xy).all(axis=1)]:
            boxes.append(Bbox([[x - half, y - half], [x + half, y + half]]))
    for collection in ax.collections:
        if not (isinstance(collection, matplotlib.collections.PathCollection)
                and collection.get_visible()):
            continue
        sizes = collection.get_sizes()
        offsets = collection.get_offset_transform().transform(
            np.asarray(collection.get_offsets(), dtype=float))
        for index, (x, y) in enumerate(offsets):
            if not np.isfinite([x, y]).all():
                continue
            size = sizes[index % len(sizes)] if len(sizes) else 36.0
            half = renderer.points_to_pixels(math.sqrt(size) / 2)
            boxes.append(Bbox([[x - half, y - half], [x + half, y + half]]))
    return boxes


def _error_bar_paths(ax: Axes) -> list[Path]:
    """Every error-bar segment of `ax` in display coordinates."""
    paths = []
    for container in ax.containers:
        if not isinstance(container, matplotlib.container.ErrorbarContainer):
            continue
        for collection in container.lines[2]:
            for segment in collection.get_segments():
                segment = np.asarray(segment, dtype=float)
                if segment.size == 0 or not np.isfinite(segment).all():
                    continue
                paths.append(Path(collection.get_transform().transform(segment)))
    return paths


class _Obstacles:
    """What a label must not cover: markers, error bars, the legend, other labels."""

    def __init__(self, ax: Axes, renderer):
        self.boxes = _marker_boxes(ax, renderer)
        legend = ax.get_legend()
        if legend is not None and legend.get_visible():
            self.boxes.append(legend.get_window_extent(renderer))
        self.paths = _error_bar_paths(ax)

    def hits(self, box: Bbox) -> int:
        return sum(box.overlaps(other) for other in self.boxes) + sum(
            path.intersects_bbox(box, filled=False) for path in self.paths
        )


def _padded(box: Bbox, pixels: float) -> Bbox:
    return Bbox([[box.x0 - pixels, box.y0 - pixels], [box.x1 + pixels, box.y1 + pixels]])


def _triangle_centring(mark: matplotlib.text.Annotation, renderer) -> float:
    """x offset (points) that puts the mark's triangle, not its middle, over the point."""
    text = mark.get_text()
    prop = mark.get_fontproperties()
    full, _, _ = renderer.get_text_width_height_descent(text, prop, ismath=False)
    triangle, _, _ = renderer.get_text_width_height_descent(text[0], prop, ismath=False)
    return (full - triangle) / 2 / renderer.points_to_pixels(1.0)


def _place_mark(mark: matplotlib.text.Annotation, obstacles: _Obstacles, renderer, clearance: float):
    """Moves `mark` away from its point, in points, until nothing is under it."""
    sign = 1.0 if mark.get_gid() == HIGHER_GID else -1.0
    x_offset = _triangle_centring(mark, renderer)
    start = MARK_PAD_POINTS
    best_offset, best_hits = start, None
    offset = start
    while offset <= start + _MAX_SHIFT_POINTS:
        mark.xyann = (x_offset, sign * offset)
        hits = obstacles.hits(_padded(mark.get_window_extent(renderer), clearance))
        if best_hits is None or hits < best_hits:
            best_offset, best_hits = offset, hits
        if hits == 0:
            break
        offset += _SHIFT_STEP_POINTS
    mark.xyann = (x_offset, sign * best_offset)


def _place_reference_label(label: matplotlib.text.Text, obstacles: _Obstacles, renderer,
                           clearance: float):
    """Puts a label of a horizontal line at the first free end of the line.

    The label's position is (x in axes fraction, y in data) on the line;
    candidates are the right and left ends, just above or just below it.
    """
    _, y = label.get_position()
    best, best_hits = None, None
    for x, ha in ((0.99, "right"), (0.01, "left")):
        for va in ("bottom", "top"):
            label.set_position((x, y))
            label.set_horizontalalignment(ha)
            label.set_verticalalignment(va)
            hits = obstacles.hits(_padded(label.get_window_extent(renderer), clearance))
            if best_hits is None or hits < best_hits:
                best, best_hits = (x, ha, va), hits
            if hits == 0:
                return
    x, ha, va = best
    label.set_position((x, y))
    label.set_horizontalalignment(ha)
    label.set_verticalalignment(va)


def _widen(ax: Axes, axis: str, before: float, after: float, pixels: float):
    """Widens one axis of `ax` by `before` / `after` display pixels (in its scale)."""
    scale = (ax.xaxis if axis == "x" else ax.yaxis).get_transform()
    get_limits, set_limits = (ax.get_xlim, ax.set_xlim) if axis == "x" else (ax.get_ylim, ax.set_ylim)
    low, high = scale.transform(np.array(get_limits(), dtype=float))
    per_pixel = (high - low) / max(pixels, 1.0)
    # The labels are offset in points from their data, so widening the range
    # moves them inwards a little more than needed; 15% more than the
    # overshoot settles most figures in one widening (the next pass checks).
    low -= 1.15 * max(before, 0.0) * per_pixel
    high += 1.15 * max(after, 0.0) * per_pixel
    set_limits(scale.inverted().transform(np.array([low, high])))


def _fit_ranges(ax: Axes, boxes: list[Bbox], renderer, margin: float) -> bool:
    """Widens the ranges of `ax` until every box is inside the axes."""
    if not boxes:
        return False
    axes_box = ax.get_window_extent(renderer)
    right = max(box.x1 for box in boxes) + margin - axes_box.x1
    left = axes_box.x0 - (min(box.x0 for box in boxes) - margin)
    above = max(box.y1 for box in boxes) + margin - axes_box.y1
    below = axes_box.y0 - (min(box.y0 for box in boxes) - margin)
    changed = False
    if left > 0.5 or right > 0.5:
        _widen(ax, "x", left if left > 0.5 else 0.0, right if right > 0.5 else 0.0,
               axes_box.width)
        changed = True
    if below > 0.5 or above > 0.5:
        _widen(ax, "y", below if below > 0.5 else 0.0, above if above > 0.5 else 0.0,
               axes_box.height)
        changed = True
    return changed


def keep_labels_clear(figure: Figure):
    """Moves marks and reference labels off the data and into their panels.

    Lays the figure out (`draw_without_rendering`), places every label of
    every panel (see the module docstring), widens the ranges where a label
    would leave its panel, and repeats until nothing moves (a widened range
    moves the data under the labels).

    Args:
        figure: A figure with a canvas (see `style.new_figure`).
    """
    labelled = [ax for ax in figure.axes
                if any(t.get_gid() in MARK_GIDS + (REFERENCE_LABEL_GID,) for t in ax.texts)]
    if not labelled:
        return  # Nothing to place: no need to lay the figure out.
    for _ in range(_LAYOUT_PASSES):
        figure.draw_without_rendering()
        renderer = figure.canvas.get_renderer()
        clearance = _pixels(figure, _CLEARANCE_POINTS)
        changed = False
        for ax in labelled:
            marks = [t for t in ax.texts if t.get_gid() in MARK_GIDS]
            references = [t for t in ax.texts if t.get_gid() == REFERENCE_LABEL_GID]
            obstacles = _Obstacles(ax, renderer)
            for mark in marks:
                _place_mark(mark, obstacles, renderer, clearance)
                obstacles.boxes.append(mark.get_window_extent(renderer))
            for label in references:
                _place_reference_label(label, obstacles, renderer, clearance)
                obstacles.boxes.append(label.get_window_extent(renderer))
            boxes = [t.get_window_extent(renderer) for t in marks + references]
            changed |= _fit_ranges(ax, boxes, renderer, _pixels(figure, 2.0))
        if not changed:
            return

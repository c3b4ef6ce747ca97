"""What a unit responds to: top images, activation maps, thresholds and tuning curves.

`unit_gallery` streams a test set through a model in memory (built with
`build_model` or a user's model passed through `instrument()`) and keeps,
for the chosen units of the chosen probed layers, what a researcher looks
at to believe a selectivity number (NetDissect's convention for the images
and maps):

* the top-k test images by the spatial **maximum** of the unit's feature
  map and by its spatial **mean** (the response the selectivity index
  uses), with the unit's feature maps for those images;
* the unit's top-``top_fraction`` threshold (0.5% by default) over every
  value of its feature maps on the test set: ``np.quantile(values,
  1 - top_fraction)`` (linear interpolation), exact, from a running top-m
  of the values;
* its class tuning curve: the mean response per class with a t-based
  confidence interval (95% by default);
* its selectivity index (eq. 1, or the bounded index), preferred class,
  dead flag and precision (Appendix A.5).

Memory does not grow with the test set beyond the running top-m of the
threshold (m = about ``top_fraction`` of the values of one unit): the top-k
images, their maps, the per-class moments and the selectivity sums are
updated batch by batch, and the feature maps of a batch are dropped once
it has passed. Ties are broken by image order (earlier images first), so
the results do not depend on the batch size.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from tf_selectivity.core.progress import Progress
from tf_selectivity.core.settings import ParameterError
from tf_selectivity.measures.selectivity_index import DEFAULT_SELECTIVITY_INDEX, validate_index

__all__ = [
    "RANKINGS",
    "UnitGallery",
    "RunningTopK",
    "RunningTopValues",
    "ClassMoments",
    "unit_gallery",
    "interpolated_quantile",
]

# How the top images of a unit are ranked: the spatial maximum of its
# feature map (NetDissect) or the spatial mean (the selectivity index's).
RANKINGS = ("max", "mean")


class RunningTopK:
    """Per unit, the `k` largest scores seen so far, their image indices and maps.

    Ties are broken by image order (earlier images first).

    Args:
        k: number of images kept per unit.
    """

    def __init__(self, k: int):
        self.k = int(k)
        self.values = None  # (kept, units) float64
        self.index = None  # (kept, units) int64
        self.maps = None  # (kept, h, w, units) float32
        self.seen = 0

    def update(self, scores: np.ndarray, maps: np.ndarray) -> None:
        """Adds a batch: `scores` (B, units), `maps` (B, h, w, units)."""
        batch, units = scores.shape
        index = np.broadcast_to(np.arange(self.seen, self.seen + batch)[:, None], (batch, units))
        self.seen += batch
        if self.values is None:
            values, cand_index, cand_maps = scores.astype(np.float64), index, maps
        else:
            values = np.concatenate([self.values, scores], axis=0)
            cand_index = np.concatenate([self.index, index], axis=0)
            cand_maps = np.concatenate([self.maps, maps], axis=0)
        keep = min(self.k, values.shape[0])
        order = np.lexsort((cand_index, -values), axis=0)[:keep]  # (keep, units)
        self.values = np.take_along_axis(values, order, axis=0)
        self.index = np.take_along_axis(cand_index, order, axis=0)
        self.maps = np.take_along_axis(cand_maps, order[:, None, None, :], axis=0).astype(np.float32)


class RunningTopValues:
    """Per unit, the `m` largest values seen so far (unordered), for an exact upper quantile.

    Once `m` values are kept, a new value enters only above the smallest
    kept one (a value equal to it leaves the kept values' multiset as it
    is), so after the first batches few values are compared further.

    Args:
        m: number of values kept per unit.
    """

    def __init__(self, m: int):
        self.m = int(m)
        self.kept = None  # per unit: (<= m,) float64
        self.count = 0

    def update(self, values: np.ndarray) -> None:
        """Adds (n, units) values."""
        self.count += values.shape[0]
        values = np.asarray(values)
        if self.kept is None:
            self.kept = [np.empty(0) for _ in range(values.shape[1])]
        floors = np.array([kept.min() if len(kept) >= self.m else -np.inf for kept in self.kept])
        entering = values > floors.astype(values.dtype)[None, :]
        for unit, kept in enumerate(self.kept):
            new = values[entering[:, unit], unit].astype(np.float64)
            if not len(new):
                continue
            merged = np.concatenate([kept, new])
            if len(merged) > self.m:
                merged = np.partition(merged, len(merged) - self.m)[-self.m :]
            self.kept[unit] = merged

    def quantile(self, q: float) -> np.ndarray:
        """(units,) ``np.quantile(all values, q)`` (linear), if the top-m holds its order statistics.

        Raises:
            ValueError: `q` needs values below the kept ones.
        """
        n = self.count
        position = (n - 1) * q
        low = int(math.floor(position))
        high = min(low + 1, n - 1)
        offset = n - min(self.m, n)  # order statistics below the kept values
        if low < offset:
            raise ValueError(f"The quantile {q} needs the {low}-th smallest of {n} values; only the top {self.m} are kept.")
        ordered = np.stack([np.sort(kept) for kept in self.kept], axis=1)
        return interpolated_quantile(ordered[low - offset], ordered[high - offset], position - low)


def interpolated_quantile(below: np.ndarray, above: np.ndarray, fraction: float) -> np.ndarray:
    """NumPy's linear interpolation between two order statistics (its ``_lerp``)."""
    difference = above - below
    if fraction >= 0.5:
        return above - difference * (1 - fraction)
    return below + difference * fraction


class ClassMoments:
    """Per class and unit: count, mean and sum of squared deviations (Chan et al.'s merge).

    Args:
        num_classes: number of classes.
        units: number of units.
    """

    def __init__(self, num_classes: int, units: int):
        self.count = np.zeros((num_classes, 1))
        self.mean = np.zeros((num_classes, units))
        self.m2 = np.zeros((num_classes, units))

    def update(self, responses: np.ndarray, labels: np.ndarray) -> None:
        """Adds (B, units) responses with their (B,) labels."""
        for c in np.unique(labels):
            batch = responses[labels == c].astype(np.float64)
            n_b = batch.shape[0]
            mean_b = batch.mean(axis=0)
            m2_b = ((batch - mean_b) ** 2).sum(axis=0)
            n_a = self.count[c, 0]
            n = n_a + n_b
            delta = mean_b - self.mean[c]
            self.mean[c] = self.mean[c] + delta * (n_b / n)
            self.m2[c] = self.m2[c] + m2_b + delta**2 * (n_a * n_b / n)
            self.count[c, 0] = n

    def confidence_interval(self, confidence: float):
        """(low, high), each (classes, units): the t interval of each class mean (NaN below 2 samples)."""
        from scipy import stats as scipy_stats

        count = self.count
        with np.errstate(invalid="ignore", divide="ignore"):
            sem = np.sqrt(self.m2 / (count - 1)) / np.sqrt(count)
            t = scipy_stats.t.ppf(0.5 + confidence / 2, np.maximum(count - 1, 1))
        half = np.where(count >= 2, t * sem, np.nan)
        return self.mean - half, self.mean + half


@dataclasses.dataclass
class UnitGallery:
    """Outcome of `unit_gallery`.

    Attributes:
        units: one row per chosen unit: ``layer``, ``layer_index``, ``unit``,
            ``selectivity``, ``preferred_class``, ``dead``, ``precision``,
            ``threshold`` (the top-``top_fraction`` value of its maps),
            ``map_height``, ``map_width``.
        top_images: one row per (unit, ranking, rank): ``layer``, ``unit``,
            ``ranking`` ("max" or "mean"), ``rank`` (0 = strongest),
            ``image`` (index into the test images), ``label``, ``value``
            (the ranking's score), ``spatial_max``, ``spatial_mean``.
        tuning: one row per (unit, class): ``layer``, ``unit``, ``class``,
            ``count``, ``mean``, ``ci_low``, ``ci_high``, ``preferred``.
        maps: (layer, unit, ranking) -> (k, h, w) float32 feature maps of
            the top images, in rank order.
        num_classes: number of classes.
        num_images: number of test images.
        image_shape: (H, W, C) of the images.
        k: images per unit and ranking (at most the number of images).
        top_fraction: the threshold's upper fraction.
        confidence: the tuning curves' confidence level.
        index: the selectivity index ("eq1" or "bounded").
    """

    units: pd.DataFrame
    top_images: pd.DataFrame
    tuning: pd.DataFrame
    maps: dict
    num_classes: int
    num_images: int
    image_shape: tuple
    k: int
    top_fraction: float
    confidence: float
    index: str

    def unit(self, layer: str, unit: int) -> pd.Series:
        """The `units` row of one unit."""
        rows = self.units[(self.units["layer"] == layer) & (self.units["unit"] == unit)]
        if rows.empty:
            raise ParameterError("unit", f"{layer}:{unit} is not in this gallery")
        return rows.iloc[0]


def _check_probability(value, parameter: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ParameterError(parameter, f"must be a number in (0, 1); got {value!r}") from None
    if not 0.0 < value < 1.0:
        raise ParameterError(parameter, f"must be in (0, 1); got {value:g}")
    return value


def _chosen_units(units, layers, probes, widths) -> dict:
    """layer -> sorted unit indices (None: every unit, to pick from after the pass)."""
    if units is not None and not isinstance(units, Mapping):
        raise ParameterError("units", "must map probe names to unit indices, e.g. {'conv1': [3, 17]}")
    if layers is None:
        layers = list(units) if units else probes
    layers = [str(name) for name in layers]
    for parameter, names in (("units", list(units or {})), ("layers", layers)):
        unknown = [str(name) for name in names if name not in probes]
        if unknown or (parameter == "layers" and not names):
            raise ParameterError(
                parameter, f"must name probes of the model ({', '.join(probes)}); got {', '.join(unknown) or 'none'}"
            )
    chosen = {}
    for name in [p for p in probes if p in set(layers) | set(units or {})]:
        if units is None or name not in units:
            chosen[name] = None
            continue
        indices = units[name]
        indices = [indices] if np.isscalar(indices) else list(indices)
        if not indices:
            raise ParameterError("units", f"names no units of layer {name}")
        bad = [i for i in indices if not isinstance(i, (int, np.integer)) or not 0 <= i < widths[name]]
        if bad:
            raise ParameterError(
                "units", f"unit {bad[0]!r} of layer {name} is out of range: it has units 0..{widths[name] - 1}"
            )
        chosen[name] = sorted({int(i) for i in indices})
    return chosen


def unit_gallery(
    model,
    images,
    labels,
    *,
    units: Mapping[str, Sequence[int]] | None = None,
    layers: Sequence[str] | None = None,
    k: int = 10,
    top_fraction: float = 0.005,
    confidence: float = 0.95,
    index: str = DEFAULT_SELECTIVITY_INDEX,
    precision_top_n: int | None = None,
    batch_size: int = 500,
    verbose: int = 0,
) -> UnitGallery:
    """Top images, activation maps, threshold and tuning curve of chosen units.

    Args:
        model: a `tf_selectivity.models.SelectivityModel` (from `build_model`
            or `instrument()`), any image size and number of classes.
        images: (N, H, W, C) test images as the model takes them.
        labels: (N,) integer labels in [0, classes).
        units: probe name -> unit indices to show. Layers not named (of
            `layers`) get their most and least selective unit (dead units
            excluded where any unit is alive).
        layers: probe names whose most and least selective units are shown
            besides `units` (default: the layers of `units`; without
            `units`, every probe).
        k: top images kept per unit and ranking, >= 1 (at most N are).
        top_fraction: the upper fraction of a unit's feature-map values
            above which its maps are outlined, in (0, 1): NetDissect's 0.5%.
        confidence: level of the tuning curves' t intervals, in (0, 1).
        index: "eq1" (the paper's) or "bounded".
        precision_top_n: N of the precision metric (default: 1000, capped at
            the smallest class's number of images, as the analysis does).
        batch_size: images per forward pass.
        verbose: 1 shows the progress of the pass over the images (a bar on
            a terminal, a line elsewhere), 0 nothing.

    Returns:
        A `UnitGallery`.

    Raises:
        ParameterError: an unknown layer, a unit out of range, k < 1, a
            fraction or confidence outside (0, 1), an unknown index, a model
            without probes, or labels that do not match the images.
    """
    import keras

    from tf_selectivity.measures.unit_statistics import TopResponses
    from tf_selectivity.measures.selectivity import ClassSelectivityAccumulator

    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ParameterError("k", f"must be an integer >= 1; got {k!r}")
    top_fraction = _check_probability(top_fraction, "top_fraction")
    confidence = _check_probability(confidence, "confidence")
    validate_index(index, "index")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ParameterError("batch_size", f"must be an integer >= 1; got {batch_size!r}")
    probes = list(getattr(model, "probe_names", None) or [])
    if not probes:
        raise ParameterError("model", "has no selectivity probes: build it with build_model or pass it through instrument()")
    widths = {probe.name: int(probe.output.shape[-1]) for probe in model.probes}
    chosen = _chosen_units(units, layers, probes, widths)
    images = np.asarray(images)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if len(labels) != len(images) or len(labels) == 0:
        raise ParameterError("labels", f"must hold one label per image; got {len(labels)} for {len(images)} images")
    num_classes = int(model.probes[0].num_classes)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ParameterError("labels", f"must be in [0, {num_classes}); got {labels.min()}..{labels.max()}")
    num_images = len(labels)
    if precision_top_n is None:
        precision_top_n = int(min(1000, np.bincount(labels, minlength=num_classes).min() or 1))
    k = int(min(k, num_images))

    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    outputs = {probe.name: probe.output for probe in model.probes if probe.name in chosen}
    maps_model = keras.Model(inputs, outputs, name=f"{model.name}_unit_maps")

    def columns(name):
        return slice(None) if chosen[name] is None else chosen[name]

    state = {}
    with Progress("Unit galleries", num_images, unit="image", enabled=verbose > 0) as bar:
        for start in range(0, num_images, batch_size):
            batch_labels = labels[start : start + batch_size]
            result = maps_model.predict_on_batch(np.asarray(images[start : start + batch_size], dtype=np.float32))
            for name in chosen:
                maps = np.asarray(keras.ops.convert_to_numpy(result[name]), dtype=np.float32)
                if maps.ndim == 2:
                    maps = maps[:, None, None, :]
                elif maps.ndim != 4:
                    maps = maps.reshape(maps.shape[0], -1, 1, maps.shape[-1])
                means = maps.astype(np.float64).mean(axis=(1, 2))  # every unit: the SI's responses
                if name not in state:
                    height, width = maps.shape[1:3]
                    shown = maps[..., columns(name)].shape[-1]
                    total = num_images * height * width
                    keep = total - int(math.floor((total - 1) * (1 - top_fraction)))
                    state[name] = {
                        "si": ClassSelectivityAccumulator(num_classes, index),
                        "top": TopResponses(precision_top_n),
                        "moments": ClassMoments(num_classes, shown),
                        "max": RunningTopK(k),
                        "mean": RunningTopK(k),
                        "values": RunningTopValues(keep),
                        "shape": (height, width),
                    }
                layer = state[name]
                layer["si"].update(means, batch_labels)
                layer["top"].update(means, batch_labels)
                shown_maps = maps[..., columns(name)]
                shown_means = means[:, columns(name)]
                layer["moments"].update(shown_means, batch_labels)
                layer["max"].update(shown_maps.max(axis=(1, 2)).astype(np.float64), shown_maps)
                layer["mean"].update(shown_means, shown_maps)
                layer["values"].update(shown_maps.reshape(-1, shown_maps.shape[-1]))
            bar.update(len(batch_labels))

    unit_rows, top_rows, tuning_rows, kept_maps = [], [], [], {}
    for name, layer in state.items():
        si = layer["si"].selectivity()
        dead = layer["si"].dead_units()
        preferred = layer["si"].preferred_class()
        precision = np.where(dead, np.nan, layer["top"].precision(num_classes))
        shown = chosen[name] if chosen[name] is not None else list(range(len(si)))
        position = {unit: i for i, unit in enumerate(shown)}
        if chosen[name] is None:  # the most and least selective unit
            alive = np.flatnonzero(~dead) if (~dead).any() else np.arange(len(si))
            picked = sorted({int(alive[np.argmax(si[alive])]), int(alive[np.argmin(si[alive])])})
        else:
            picked = shown
        threshold = layer["values"].quantile(1 - top_fraction)
        low, high = layer["moments"].confidence_interval(confidence)
        height, width = layer["shape"]
        for unit in picked:
            j = position[unit]
            unit_rows.append({
                "layer": name, "layer_index": probes.index(name), "unit": unit,
                "selectivity": float(si[unit]), "preferred_class": int(preferred[unit]),
                "dead": bool(dead[unit]), "precision": float(precision[unit]),
                "threshold": float(threshold[j]), "map_height": height, "map_width": width,
            })
            for ranking in RANKINGS:
                top = layer[ranking]
                unit_maps = top.maps[..., j]
                kept_maps[(name, unit, ranking)] = unit_maps
                for rank in range(top.values.shape[0]):
                    image = int(top.index[rank, j])
                    top_rows.append({
                        "layer": name, "unit": unit, "ranking": ranking, "rank": rank, "image": image,
                        "label": int(labels[image]), "value": float(top.values[rank, j]),
                        "spatial_max": float(unit_maps[rank].max()),
                        "spatial_mean": float(unit_maps[rank].astype(np.float64).mean()),
                    })
            moments = layer["moments"]
            for c in range(num_classes):
                tuning_rows.append({
                    "layer": name, "unit": unit, "class": c, "count": int(moments.count[c, 0]),
                    "mean": float(moments.mean[c, j]), "ci_low": float(low[c, j]), "ci_high": float(high[c, j]),
                    "preferred": c == int(preferred[unit]),
                })
    return UnitGallery(
        units=pd.DataFrame(unit_rows),
        top_images=pd.DataFrame(top_rows),
        tuning=pd.DataFrame(tuning_rows),
        maps=kept_maps,
        num_classes=num_classes,
        num_images=num_images,
        image_shape=tuple(int(s) for s in images.shape[1:]),
        k=k,
        top_fraction=top_fraction,
        confidence=confidence,
        index=index,
    )

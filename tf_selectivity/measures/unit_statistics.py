"""Streaming test-set statistics of a network's units.

A *response function* maps a batch of images to ``{"logits": (B, classes),
layer_name: (B, units), ...}`` (unit responses: each unit's mean over spatial
positions). `evaluate_responses` feeds it the test set batch by batch and
accumulates, per layer, everything the analyses need in memory that does not
grow with the number of samples:

* class sums and counts -> class selectivity index (eq. 1) per unit,
* the largest absolute response -> dead units (Appendix A.6),
* the top-N responses with their labels -> precision (Appendix A.5),
* optionally, every response written to a memory-mapped file on disk (for CCA),
* optionally, every response kept in memory (for the label-permutation null
  of `tf_selectivity.measures.unit_null`, which needs them all).

Training (`tf_selectivity.training.loop`: the test metrics of `summary.json`)
and the analysis (`tf_selectivity.analysis.stages.selectivity`) both evaluate through
this module, so the two report the same numbers.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from tf_selectivity.core.files import temporary_path
from tf_selectivity.measures.selectivity import DEFAULT_SELECTIVITY_INDEX, ClassSelectivityAccumulator

__all__ = [
    "TopResponses",
    "LayerStatistics",
    "EvaluationResult",
    "evaluate_responses",
]


class TopResponses:
    """Keeps, per unit, the `n` largest responses seen so far and their labels.

    Ties are broken by sample order (earlier samples first), so results do not
    depend on the batch size.

    Args:
        n: number of top responses kept per unit.
    """

    def __init__(self, n: int):
        if n < 1:
            raise ValueError(f"n must be positive; got {n}.")
        self.n = int(n)
        self.values = None  # (k, units) float64, k <= n
        self.labels = None  # (k, units) int64
        self.sample_index = None  # (k, units) int64
        self.seen = 0

    def update(self, responses: np.ndarray, labels: np.ndarray) -> None:
        """Adds a batch of responses (B, units) with their labels (B,)."""
        batch, units = responses.shape
        index = np.broadcast_to(np.arange(self.seen, self.seen + batch)[:, None], (batch, units))
        batch_labels = np.broadcast_to(np.asarray(labels, np.int64)[:, None], (batch, units))
        self.seen += batch
        if self.values is None:
            values, cand_labels, cand_index = responses.astype(np.float64), batch_labels, index
        else:
            values = np.concatenate([self.values, responses], axis=0)
            cand_labels = np.concatenate([self.labels, batch_labels], axis=0)
            cand_index = np.concatenate([self.sample_index, index], axis=0)
        keep = min(self.n, values.shape[0])
        # Sort each column by value (descending), then by sample index.
        order = np.lexsort((cand_index, -values), axis=0)[:keep]
        self.values = np.take_along_axis(values, order, axis=0)
        self.labels = np.take_along_axis(cand_labels, order, axis=0)
        self.sample_index = np.take_along_axis(cand_index, order, axis=0)

    def precision(self, num_classes: int) -> np.ndarray:
        """(units,) share of the most common class among each unit's top responses."""
        if self.labels is None:
            raise ValueError("No responses were added.")
        counts = np.stack(
            [(self.labels == c).sum(axis=0) for c in range(num_classes)], axis=0
        )  # (classes, units)
        return counts.max(axis=0) / self.labels.shape[0]


class LayerStatistics:
    """All streaming statistics of one layer.

    Args:
        num_classes: number of classes.
        precision_top_n: N of the precision metric (None: skip precision).
        selectivity_index: "eq1" (the paper's, default) or "bounded".
    """

    def __init__(
        self,
        num_classes: int,
        precision_top_n: int | None = None,
        selectivity_index: str = DEFAULT_SELECTIVITY_INDEX,
    ):
        self.num_classes = num_classes
        self.selectivity = ClassSelectivityAccumulator(num_classes, selectivity_index)
        self.top = TopResponses(precision_top_n) if precision_top_n else None

    def update(self, responses: np.ndarray, labels: np.ndarray) -> None:
        self.selectivity.update(responses, labels)
        if self.top is not None:
            self.top.update(responses, labels)

    def unit_table(self) -> dict:
        """Per-unit arrays: selectivity, dead, eq1_guarded, preferred_class, precision.

        Precision is NaN for dead units: a unit that never responds has no
        "most strongly activating" samples, so its precision is undefined.
        """
        dead = self.selectivity.dead_units()
        table = {
            "selectivity": self.selectivity.selectivity(),
            "dead": dead,
            "eq1_guarded": self.selectivity.eq1_guard_active(),
            "preferred_class": self.selectivity.preferred_class(),
        }
        if self.top is not None:
            precision = self.top.precision(self.num_classes)
            table["precision"] = np.where(dead, np.nan, precision)
        return table


@dataclasses.dataclass
class EvaluationResult:
    """Outcome of `evaluate_responses`."""

    num_samples: int
    num_correct: int
    layers: dict  # layer name -> LayerStatistics, in network order
    # layer name -> (num_samples, units) float32, with keep_responses=True.
    responses: dict | None = None

    @property
    def accuracy(self) -> float:
        return self.num_correct / max(self.num_samples, 1)

    def layer_selectivity(self) -> list:
        """Mean SI of each layer (dead units included, SI = 0), network order."""
        return [float(np.mean(s.selectivity.selectivity())) for s in self.layers.values()]

    def mean_selectivity(self) -> float:
        """Eq. 3 over the evaluated samples."""
        return float(np.mean(self.layer_selectivity()))


def evaluate_responses(
    response_fn: Callable[[np.ndarray], Mapping[str, np.ndarray]],
    batches: Iterable,
    *,
    num_classes: int,
    layer_names: Sequence[str],
    num_samples: int | None = None,
    precision_top_n: int | None = None,
    response_dir: str | None = None,
    progress: Callable[[int], None] | None = None,
    selectivity_index: str = DEFAULT_SELECTIVITY_INDEX,
    keep_responses: bool = False,
) -> EvaluationResult:
    """Streams batches through `response_fn` and accumulates layer statistics.

    Args:
        response_fn: images (B, H, W, C) -> dict with "logits" and one
            (B, units) array per layer name (NumPy or backend tensors).
        batches: iterable of (images, labels) batches.
        num_classes: number of classes.
        layer_names: layers to analyse, in network order.
        num_samples: total number of samples; required with `response_dir`.
        precision_top_n: N of the precision metric (None: skip).
        response_dir: if set, every layer's responses are also written to
            ``response_dir/<layer>.npy`` as a (units, num_samples) float32 array
            (the layout CCA takes), through a memory map.
        progress: called with the number of samples of each processed batch.
        selectivity_index: the index reported: "eq1" (the paper's, default)
            or "bounded" (see `tf_selectivity.measures.selectivity`).
        keep_responses: also return every layer's (num_samples, units)
            responses in memory (float32), in sample order.

    Returns:
        An `EvaluationResult`.
    """
    import keras

    statistics = {
        name: LayerStatistics(num_classes, precision_top_n, selectivity_index)
        for name in layer_names
    }
    sinks = {}
    kept = {name: [] for name in layer_names} if keep_responses else None
    if response_dir is not None and num_samples is None:
        raise ValueError("num_samples is required to write responses to disk.")
    seen = correct = 0
    for images, labels in batches:
        outputs = response_fn(images)
        labels = np.asarray(labels).reshape(-1)
        logits = keras.ops.convert_to_numpy(outputs["logits"])
        correct += int((logits.argmax(axis=-1) == labels).sum())
        for name in layer_names:
            if name not in outputs:
                raise KeyError(f"The response function returned no layer {name!r}.")
            responses = np.asarray(keras.ops.convert_to_numpy(outputs[name]), dtype=np.float64)
            if responses.ndim != 2:
                responses = responses.reshape(responses.shape[0], -1, responses.shape[-1]).mean(axis=1)
            statistics[name].update(responses, labels)
            if kept is not None:
                kept[name].append(responses.astype(np.float32))
            if response_dir is not None:
                if name not in sinks:
                    os.makedirs(response_dir, exist_ok=True)
                    sinks[name] = np.lib.format.open_memmap(
                        temporary_path(os.path.join(response_dir, f"{name}.npy"), suffix=".npy"),
                        mode="w+",
                        dtype=np.float32,
                        shape=(responses.shape[1], num_samples),
                    )
                sinks[name][:, seen : seen + len(labels)] = responses.T
        seen += len(labels)
        if progress is not None:
            progress(len(labels))
    if response_dir is not None:
        if seen != num_samples:
            raise ValueError(f"Expected {num_samples} samples, got {seen}.")
        for name, sink in sinks.items():
            sink.flush()
            del sink
            final = os.path.join(response_dir, f"{name}.npy")
            os.replace(temporary_path(final, suffix=".npy"), final)
    if kept is not None:
        kept = {name: np.concatenate(parts) if parts else np.zeros((0, 0), np.float32) for name, parts in kept.items()}
    return EvaluationResult(num_samples=seen, num_correct=correct, layers=statistics, responses=kept)

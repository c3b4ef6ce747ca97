"""The class selectivity index (Leavitt & Morcos, eq. 1) and its averages (eq. 3).

A *unit* is a feature map (or a dense unit). Its *response* to one sample is the
mean of the map over all spatial positions. For each unit, with class-conditional
mean responses ``mu_1 .. mu_K``::

    mu_max  = max_k mu_k                       (the preferred class)
    mu_-max = mean of the other classes' means
    SI      = (mu_max - mu_-max) / (mu_max + mu_-max)          (eq. 1)

0 when every class has the same mean, 1 when a non-negative unit responds to a
single class only. Two indices are available (``index=``):

* ``"eq1"`` (the default; the paper's index, in the loss and in every reported
  value): eq. 1 as printed, with a guard where its denominator approaches zero
  or turns negative, which can only happen for responses that take negative
  values (leaky ReLU, or a probe before the non-linearity)::

      SI = (mu_max - mu_-max) / max(mu_max + mu_-max, g * (|mu_max| + |mu_-max|))

  with ``g = EQ1_GUARD = 0.1``. Where the guard is not active this *is* eq. 1.
  It is never active for non-negative (ReLU) responses, where
  ``mu_max + mu_-max = |mu_max| + |mu_-max|``. For a unit whose preferred-class
  mean is non-negative it is active exactly where eq. 1 would exceed
  ``1 / g = 10``: eq. 1 grows without bound as its denominator reaches zero
  (class means 1 and -0.999 give 1999), the guarded index saturates at 10 there,
  with a zero gradient on that plateau. A unit that is negative for every class
  (``mu_max < 0``; eq. 1 is then negative and means nothing) gets the
  continuation of that plateau, ``(mu_max - mu_-max) / (g (|mu_max| + |mu_-max|))``,
  which is continuous at ``mu_max = 0`` and lies in [0, 10]. So SI is always in
  [0, 1 / g], never NaN or infinite, and its gradient with respect to the two
  means is bounded by ``2 / (g^2 (|mu_max| + |mu_-max|))`` (the bounded index
  below: ``2 / (|mu_max| + |mu_-max|)``; in the loss an epsilon in the
  denominator bounds both for near-silent units). For a mixed-sign unit below the guard, e.g. class means 1 and -0.2,
  eq. 1 gives 1.5 with a non-zero gradient, so alpha can move it.
  `eq1_guard_active` says which units the guard touched; the analysis reports
  their share per layer.
* ``"bounded"``: ``(mu_max - mu_-max) / (|mu_max| + |mu_-max|)``, the index
  runs recorded without an index field were trained with. Equal to eq. 1 for non-negative responses and
  in [0, 1] always, but for a unit with ``mu_max > 0 > mu_-max`` it is exactly 1
  with a zero gradient (class means 1 and -0.2 give 1.0, eq. 1 gives 1.5): such
  units cannot be moved by alpha, so a leaky-ReLU sweep regularized with it
  optimizes a different loss from the paper's.

Conventions shared by both (tested in ``tests/test_selectivity.py``):

* **Dead units** (all class means zero, e.g. a ReLU unit that never fires) have
  SI = 0: there is no class preference to measure. The value is never NaN.
* **Classes absent from a batch** (only relevant for the per-batch,
  differentiable version) do not enter mu_max nor mu_-max. A batch with fewer
  than two classes present has no contrast: SI = 0.

One implementation of the index from class means (`_index_from_class_means`,
written once for NumPy and `keras.ops`) serves every version:

* `class_selectivity`: the dataset-level index of a set of activations held in
  memory (NumPy, float64).
* `ClassSelectivityAccumulator`: the same index computed by streaming batches
  (per-class sums and counts per unit), so the test set is never held at once.
* `selectivity_from_class_sums`: the same index from per-class sums and counts
  held in backend tensors (accumulated on the device while validating).
* `batch_class_selectivity`: the differentiable per-batch index in `keras.ops`,
  used in the loss by `tf_selectivity.models.probe.SelectivityProbe`.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
from keras import ops

from tf_selectivity.measures.selectivity_index import DEFAULT_SELECTIVITY_INDEX, SELECTIVITY_INDICES, validate_index

__all__ = [
    "SELECTIVITY_INDICES",
    "DEFAULT_SELECTIVITY_INDEX",
    "EQ1_GUARD",
    "validate_index",
    "eq1_guard_active",
    "unit_responses",
    "selectivity_from_class_means",
    "selectivity_from_class_sums",
    "class_selectivity",
    "ClassSelectivityAccumulator",
    "batch_class_selectivity",
    "mean_selectivity",
]


# Eq. 1's denominator is floored at EQ1_GUARD * (|mu_max| + |mu_-max|): the
# guarded index equals eq. 1 wherever eq. 1 <= 1 / EQ1_GUARD for a unit with a
# non-negative preferred-class mean, and never exceeds 1 / EQ1_GUARD.
EQ1_GUARD = 0.1


def _unit_responses_numpy(activations: np.ndarray) -> np.ndarray:
    """(N, ..., units) -> (N, units) float64: mean over all positions."""
    activations = np.asarray(activations)
    if activations.ndim < 2:
        raise ValueError(
            "activations must have shape (N, units) or (N, ..., units); "
            f"got shape {activations.shape}."
        )
    if activations.ndim == 2:
        return activations.astype(np.float64, copy=False)
    spatial_axes = tuple(range(1, activations.ndim - 1))
    return activations.mean(axis=spatial_axes, dtype=np.float64)


def unit_responses(activations):
    """Mean response of every unit to every sample (backend tensors).

    Args:
        activations: tensor of shape (N, units) or (N, ..., units), channels
            last (e.g. (N, H, W, C) for a convolutional layer).

    Returns:
        Tensor of shape (N, units) in float32 (or float64 if the input is):
        the mean over all axes between the batch and the unit axis.
    """
    activations = ops.convert_to_tensor(activations)
    if len(activations.shape) < 2:
        raise ValueError(
            "activations must have shape (N, units) or (N, ..., units); "
            f"got shape {tuple(activations.shape)}."
        )
    if activations.dtype not in ("float32", "float64"):
        # bf16/fp16 under mixed precision: average in float32.
        activations = ops.cast(activations, "float32")
    if len(activations.shape) == 2:
        return activations
    return ops.mean(activations, axis=tuple(range(1, len(activations.shape) - 1)))


def _lowest(values):
    """The most negative finite number of `values`' float dtype."""
    return np.finfo(keras.backend.standardize_dtype(values.dtype)).min


def _class_contrast(xp, class_means, present):
    """(mu_max, mu_-max, number of present classes) per unit.

    One implementation for NumPy arrays (``xp = numpy``) and backend tensors
    (``xp = keras.ops``): the two modules share the names used here. Absent
    classes are masked out, whatever their means hold; with fewer than two
    present classes the returned means are meaningless (callers test
    ``num_present >= 2``).

    Args:
        xp: `numpy` or `keras.ops`.
        class_means: (num_classes, units) mean response per class.
        present: boolean (num_classes,): classes that have samples.
    """
    present_column = xp.expand_dims(present, 1)
    ones = xp.ones_like(class_means[:, 0])
    num_present = xp.sum(xp.where(present, ones, xp.zeros_like(ones)))
    mu_max = xp.max(xp.where(present_column, class_means, _lowest(class_means)), axis=0)
    present_sum = xp.sum(xp.where(present_column, class_means, xp.zeros_like(class_means)), axis=0)
    mu_rest = (present_sum - mu_max) / xp.maximum(num_present - 1.0, 1.0)
    return mu_max, mu_rest, num_present


def _index_from_class_means(xp, class_means, present, index, epsilon=0.0):
    """The selectivity index per unit; the one implementation of eq. 1 (and of
    the bounded index) behind `selectivity_from_class_means` (NumPy),
    `selectivity_from_class_sums` and `batch_class_selectivity` (keras.ops).

    Args:
        xp: `numpy` or `keras.ops`.
        class_means, present: as for `_class_contrast`.
        index: "eq1" or "bounded" (validated by the caller).
        epsilon: added to the denominator (the loss' stabilizer; 0 = exact).

    Returns:
        (units,) in class_means' dtype; 0 where the denominator is not
        positive (dead units) or fewer than two classes are present, with a
        zero (not NaN) gradient there (double `where`).
    """
    mu_max, mu_rest, num_present = _class_contrast(xp, class_means, present)
    numerator = mu_max - mu_rest
    magnitude = xp.abs(mu_max) + xp.abs(mu_rest)
    if index == "bounded":
        denominator = magnitude
    else:
        # eq1: mu_max + mu_-max, floored at EQ1_GUARD * magnitude (module docstring).
        denominator = xp.maximum(mu_max + mu_rest, EQ1_GUARD * magnitude)
    if epsilon:
        denominator = denominator + epsilon
    valid = xp.logical_and(denominator > 0, num_present >= 2.0)
    safe_denominator = xp.where(valid, denominator, xp.ones_like(denominator))
    return xp.where(valid, numerator / safe_denominator, xp.zeros_like(numerator))


def _numpy_class_means(class_means, present):
    class_means = np.asarray(class_means, dtype=np.float64)
    if class_means.ndim != 2:
        raise ValueError(
            f"class_means must have shape (num_classes, units); got {class_means.shape}."
        )
    if present is None:
        present = np.ones(class_means.shape[0], dtype=bool)
    return class_means, np.asarray(present, dtype=bool)


def selectivity_from_class_means(
    class_means: np.ndarray,
    present: np.ndarray | None = None,
    index: str = DEFAULT_SELECTIVITY_INDEX,
) -> np.ndarray:
    """Selectivity index of each unit from its class-conditional means (NumPy).

    Args:
        class_means: array (num_classes, units) of mean responses per class.
        present: optional boolean array (num_classes,); classes marked False
            (no samples) are ignored. Defaults to all classes present.
        index: "eq1" (the paper's eq. 1 with its guard) or "bounded"; see the
            module docstring.

    Returns:
        float64 array (units,): values in [0, 1 / EQ1_GUARD] for "eq1" (in
        [0, 1] for non-negative responses), in [0, 1] for "bounded"; 0 for
        dead units and when fewer than two classes are present.
    """
    validate_index(index, "index")
    class_means, present = _numpy_class_means(class_means, present)
    return _index_from_class_means(np, class_means, present, index)


def selectivity_from_class_sums(class_sums, class_counts, index: str = DEFAULT_SELECTIVITY_INDEX):
    """Selectivity index of each unit from per-class response sums (backend tensors).

    The `keras.ops` twin of `ClassSelectivityAccumulator.selectivity` (same
    code, `_index_from_class_means`), for statistics accumulated on the
    device, e.g. `tf_selectivity.models.SplitSelectivity`.

    Args:
        class_sums: (num_classes, units) float tensor: the sum of each unit's
            responses over the samples of each class.
        class_counts: (num_classes,) number of samples per class (float or
            int); classes with none are left out.
        index: "eq1" (the paper's, default) or "bounded".

    Returns:
        Tensor (units,) in class_sums' dtype, as `selectivity_from_class_means`.
    """
    validate_index(index, "index")
    class_sums = ops.convert_to_tensor(class_sums)
    counts = ops.cast(class_counts, class_sums.dtype)
    class_means = class_sums / ops.expand_dims(ops.maximum(counts, 1.0), 1)
    return _index_from_class_means(ops, class_means, counts > 0, index)


def eq1_guard_active(class_means: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    """Which units' eq. 1 denominator is replaced by its guard (NumPy).

    Args:
        class_means: array (num_classes, units) of mean responses per class.
        present: optional boolean array (num_classes,) of classes with samples.

    Returns:
        Boolean array (units,): True where ``mu_max + mu_-max < EQ1_GUARD *
        (|mu_max| + |mu_-max|)``, i.e. where the reported "eq1" value is not
        eq. 1 itself (it saturates near eq. 1's pole, or the unit is negative
        for every class). Always False for non-negative responses and for
        dead units.
    """
    class_means, present = _numpy_class_means(class_means, present)
    mu_max, mu_rest, num_present = _class_contrast(np, class_means, present)
    if num_present < 2:
        return np.zeros(class_means.shape[1], dtype=bool)
    magnitude = np.abs(mu_max) + np.abs(mu_rest)
    return (mu_max + mu_rest < EQ1_GUARD * magnitude) & (magnitude > 0)


class ClassSelectivityAccumulator:
    """Streams batches of activations and computes dataset-level statistics.

    Keeps, per unit, the sum of responses per class, the number of samples per
    class and the largest absolute response seen (to detect dead units). Memory
    is O(num_classes x units), independent of the number of samples.

    Example:

    ```python
    acc = ClassSelectivityAccumulator(num_classes=10)
    for images, labels in test_batches:
        acc.update(activation_model(images), labels)
    si = acc.selectivity()          # (units,)
    ```

    Args:
        num_classes: number of classes (labels are integers in [0, num_classes)).
        index: "eq1" (default) or "bounded", the index `selectivity` returns.
    """

    def __init__(self, num_classes: int, index: str = DEFAULT_SELECTIVITY_INDEX):
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be at least 2; got {num_classes}.")
        self.num_classes = int(num_classes)
        self.index = validate_index(index, "index")
        self.class_sums: np.ndarray | None = None  # (num_classes, units) float64
        self.class_counts = np.zeros(self.num_classes, dtype=np.int64)
        self.max_abs_response: np.ndarray | None = None  # (units,)

    @property
    def num_samples(self) -> int:
        return int(self.class_counts.sum())

    def update(self, activations, labels) -> "ClassSelectivityAccumulator":
        """Adds one batch.

        Args:
            activations: array (N, units) or (N, ..., units).
            labels: integer array (N,) (or one-hot (N, num_classes)).

        Returns:
            self, so that calls can be chained.
        """
        responses = _unit_responses_numpy(keras.ops.convert_to_numpy(activations))
        labels = _integer_labels(labels, self.num_classes)
        if labels.shape[0] != responses.shape[0]:
            raise ValueError(
                f"{responses.shape[0]} activations but {labels.shape[0]} labels."
            )
        if self.class_sums is None:
            units = responses.shape[1]
            self.class_sums = np.zeros((self.num_classes, units), dtype=np.float64)
            self.max_abs_response = np.zeros(units, dtype=np.float64)
        elif responses.shape[1] != self.class_sums.shape[1]:
            raise ValueError(
                f"Batch has {responses.shape[1]} units, earlier batches had "
                f"{self.class_sums.shape[1]}."
            )
        # One-hot product instead of np.add.at, which is unbuffered and far
        # slower (benchmarks/RESULTS.md).
        one_hot = np.zeros((self.num_classes, labels.shape[0]), dtype=np.float64)
        one_hot[labels, np.arange(labels.shape[0])] = 1.0
        self.class_sums += one_hot @ responses
        self.class_counts += np.bincount(labels, minlength=self.num_classes)
        if responses.shape[0]:
            np.maximum(
                self.max_abs_response,
                np.abs(responses).max(axis=0),
                out=self.max_abs_response,
            )
        return self

    def merge(self, other: "ClassSelectivityAccumulator") -> "ClassSelectivityAccumulator":
        """Adds the statistics of another accumulator (e.g. from another worker)."""
        if other.class_sums is None:
            return self
        if self.class_sums is None:
            self.class_sums = other.class_sums.copy()
            self.max_abs_response = other.max_abs_response.copy()
        else:
            self.class_sums += other.class_sums
            np.maximum(self.max_abs_response, other.max_abs_response, out=self.max_abs_response)
        self.class_counts += other.class_counts
        return self

    def _require_data(self):
        if self.class_sums is None:
            raise ValueError("No activations were added to the accumulator.")

    def class_means(self) -> np.ndarray:
        """(num_classes, units) mean response per class; 0 for absent classes."""
        self._require_data()
        counts = np.maximum(self.class_counts, 1)[:, None]
        return self.class_sums / counts

    def selectivity(self, index: str | None = None) -> np.ndarray:
        """(units,) class selectivity index over all samples added so far.

        Args:
            index: "eq1" or "bounded"; None uses the accumulator's own.
        """
        return selectivity_from_class_means(
            self.class_means(), self.class_counts > 0, index or self.index
        )

    def eq1_guard_active(self) -> np.ndarray:
        """(units,) boolean: where eq. 1's guard replaced its denominator."""
        return eq1_guard_active(self.class_means(), self.class_counts > 0)

    def dead_units(self) -> np.ndarray:
        """(units,) boolean: units whose response was exactly 0 for every sample."""
        self._require_data()
        return self.max_abs_response == 0

    def preferred_class(self) -> np.ndarray:
        """(units,) index of the class with the largest mean response."""
        means = self.class_means()
        means = np.where((self.class_counts > 0)[:, None], means, -np.inf)
        return means.argmax(axis=0)


def _integer_labels(labels, num_classes: int) -> np.ndarray:
    labels = np.asarray(keras.ops.convert_to_numpy(labels))
    if labels.ndim == 2 and labels.shape[1] == num_classes:
        labels = labels.argmax(axis=1)
    labels = labels.reshape(-1)
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise ValueError("labels must be integer class indices.")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must be in [0, {num_classes}); got range "
            f"[{labels.min()}, {labels.max()}]."
        )
    return labels


def class_selectivity(
    activations, labels, num_classes: int, index: str = DEFAULT_SELECTIVITY_INDEX
) -> np.ndarray:
    """Class selectivity index of every unit over a whole dataset (eq. 1).

    Args:
        activations: array (N, units) or (N, H, W, units); a unit's response to
            a sample is its mean over the spatial positions.
        labels: integer class labels (N,) (or one-hot (N, num_classes)).
        num_classes: number of classes.
        index: "eq1" (the paper's, default) or "bounded"; see the module
            docstring.

    Returns:
        float64 NumPy array (units,): in [0, 1] for non-negative responses; in
        [0, 1 / EQ1_GUARD] ("eq1") or [0, 1] ("bounded") otherwise.
    """
    accumulator = ClassSelectivityAccumulator(num_classes, index)
    return accumulator.update(activations, labels).selectivity()


def mean_selectivity(layer_selectivities: Sequence[np.ndarray]) -> float:
    """Eq. 3: the mean over layers of the mean over each layer's units.

    Averaging within layers first keeps wide (deep) layers from dominating.

    Args:
        layer_selectivities: one array of per-unit SI per layer.

    Returns:
        The network's mean selectivity as a Python float.
    """
    if not layer_selectivities:
        raise ValueError("layer_selectivities is empty.")
    return float(np.mean([np.mean(si) for si in layer_selectivities]))


def batch_class_selectivity(
    activations,
    labels,
    num_classes: int,
    epsilon: float = 1e-6,
    index: str = DEFAULT_SELECTIVITY_INDEX,
    combine=None,
):
    """Differentiable class selectivity index of each unit over one batch.

    The per-batch estimate used in the loss (eq. 2): class means are taken over
    the samples of the batch; classes absent from the batch are left out of
    mu_max and mu_-max. One pass over the activations: a (num_classes x N)
    by (N x units) matrix product gives every class sum at once. No host
    synchronization: everything stays a tensor.

    Args:
        activations: tensor (N, units) or (N, ..., units), channels last.
        labels: integer tensor (N,) (or (N, 1)) of class indices.
        num_classes: number of classes (static Python int).
        epsilon: added to the denominator; keeps the gradient bounded for
            units whose responses are close to zero. The value changes SI by
            less than epsilon / denominator. Use 0 for the exact index.
        index: "eq1" (the paper's eq. 1 with its guard, default) or
            "bounded"; see the module docstring.
        combine: optional function of (class sums (num_classes, units),
            class counts (num_classes,)) returning the sums and counts the
            index is computed from: e.g. summed over the replicas of a
            data-parallel step, so that the batch is the global one.

    Returns:
        float32 tensor (units,): in [0, 1 / EQ1_GUARD] for "eq1" (in [0, 1]
        for non-negative responses), in [0, 1] for "bounded".
    """
    validate_index(index, "index")
    responses = unit_responses(activations)  # (N, U)
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    one_hot = ops.one_hot(labels, num_classes, dtype=responses.dtype)  # (N, K)
    counts = ops.sum(one_hot, axis=0)  # (K,)
    class_sums = ops.matmul(ops.transpose(one_hot), responses)  # (K, U)
    if combine is not None:
        class_sums, counts = combine(class_sums, counts)
    class_means = class_sums / ops.expand_dims(ops.maximum(counts, 1.0), 1)
    return _index_from_class_means(ops, class_means, counts > 0, index, epsilon)

"""Is a unit's selectivity above chance? A label-permutation null for every unit.

The class selectivity index is positive for pure noise: a ReLU unit of
random responses to 10 classes x 100 images scores about 0.10 (eq. 1), and
the index's distribution when the labels carry no information has a mean
of about 0.12 there. A unit is *selective above chance* when its index is
unlikely under that distribution. For each unit this module computes:

* the null: the index under ``B`` random permutations of the test labels
  (seeded; the same permutations for every unit, so for every layer of a
  run when the same seed is used);
* the p-value ``(1 + #{null >= observed}) / (1 + B)`` (never 0: the
  observed labelling is one of the equally likely ones under the null);
* the chance-corrected index, observed minus the null mean;
* over the units of a run, Benjamini-Hochberg q-values (`fdr_q_values`;
  Benjamini-Yekutieli, valid under any dependence between units, as an
  option): a unit is called selective when its q-value is below the false
  discovery rate chosen (`selective_units`).

Class sums under a permutation are one product of a (classes x images)
one-hot matrix of the permuted labels with the (images x units) responses.
The one-hot matrix has one non-zero per image, so it is held sparse: the
products for a batch of permutations cost ``permutations x images x units``
multiply-adds (not ``classes`` times that), in float64, with memory bounded
by ``max_chunk_bytes`` whatever ``B``. The index is the one the analysis
reports (`tf_selectivity.measures.selectivity`, "eq1" or "bounded"), computed by the
same code from the class means.

NumPy and SciPy only on its own (it imports `tf_selectivity.measures.selectivity`,
the index's one implementation, which imports Keras without starting a
model); nothing of the analysis or training.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from tf_selectivity.measures.fdr import DEFAULT_FDR, FDR_METHODS, check_fdr, fdr_q_values, selective_units
from tf_selectivity.core.settings import ParameterError
from tf_selectivity.measures.selectivity import selectivity_from_class_means
from tf_selectivity.measures.selectivity_index import DEFAULT_SELECTIVITY_INDEX, validate_index

__all__ = [
    "FDR_METHODS",
    "DEFAULT_FDR",
    "UnitNull",
    "permutation_null",
    "permutation_nulls",
    "permuted_selectivity",
    "fdr_q_values",
    "selective_units",
    "check_num_permutations",
    "check_fdr",
]

# Null values within this relative distance below the observed index count
# as reaching it: the two are computed from sums in different orders, and a
# permutation that leaves every class's members in place must count (as in
# `scipy.stats.permutation_test`).
_TIE_TOLERANCE = 100 * np.finfo(np.float64).eps


def check_num_permutations(num_permutations, parameter: str = "num_permutations") -> int:
    """Returns `num_permutations` as an int if it is a whole number >= 1.

    Raises:
        ParameterError: naming `parameter`.
    """
    if isinstance(num_permutations, bool) or not float(num_permutations).is_integer() or num_permutations < 1:
        raise ParameterError(parameter, f"must be a positive integer (permutations); got {num_permutations!r}")
    return int(num_permutations)


@dataclasses.dataclass
class UnitNull:
    """The permutation null of every unit of one set of responses.

    Attributes:
        observed: (units,) float64 index with the true labels.
        null_mean: (units,) mean of the index over the permutations.
        null_std: (units,) its standard deviation (ddof 0).
        p_values: (units,) ``(1 + #{null >= observed}) / (1 + B)``.
        num_permutations: B.
        seed: the seed of the permutations.
        index: "eq1" or "bounded".
        null: (B, units) float64 index under each permutation, or None
            (`permutation_null(..., keep_null=False)`).
    """

    observed: np.ndarray
    null_mean: np.ndarray
    null_std: np.ndarray
    p_values: np.ndarray
    num_permutations: int
    seed: int
    index: str
    null: np.ndarray | None = None

    @property
    def chance_corrected(self) -> np.ndarray:
        """(units,) observed index minus the null mean."""
        return self.observed - self.null_mean


def _check_labels(labels, num_classes, num_images):
    labels = np.asarray(labels).reshape(-1)
    if labels.shape[0] != num_images:
        raise ParameterError("labels", f"must hold one label per image; got {labels.shape[0]} for {num_images} images")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.mod(labels, 1) == 0):
            raise ParameterError("labels", "must be integer class indices")
    labels = labels.astype(np.int64)
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2:
        raise ParameterError("num_classes", f"must be an integer >= 2; got {num_classes!r}")
    num_classes = int(num_classes)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ParameterError("labels", f"must lie in [0, {num_classes}); got [{labels.min()}, {labels.max()}]")
    return labels, num_classes


def _check_responses(responses, parameter="responses"):
    responses = np.asarray(responses, dtype=np.float64)
    if responses.ndim != 2:
        raise ParameterError(parameter, f"must have shape (images, units); got shape {responses.shape}")
    if not np.all(np.isfinite(responses)):
        raise ParameterError(parameter, "must be finite")
    return responses


def _one_hot_transposed(permuted_labels, num_classes):
    """The sparse (N, P * classes) one-hot matrix of P labellings (P, N).

    Row i holds image i's class under each labelling p, at column
    p * classes + label: one non-zero per image and labelling.
    """
    from scipy import sparse

    count, n = permuted_labels.shape
    columns = (np.arange(count)[:, None] * num_classes + permuted_labels).T.reshape(-1)
    return sparse.csr_matrix(
        (np.ones(n * count), columns, np.arange(0, n * count + 1, count)), shape=(n, count * num_classes)
    )


def _labelling_selectivity(one_hot_t, counts, responses, num_classes, index):
    """(P, U) index of `responses` (N, U) under the labellings of `one_hot_t`
    (`_one_hot_transposed`), whose class counts are `counts` (P, K)."""
    count, units = counts.shape[0], responses.shape[1]
    sums = np.asarray(one_hot_t.T @ responses).reshape(count, num_classes, units)
    means = sums / np.maximum(counts, 1)[:, :, None]
    # The index is per column: P labellings x U units are P * U columns.
    if np.all(counts == counts[:1]):
        stacked = means.transpose(1, 0, 2).reshape(num_classes, count * units)
        return selectivity_from_class_means(stacked, counts[0] > 0, index).reshape(count, units)
    return np.stack([selectivity_from_class_means(m, c > 0, index) for m, c in zip(means, counts)])


def permuted_selectivity(
    responses, permuted_labels, num_classes: int, index: str = DEFAULT_SELECTIVITY_INDEX
) -> np.ndarray:
    """The index of every unit under each of a set of labellings.

    Args:
        responses: (images, units) per-image unit responses (each unit's
            mean over positions, as the analysis streams them).
        permuted_labels: (P, images) integer labels, one labelling per row
            (e.g. permutations of the test labels).
        num_classes: number of classes.
        index: "eq1" (the paper's) or "bounded".

    Returns:
        float64 (P, units): the index as `selectivity_from_class_means`
        computes it from each labelling's class means; classes a labelling
        leaves empty are left out, as in the analysis.
    """
    validate_index(index, "index")
    responses = _check_responses(responses)
    permuted_labels = np.atleast_2d(np.asarray(permuted_labels, dtype=np.int64))
    counts = np.stack([np.bincount(row, minlength=num_classes) for row in permuted_labels])  # (P, K)
    one_hot_t = _one_hot_transposed(permuted_labels, num_classes)
    return _labelling_selectivity(one_hot_t, counts, responses, num_classes, index)


def permutation_nulls(
    layers,
    labels,
    num_classes: int,
    *,
    num_permutations: int = 1000,
    seed: int = 0,
    index: str = DEFAULT_SELECTIVITY_INDEX,
    keep_null: bool = False,
    max_chunk_bytes: int = 64 * 2**20,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """`permutation_null` of several response arrays (e.g. a run's layers) at once.

    The same permutations for every array, each permutation's one-hot
    matrix built once for all of them: faster than one call per layer
    (benchmarks/RESULTS.md), with the same numbers.

    Args:
        layers: mapping name -> (images, units) responses, the same images
            in the same order.
        labels: as for `permutation_null`.
        num_classes: as for `permutation_null`.
        num_permutations: as for `permutation_null`.
        seed: as for `permutation_null`.
        index: as for `permutation_null`.
        keep_null: as for `permutation_null`.
        max_chunk_bytes: as for `permutation_null`.
        progress: called with the number of permutations of each chunk done.

    Returns:
        dict name -> `UnitNull`, in the order of `layers`.
    """
    num_permutations = check_num_permutations(num_permutations)
    validate_index(index, "index")
    layers = {name: _check_responses(r, f"layers[{name!r}]") for name, r in dict(layers).items()}
    if not layers:
        return {}
    n = next(iter(layers.values())).shape[0]
    for name, responses in layers.items():
        if responses.shape[0] != n:
            raise ParameterError(f"layers[{name!r}]", f"must hold the same {n} images as the others; got {responses.shape[0]}")
    labels, num_classes = _check_labels(labels, num_classes, n)
    observed = {name: permuted_selectivity(r, labels[None], num_classes, index)[0] for name, r in layers.items()}
    widest = max(r.shape[1] for r in layers.values())
    per_permutation = 16 * n + 8 * num_classes * widest * 3
    chunk = int(max(1, min(num_permutations, max_chunk_bytes // per_permutation)))
    rng = np.random.default_rng(seed)
    state = {
        name: {
            "threshold": observed[name] - _TIE_TOLERANCE * np.abs(observed[name]),
            "total": np.zeros(r.shape[1]),
            "total_sq": np.zeros(r.shape[1]),
            "reached": np.zeros(r.shape[1], dtype=np.int64),
            "kept": np.empty((num_permutations, r.shape[1])) if keep_null else None,
        }
        for name, r in layers.items()
    }
    counts = np.bincount(labels, minlength=num_classes)
    for start in range(0, num_permutations, chunk):
        count = min(chunk, num_permutations - start)
        permuted = np.stack([rng.permutation(labels) for _ in range(count)])
        one_hot_t = _one_hot_transposed(permuted, num_classes)
        chunk_counts = np.broadcast_to(counts, (count, num_classes))  # a permutation keeps the counts
        for name, responses in layers.items():
            null = _labelling_selectivity(one_hot_t, chunk_counts, responses, num_classes, index)
            entry = state[name]
            entry["total"] += null.sum(axis=0)
            entry["total_sq"] += np.square(null).sum(axis=0)
            entry["reached"] += (null >= entry["threshold"]).sum(axis=0)
            if entry["kept"] is not None:
                entry["kept"][start : start + count] = null
        if progress is not None:
            progress(count)
    results = {}
    for name, entry in state.items():
        mean = entry["total"] / num_permutations
        std = np.sqrt(np.maximum(entry["total_sq"] / num_permutations - np.square(mean), 0.0))
        results[name] = UnitNull(
            observed=observed[name],
            null_mean=mean,
            null_std=std,
            p_values=(1.0 + entry["reached"]) / (1.0 + num_permutations),
            num_permutations=num_permutations,
            seed=int(seed),
            index=index,
            null=entry["kept"],
        )
    return results


def permutation_null(
    responses,
    labels,
    num_classes: int,
    *,
    num_permutations: int = 1000,
    seed: int = 0,
    index: str = DEFAULT_SELECTIVITY_INDEX,
    keep_null: bool = False,
    max_chunk_bytes: int = 64 * 2**20,
) -> UnitNull:
    """Every unit's selectivity index under `num_permutations` label permutations.

    Permutation ``b`` is the ``b``-th call of ``rng.permutation(labels)`` on
    ``rng = np.random.default_rng(seed)``: the null does not depend on
    `max_chunk_bytes`, and the same seed permutes the labels the same way for
    every layer of a run (test images in the same order).

    Args:
        responses: (images, units) per-image responses of the units (a
            unit's mean over spatial positions), e.g. one layer's.
        labels: (images,) integer class labels.
        num_classes: number of classes.
        num_permutations: B >= 1.
        seed: seed of the permutations.
        index: "eq1" (the paper's) or "bounded", the index reported.
        keep_null: also return the (B, units) null values.
        max_chunk_bytes: bound on the memory of one batch of permutations
            (its sparse one-hot matrix, class sums and indices).

    Returns:
        A `UnitNull`. Units whose index is 0 whatever the labels (dead
        units) get p = 1.

    Raises:
        ParameterError: B < 1, an unknown index, responses that are not a
            finite (images, units) array, or labels that do not match them.
    """
    num_permutations = check_num_permutations(num_permutations)
    responses = _check_responses(responses)
    labels, num_classes = _check_labels(labels, num_classes, responses.shape[0])
    return permutation_nulls(
        {"responses": responses}, labels, num_classes, num_permutations=num_permutations, seed=seed,
        index=index, keep_null=keep_null, max_chunk_bytes=max_chunk_bytes,
    )["responses"]

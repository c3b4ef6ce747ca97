"""Class-balanced subsets of a test set.

Published test sets are often stored sorted by class (an image folder's
``test/<class>/`` directories, read in order): their first N images may all
be of one class, on which accuracy is one class' recall and every unit's
class selectivity index is 0. Analyses that look at only part of a test set
(``--max_test_samples``, ``--ablation_max_samples``,
``--robustness_max_samples``) take this subset instead. NumPy only.
"""

from __future__ import annotations

import numpy as np

__all__ = ["balanced_subset"]


def balanced_subset(labels, count: int) -> np.ndarray:
    """Positions of `count` test images, the classes taken in turn.

    The first image of every class, then the second of every class, and so
    on (classes in label order), until `count` are chosen: every class gets
    ``count // C`` or one more (fewer only where a class runs out). No
    randomness, so every run of an analysis sees the same images; on a test
    set already in random order this is close to its first `count` images.

    Args:
        labels: (N,) integer labels in the test set's order.
        count: how many to keep (>= 1); all N when count >= N.

    Returns:
        (min(count, N),) int64 positions into `labels`, in increasing order
        (so a memory-mapped array is read front to back).
    """
    labels = np.asarray(labels).reshape(-1)
    if count >= len(labels):
        return np.arange(len(labels), dtype=np.int64)
    # Rank of each image within its class: 0 for the first of each class.
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = np.empty(len(labels), np.int64)
    rank[order] = np.arange(len(labels)) - starts
    chosen = np.lexsort((labels, rank))[:count]  # by rank, then class
    return np.sort(chosen).astype(np.int64)

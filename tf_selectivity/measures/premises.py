"""The numbers the analysis' claims rest on: did a network learn, and can a test decide at all?

* `chance_rate` and `above_chance`: a network's test accuracy against the
  accuracy of guessing (1 / classes, or the share of the test set's
  largest class when that is higher), by the exact one-sided binomial test
  (`scipy.stats.binomtest`). A network at chance learned nothing a claim
  about trained networks could rest on.
* The smallest p-value each test of the analysis can give with its sample
  sizes (`minimum_p_*`): an exact permutation test over few networks has a
  floor (a two-sided sign-flip test over 3 networks cannot go below 2/8 =
  0.25), and a t-test with one network in a group is undefined (NaN). A
  test whose floor is at or above the significance level cannot support
  anything with these runs, whatever the networks do.

NumPy and SciPy only.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "above_chance",
    "chance_rate",
    "minimum_p_bonferroni",
    "minimum_p_paired_t",
    "minimum_p_permutation_null",
    "minimum_p_ranksum",
    "minimum_p_sign_flip",
    "minimum_p_spearman",
    "minimum_p_welch",
]


def chance_rate(labels, num_classes: int) -> tuple[float, float]:
    """The accuracy of guessing on a test set.

    Args:
        labels: the test set's integer labels.
        num_classes: the number of classes the network chooses from.

    Returns:
        (chance, majority): the larger of 1 / `num_classes` and the share of
        the most frequent label (always answering that class), and that
        share alone.
    """
    labels = np.asarray(labels, dtype=np.int64).ravel()
    if labels.size == 0 or num_classes < 1:
        raise ValueError(f"chance needs test labels and classes (got {labels.size} labels, {num_classes} classes)")
    majority = float(np.bincount(labels).max() / labels.size)
    return max(1.0 / num_classes, majority), majority


def above_chance(accuracy: float, num_samples: int, chance: float) -> float:
    """One-sided exact binomial p-value of `accuracy` on `num_samples` images against `chance`.

    The number of correct answers is ``round(accuracy * num_samples)``;
    the alternative is an accuracy above `chance`. NaN without images or an
    accuracy.
    """
    from scipy.stats import binomtest

    if not num_samples or accuracy is None or not np.isfinite(accuracy):
        return math.nan
    correct = int(round(float(accuracy) * int(num_samples)))
    return float(binomtest(correct, int(num_samples), float(chance), alternative="greater").pvalue)


def minimum_p_welch(n1: int, n2: int) -> float:
    """Welch's two-sample t-test: no floor (0.0) with 2 or more values per group; NaN
    (undefined: no variance) with fewer."""
    return 0.0 if min(n1, n2) >= 2 else math.nan


def minimum_p_paired_t(n: int) -> float:
    """The paired t-test: no floor (0.0) with 2 or more pairs; NaN with fewer."""
    return 0.0 if n >= 2 else math.nan


def minimum_p_ranksum(n1: int, n2: int) -> float:
    """The two-sided exact Mann-Whitney U (Wilcoxon rank-sum) test: 2 / C(n1 + n2, n1),
    its two most extreme orderings (at most 1); NaN with fewer than 2 values in a group
    (`stats.ranksum_promote_vs_suppress` does not test those). Without ties; with ties
    the analysis uses the normal approximation, whose floor is lower."""
    if min(n1, n2) < 2:
        return math.nan
    return min(1.0, 2.0 / math.comb(n1 + n2, n1))


def minimum_p_sign_flip(n: int, exact_up_to: int = 16, n_resamples: int = 10_000) -> float:
    """The two-sided sign-flip permutation test of a mean over `n` paired differences:
    exact (every sign pattern) 2 / 2^n up to `exact_up_to` differences (the observed
    pattern and its mirror image; 1 for one difference), else 1 / (1 + n_resamples);
    NaN without differences."""
    if n < 1:
        return math.nan
    if n <= exact_up_to:
        return min(1.0, 2.0 / 2.0 ** n)
    return 1.0 / (1 + n_resamples)


def minimum_p_spearman(n: int, exact_up_to: int = 8, n_resamples: int = 10_000) -> float:
    """The two-sided permutation test of Spearman's rho over `n` pairs
    (`stats.spearman_with_ci`): exact 2 / n! up to `exact_up_to` pairs (the two
    perfect orders), else 1 / (1 + n_resamples); NaN with fewer than 3 pairs
    (rho undefined there)."""
    if n < 3:
        return math.nan
    if n <= exact_up_to:
        return min(1.0, 2.0 / math.factorial(n))
    return 1.0 / (1 + n_resamples)


def minimum_p_permutation_null(num_permutations: int) -> float:
    """A unit's label-permutation p-value, (1 + #{null >= observed}) / (1 + B): 1 / (1 + B)."""
    return 1.0 / (1 + num_permutations) if num_permutations > 0 else math.nan


def minimum_p_bonferroni(minimum_p: float, tests: int) -> float:
    """The floor of a Bonferroni-corrected p-value over `tests` tests."""
    if not np.isfinite(minimum_p):
        return minimum_p
    return min(1.0, minimum_p * max(1, int(tests)))

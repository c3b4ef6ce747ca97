"""CKA and Procrustes from the factors that `tf_selectivity.measures.similarity.cca.factorize` caches.

A layer factored once for CCA (`cca.factorize`: the centred live units as
`X = U S V^T`, with `V` the orthonormal `basis` and `S` the singular values,
both in a rescaled unit no measure here depends on) gives every measure of
this package that is a function of the covariances, with no further pass
over the data:

* linear CKA: `||X Y^T||_F^2 = ||S1 P S2||_F^2`, `||X X^T||_F^2 = sum s^4`,
  with `P = V1^T V2` (`rank1 x rank2`, the product CCA also starts from);
* debiased CKA: Kornblith et al.'s feature-space formula also needs each
  datapoint's squared norm, the rows of `V S` (`n x rank`);
* Procrustes: the nuclear norm of `W1 P W2` for the whitened singular values
  `W` (`tf_selectivity.measures.similarity.shape`).

`distances_from_factors` computes `P` once per pair for all of them. The
results equal those on the raw activations to round-off (tested); dead
units, which `factorize` drops, change none of them. RBF CKA is not a
function of the covariances and is not available here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tf_selectivity.measures.similarity import cca
from tf_selectivity.core.settings import ParameterError
from tf_selectivity.measures.similarity import _inputs, cka, shape

# Measures computed from CCA factors, each as a distance: 1 - CKA for the
# CKA similarities, the angular Procrustes distance (radians) for Procrustes.
FACTORED_MEASURES = ("linear_cka", "debiased_cka", "procrustes")

__all__ = ["FACTORED_MEASURES", "cka_from_factors", "distances_from_factors"]


def cka_from_factors(first: cca.FactoredActivations, second: cca.FactoredActivations, *,
                     debiased: bool = False, product: np.ndarray | None = None) -> float:
    """Linear (or debiased linear) CKA of two factored layers (a similarity).

    Args:
        first: `cca.factorize` of the first layer's activations.
        second: `cca.factorize` of the second's, on the same datapoints.
        debiased: Use the unbiased HSIC (needs at least 4 datapoints).
        product: Optional `first.basis.T @ second.basis`, when the caller has
            it.

    Returns:
        As `tf_selectivity.measures.similarity.linear_cka` on the raw activations;
        exactly 1.0 when `first is second`.

    Raises:
        ParameterError: On different datapoints, fewer than 4 datapoints when
            debiased, or a self term that is 0 to round-off.
    """
    _check_pair(first, second, debiased)
    if first is second:
        return 1.0
    if product is None:
        product = first.basis.T @ second.basis
    weighted = (first.singular_values[:, np.newaxis] * product) * second.singular_values
    cross = float(np.sum(np.square(weighted)))
    self_x = float(np.sum(first.singular_values**4))
    self_y = float(np.sum(second.singular_values**4))
    scale_x, scale_y = self_x, self_y
    if debiased:
        n = first.num_datapoints
        rows_x = np.square(first.basis) @ np.square(first.singular_values)
        rows_y = np.square(second.basis) @ np.square(second.singular_values)
        cross = cka.debiased_terms(cross, rows_x, rows_y, n)[0]
        self_x, scale_x = cka.debiased_terms(self_x, rows_x, rows_x, n)
        self_y, scale_y = cka.debiased_terms(self_y, rows_y, rows_y, n)
    self_x = cka.checked_self_term("first", self_x, scale_x)
    self_y = cka.checked_self_term("second", self_y, scale_y)
    return cka.cka_ratio(cross, self_x, self_y, debiased)


def distances_from_factors(first: cca.FactoredActivations, second: cca.FactoredActivations,
                           measures: Sequence[str], *, procrustes_alpha: float = 1.0
                           ) -> dict[str, float]:
    """Distances of one pair of factored layers under several measures, from one product.

    Args:
        first: `cca.factorize` of the first layer's activations.
        second: `cca.factorize` of the second's, on the same datapoints.
        measures: Names from `FACTORED_MEASURES`: "linear_cka" and
            "debiased_cka" give `1 - CKA` (in [0, 1] and [0, 2]),
            "procrustes" the angular Procrustes distance in radians ([0,
            pi/2]) after partial whitening `procrustes_alpha`.
        procrustes_alpha: Partial whitening of "procrustes", in [0, 1] (1:
            rotations only, 0: CCA-like).

    Returns:
        `{measure: distance}` in the order of `measures`; exactly 0.0 for
        every measure when `first is second`.

    Raises:
        ParameterError: On an unknown measure, or as `cka_from_factors` and
            `tf_selectivity.measures.similarity.procrustes_distance`.
    """
    unknown = [m for m in measures if m not in FACTORED_MEASURES]
    if unknown:
        raise ParameterError("measures", f"must be among {list(FACTORED_MEASURES)}; got {unknown}")
    _check_pair(first, second, "debiased_cka" in measures)
    shape.check_alpha(procrustes_alpha)
    product = None if first is second else first.basis.T @ second.basis
    distances = {}
    for measure in measures:
        if measure == "procrustes":
            distances[measure] = _procrustes_angular(first, second, product, procrustes_alpha)
        else:
            similarity = cka_from_factors(first, second, debiased=measure == "debiased_cka",
                                          product=product)
            distances[measure] = 1.0 - similarity
    return distances


def _procrustes_angular(first, second, product, alpha) -> float:
    if first is second:
        return 0.0
    weights_x = shape.whitened_weights(first.singular_values, alpha)
    weights_y = shape.whitened_weights(second.singular_values, alpha)
    aligned = (weights_x[:, np.newaxis] * product) * weights_y
    nuclear = np.clip(np.linalg.svd(aligned, compute_uv=False).sum(), 0.0, 1.0)
    return float(np.arccos(nuclear))


def _check_pair(first, second, debiased: bool) -> None:
    for name, factors in (("first", first), ("second", second)):
        if not isinstance(factors, cca.FactoredActivations):
            raise ParameterError(name, f"must be tf_selectivity.measures.similarity.cca.factorize(...) factors; got "
                                 f"{type(factors).__name__}")
    if first.num_datapoints != second.num_datapoints:
        raise ParameterError(
            "second", f"must be factored from the datapoints of first: {first.num_datapoints} "
            f"and {second.num_datapoints}")
    if debiased:
        _inputs.at_least_four_datapoints("first", first.num_datapoints)

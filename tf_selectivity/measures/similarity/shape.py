"""Orthogonal Procrustes shape metrics with partial whitening.

The generalized shape metrics of Williams et al. (2021, "Generalized shape
metrics on neural representations"; their `netrep` package) compare two
representations after the best rotation of one onto the other. Both
functions here return a **distance** (0 for a self-comparison, exactly 0.0
when the inputs are equal), a metric in the mathematical sense (symmetric,
triangle inequality) between the equivalence classes of representations.

The computation, for `(units, datapoints)` activations `X` (as in
`tf_selectivity.measures.similarity.cca`):

1. Centre each unit over the datapoints (invariance to translation).
2. Partial whitening with `alpha` in [0, 1]: with the thin SVD `X = U S V^T`
   (rank `r`, directions with singular value below
   `max(units, n) eps s_max` dropped), the singular values become
   `alpha s_i / sigma + (1 - alpha)`, where `sigma` is the root mean square
   of the `s_i`. `alpha = 1` keeps the representation (rotations only);
   `alpha = 0` replaces it by an orthonormal basis of its row space, the
   CCA-like metric (its angular form is the arccos of the mean canonical
   correlation, up to the normalization below), invariant to every
   invertible linear map.
   netrep mixes `alpha s_i + (1 - alpha)` with the raw `s_i`, which makes
   intermediate alphas depend on the data's scale; dividing by `sigma` makes
   every alpha scale-free, and equals netrep on data scaled to `sigma = 1`.
3. Frobenius normalization: the whitened representation is divided by its
   Frobenius norm (invariance to isotropic scaling).
4. With `X~`, `Y~` so prepared, `nuclear = ||X~ Y~^T||_*` (sum of singular
   values, in [0, 1]) is the largest `<X~, Q Y~>` over orthogonal `Q`
   (zero-padding the narrower layer, so layers may differ in width):

   * angular distance `arccos(nuclear)`, in [0, pi/2] (Williams et al.'s
     angular shape metric);
   * Euclidean distance `min_Q ||X~ - Q Y~||_F = sqrt(2 - 2 nuclear)`, in
     [0, sqrt(2)] (the Procrustes distance of Ding et al. 2021 on
     normalized data).

Invariances: translation, isotropic scaling and orthogonal transforms of
either representation's units, for every alpha; any invertible linear map at
alpha = 0. The cost is two thin SVDs (`n d^2`) and one `d1 x d2` product; no
`n x n` matrix is formed. Both functions also accept the factors of
`tf_selectivity.measures.similarity.cca.factorize` (its basis and singular values are the `V`
and `S` above), so a layer factored once for CCA serves Procrustes too.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from tf_selectivity.measures.similarity import cca
from tf_selectivity.core.settings import ParameterError
from tf_selectivity.measures.similarity import _inputs

ShapeMetric = Literal["angular", "euclidean"]
SHAPE_METRICS = ("angular", "euclidean")

__all__ = ["procrustes_distance", "procrustes_similarity", "SHAPE_METRICS"]


def procrustes_distance(x, y, *, alpha: float = 1.0, metric: ShapeMetric = "angular") -> float:
    """Orthogonal Procrustes distance after partial whitening (a distance).

    Invariant to translation, isotropic scaling and orthogonal transforms of
    the units of either representation; at `alpha=0` to any invertible
    linear map (CCA-like). See the module docstring for the computation.

    Args:
        x: `(units1, datapoints)` activations, or `cca.factorize(...)` of
            them.
        y: `(units2, datapoints)` activations on the same datapoints, or
            their factors.
        alpha: Partial whitening in [0, 1]: 1 compares the representations
            up to rotations only, 0 whitens them fully (CCA-like).
        metric: "angular" (`arccos` of the aligned cosine, in [0, pi/2]) or
            "euclidean" (`min_Q ||X~ - Q Y~||_F`, in [0, sqrt(2)]).

    Returns:
        The distance, a float; exactly 0.0 when `x` and `y` are equal.

    Raises:
        ParameterError: On NaN or infinite values, different datapoints, a
            representation with no variance, an `alpha` outside [0, 1] or an
            unknown `metric`.
    """
    if metric not in SHAPE_METRICS:
        raise ParameterError("metric", f"must be one of {list(SHAPE_METRICS)}; got {metric!r}")
    nuclear = procrustes_similarity(x, y, alpha=alpha)
    if metric == "angular":
        return float(np.arccos(nuclear))
    return float(np.sqrt(max(0.0, 2.0 - 2.0 * nuclear)))


def procrustes_similarity(x, y, *, alpha: float = 1.0) -> float:
    """The aligned cosine `max_Q <X~, Q Y~>` behind `procrustes_distance` (a similarity).

    Args:
        x: `(units1, datapoints)` activations or their `cca.factorize` factors.
        y: `(units2, datapoints)` activations or factors, same datapoints.
        alpha: Partial whitening in [0, 1] (see `procrustes_distance`).

    Returns:
        The nuclear norm `||X~ Y~^T||_*` of the prepared representations, in
        [0, 1]; exactly 1.0 when `x` and `y` are equal.

    Raises:
        ParameterError: As `procrustes_distance`.
    """
    check_alpha(alpha)
    same = x is y
    basis_x, values_x = _spectrum("x", x)
    if not same and not isinstance(x, cca.FactoredActivations) \
            and not isinstance(y, cca.FactoredActivations):
        same = _inputs.identical(np.asarray(x), np.asarray(y))
    if same:
        return 1.0
    basis_y, values_y = _spectrum("y", y)
    if basis_x.shape[0] != basis_y.shape[0]:
        raise ParameterError(
            "y", f"must have the datapoints of x (the same inputs, in the same order): x has "
            f"{basis_x.shape[0]} and y {basis_y.shape[0]} (arrays are (units, datapoints))")
    weights_x = whitened_weights(values_x, alpha)
    weights_y = whitened_weights(values_y, alpha)
    aligned = (weights_x[:, np.newaxis] * (basis_x.T @ basis_y)) * weights_y[np.newaxis, :]
    nuclear = np.linalg.svd(aligned, compute_uv=False).sum()
    return float(np.clip(nuclear, 0.0, 1.0))


def _spectrum(name: str, x) -> tuple[np.ndarray, np.ndarray]:
    """`(V, s)`: orthonormal `(n, r)` right singular vectors and the `(r,)`
    singular values of the centred activations (or of cached CCA factors)."""
    if isinstance(x, cca.FactoredActivations):
        return x.basis, x.singular_values
    acts = _inputs.centred(_inputs.activations(name, x))
    if not acts.any():
        raise ParameterError(
            name, "has no variance over the datapoints (every unit is constant): the "
            "Procrustes distance is undefined")
    # Scaled by the largest value (no result depends on the scale) so that
    # the SVD is clear of overflow and underflow.
    acts /= np.abs(acts).max()
    _, values, basis_t = np.linalg.svd(acts, full_matrices=False)
    keep = values > max(acts.shape) * np.finfo(np.float64).eps * values[0]
    return basis_t[keep].T, values[keep]


def whitened_weights(values: np.ndarray, alpha: float) -> np.ndarray:
    """Singular values after partial whitening and Frobenius normalization."""
    rms = np.sqrt(np.mean(np.square(values)))
    whitened = alpha * (values / rms) + (1.0 - alpha)
    return whitened / np.linalg.norm(whitened)


def check_alpha(alpha) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)) \
            or not 0.0 <= alpha <= 1.0:
        raise ParameterError("alpha", f"must be a number in [0, 1] (1: rotations only, 0: "
                             f"CCA-like whitening); got {alpha!r}")

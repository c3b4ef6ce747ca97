"""Dimensionality of a layer's representation: participation ratio and the
principal components that hold a fraction of the variance.

For responses X (samples x units) with covariance eigenvalues l_1 >= l_2 >= ...,
the participation ratio (Gao et al. 2017; Leavitt & Morcos 2020, arXiv
2010.07693) is

    PR = (sum_i l_i)^2 / sum_i l_i^2 = trace(C)^2 / ||C||_F^2,

between 1 (one direction holds all the variance) and the number of units
(all directions equal). `components_for_variance(X, f)` is the smallest k
with l_1 + ... + l_k >= f * sum_i l_i.

NumPy, float64. The eigenvalues come from whichever of the unit covariance
(units x units) and the sample Gram matrix (samples x samples) is smaller;
both have the same non-zero eigenvalues, so a layer with more units than
samples costs no more than its samples.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from tf_selectivity.core.settings import ParameterError

__all__ = [
    "covariance_spectrum",
    "participation_ratio",
    "participation_ratio_of_spectrum",
    "components_for_variance",
    "components_of_spectrum",
    "dimensionality",
    "layer_dimensionality",
    "DEFAULT_FRACTIONS",
]

DEFAULT_FRACTIONS = (0.9, 0.95)


def _responses(responses, parameter="responses") -> np.ndarray:
    x = np.asarray(responses, dtype="float64")
    if x.ndim < 2:
        raise ParameterError(parameter, f"must be (samples, units, ...); got shape {x.shape}")
    x = x.reshape(len(x), -1)
    if len(x) < 2 or x.shape[1] < 1:
        raise ParameterError(parameter, f"must hold at least 2 samples of at least 1 unit; got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ParameterError(parameter, "must be finite")
    return x


def covariance_spectrum(responses) -> np.ndarray:
    """Eigenvalues of the units' covariance, largest first.

    Args:
        responses: (samples, units) array; further axes are flattened into
            units (pass spatial means for per-channel dimensionality).

    Returns:
        (min(samples, units),) float64 eigenvalues of the unbiased covariance
        (divided by samples - 1), >= 0, in descending order; the covariance's
        remaining eigenvalues, if any, are 0.
    """
    x = _responses(responses)
    x = x - x.mean(axis=0)
    gram = x.T @ x if x.shape[1] <= x.shape[0] else x @ x.T
    eigenvalues = np.linalg.eigvalsh(gram / (len(x) - 1))[::-1]
    return np.clip(eigenvalues, 0.0, None)


def _spectrum(eigenvalues) -> np.ndarray:
    values = np.asarray(eigenvalues, dtype="float64").reshape(-1)
    if not values.size or not np.all(np.isfinite(values)) or values.min() < 0:
        raise ParameterError("eigenvalues", "must be a non-empty array of finite numbers >= 0")
    return np.sort(values)[::-1]


def participation_ratio_of_spectrum(eigenvalues) -> float:
    """(sum l)^2 / sum l^2 of a covariance spectrum; NaN if all are 0."""
    values = _spectrum(eigenvalues)
    squares = float(np.sum(values**2))
    return float(np.sum(values)) ** 2 / squares if squares > 0 else float("nan")


def components_of_spectrum(eigenvalues, fraction: float) -> int:
    """Smallest k whose k largest eigenvalues hold `fraction` of their sum (0 if the sum is 0)."""
    fraction = _fraction(fraction)
    values = _spectrum(eigenvalues)
    total = float(np.sum(values))
    if total <= 0:
        return 0
    cumulative = np.cumsum(values) / total
    # A relative slack of 1e-12: a spectrum that holds `fraction` exactly counts.
    return int(np.searchsorted(cumulative, fraction * (1 - 1e-12)) + 1)


def participation_ratio(responses) -> float:
    """Participation ratio of the responses' covariance (see the module docstring).

    Args:
        responses: (samples, units, ...) array, samples >= 2.

    Returns:
        PR in [1, min(samples - 1, units)]; NaN when no unit varies.
    """
    x = _responses(responses)
    x = x - x.mean(axis=0)
    # trace(C)^2 / ||C||_F^2 needs no eigendecomposition.
    gram = x.T @ x if x.shape[1] <= x.shape[0] else x @ x.T
    squares = float(np.sum(gram**2))
    return float(np.trace(gram)) ** 2 / squares if squares > 0 else float("nan")


def components_for_variance(responses, fraction: float) -> int:
    """Number of principal components that hold `fraction` of the variance.

    Args:
        responses: (samples, units, ...) array, samples >= 2.
        fraction: in (0, 1].

    Returns:
        the smallest k >= 1 with the k largest covariance eigenvalues summing
        to at least `fraction` of the total; 0 when no unit varies.
    """
    return components_of_spectrum(covariance_spectrum(responses), fraction)


def _fraction(fraction) -> float:
    value = float(fraction)
    if not 0 < value <= 1:
        raise ParameterError("fraction", f"must be in (0, 1]; got {fraction!r}")
    return value


def dimensionality(responses, fractions=DEFAULT_FRACTIONS) -> dict:
    """Participation ratio and components for each variance fraction of one layer.

    Args:
        responses: (samples, units, ...) array.
        fractions: variance fractions, each in (0, 1].

    Returns:
        {"participation_ratio": float, "components_90": int, "components_95":
        int, ... (one key per fraction, its percentage to 4 significant digits),
        "units": int, "samples": int}.
    """
    fractions = [_fraction(f) for f in fractions]
    x = _responses(responses)
    spectrum = covariance_spectrum(x)
    result = {"participation_ratio": participation_ratio_of_spectrum(spectrum)}
    for fraction in fractions:
        result[f"components_{100 * fraction:.4g}"] = components_of_spectrum(spectrum, fraction)
    result.update(units=int(x.shape[1]), samples=int(x.shape[0]))
    return result


def layer_dimensionality(responses: Mapping[str, object], fractions=DEFAULT_FRACTIONS) -> dict:
    """`dimensionality` of every layer: {layer: its dict}, in the mapping's order.

    Args:
        responses: {layer name: (samples, units, ...) array}, e.g. the unit
            responses of `SelectivityModel.unit_response_model()`.
        fractions: as for `dimensionality`.
    """
    if not isinstance(responses, Mapping) or not responses:
        raise ParameterError("responses", "must be a non-empty mapping of layer name to responses")
    result = {}
    for name, values in responses.items():
        try:
            result[name] = dimensionality(values, fractions)
        except ParameterError as error:
            if error.parameter != "responses":
                raise
            raise ParameterError("responses", f"[{name!r}] {error.problem}") from None
    return result

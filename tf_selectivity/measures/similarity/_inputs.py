"""Input checks shared by the similarity measures (NumPy only)."""

from __future__ import annotations

import numpy as np

from tf_selectivity.core.settings import ParameterError


def activations(name: str, array) -> np.ndarray:
    """`array` as a float64 `(units, datapoints)` matrix, or ParameterError.

    Args:
        name: The Python parameter the array was passed as (named in errors).
        array: Array-like of shape `(units, datapoints)`, real and finite.

    Returns:
        The array as float64 (a copy only when the dtype differs).

    Raises:
        ParameterError: On a rank other than 2, no unit or datapoint, a
            non-real dtype, or NaN / infinite values.
    """
    array = np.asarray(array)
    if array.ndim != 2:
        raise ParameterError(
            name,
            "must be a 2-D (units, datapoints) array; got shape "
            f"{array.shape} (flatten convolutional activations with "
            "tf_selectivity.measures.similarity.cca.conv_activations_to_matrix)",
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ParameterError(name, f"has no units or no datapoints; got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
            or array.dtype == np.bool_):
        raise ParameterError(name, f"must hold real numbers; got dtype {array.dtype}")
    array = array.astype(np.float64, copy=False)
    if not np.isfinite(array).all():
        raise ParameterError(name, "contains NaN or infinite values")
    return array


def same_datapoints(x: np.ndarray, y: np.ndarray, names=("x", "y")) -> None:
    """ParameterError unless `x` and `y` have the same number of datapoints."""
    if x.shape[1] != y.shape[1]:
        raise ParameterError(
            names[1],
            f"must have the datapoints of {names[0]} (the same inputs, in the same "
            f"order): {names[0]} has {x.shape[1]} and {names[1]} {y.shape[1]} "
            "(arrays are (units, datapoints))",
        )


def at_least_four_datapoints(name: str, n: int, what: str = "the unbiased HSIC") -> None:
    """ParameterError unless n >= 4: the unbiased HSIC divides by n (n - 3)."""
    if n < 4:
        raise ParameterError(
            name,
            f"needs at least 4 datapoints for {what}, which divides by n (n - 3); got {n}",
        )


def centred(x: np.ndarray) -> np.ndarray:
    """A centred copy of `(units, datapoints)` activations (each unit's mean removed).

    A unit that is exactly constant gets exact zeros (its mean, computed in
    floating point, can differ from its value by round-off), so a constant
    layer is recognized as having no variance.
    """
    out = x - x.mean(axis=1, keepdims=True)
    constant = x.max(axis=1) == x.min(axis=1)
    if constant.any():
        out[constant] = 0.0
    return out


def identical(x: np.ndarray, y: np.ndarray) -> bool:
    """Whether two inputs are the same array or hold equal values (a self-comparison)."""
    return x is y or (x.shape == y.shape and np.array_equal(x, y))

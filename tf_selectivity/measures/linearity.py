"""How far a network is from linear: its departure from additivity at the midpoints between inputs.

A function f is affine exactly when, for every two inputs a and b, its value
at their midpoint is the midpoint of its values: f((a + b) / 2) =
(f(a) + f(b)) / 2. Over pairs of inputs (a_i, b_i) with midpoints m_i, the
*nonlinearity* of f is

    N = sum_i ||f(m_i) - (f(a_i) + f(b_i)) / 2||^2 / sum_i ||(f(a_i) - f(b_i)) / 2||^2

the squared departure from additivity relative to the half-distance between
the two values (both summed over pairs before the ratio, so that pairs f
barely separates do not dominate). N = 0 for an affine f (a network without
non-linearities, or a ReLU network whose units keep one side of zero over
the segments between the inputs); it is scale-free (the same for c * f + d);
for f(x) = max(x, 0) at a = 1, b = -1 it is 1: the midpoint's value 0 is
as far from the average 1/2 as the values are from each other.

The measure is taken on the test images as the network sees them (pixel
values; a network that normalizes inside does so affinely), pairs drawn at
random, for the logits and for any layer's unit responses (the map from the
image to that layer). NumPy only; `network_nonlinearity` calls a response
function of any backend.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from tf_selectivity.core.settings import ParameterError

__all__ = ["midpoint_nonlinearity", "midpoint_pairs", "network_nonlinearity"]


def midpoint_nonlinearity(at_first, at_second, at_midpoint) -> float:
    """The nonlinearity N of a function from its values at pairs of inputs and their midpoints.

    Args:
        at_first: (pairs, ...) f(a_i).
        at_second: (pairs, ...) f(b_i), the same shape.
        at_midpoint: (pairs, ...) f((a_i + b_i) / 2), the same shape.

    Returns:
        N >= 0 (float64 arithmetic); 0 for an affine f; NaN when f takes the
        same value at both inputs of every pair (nothing to compare with).

    Raises:
        ParameterError: arrays of different shapes, or no pairs.
    """
    first, second, middle = (np.asarray(x, np.float64) for x in (at_first, at_second, at_midpoint))
    if not first.shape == second.shape == middle.shape:
        raise ParameterError("at_midpoint", f"must have the shape of the other values {first.shape}; got "
                             f"{second.shape} and {middle.shape}")
    if first.ndim == 0 or first.shape[0] == 0:
        raise ParameterError("at_first", "must hold at least one pair")
    average = (first + second) / 2
    spread = float(np.sum(np.square((first - second) / 2)))
    if spread == 0.0:
        return float("nan")
    return float(np.sum(np.square(middle - average)) / spread)


def midpoint_pairs(num_inputs: int, num_pairs: int | None = None, seed: int = 0) -> tuple:
    """Random disjoint pairs of distinct inputs: the first and second halves of a permutation.

    Args:
        num_inputs: the inputs to pair (at least 2).
        num_pairs: the pairs wanted (default, and at most: ``num_inputs // 2``).
        seed: the permutation is ``np.random.default_rng(seed).permutation(num_inputs)``.

    Returns:
        (first, second): (pairs,) int64 indices; no input appears twice.

    Raises:
        ParameterError: fewer than 2 inputs, or num_pairs < 1.
    """
    if num_inputs < 2:
        raise ParameterError("num_inputs", f"must be at least 2 to form a pair; got {num_inputs}")
    count = num_inputs // 2 if num_pairs is None else min(int(num_pairs), num_inputs // 2)
    if count < 1:
        raise ParameterError("num_pairs", f"must be a positive integer; got {num_pairs}")
    order = np.random.default_rng(seed).permutation(num_inputs)
    return order[:count].astype(np.int64), order[count : 2 * count].astype(np.int64)


def network_nonlinearity(
    respond: Callable[[np.ndarray], Mapping[str, np.ndarray]],
    images,
    first,
    second,
    *,
    batch_size: int = 500,
) -> dict:
    """The nonlinearity N of every output of a network, on pairs of its inputs.

    Args:
        respond: images (float32) -> {name: (batch, ...) array}, e.g. a
            `SelectivityModel.unit_response_model()`'s ``predict_on_batch``
            ({"logits", probe: unit responses}).
        images: (N, ...) inputs; midpoints are computed in float32, exact
            for 8-bit images.
        first: (pairs,) indices of the first inputs (`midpoint_pairs`).
        second: (pairs,) indices of the second inputs.
        batch_size: inputs per call of `respond`.

    Returns:
        {name: N} for every output of `respond`, in its order.
    """
    images = np.asarray(images)
    first, second = np.asarray(first, np.int64), np.asarray(second, np.int64)
    a = images[first].astype(np.float32)
    b = images[second].astype(np.float32)
    middle = (a + b) / np.float32(2)
    values = [_responses(respond, x, batch_size) for x in (a, b, middle)]
    return {name: midpoint_nonlinearity(values[0][name], values[1][name], values[2][name]) for name in values[0]}


def _responses(respond, inputs, batch_size) -> dict:
    """{name: (N, ...) array} of `respond` over `inputs`, batch by batch."""
    parts = {}
    for start in range(0, len(inputs), batch_size):
        for name, value in dict(respond(inputs[start : start + batch_size])).items():
            parts.setdefault(name, []).append(np.asarray(value))
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}

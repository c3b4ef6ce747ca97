"""The midpoint nonlinearity (`tf_selectivity.measures.linearity`) against known answers."""

import keras
import numpy as np
import pytest

from tf_selectivity.core.settings import ParameterError
from tf_selectivity.measures.linearity import midpoint_nonlinearity, midpoint_pairs, network_nonlinearity


def _network(activation, kernel, bias):
    """Conv (3x3, 2 -> 3 channels, `activation`) -> global mean -> dense (3 -> 2), weights set."""
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(3, 3, padding="same", activation=activation)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2)(x)
    model = keras.Model(inputs, outputs)
    model.layers[1].set_weights([kernel, bias])
    model.layers[3].set_weights([np.array([[1, -2], [3, 1], [-1, 2]], np.float32), np.array([1, -1], np.float32)])
    return model


def _integer_images(rng, count, low, high):
    # Even pixel sums within a pair keep every midpoint an integer: with small integer weights all the
    # arithmetic is exact in float32, so a linear network's departure is exactly 0, not rounding.
    return (2 * rng.integers(low // 2, high // 2, size=(count, 4, 4, 2))).astype(np.float32)


def test_a_hand_computed_relu():
    # f = max(x, 0) at a = 1, b = -1: f(0) = 0 against the average 1/2, as far as the values' half-spread.
    assert midpoint_nonlinearity([1.0], [0.0], [0.0]) == 1.0
    # Two pairs summed before the ratio: (0.25 + 0) / (0.25 + 1).
    assert midpoint_nonlinearity([[1.0], [2.0]], [[0.0], [4.0]], [[0.0], [3.0]]) == pytest.approx(0.2)
    assert np.isnan(midpoint_nonlinearity([1.0], [1.0], [5.0]))  # f equal at both ends: nothing to compare


def test_a_network_without_non_linearities_scores_exactly_linear(rng):
    kernel = rng.integers(-2, 3, size=(3, 3, 2, 3)).astype(np.float32)
    model = _network("linear", kernel, np.array([1, 0, -2], np.float32))
    images = _integer_images(rng, 40, -8, 8)
    first, second = midpoint_pairs(len(images), seed=3)
    values = network_nonlinearity(lambda x: {"logits": model.predict_on_batch(x)}, images, first, second,
                                  batch_size=7)
    assert values == {"logits": 0.0}


def test_a_relu_network_with_every_unit_active_scores_exactly_linear(rng):
    # Positive weights, biases and inputs: every ReLU stays on its identity side, so the network is affine.
    kernel = rng.integers(1, 3, size=(3, 3, 2, 3)).astype(np.float32)
    model = _network("relu", kernel, np.array([1, 2, 1], np.float32))
    images = _integer_images(rng, 20, 2, 10)
    first, second = midpoint_pairs(len(images))
    assert network_nonlinearity(lambda x: {"logits": model.predict_on_batch(x)}, images, first, second) == {
        "logits": 0.0}


def test_relus_that_switch_make_the_network_non_linear(rng):
    kernel = rng.integers(-2, 3, size=(3, 3, 2, 3)).astype(np.float32)
    model = _network("relu", kernel, np.zeros(3, np.float32))
    images = _integer_images(rng, 40, -8, 8)
    first, second = midpoint_pairs(len(images))
    (value,) = network_nonlinearity(lambda x: {"logits": model.predict_on_batch(x)}, images, first, second).values()
    assert value > 1e-3


def test_the_measure_is_scale_free_and_pairs_are_disjoint(rng):
    a, b, m = rng.normal(size=(3, 10, 4))
    assert midpoint_nonlinearity(3 * a + 1, 3 * b + 1, 3 * m + 1) == pytest.approx(midpoint_nonlinearity(a, b, m))
    first, second = midpoint_pairs(11, num_pairs=100, seed=0)
    assert len(first) == len(second) == 5 and len(set(first) | set(second)) == 10


def test_bad_input_is_refused():
    with pytest.raises(ParameterError, match="at least 2"):
        midpoint_pairs(1)
    with pytest.raises(ParameterError, match="shape"):
        midpoint_nonlinearity(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 4)))

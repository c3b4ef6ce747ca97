"""`FusedBatchNormalization` keeps PyTorch's moving statistics on every backend."""

import numpy as np
import pytest
from keras import ops

from tf_selectivity.models.blocks import FusedBatchNormalization

from references import torch_cases

pytestmark = pytest.mark.backends

MOMENTUM, EPSILON = 0.9, 1e-5  # Keras' momentum = 1 - PyTorch's (0.1)


def pytorch_rule(x, moving_mean, moving_variance, gamma, beta):
    """PyTorch's BatchNorm in training mode, written out in float64 (channels last).

    Normalizes with the biased batch variance and averages the unbiased one
    into the running variance.
    """
    axes = tuple(range(x.ndim - 1))
    n = x.size // x.shape[-1]
    mean = x.mean(axis=axes, dtype=np.float64)
    biased = x.var(axis=axes, dtype=np.float64)
    outputs = (x - mean) / np.sqrt(biased + EPSILON) * gamma + beta
    new_mean = MOMENTUM * moving_mean + (1 - MOMENTUM) * mean
    new_variance = MOMENTUM * moving_variance + (1 - MOMENTUM) * biased * n / (n - 1)
    return outputs, new_mean, new_variance


def _layer(rng, shape):
    layer = FusedBatchNormalization(momentum=MOMENTUM, epsilon=EPSILON)
    layer.build(shape)
    channels = shape[-1]
    state = {
        "gamma": rng.uniform(0.5, 1.5, channels),
        "beta": rng.normal(size=channels),
        "moving_mean": rng.normal(size=channels),
        "moving_variance": rng.uniform(0.5, 2.0, channels),
    }
    for name, value in state.items():
        getattr(layer, name).assign(value.astype("float32"))
    return layer, state


@pytest.mark.parametrize("shape", [(4, 3, 5, 2), (6, 3)])
def test_one_training_step_follows_pytorchs_rule(rng, shape):
    # 4-D is the TensorFlow fused kernel on TensorFlow and keras.ops on JAX;
    # 2-D is keras.ops on both. Small batches make n / (n - 1) visible
    # (1.017 and 1.2 here).
    x = rng.normal(2.0, 3.0, size=shape).astype("float32")
    layer, state = _layer(rng, shape)
    outputs = ops.convert_to_numpy(layer(x, training=True))
    expected, mean, variance = pytorch_rule(x.astype(np.float64), state["moving_mean"], state["moving_variance"], state["gamma"], state["beta"])
    np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ops.convert_to_numpy(layer.moving_mean), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(layer.moving_variance), variance, rtol=1e-5)
    biased = MOMENTUM * state["moving_variance"] + (1 - MOMENTUM) * x.var(axis=tuple(range(x.ndim - 1)))
    assert np.abs(ops.convert_to_numpy(layer.moving_variance) - biased).min() > 1e-3  # not Keras' rule
    # Inference uses the moving statistics.
    inference = ops.convert_to_numpy(layer(x, training=False))
    moving_mean = ops.convert_to_numpy(layer.moving_mean)
    moving_variance = ops.convert_to_numpy(layer.moving_variance)
    np.testing.assert_allclose(
        inference, (x - moving_mean) / np.sqrt(moving_variance + EPSILON) * state["gamma"] + state["beta"],
        rtol=1e-4, atol=1e-4,
    )


def test_training_step_equals_torch_batchnorm():
    inputs = torch_cases.batch_norm_step()  # PyTorch's answer: references/, by references/make_torch_references.py
    expected = torch_cases.expected("batch_norm_step", inputs)
    assert (float(inputs["momentum"]), float(inputs["epsilon"])) == pytest.approx((1 - MOMENTUM, EPSILON))
    x = inputs["x"]
    layer = FusedBatchNormalization(momentum=MOMENTUM, epsilon=EPSILON)
    layer.build(x.shape)
    for name in ("gamma", "beta", "moving_mean", "moving_variance"):
        getattr(layer, name).assign(inputs[name].astype("float32"))
    outputs = ops.convert_to_numpy(layer(x, training=True))
    np.testing.assert_allclose(outputs, expected["outputs"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ops.convert_to_numpy(layer.moving_mean), expected["running_mean"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(layer.moving_variance), expected["running_var"], rtol=1e-5)

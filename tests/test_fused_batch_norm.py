"""FusedBatchNormalization equals keras.layers.BatchNormalization (TensorFlow path)."""

import numpy as np
import pytest
import keras

from tf_selectivity.models.blocks import FusedBatchNormalization

pytestmark = pytest.mark.tensorflow_only


def _pair(rng, shape):
    fused = FusedBatchNormalization(momentum=0.9, epsilon=1e-5)
    plain = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    for layer in (fused, plain):
        layer.build(shape)
    gamma, beta = rng.normal(size=shape[-1]), rng.normal(size=shape[-1])
    for layer in (fused, plain):
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)
    return fused, plain


def test_training_outputs_gradients_and_moving_statistics_match(rng):
    import tensorflow as tf

    shape = (8, 5, 6, 4)
    x = tf.constant(rng.normal(2.0, 3.0, size=shape).astype("float32"))
    fused, plain = _pair(rng, shape)
    weights = tf.constant(rng.normal(size=shape).astype("float32"))
    results = []
    for layer in (fused, plain):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * weights)
        grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
        results.append((y.numpy(), [g.numpy() for g in grads]))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-4, atol=1e-4)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(fused.moving_mean.numpy(), plain.moving_mean.numpy(), rtol=1e-5)
    n = 8 * 5 * 6  # the fused kernel averages the unbiased batch variance
    expected = 0.9 * 1.0 + 0.1 * (plain.moving_variance.numpy() - 0.9) / 0.1 * n / (n - 1)
    np.testing.assert_allclose(fused.moving_variance.numpy(), expected, rtol=1e-4)


def test_inference_uses_moving_statistics_and_falls_back_elsewhere(rng):
    shape = (3, 4, 4, 2)
    fused, plain = _pair(rng, shape)
    for layer in (fused, plain):
        layer.moving_mean.assign([0.5, -1.0])
        layer.moving_variance.assign([2.0, 0.25])
    x = rng.normal(size=shape).astype("float32")
    np.testing.assert_allclose(fused(x, training=False), plain(x, training=False), rtol=1e-5, atol=1e-6)
    dense = FusedBatchNormalization()
    x2 = rng.normal(size=(5, 3)).astype("float32")
    assert dense(x2, training=True).shape == (5, 3)  # 2-D: Keras' own path
    clone = FusedBatchNormalization.from_config(fused.get_config())
    assert clone.momentum == 0.9 and clone.epsilon == 1e-5

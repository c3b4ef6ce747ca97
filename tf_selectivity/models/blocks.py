"""Small building blocks shared by the model builders."""

from __future__ import annotations

import keras
from keras import ops

__all__ = [
    "FusedBatchNormalization",
    "ACTIVATIONS",
    "activation_layer",
    "validate_activation",
    "input_normalization",
    "ZeroPadShortcut",
    "CIFAR10_PIXEL_MEAN",
    "CIFAR10_PIXEL_STD",
]

ACTIVATIONS = ("relu", "leaky_relu")

# Per-channel statistics of the CIFAR-10 training images in [0, 255]; the
# training command replaces them with the statistics of the training split it
# actually uses.
CIFAR10_PIXEL_MEAN = (125.3, 123.0, 113.9)
CIFAR10_PIXEL_STD = (63.0, 62.1, 66.7)


def validate_activation(activation: str, leaky_slope: float) -> None:
    """Raises ValueError for an unknown activation or an inconsistent slope."""
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"Unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}."
        )
    slope = float(leaky_slope)
    if activation == "relu" and slope != 0.0:
        raise ValueError(
            f"leaky_slope={slope} only applies to activation='leaky_relu'."
        )
    if not 0.0 <= slope < 1.0:
        raise ValueError(f"leaky_slope must be in [0, 1); got {slope}.")


def activation_layer(activation: str, leaky_slope: float, name: str) -> keras.layers.Layer:
    """ReLU, or leaky ReLU with negative slope `leaky_slope` (paper, sec. 4.4)."""
    if activation == "relu":
        return keras.layers.ReLU(name=name)
    return keras.layers.LeakyReLU(negative_slope=float(leaky_slope), name=name)


def input_normalization(pixel_mean, pixel_std, name="normalize") -> keras.layers.Layer:
    """Per-channel standardization of raw [0, 255] pixels, inside the model, so
    that exported models take plain images and analysis needs no statistics."""
    mean = [float(m) for m in pixel_mean]
    variance = [float(s) ** 2 for s in pixel_std]
    return keras.layers.Normalization(axis=-1, mean=mean, variance=variance, name=name)


@keras.saving.register_keras_serializable(package="tf_selectivity")
class ZeroPadShortcut(keras.layers.Layer):
    """Option-A residual shortcut of He et al. (2016) for CIFAR ResNets.

    Subsamples the identity spatially by `stride` and zero-pads the channels
    up to `filters` (half of the padding on each side), adding no parameters.
    Matches the shortcut of the paper's reference code (Idelbayev, 2020).

    Args:
        filters: number of output channels (>= input channels).
        stride: spatial subsampling step.

    Input shape:
        (batch, H, W, C).

    Output shape:
        (batch, ceil(H / stride), ceil(W / stride), filters).
    """

    def __init__(self, filters, stride=2, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.stride = int(stride)

    def call(self, inputs):
        x = inputs[:, :: self.stride, :: self.stride, :]
        missing = self.filters - x.shape[-1]
        if missing < 0:
            raise ValueError(
                f"ZeroPadShortcut cannot reduce {x.shape[-1]} channels to {self.filters}."
            )
        before = missing // 2
        return ops.pad(x, [[0, 0], [0, 0], [0, 0], [before, missing - before]])

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape

        def reduce(size):
            return None if size is None else -(-size // self.stride)

        return (batch, reduce(height), reduce(width), self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "stride": self.stride})
        return config


@keras.saving.register_keras_serializable(package="tf_selectivity")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with PyTorch's moving statistics and,
    on TensorFlow, TensorFlow's fused kernel.

    **Moving variance as PyTorch keeps it** (the paper's framework, and the
    reference network whose checkpoints `load_torch_weights` reads): a
    training step normalizes with the biased batch variance but averages the
    *unbiased* one, ``var * n / (n - 1)`` with n = batch x H x W values per
    channel, into `moving_variance`. Keras' own layer averages the biased
    one. This layer does PyTorch's update on every backend; for a batch of
    128 16x16 maps the two differ by a factor 1 + 3e-5, for a batch of 8 4x4
    maps by 1.008. With a single value per channel (n = 1, where PyTorch
    raises) the batch variance, 0, is averaged unscaled.

    **Speed on TensorFlow.** Keras 3 normalizes with generic ops (moments,
    then scale and shift) on every backend. XLA fuses those on GPU/TPU and
    under JAX, but TensorFlow's default CPU executor runs them as separate
    passes over the feature map; its fused kernel (`FusedBatchNormV3`, one
    pass forward and backward, oneDNN on CPU, which also averages the
    unbiased variance) makes a whole ResNet20 train step markedly faster on
    a CPU (benchmarks/RESULTS.md). So on the TensorFlow backend, for 4-D
    channels-last inputs without mask, renorm or cross-replica statistics,
    this layer calls that kernel; elsewhere a training step runs the same
    computation in `keras.ops`.

    Masked inputs, batch renormalization and synchronized statistics are
    Keras' own layer (biased moving variance); inference is the same
    everywhere: the moving statistics.

    Args: as `keras.layers.BatchNormalization`.
    """

    def _fused_path(self, inputs, mask):
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and not self.renorm
            and not getattr(self, "synchronized", False)
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and self.center
            and self.scale
            and inputs.dtype in ("float32", "float16", "bfloat16")
        )

    def call(self, inputs, training=None, mask=None):
        if self._fused_path(inputs, mask):
            return self._fused_call(inputs, training)
        if (
            training
            and self.trainable
            and mask is None
            and not self.renorm
            and not getattr(self, "synchronized", False)
        ):
            return self._training_call(inputs)
        return super().call(inputs, training=training, mask=mask)

    def _training_call(self, inputs):
        """A training step in `keras.ops`: batch statistics, PyTorch's update."""
        # As Keras: statistics in float32 at least (bf16/fp16 overflow).
        compute_dtype = keras.backend.result_type(inputs.dtype, "float32")
        x = ops.cast(inputs, compute_dtype)
        ndim = len(x.shape)
        channel_axis = self.axis % ndim
        axes = [a for a in range(ndim) if a != channel_axis]
        mean, variance = ops.moments(x, axes=axes)
        shape = ops.shape(x)
        count = ops.cast(1, compute_dtype)
        for axis in axes:
            count = count * ops.cast(shape[axis], compute_dtype)
        unbiased = variance * (count / ops.maximum(count - 1.0, 1.0))
        momentum = ops.cast(self.momentum, compute_dtype)
        self.moving_mean.assign(
            ops.cast(
                ops.cast(self.moving_mean, compute_dtype) * momentum + mean * (1.0 - momentum),
                self.moving_mean.dtype,
            )
        )
        self.moving_variance.assign(
            ops.cast(
                ops.cast(self.moving_variance, compute_dtype) * momentum
                + unbiased * (1.0 - momentum),
                self.moving_variance.dtype,
            )
        )
        outputs = ops.batch_normalization(
            x=x,
            mean=mean,
            variance=variance,
            axis=self.axis,
            offset=ops.cast(self.beta, compute_dtype) if self.center else None,
            scale=ops.cast(self.gamma, compute_dtype) if self.scale else None,
            epsilon=self.epsilon,
        )
        return ops.cast(outputs, self.compute_dtype)

    def _fused_call(self, inputs, training):
        import tensorflow as tf

        gamma = tf.cast(self.gamma, "float32")
        beta = tf.cast(self.beta, "float32")
        mean = tf.cast(self.moving_mean, "float32")
        variance = tf.cast(self.moving_variance, "float32")
        if training and self.trainable:
            outputs, new_mean, new_variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, mean=mean, variance=variance, epsilon=self.epsilon,
                is_training=True, exponential_avg_factor=1.0 - self.momentum,
            )
            self.moving_mean.assign(tf.cast(new_mean, self.moving_mean.dtype))
            self.moving_variance.assign(tf.cast(new_variance, self.moving_variance.dtype))
        else:
            outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, mean=mean, variance=variance, epsilon=self.epsilon,
                is_training=False,
            )
        return tf.cast(outputs, self.compute_dtype)

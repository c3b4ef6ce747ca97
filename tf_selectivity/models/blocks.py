"""Small building blocks shared by the model builders."""

from __future__ import annotations

import keras
from keras import ops

__all__ = [
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

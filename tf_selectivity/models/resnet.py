"""CIFAR ResNets (He et al., 2016, sec. 4.2) with option-A shortcuts and probes."""

from __future__ import annotations

import keras

from tf_selectivity.layers import SelectivityProbe
from tf_selectivity.models.blocks import (
    FusedBatchNormalization,
    CIFAR10_PIXEL_MEAN,
    CIFAR10_PIXEL_STD,
    ZeroPadShortcut,
    activation_layer,
    input_normalization,
    validate_activation,
)
from tf_selectivity.models.selectivity_model import SelectivityModel

__all__ = ["build_cifar_resnet"]

# Batch-norm settings of PyTorch's defaults (the paper's framework): Keras'
# momentum is 1 - PyTorch's momentum (0.1).
_BN = dict(momentum=0.9, epsilon=1e-5)


def _conv(filters, stride, name):
    # PyTorch's kaiming_normal_ (fan-in, gain sqrt(2)) as in the reference code.
    return keras.layers.Conv2D(
        filters,
        3,
        strides=stride,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=name,
    )


def build_cifar_resnet(
    depth: int = 20,
    *,
    num_classes: int = 10,
    alpha: float = 0.0,
    activation: str = "relu",
    leaky_slope: float = 0.0,
    input_shape=(32, 32, 3),
    pixel_mean=CIFAR10_PIXEL_MEAN,
    pixel_std=CIFAR10_PIXEL_STD,
    name: str | None = None,
) -> SelectivityModel:
    """ResNet-(6n+2) for CIFAR with a `SelectivityProbe` after every activation.

    Three stages of n basic blocks (16, 32, 64 filters; the first block of
    stages 2 and 3 subsamples by 2 and uses a parameter-free zero-padded
    shortcut). A probe follows the stem's ReLU and each ReLU inside and at the
    end of every block: 2n * 3 + 1 probes (19 for ResNet20, which has 269,722
    trainable parameters at 10 classes).

    Args:
        depth: 6n + 2 (8, 14, 20, 32, 44, 56, 110, ...).
        num_classes: number of output logits.
        alpha: selectivity regularizer scale of every probe.
        activation: "relu" or "leaky_relu".
        leaky_slope: negative slope of the leaky ReLU.
        input_shape: shape of one image, channels last, raw [0, 255] pixels.
        pixel_mean, pixel_std: per-channel statistics used to standardize the
            input inside the model.
        name: model name (default "resnet{depth}").

    Returns:
        A `SelectivityModel` that maps images to logits.
    """
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n + 2 with n >= 1; got {depth}.")
    validate_activation(activation, leaky_slope)
    blocks_per_stage = (depth - 2) // 6

    def act(label):
        return activation_layer(activation, leaky_slope, name=f"{label}_act")

    def probe(x, label):
        return SelectivityProbe(num_classes=num_classes, alpha=alpha, name=f"probe_{label}")(x)

    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = input_normalization(pixel_mean, pixel_std)(inputs)
    x = _conv(16, 1, "stem_conv")(x)
    x = FusedBatchNormalization(name="stem_bn", **_BN)(x)
    x = probe(act("stem")(x), "stem")

    in_filters = 16
    for stage, filters in enumerate((16, 32, 64), start=1):
        for block in range(1, blocks_per_stage + 1):
            label = f"s{stage}b{block}"
            stride = 2 if (stage > 1 and block == 1) else 1
            shortcut = x
            h = _conv(filters, stride, f"{label}_conv1")(x)
            h = FusedBatchNormalization(name=f"{label}_bn1", **_BN)(h)
            h = probe(act(f"{label}_relu1")(h), f"{label}_relu1")
            h = _conv(filters, 1, f"{label}_conv2")(h)
            h = FusedBatchNormalization(name=f"{label}_bn2", **_BN)(h)
            if stride != 1 or in_filters != filters:
                shortcut = ZeroPadShortcut(filters, stride, name=f"{label}_shortcut")(x)
            h = keras.layers.Add(name=f"{label}_add")([h, shortcut])
            x = probe(act(f"{label}_out")(h), f"{label}_out")
            in_filters = filters

    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(
        num_classes, kernel_initializer="he_normal", name="logits"
    )(x)
    return SelectivityModel(inputs, logits, name=name or f"resnet{depth}")

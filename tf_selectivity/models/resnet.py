"""CIFAR ResNets (He et al., 2016, sec. 4.2) with option-A shortcuts and probes."""

from __future__ import annotations

import math

import keras

from tf_selectivity.models.probe import SelectivityProbe
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

__all__ = ["build_cifar_resnet", "kaiming_normal", "torch_linear_bias"]

# Batch-norm settings of PyTorch's defaults (the paper's framework): Keras'
# momentum is 1 - PyTorch's momentum (0.1).
_BN = dict(momentum=0.9, epsilon=1e-5)


def kaiming_normal():
    """PyTorch's `kaiming_normal_` with its defaults, as the reference code's
    `_weights_init` calls it: N(0, 2 / fan_in), untruncated. (Keras'
    "he_normal" draws from a normal truncated at two standard deviations.)"""
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_in", distribution="untruncated_normal"
    )


def torch_linear_bias(fan_in):
    """PyTorch's default `nn.Linear` bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound)


def _conv(x, filters, stride, name):
    """3x3 convolution without bias, padded like PyTorch's `padding=1`.

    Keras' "same" padding is symmetric for stride 1 but pads (0, 1) for
    stride 2 on even sizes, which centres output (i, j) on input pixel
    (2i + 1, 2j + 1). The option-A shortcut takes pixel (2i, 2j), so a
    stride-2 conv pads one pixel on every side explicitly (as the reference
    network does) and the two branches of a block stay aligned.
    """
    padding = "same"
    if stride != 1:
        x = keras.layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
        padding = "valid"
    return keras.layers.Conv2D(
        filters,
        3,
        strides=stride,
        padding=padding,
        use_bias=False,
        kernel_initializer=kaiming_normal(),
        name=name,
    )(x)


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

    The network is the reference network of the paper (Idelbayev's
    pytorch_resnet_cifar10, `resnet.py`), layer for layer: its weights load
    with `tf_selectivity.models.load_torch_weights` and give the same logits.
    In particular:

    * stride-2 convs pad one pixel on each side (PyTorch's `padding=1`), so
      that the residual branch and the option-A shortcut (`x[:, ::2, ::2]`)
      are centred on the same pixels;
    * conv and dense kernels start from PyTorch's `kaiming_normal_` (fan-in,
      gain sqrt(2), untruncated normal), which the reference applies to every
      `Conv2d` and `Linear` weight; the dense bias keeps PyTorch's default
      `Linear` bias, U(-1/sqrt(64), 1/sqrt(64)) (the reference leaves it
      alone); batch norm starts at gamma = 1, beta = 0 with PyTorch's
      momentum (0.1) and epsilon (1e-5).

    Args:
        depth: 6n + 2 (8, 14, 20, 32, 44, 56, 110, ...).
        num_classes: number of output logits.
        alpha: selectivity regularizer scale of every probe.
        activation: "relu" or "leaky_relu".
        leaky_slope: negative slope of the leaky ReLU.
        input_shape: shape of one image, channels last, raw [0, 255] pixels.
        pixel_mean: per-channel mean used to standardize the input inside
            the model.
        pixel_std: per-channel standard deviation, likewise.
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
    x = _conv(x, 16, 1, "stem_conv")
    x = FusedBatchNormalization(name="stem_bn", **_BN)(x)
    x = probe(act("stem")(x), "stem")

    in_filters = 16
    for stage, filters in enumerate((16, 32, 64), start=1):
        for block in range(1, blocks_per_stage + 1):
            label = f"s{stage}b{block}"
            stride = 2 if (stage > 1 and block == 1) else 1
            shortcut = x
            h = _conv(x, filters, stride, f"{label}_conv1")
            h = FusedBatchNormalization(name=f"{label}_bn1", **_BN)(h)
            h = probe(act(f"{label}_relu1")(h), f"{label}_relu1")
            h = _conv(h, filters, 1, f"{label}_conv2")
            h = FusedBatchNormalization(name=f"{label}_bn2", **_BN)(h)
            if stride != 1 or in_filters != filters:
                shortcut = ZeroPadShortcut(filters, stride, name=f"{label}_shortcut")(x)
            h = keras.layers.Add(name=f"{label}_add")([h, shortcut])
            x = probe(act(f"{label}_out")(h), f"{label}_out")
            in_filters = filters

    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(
        num_classes,
        kernel_initializer=kaiming_normal(),
        bias_initializer=torch_linear_bias(in_filters),
        name="logits",
    )(x)
    return SelectivityModel(inputs, logits, name=name or f"resnet{depth}")

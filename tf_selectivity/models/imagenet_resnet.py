"""ImageNet-style ResNets (ResNet18/50) for Tiny ImageNet, with probes.

The ICLR 2021 version of Leavitt & Morcos trained ResNet18 and ResNet50 on
Tiny ImageNet (64x64 images, 200 classes). The layout here is torchvision's
(He et al., 2016, ImageNet networks; "v1.5": a bottleneck block subsamples in
its 3x3 convolution; 1x1 projection shortcuts with batch norm where the shape
changes), with one change for small images, chosen by `stem`:

* ``stem="small"`` (default): one 3x3 stride-1 convolution and no max-pool,
  the usual adaptation for 64x64 (and 32x32) inputs. The ImageNet stem
  (7x7 stride 2, then a 3x3 stride-2 max-pool) divides the resolution by 4
  before the first block, which leaves a 64x64 image a 2x2 map in the last
  stage; the small stem keeps 64x64 in stage 1 and 8x8 in the last stage.
  It costs about 15x the multiply-adds of the ImageNet stem at 64x64
  (ResNet18: 2.2 G per image, 1.2x ResNet18 on 224x224 ImageNet).
* ``stem="imagenet"``: torchvision's stem, exactly (for 224x224 inputs, or
  to compare).

Parameters for a given number of classes match torchvision's ``resnet18`` /
``resnet50`` with the ImageNet stem (11,689,512 and 25,557,032 at 1000
classes; tested), minus 7,680 with the small stem (a 3x3 instead of a 7x7
first kernel).
"""

from __future__ import annotations

import math

import keras

from tf_selectivity.models.probe import SelectivityProbe
from tf_selectivity.models.blocks import (
    FusedBatchNormalization,
    activation_layer,
    input_normalization,
    validate_activation,
)
from tf_selectivity.models.selectivity_model import SelectivityModel

__all__ = [
    "build_imagenet_resnet",
    "IMAGENET_RESNET_BLOCKS",
    "IMAGENET_PIXEL_MEAN",
    "IMAGENET_PIXEL_STD",
    "STEMS",
]

# Depth -> (block kind, blocks per stage), as in He et al. (2016), table 1.
IMAGENET_RESNET_BLOCKS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}

# torchvision's ImageNet statistics in [0, 255]; the training command
# replaces them with the statistics of the training split it uses.
IMAGENET_PIXEL_MEAN = (123.675, 116.28, 103.53)
IMAGENET_PIXEL_STD = (58.395, 57.12, 57.375)

STEMS = ("small", "imagenet")

# PyTorch's batch-norm defaults (Keras momentum = 1 - PyTorch momentum).
_BN = dict(momentum=0.9, epsilon=1e-5)

# torchvision initializes convolutions with kaiming_normal_(mode="fan_out",
# nonlinearity="relu").
_CONV_INIT = dict(scale=2.0, mode="fan_out", distribution="untruncated_normal")


def _conv(filters, kernel_size, stride, name):
    """A bias-free convolution padded as PyTorch pads it (k // 2 on each side).

    Keras' "same" padding is asymmetric for stride 2 (it pads after only),
    which shifts the subsampling grid by one pixel against PyTorch; an
    explicit symmetric `ZeroPadding2D` and "valid" convolution reproduce
    PyTorch's grid. Stride-1 and 1x1 convolutions need no padding layer.
    """
    conv = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=stride,
        padding="same" if stride == 1 else "valid",
        use_bias=False,
        kernel_initializer=keras.initializers.VarianceScaling(**_CONV_INIT),
        name=name,
    )
    pad = kernel_size // 2
    if stride == 1 or pad == 0:
        return conv

    def padded(x):
        return conv(keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x))

    return padded


def build_imagenet_resnet(
    depth: int = 18,
    *,
    num_classes: int = 200,
    alpha: float = 0.0,
    activation: str = "relu",
    leaky_slope: float = 0.0,
    input_shape=(64, 64, 3),
    pixel_mean=IMAGENET_PIXEL_MEAN,
    pixel_std=IMAGENET_PIXEL_STD,
    width: int = 64,
    stem: str = "small",
    name: str | None = None,
) -> SelectivityModel:
    """ResNet-18/34/50/101 with a `SelectivityProbe` after every activation.

    Four stages of blocks with ``width * (1, 2, 4, 8)`` filters (bottleneck
    blocks output 4x that); stages 2-4 subsample by 2 in their first block.
    A probe follows the stem's activation and every activation of every
    block: both of a basic block (after conv1 and after the residual sum),
    all three of a bottleneck block. ResNet18 has 17 probes, ResNet50 49.

    Args:
        depth: 18, 34 (basic blocks), 50 or 101 (bottleneck blocks).
        num_classes: number of output logits (Tiny ImageNet: 200).
        alpha: selectivity regularizer scale of every probe.
        activation: "relu" or "leaky_relu".
        leaky_slope: negative slope of the leaky ReLU.
        input_shape: one image, channels last, raw [0, 255] pixels.
        pixel_mean: per-channel mean used to standardize the input inside
            the model.
        pixel_std: per-channel standard deviation, likewise.
        width: filters of the first stage (64 in the standard networks; a
            smaller width gives a cheaper network of the same layout, for
            tests).
        stem: "small" (3x3 stride 1, no max-pool; for 32-64 pixel images)
            or "imagenet" (7x7 stride 2 and a 3x3 stride-2 max-pool).
        name: model name (default "resnet{depth}").

    Returns:
        A `SelectivityModel` mapping images to logits.
    """
    if depth not in IMAGENET_RESNET_BLOCKS:
        raise ValueError(
            f"ImageNet ResNet depth must be one of {sorted(IMAGENET_RESNET_BLOCKS)}; got {depth}."
        )
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {', '.join(STEMS)}; got {stem!r}.")
    if int(width) < 1:
        raise ValueError(f"width must be positive; got {width}.")
    validate_activation(activation, leaky_slope)
    kind, blocks_per_stage = IMAGENET_RESNET_BLOCKS[depth]
    expansion = 4 if kind == "bottleneck" else 1
    width = int(width)

    def act(label):
        return activation_layer(activation, leaky_slope, name=f"{label}_act")

    def probe(x, label):
        return SelectivityProbe(num_classes=num_classes, alpha=alpha, name=f"probe_{label}")(x)

    def bn(label):
        return FusedBatchNormalization(name=label, **_BN)

    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = input_normalization(pixel_mean, pixel_std)(inputs)
    if stem == "small":
        x = _conv(width, 3, 1, "stem_conv")(x)
    else:
        x = _conv(width, 7, 2, "stem_conv")(x)
    x = bn("stem_bn")(x)
    x = probe(act("stem")(x), "stem")
    if stem == "imagenet":
        # PyTorch pads the max-pool with -inf; after a ReLU every value is
        # >= 0, so zero padding gives the same maxima (leaky ReLU: nearly).
        x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)

    in_filters = width
    for stage, blocks in enumerate(blocks_per_stage, start=1):
        filters = width * 2 ** (stage - 1)
        for block in range(1, blocks + 1):
            label = f"s{stage}b{block}"
            stride = 2 if (stage > 1 and block == 1) else 1
            out_filters = filters * expansion
            if kind == "basic":
                h = _conv(filters, 3, stride, f"{label}_conv1")(x)
                h = bn(f"{label}_bn1")(h)
                h = probe(act(f"{label}_relu1")(h), f"{label}_relu1")
                h = _conv(filters, 3, 1, f"{label}_conv2")(h)
                h = bn(f"{label}_bn2")(h)
            else:
                h = _conv(filters, 1, 1, f"{label}_conv1")(x)
                h = bn(f"{label}_bn1")(h)
                h = probe(act(f"{label}_relu1")(h), f"{label}_relu1")
                h = _conv(filters, 3, stride, f"{label}_conv2")(h)
                h = bn(f"{label}_bn2")(h)
                h = probe(act(f"{label}_relu2")(h), f"{label}_relu2")
                h = _conv(out_filters, 1, 1, f"{label}_conv3")(h)
                h = bn(f"{label}_bn3")(h)
            shortcut = x
            if stride != 1 or in_filters != out_filters:
                shortcut = _conv(out_filters, 1, stride, f"{label}_proj")(x)
                shortcut = bn(f"{label}_proj_bn")(shortcut)
            h = keras.layers.Add(name=f"{label}_add")([h, shortcut])
            x = probe(act(f"{label}_out")(h), f"{label}_out")
            in_filters = out_filters

    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    # PyTorch's nn.Linear initialization: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    # for the weights and the bias.
    bound = 1.0 / math.sqrt(in_filters)
    logits = keras.layers.Dense(
        num_classes,
        kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
        bias_initializer=keras.initializers.RandomUniform(-bound, bound),
        name="logits",
    )(x)
    return SelectivityModel(inputs, logits, name=name or f"resnet{depth}")

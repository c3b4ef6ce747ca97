"""The paper's VGG16-like network: batch-norm VGG16 with one 512-unit FC layer."""

from __future__ import annotations

import keras

from tf_selectivity.models.probe import SelectivityProbe
from tf_selectivity.models.blocks import (
    FusedBatchNormalization,
    CIFAR10_PIXEL_MEAN,
    CIFAR10_PIXEL_STD,
    activation_layer,
    input_normalization,
    validate_activation,
)
from tf_selectivity.models.selectivity_model import SelectivityModel

__all__ = ["build_vgg16", "VGG16_STAGES"]

# Configuration "D" of Simonyan & Zisserman (2015): filters per conv layer,
# one tuple per stage, each stage followed by 2x2 max pooling.
VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))

_BN = dict(momentum=0.9, epsilon=1e-5)


def build_vgg16(
    *,
    num_classes: int = 10,
    alpha: float = 0.0,
    activation: str = "relu",
    leaky_slope: float = 0.0,
    input_shape=(32, 32, 3),
    pixel_mean=CIFAR10_PIXEL_MEAN,
    pixel_std=CIFAR10_PIXEL_STD,
    fc_units: int = 512,
    name: str = "vgg16",
) -> SelectivityModel:
    """Batch-norm VGG16 whose two 4096-unit FC layers are one `fc_units` layer.

    Each of the 13 conv layers is conv 3x3 -> batch norm -> activation ->
    `SelectivityProbe`; the classifier is flatten -> dense(512) -> activation
    -> dense(num_classes) (Leavitt & Morcos, appendix A.1).

    Args:
        num_classes: number of output logits.
        alpha: selectivity regularizer scale of every probe.
        activation: "relu" or "leaky_relu".
        leaky_slope: negative slope of the leaky ReLU.
        input_shape: shape of one image, channels last, raw [0, 255] pixels;
            height and width must be divisible by 32.
        pixel_mean: per-channel input mean.
        pixel_std: per-channel input standard deviation.
        fc_units: width of the hidden fully-connected layer.
        name: model name.

    Returns:
        A `SelectivityModel` that maps images to logits.
    """
    validate_activation(activation, leaky_slope)
    height, width = input_shape[0], input_shape[1]
    if height % 32 or width % 32:
        raise ValueError(
            f"VGG16 pools 5 times: input height and width must be multiples of 32; got {input_shape}."
        )

    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = input_normalization(pixel_mean, pixel_std)(inputs)
    for stage, stage_filters in enumerate(VGG16_STAGES, start=1):
        for index, filters in enumerate(stage_filters, start=1):
            label = f"conv{stage}_{index}"
            x = keras.layers.Conv2D(
                filters, 3, padding="same", use_bias=False,
                kernel_initializer="he_normal", name=label,
            )(x)
            x = FusedBatchNormalization(name=f"{label}_bn", **_BN)(x)
            x = activation_layer(activation, leaky_slope, name=f"{label}_act")(x)
            x = SelectivityProbe(num_classes=num_classes, alpha=alpha, name=f"probe_{label}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{stage}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(fc_units, kernel_initializer="he_normal", name="fc")(x)
    x = activation_layer(activation, leaky_slope, name="fc_act")(x)
    logits = keras.layers.Dense(num_classes, kernel_initializer="he_normal", name="logits")(x)
    return SelectivityModel(inputs, logits, name=name)

"""A guard against a TensorFlow/oneDNN bug that breaks some convolutions' gradients.

TensorFlow's oneDNN CPU kernels compute the weight gradient of a 1x1
convolution with a stride above 1 and fewer than 16 input channels wrongly:
with TensorFlow 2.21 on an AVX-512 CPU the process dies ("double free or
corruption") for such a convolution on a 64x64 input; oneDNN issue #6035
reports silently wrong gradients on other CPUs. TensorFlow turns these
kernels on by default on some CPUs; the command lines (`python -m
tf_selectivity.train` and the others) turn them on everywhere for speed,
unless TF_ENABLE_ONEDNN_OPTS is already set (`tf_selectivity.core.cli.
ENVIRONMENT`); importing the package changes nothing. The networks of this
package never have such a layer; a user's network can. So a
`SelectivityModel` that has one refuses to compile on TensorFlow while
oneDNN may be on, with the way out in the message, instead of crashing or
training on wrong gradients.
"""

from __future__ import annotations

import os

import keras

from tf_selectivity.models.probe import all_layers

__all__ = ["onednn_gradient_hazards", "onednn_may_be_on", "check_onednn_gradients"]

# oneDNN's 1x1 backward-weights kernel misbehaves below this many input channels.
_MIN_SAFE_INPUT_CHANNELS = 16


def onednn_may_be_on() -> bool:
    """True on the TensorFlow backend unless TF_ENABLE_ONEDNN_OPTS=0.

    Unset counts as on: TensorFlow's own default depends on the CPU.
    """
    return (
        keras.backend.backend() == "tensorflow"
        and os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").strip() != "0"
    )


def onednn_gradient_hazards(model: keras.Model) -> list:
    """Names of the model's trainable 1x1 strided convolutions with < 16 input channels.

    Nested layers included. Only plain `Conv2D` layers are checked
    (depthwise, separable and transposed convolutions use other kernels).
    """
    hazards = []
    for layer in all_layers(model):
        if not isinstance(layer, keras.layers.Conv2D):  # not depthwise/transposed/separable
            continue
        kernel = getattr(layer, "kernel", None)
        if kernel is None or not layer.trainable:
            continue
        height, width, in_channels, _ = kernel.shape
        strides = tuple(layer.strides) if isinstance(layer.strides, (tuple, list)) else (layer.strides,)
        if (height, width) == (1, 1) and max(strides) > 1 and in_channels < _MIN_SAFE_INPUT_CHANNELS:
            hazards.append(layer.name)
    return hazards


def check_onednn_gradients(model: keras.Model) -> None:
    """Raises ValueError if training `model` would hit the oneDNN bug."""
    if not onednn_may_be_on():
        return
    hazards = onednn_gradient_hazards(model)
    if hazards:
        raise ValueError(
            f"layer {hazards[0]!r}"
            + (f" (and {len(hazards) - 1} more)" if len(hazards) > 1 else "")
            + " is a 1x1 convolution with a stride above 1 and fewer than 16 input channels: "
            "TensorFlow's oneDNN CPU kernels crash or compute wrong weight gradients for it "
            "(oneDNN issue #6035). Set TF_ENABLE_ONEDNN_OPTS=0 in the environment before "
            "starting Python, or use KERAS_BACKEND=jax."
        )

"""Model builders: networks with a `SelectivityProbe` after each conv block."""

from __future__ import annotations

import functools

from tf_selectivity.models.blocks import ACTIVATIONS, ZeroPadShortcut
from tf_selectivity.models.imagenet_resnet import build_imagenet_resnet
from tf_selectivity.models.instrumentation import DenseLogits, instrument
from tf_selectivity.models.resnet import build_cifar_resnet
from tf_selectivity.models.selectivity_model import SelectivityModel, VectorMean
from tf_selectivity.models.split_selectivity import SplitSelectivity
from tf_selectivity.models.torch_weights import (
    AKAMASTER_NORMALIZATION,
    load_torch_weights,
)
from tf_selectivity.models.user_models import build_user_model, is_model_spec
from tf_selectivity.models.vgg import build_vgg16

__all__ = [
    "MODELS",
    "ACTIVATIONS",
    "build_model",
    "instrument",
    "DenseLogits",
    "SelectivityModel",
    "SplitSelectivity",
    "VectorMean",
    "ZeroPadShortcut",
    "build_cifar_resnet",
    "build_imagenet_resnet",
    "build_vgg16",
    "load_torch_weights",
    "AKAMASTER_NORMALIZATION",
]

# Name -> builder. resnet20 and vgg16 are the paper's CIFAR-10 networks;
# resnet8 is a small member of the same family for quick tests; resnet18 and
# resnet50 are the ImageNet-style networks of the paper's ICLR 2021 version
# (Tiny ImageNet, 64x64; see models/imagenet_resnet.py for the stem).
MODELS = {
    "resnet8": functools.partial(build_cifar_resnet, 8, name="resnet8"),
    "resnet20": functools.partial(build_cifar_resnet, 20, name="resnet20"),
    "resnet32": functools.partial(build_cifar_resnet, 32, name="resnet32"),
    "resnet44": functools.partial(build_cifar_resnet, 44, name="resnet44"),
    "resnet56": functools.partial(build_cifar_resnet, 56, name="resnet56"),
    "vgg16": build_vgg16,
    "resnet18": functools.partial(build_imagenet_resnet, 18, name="resnet18"),
    "resnet50": functools.partial(build_imagenet_resnet, 50, name="resnet50"),
}


def build_model(
    name: str,
    *,
    num_classes: int = 10,
    alpha: float = 0.0,
    activation: str = "relu",
    leaky_slope: float = 0.0,
    selectivity_index: str = "eq1",
    **kwargs,
) -> SelectivityModel:
    """Builds one of the named networks, or a user's, with selectivity probes.

    Args:
        name: one of `MODELS` ("resnet20", "vgg16", "resnet18", ...), or a
            model spec ``module.path:function`` naming a function that
            builds an uninstrumented Keras model, which is then probed by
            `instrument` (see `tf_selectivity.models.user_models` for the
            arguments it receives).
        num_classes: number of classes (output logits).
        alpha: regularizer scale: < 0 penalizes class selectivity, > 0
            promotes it, 0 only measures it.
        activation: "relu" or "leaky_relu".
        leaky_slope: negative slope for "leaky_relu" (0 for "relu").
        selectivity_index: the index every probe regularizes: "eq1" (the
            paper's eq. 1, default) or "bounded" (see
            `tf_selectivity.selectivity`).
        **kwargs: builder options (`input_shape`, `pixel_mean`, `pixel_std`;
            the ImageNet ResNets also `width`, `stem`).

    Returns:
        An uncompiled `SelectivityModel` mapping raw [0, 255] images to logits.
    """
    if is_model_spec(name):
        model = build_user_model(
            name,
            num_classes=num_classes,
            alpha=alpha,
            activation=activation,
            leaky_slope=leaky_slope,
            **kwargs,
        )
    elif name in MODELS:
        model = MODELS[name](
            num_classes=num_classes,
            alpha=alpha,
            activation=activation,
            leaky_slope=leaky_slope,
            **kwargs,
        )
    else:
        raise ValueError(
            f"Unknown model {name!r}; choose one of {', '.join(MODELS)}, "
            "or module.path:function for a model of your own."
        )
    model.set_selectivity_index(selectivity_index)
    return model

"""Model builders: networks with a `SelectivityProbe` after each conv block."""

from __future__ import annotations

import importlib

from tf_selectivity.models.registry import MODELS

# Imported on first use: `MODELS` (and this package) must not load Keras, so
# that command lines can check --model before a backend starts.
_LAZY = {
    "ACTIVATIONS": "blocks",
    "ZeroPadShortcut": "blocks",
    "build_imagenet_resnet": "imagenet_resnet",
    "DenseLogits": "instrumentation",
    "instrument": "instrumentation",
    "build_cifar_resnet": "resnet",
    "SelectivityModel": "selectivity_model",
    "VectorMean": "selectivity_model",
    "SplitSelectivity": "split_selectivity",
    "AKAMASTER_NORMALIZATION": "torch_weights",
    "load_torch_weights": "torch_weights",
    "build_user_model": "user_models",
    "is_model_spec": "user_models",
    "build_vgg16": "vgg",
}

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


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"tf_selectivity.models.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'tf_selectivity.models' has no attribute {name!r}")


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
            `tf_selectivity.measures.selectivity`).
        **kwargs: builder options (`input_shape`, `pixel_mean`, `pixel_std`;
            the ImageNet ResNets also `width`, `stem`).

    Returns:
        An uncompiled `SelectivityModel` mapping raw [0, 255] images to logits.
    """
    from tf_selectivity.models.user_models import build_user_model, is_model_spec

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

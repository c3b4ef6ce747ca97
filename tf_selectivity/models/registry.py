"""The named networks: name -> builder, readable without importing Keras.

Command lines check ``--model`` before a backend starts, so the registry
names each builder by module and function and imports it on first call.
"""

from __future__ import annotations

import importlib

__all__ = ["MODELS", "ModelBuilder"]


class ModelBuilder:
    """A builder function named by module, imported when first called.

    Args:
        module: the module that defines the builder.
        function: the builder's name in it.
        *args, **kwargs: arguments bound to the builder (as `functools.partial`).
    """

    def __init__(self, module: str, function: str, *args, **kwargs):
        self.module = module
        self.function = function
        self.args = args
        self.kwargs = kwargs

    def __call__(self, **kwargs):
        """Builds the network; keyword arguments as the builder's."""
        builder = getattr(importlib.import_module(self.module), self.function)
        return builder(*self.args, **{**self.kwargs, **kwargs})

    def __repr__(self):
        bound = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"ModelBuilder({self.module}.{self.function}({', '.join(bound)}))"


def _cifar_resnet(depth):
    return ModelBuilder("tf_selectivity.models.resnet", "build_cifar_resnet", depth, name=f"resnet{depth}")


def _imagenet_resnet(depth, stem="small"):
    name = f"resnet{depth}" if stem == "small" else f"resnet{depth}_{stem}"
    return ModelBuilder("tf_selectivity.models.imagenet_resnet", "build_imagenet_resnet", depth, name=name, stem=stem)


# resnet20 and vgg16 are the paper's CIFAR-10 networks; resnet8 is a small
# member of the same family for quick tests; resnet18 and resnet50 are the
# ImageNet-style networks of the paper's ICLR 2021 version (Tiny ImageNet,
# 64x64; see models/imagenet_resnet.py for the stem); resnet50_imagenet is
# torchvision's ResNet-50 with its own stem, for 224x224 ImageNet.
MODELS = {
    "resnet8": _cifar_resnet(8),
    "resnet20": _cifar_resnet(20),
    "resnet32": _cifar_resnet(32),
    "resnet44": _cifar_resnet(44),
    "resnet56": _cifar_resnet(56),
    "vgg16": ModelBuilder("tf_selectivity.models.vgg", "build_vgg16"),
    "resnet18": _imagenet_resnet(18),
    "resnet50": _imagenet_resnet(50),
    "resnet50_imagenet": _imagenet_resnet(50, stem="imagenet"),
}

"""Weights of a PyTorch CIFAR ResNet in our Keras ResNet.

The paper's networks were trained with Idelbayev's pytorch_resnet_cifar10
(`resnet.py`, `trainer.py`), whose checkpoints many other works publish in the
same layout::

    conv1.weight                      (16, 3, 3, 3)    stem conv, OIHW
    bn1.{weight,bias,running_mean,running_var,num_batches_tracked}
    layer{1,2,3}.{k}.conv{1,2}.weight                  block k of stage s
    layer{1,2,3}.{k}.bn{1,2}.*
    linear.weight (classes, 64), linear.bias (classes,)

with option-A shortcuts (no weights), optionally under `module.` (saved from
`nn.DataParallel`) and inside ``{"state_dict": ...}`` (the trainer's file).
`load_torch_weights` puts such a checkpoint into `build_model("resnet20")`
(or any other depth), whose layers are the reference network's layer for
layer (`tests/test_torch_weights.py` checks the logits against PyTorch).

Importing this module does not import PyTorch; reading a `.th`/`.pt` file
does (the `torch` extra: ``pip install -e ".[torch]"``).
"""

from __future__ import annotations

import os
import pickle
import re
from typing import Mapping

import numpy as np

__all__ = ["load_torch_weights", "AKAMASTER_NORMALIZATION"]

# The input normalization of Idelbayev's trainer.py (ImageNet statistics,
# applied by torchvision's Normalize after ToTensor, i.e. to [0, 1] pixels).
AKAMASTER_NORMALIZATION = {
    "normalize_mean": (0.485, 0.456, 0.406),
    "normalize_std": (0.229, 0.224, 0.225),
}

_BN_FIELDS = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}
_IGNORED_SUFFIXES = (".num_batches_tracked",)
_BLOCK_KEY = re.compile(r"^layer([123])\.(\d+)\.")


def load_torch_weights(
    model,
    checkpoint,
    *,
    normalize_mean,
    normalize_std,
    weights_only: bool = True,
):
    """Loads a PyTorch CIFAR ResNet checkpoint into a ResNet of `build_model`.

    Every weight is checked before any is written: on an error the model is
    unchanged.

    Args:
        model: a `SelectivityModel` from `build_model("resnet8" | "resnet20" |
            "resnet32" | "resnet44" | "resnet56")` (or `build_cifar_resnet`)
            with the checkpoint's number of classes.
        checkpoint: a path to a file written by `torch.save` (a state dict, or
            a dict holding one under "state_dict"), a path to an `.npz` file
            of the same keys, or such a mapping in memory (values: torch
            tensors or NumPy arrays). A `module.` prefix on every key is
            removed; `num_batches_tracked` entries are ignored.
        normalize_mean: per-channel mean of the input normalization the
            checkpoint was trained with, in torchvision's convention: applied
            to pixels scaled to [0, 1] (`transforms.ToTensor()` then
            `transforms.Normalize(mean, std)`). Idelbayev's trainer uses
            `AKAMASTER_NORMALIZATION` (ImageNet statistics):
            ``load_torch_weights(model, path, **AKAMASTER_NORMALIZATION)``.
            Our models take raw [0, 255] pixels and normalize inside; the
            model's normalization layer is set to
            ``(x - 255 * mean) / (255 * std)``, the same map.
        normalize_std: per-channel standard deviation of that normalization.
        weights_only: passed to `torch.load`. The default refuses files that
            hold arbitrary pickled objects; pass False only for files you
            trust.

    Returns:
        The model, its weights replaced.

    Raises:
        ValueError: the model is not one of our CIFAR ResNets; the checkpoint
            lacks weights the model needs, holds weights the model does not
            have (e.g. another depth, or option-B shortcuts), or holds a
            weight of another shape (e.g. another number of classes); the
            normalization is not in the [0, 1] convention.
        ImportError: a torch file was given and PyTorch is not installed.
    """
    layers = _resnet_layers(model)
    mean, std = _validate_normalization(model, normalize_mean, normalize_std)
    state = _state_dict(checkpoint, weights_only)
    plan = _assignment_plan(model, layers, state)
    for variable, value in plan:
        variable.assign(value)
    normalization = model.get_layer("normalize")
    normalization.input_mean = [float(m) for m in 255.0 * mean]
    normalization.input_variance = [float(v) for v in (255.0 * std) ** 2]
    # Normalization keeps given statistics as constants made in build():
    # rebuild it, and drop compiled functions that captured the old ones.
    normalization.build(tuple(model.inputs[0].shape))
    model.train_function = model.test_function = model.predict_function = None
    return model


# --------------------------------------------------------------- the model
def _resnet_layers(model) -> dict:
    """Our layer name -> (torch module name, kind) for every weighted layer."""
    names = {layer.name for layer in model.layers}
    required = {"normalize", "stem_conv", "stem_bn", "logits", "s1b1_conv1"}
    if not required <= names:
        raise ValueError(
            f"load_torch_weights loads the CIFAR ResNets of build_model "
            f"('resnet8', 'resnet20', 'resnet32', 'resnet44', 'resnet56'); model "
            f"{model.name!r} is not one (it lacks the layers "
            f"{', '.join(sorted(required - names))})."
        )
    layers = {"stem_conv": ("conv1", "conv"), "stem_bn": ("bn1", "bn"), "logits": ("linear", "linear")}
    for stage in (1, 2, 3):
        block = 1
        while f"s{stage}b{block}_conv1" in names:
            for index in (1, 2):
                layers[f"s{stage}b{block}_conv{index}"] = (f"layer{stage}.{block - 1}.conv{index}", "conv")
                layers[f"s{stage}b{block}_bn{index}"] = (f"layer{stage}.{block - 1}.bn{index}", "bn")
            block += 1
    return layers


def _blocks_per_stage(model) -> int:
    names = {layer.name for layer in model.layers}
    count = 0
    while f"s1b{count + 1}_conv1" in names:
        count += 1
    return count


def _validate_normalization(model, normalize_mean, normalize_std):
    channels = model.get_layer("stem_conv").kernel.shape[2]
    mean = np.asarray(normalize_mean, dtype=np.float64).reshape(-1)
    std = np.asarray(normalize_std, dtype=np.float64).reshape(-1)
    for label, values in (("normalize_mean", mean), ("normalize_std", std)):
        if values.shape != (channels,) or not np.all(np.isfinite(values)):
            raise ValueError(
                f"{label} must hold {channels} finite numbers (one per input channel); "
                f"got {list(values)}."
            )
    if np.any(std <= 0):
        raise ValueError(f"normalize_std must be positive; got {list(std)}.")
    if np.any(np.abs(mean) > 1) or np.any(std > 1):
        raise ValueError(
            "normalize_mean and normalize_std are in torchvision's convention, for "
            "pixels in [0, 1] (e.g. mean (0.485, 0.456, 0.406), std (0.229, 0.224, "
            f"0.225)); got mean {list(mean)}, std {list(std)}: divide [0, 255] "
            "statistics by 255."
        )
    return mean, std


# -------------------------------------------------------------- the file
def _state_dict(checkpoint, weights_only: bool) -> dict:
    if isinstance(checkpoint, (str, os.PathLike)):
        checkpoint = _read_file(os.fspath(checkpoint), weights_only)
    if not isinstance(checkpoint, Mapping):
        raise ValueError(
            "checkpoint must be a path or a mapping of weight names to arrays; "
            f"got {type(checkpoint).__name__}."
        )
    if "state_dict" in checkpoint and isinstance(checkpoint["state_dict"], Mapping):
        checkpoint = checkpoint["state_dict"]
    keys = list(checkpoint)
    if keys and all(str(k).startswith("module.") for k in keys):
        checkpoint = {str(k)[len("module."):]: v for k, v in checkpoint.items()}
    return {
        str(key): value
        for key, value in checkpoint.items()
        if not str(key).endswith(_IGNORED_SUFFIXES)
    }


def _read_file(path: str, weights_only: bool):
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint file {path} does not exist.")
    if path.endswith(".npz"):
        with np.load(path) as archive:
            return {key: archive[key] for key in archive.files}
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            f"reading {path} needs PyTorch: pip install -e \".[torch]\" "
            "(or pass a dict of NumPy arrays, or an .npz file)."
        ) from error
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{path} holds more than tensors and could not be read with "
            f"weights_only=True ({str(error).splitlines()[0]}); if you trust the "
            "file, pass weights_only=False."
        ) from error


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor; bf16/fp16 become float32
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()
        value = value.numpy()
    return np.asarray(value)


# --------------------------------------------------------------- matching
def _assignment_plan(model, layers: dict, state: dict) -> list:
    """(variable, value) pairs; raises before anything is assigned."""
    expected = {}  # torch key -> (variable, torch-layout shape, to_keras)
    for layer_name, (module, kind) in layers.items():
        layer = model.get_layer(layer_name)
        if kind == "conv":  # OIHW -> HWIO
            kernel = layer.kernel
            expected[f"{module}.weight"] = (
                kernel, _conv_torch_shape(kernel.shape), lambda w: np.transpose(w, (2, 3, 1, 0))
            )
        elif kind == "bn":
            for torch_field, keras_field in _BN_FIELDS.items():
                variable = getattr(layer, keras_field)
                expected[f"{module}.{torch_field}"] = (variable, tuple(variable.shape), lambda v: v)
        else:  # linear: (out, in) -> (in, out)
            kernel = layer.kernel
            expected[f"{module}.weight"] = (kernel, tuple(kernel.shape[::-1]), np.transpose)
            expected[f"{module}.bias"] = (layer.bias, tuple(layer.bias.shape), lambda v: v)

    missing = sorted(set(expected) - set(state), key=_key_order)
    unexpected = sorted(set(state) - set(expected), key=_key_order)
    if missing or unexpected:
        raise ValueError(_mismatch_message(model, state, missing, unexpected))

    plan, wrong_shapes = [], []
    for key, (variable, torch_shape, to_keras) in expected.items():
        value = _to_numpy(state[key])
        if tuple(value.shape) != torch_shape:
            wrong_shapes.append(f"{key}: checkpoint {tuple(value.shape)}, model {torch_shape}")
            continue
        plan.append((variable, to_keras(value).astype(variable.dtype)))
    if wrong_shapes:
        raise ValueError(
            f"checkpoint weights do not fit model {model.name!r} (shapes in PyTorch's "
            "layout; a different linear shape means another number of classes, "
            "build_model(..., num_classes=N)): " + "; ".join(wrong_shapes)
        )
    return plan


def _conv_torch_shape(kernel_shape) -> tuple:
    height, width, in_channels, out_channels = kernel_shape
    return (out_channels, in_channels, height, width)


def _key_order(key: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


def _mismatch_message(model, state, missing, unexpected) -> str:
    def listing(keys):
        shown = ", ".join(keys[:6])
        return shown + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")

    parts = []
    blocks = {}
    for key in state:
        match = _BLOCK_KEY.match(key)
        if match:
            stage, index = int(match.group(1)), int(match.group(2))
            blocks[stage] = max(blocks.get(stage, 0), index + 1)
    ours = _blocks_per_stage(model)
    if blocks and set(blocks.values()) == {max(blocks.values())} and max(blocks.values()) != ours:
        theirs = max(blocks.values())
        parts.append(
            f"the checkpoint is a resnet{6 * theirs + 2} ({theirs} blocks per stage), the "
            f"model a resnet{6 * ours + 2} ({ours}): build_model(\"resnet{6 * theirs + 2}\")"
        )
    if any(".shortcut." in key for key in unexpected):
        parts.append("the checkpoint has option-B (convolutional) shortcuts; our ResNets use option A")
    if missing:
        parts.append(f"missing from the checkpoint: {listing(missing)}")
    if unexpected:
        parts.append(f"not in the model: {listing(unexpected)}")
    return f"checkpoint does not match model {model.name!r}: " + "; ".join(parts) + "."

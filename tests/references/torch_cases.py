"""The inputs of our comparisons with PyTorch, drawn with NumPy, and PyTorch's answers.

`make_torch_references.py` (beside this module; needs PyTorch) feeds each
case's inputs to the reference network or layer written in PyTorch and writes
PyTorch's outputs to `<case>.npz` here. The tests draw the same inputs, run our
code on them and compare with those files, so the suite needs no PyTorch.
Each file also holds a checksum of the inputs it was made from: if NumPy ever
draws other numbers (or a case's inputs change), `expected` fails and says to
rerun the script instead of comparing unrelated numbers.

Each case is a function returning a dict of NumPy inputs; nothing here imports
PyTorch or tf_selectivity.
"""

import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MAKE = "python tests/references/make_torch_references.py (needs PyTorch: pip install -e \".[torch]\")"

# torchvision's ImageNet statistics, which Idelbayev's CIFAR trainer normalizes with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def cifar_resnet_state(depth: int, num_classes: int = 10, seed: int = 0, batch_norm: str = "random") -> dict:
    """A state dict of the reference CIFAR ResNet-(6n+2) in PyTorch's layout, as NumPy arrays.

    The layout of Idelbayev's pytorch_resnet_cifar10 (the paper's code):
    `conv1`, `bn1`, `layer{1,2,3}.{i}.{conv,bn}{1,2}` with 16, 32 and 64
    channels, `linear`. Convolution and linear weights are He-normal (PyTorch's
    `kaiming_normal_`: N(0, 2 / fan_in), untruncated), the linear bias N(0, 0.5).

    Args:
        depth: 6n + 2 (8, 20, 32, ...).
        num_classes: outputs of `linear`.
        seed: of the NumPy generator all weights are drawn from.
        batch_norm: "random": scales, shifts and running statistics drawn so
            that no batch norm is the identity in eval mode; "default":
            PyTorch's fresh BatchNorm2d (1, 0, 0, 1), for training from scratch.

    Returns:
        {torch key: float32 array (int64 for num_batches_tracked)}, keys in
        the order of `nn.Module.state_dict()`.
    """
    if batch_norm not in ("random", "default"):
        raise ValueError(f"batch_norm must be 'random' or 'default'; got {batch_norm!r}")
    generator = np.random.default_rng(seed)
    state = {}

    def conv(name, out_channels, in_channels):
        std = np.sqrt(2.0 / (in_channels * 9))
        state[f"{name}.weight"] = generator.normal(0.0, std, (out_channels, in_channels, 3, 3)).astype("float32")

    def bn(name, channels):
        if batch_norm == "random":
            values = {
                "weight": generator.uniform(0.5, 1.5, channels), "bias": generator.normal(0.0, 0.3, channels),
                "running_mean": generator.normal(0.0, 0.3, channels), "running_var": generator.uniform(0.5, 2.0, channels),
            }
            tracked = 7
        else:
            values = {"weight": np.ones(channels), "bias": np.zeros(channels),
                      "running_mean": np.zeros(channels), "running_var": np.ones(channels)}
            tracked = 0
        for field, value in values.items():
            state[f"{name}.{field}"] = value.astype("float32")
        state[f"{name}.num_batches_tracked"] = np.array(tracked, dtype="int64")

    conv("conv1", 16, 3)
    bn("bn1", 16)
    in_channels = 16
    for stage, channels in enumerate((16, 32, 64), start=1):
        for index in range((depth - 2) // 6):
            conv(f"layer{stage}.{index}.conv1", channels, in_channels)
            bn(f"layer{stage}.{index}.bn1", channels)
            conv(f"layer{stage}.{index}.conv2", channels, channels)
            bn(f"layer{stage}.{index}.bn2", channels)
            in_channels = channels
    state["linear.weight"] = generator.normal(0.0, np.sqrt(2.0 / 64), (num_classes, 64)).astype("float32")
    state["linear.bias"] = generator.normal(0.0, 0.5, num_classes).astype("float32")
    return state


def pixels(seed: int, shape: tuple) -> np.ndarray:
    """Uniform [0, 255) float32 images (NHWC)."""
    return np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")


# ------------------------------------------------------------------ cases
def resnet20_logits() -> dict:
    """A resnet20 with random weights and batch norms, six CIFAR-sized images."""
    return {"state": cifar_resnet_state(20, seed=20), "images": pixels(20, (6, 32, 32, 3)),
            "mean": np.array(IMAGENET_MEAN), "std": np.array(IMAGENET_STD)}


def resnet8_logits() -> dict:
    """A resnet8 of 4 classes on 16 x 16 images, another normalization."""
    return {"state": cifar_resnet_state(8, num_classes=4, seed=8), "images": pixels(8, (5, 16, 16, 3)),
            "mean": np.array((0.5, 0.4, 0.3)), "std": np.array((0.25, 0.2, 0.3))}


def sgd_steps() -> dict:
    """Five SGD steps (momentum, L2 weight decay) of a resnet8 from fresh batch norms."""
    labels = np.random.default_rng(5).integers(0, 10, (5, 32))
    return {"state": cifar_resnet_state(8, seed=5, batch_norm="default"), "images": pixels(5, (5, 32, 16, 16, 3)),
            "labels": labels, "mean": np.array((0.5, 0.45, 0.4)), "std": np.array((0.25, 0.25, 0.3)),
            "learning_rate": np.array(0.1), "momentum": np.array(0.9), "weight_decay": np.array(1e-4)}


def attacks() -> dict:
    """FGSM and PGD (L-infinity, random start) on a resnet8 whose linear bias is 0
    (its random biases alone would decide every class)."""
    state = cifar_resnet_state(8, seed=26)  # a seed whose attacks leave some accuracy: not saturated
    state["linear.bias"] = np.zeros_like(state["linear.bias"])
    epsilon, steps = 24.0, 5  # a random network needs a large budget to change its mind
    images = pixels(11, (32, 16, 16, 3))
    return {"state": state, "images": images, "mean": np.array(IMAGENET_MEAN), "std": np.array(IMAGENET_STD),
            "epsilon": np.array(epsilon), "steps": np.array(steps),
            "step_size": np.array(2.5 * epsilon / steps),  # Madry et al.'s step
            "start": np.random.default_rng(9).uniform(-epsilon, epsilon, images.shape).astype("float32")}


def attack_labels(predicted: np.ndarray) -> np.ndarray:
    """The attacks' labels: the clean predictions with every fourth moved to the next class (clean accuracy 0.75)."""
    labels = np.array(predicted)
    labels[::4] = (labels[::4] + 1) % 10
    return labels


def batch_norm_step() -> dict:
    """One training-mode step of BatchNorm2d (momentum 0.1, eps 1e-5) on a small NHWC batch."""
    generator = np.random.default_rng(4)
    channels = 3
    return {"x": generator.normal(1.0, 2.0, (5, 4, 3, channels)).astype("float32"),
            "gamma": generator.uniform(0.5, 1.5, channels), "beta": generator.normal(size=channels),
            "moving_mean": generator.normal(size=channels), "moving_variance": generator.uniform(0.5, 2.0, channels),
            "momentum": np.array(0.1), "epsilon": np.array(1e-5)}


CASES = {case.__name__: case for case in (resnet20_logits, resnet8_logits, sgd_steps, attacks, batch_norm_step)}


# ----------------------------------------------------------- the files
def checksum(inputs: dict) -> np.ndarray:
    """Two float64 sums over every input array (nested dicts included), in key order.

    The second weighs each value by its position, so a reordering counts.
    """
    total, weighted = 0.0, 0.0
    for key in sorted(inputs):
        value = inputs[key]
        if isinstance(value, dict):
            total_, weighted_ = checksum(value)
        else:
            flat = np.asarray(value, dtype=np.float64).ravel()
            total_, weighted_ = flat.sum(), (flat * (1.0 + np.arange(flat.size) % 97)).sum()
        total, weighted = total + total_, weighted + weighted_
    return np.array([total, weighted])


def path(case: str) -> str:
    return os.path.join(HERE, f"{case}.npz")


def expected(case: str, inputs: dict) -> dict:
    """PyTorch's outputs for `case`, after checking that they were made from `inputs`.

    Raises:
        AssertionError: the file is missing, or was made from other inputs.
    """
    file = path(case)
    assert os.path.exists(file), f"{file} is missing: run {MAKE}"
    with np.load(file) as saved:
        outputs = dict(saved)
    made_from = outputs.pop("input_checksum")
    np.testing.assert_allclose(
        checksum(inputs), made_from, rtol=1e-12,
        err_msg=f"{file} was made from other inputs than the test draws: rerun {MAKE}",
    )
    return outputs

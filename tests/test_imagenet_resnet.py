"""ImageNet-style ResNet18/50 (the paper's Tiny ImageNet networks)."""

import numpy as np
import pytest
import keras
from keras import ops

from tf_selectivity.models import MODELS, build_imagenet_resnet, build_model
from tf_selectivity.models.imagenet_resnet import _conv
from tf_selectivity.training import TorchSGD


def trainable_count(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def test_resnet18_matches_torchvision_and_has_a_probe_per_activation():
    # torchvision.models.resnet18() has 11,689,512 parameters (1000 classes).
    assert trainable_count(build_imagenet_resnet(18, num_classes=1000, stem="imagenet")) == 11_689_512
    model = build_model("resnet18", num_classes=200)
    # Small stem: a 3x3 instead of a 7x7 first kernel (-7,680), 200 classes.
    assert trainable_count(model) == 11_689_512 - 7_680 - (1000 - 200) * 513
    assert model.input_shape == (None, 64, 64, 3) and model.output_shape == (None, 200)
    assert len(model.probes) == 17
    assert model.probe_names[:4] == ["probe_stem", "probe_s1b1_relu1", "probe_s1b1_out", "probe_s1b2_relu1"]
    assert model.probe_names[-1] == "probe_s4b2_out"
    assert {"resnet18", "resnet50"} <= set(MODELS)


def test_resnet50_matches_torchvision():
    # torchvision.models.resnet50(): 25,557,032 parameters.
    model = build_imagenet_resnet(50, num_classes=1000, stem="imagenet")
    assert trainable_count(model) == 25_557_032
    assert len(model.probes) == 49
    assert model.probe_names[:4] == ["probe_stem", "probe_s1b1_relu1", "probe_s1b1_relu2", "probe_s1b1_out"]


@pytest.mark.backends
def test_stride2_convolution_pads_like_pytorch(rng):
    """Stride-2 3x3 convolutions pad one pixel on every side (PyTorch's
    padding=1), not Keras' "same" (which pads after only)."""
    x = rng.normal(size=(1, 6, 6, 2)).astype("float32")
    inputs = keras.Input((6, 6, 2))
    conv_model = keras.Model(inputs, _conv(3, 3, 2, "c")(inputs))
    kernel = ops.convert_to_numpy(conv_model.get_layer("c").kernel)
    padded = np.pad(x[0], ((1, 1), (1, 1), (0, 0)))
    expected = np.zeros((3, 3, 3))
    for i in range(3):
        for j in range(3):
            window = padded[2 * i : 2 * i + 3, 2 * j : 2 * j + 3, :]
            expected[i, j] = np.einsum("hwc,hwco->o", window, kernel)
    np.testing.assert_allclose(ops.convert_to_numpy(conv_model(x))[0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.backends
def test_reduced_width_resnet18_trains_on_64x64_200_classes(rng):
    keras.utils.set_random_seed(0)
    # Width 16, not 8: TensorFlow's oneDNN kernels crash computing the weight
    # gradient of a 1x1 stride-2 convolution with fewer than 16 input
    # channels (oneDNN issue #6035; BUILD_NOTES.md).
    model = build_model("resnet18", num_classes=200, alpha=-1.0, width=16)
    assert len(model.probes) == 17 and all(p.num_classes == 200 for p in model.probes)
    model.compile(optimizer=TorchSGD(0.01, momentum=0.9))
    x = rng.uniform(0, 255, (8, 64, 64, 3)).astype("float32")
    y = rng.integers(0, 200, 8)
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"])
    assert logs["loss"] == pytest.approx(logs["cross_entropy"] + logs["selectivity_term"], rel=1e-5)
    activations = model.activation_model()(x)
    assert ops.convert_to_numpy(activations["probe_stem"]).shape == (8, 64, 64, 16)  # no stem subsampling
    assert ops.convert_to_numpy(activations["probe_s4b2_out"]).shape == (8, 8, 8, 128)


def test_resnet50_forward_and_one_train_step(rng):
    keras.utils.set_random_seed(0)
    # Width 16: the layout of ResNet-50 (its full width is counted above) at a fraction of the compute.
    model = build_model("resnet50", num_classes=200, alpha=-1.0, width=16)
    model.compile(optimizer=TorchSGD(0.01, momentum=0.9))
    x = rng.uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    y = np.array([3, 150])
    assert ops.convert_to_numpy(model(x)).shape == (2, 200)
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["selectivity_term"] != 0


def test_imagenet_stem_and_bad_arguments():
    model = build_imagenet_resnet(18, stem="imagenet", width=4)
    assert model.get_layer("stem_pool").output.shape == (None, 16, 16, 4)
    with pytest.raises(ValueError, match="depth"):
        build_imagenet_resnet(20)
    with pytest.raises(ValueError, match="stem"):
        build_imagenet_resnet(18, stem="cifar")

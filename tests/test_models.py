"""Model builders: the paper's architectures, parameter and probe counts."""

import numpy as np
import pytest
import keras
from keras import ops

from tf_selectivity.models.probe import SelectivityProbe
from tf_selectivity.models import MODELS, ZeroPadShortcut, build_model
from tf_selectivity.models.vgg import VGG16_STAGES


def trainable_count(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


@pytest.mark.backends
def test_resnet20_parameter_and_probe_counts():
    # Counts only; tests/test_torch_weights.py checks that the network computes
    # what the PyTorch reference computes, with the same weights.
    model = build_model("resnet20")
    assert trainable_count(model) == 269_722
    assert len(model.probes) == 19
    assert model.probe_names[:3] == ["probe_stem", "probe_s1b1_relu1", "probe_s1b1_out"]
    assert model.output_shape == (None, 10)


@pytest.mark.backends
@pytest.mark.parametrize("block", ["s2b1", "s3b1"])
def test_stride2_conv_reads_the_pixel_the_shortcut_takes(rng, block):
    # Option A subsamples the identity at even pixels (x[:, ::2, ::2]); the
    # residual branch must be centred on the same pixels (PyTorch's padding=1),
    # or the two are added one pixel apart.
    model = build_model("resnet8", input_shape=(16, 16, 3))
    conv = model.get_layer(f"{block}_conv1")
    shortcut = model.get_layer(f"{block}_shortcut")
    kernel = np.zeros(conv.kernel.shape, "float32")
    channels = kernel.shape[2]
    kernel[1, 1, np.arange(channels), np.arange(channels)] = 1.0  # centre tap, channel c -> c
    conv.kernel.assign(kernel)
    probe = keras.Model(model.inputs[0], [shortcut.input, conv.output, shortcut.output])
    x = rng.uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    block_input, branch, skip = (ops.convert_to_numpy(t) for t in probe(x))
    assert block_input.std() > 0
    np.testing.assert_allclose(branch[..., :channels], block_input[:, ::2, ::2, :], rtol=1e-6, atol=1e-6)
    before = (branch.shape[-1] - channels) // 2
    np.testing.assert_array_equal(skip[..., before : before + channels], block_input[:, ::2, ::2, :])


@pytest.mark.backends
def test_resnet_initialization_is_pytorchs(rng):
    # The reference applies kaiming_normal_ (N(0, 2 / fan_in), untruncated) to
    # every conv and linear weight and leaves the linear bias at PyTorch's
    # default U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    keras.utils.set_random_seed(3)
    model = build_model("resnet8")
    kernel = ops.convert_to_numpy(model.get_layer("s3b1_conv2").kernel).ravel()  # 36,864 weights
    std = np.sqrt(2.0 / (9 * 64))
    assert kernel.std() == pytest.approx(std, rel=0.02)
    # A normal puts 1.24% of its mass beyond 2.5 standard deviations; Keras'
    # "he_normal" truncates at 2.27 of them and puts none there.
    assert np.mean(np.abs(kernel) > 2.5 * std) == pytest.approx(0.0124, abs=0.003)
    bias = ops.convert_to_numpy(model.get_layer("logits").bias)
    assert np.all(np.abs(bias) <= 1 / 8) and np.abs(bias).max() > 0.01
    dense = ops.convert_to_numpy(model.get_layer("logits").kernel)
    assert dense.std() == pytest.approx(np.sqrt(2.0 / 64), rel=0.15)


# Counted from the definition: alike on every backend, and VGG16 takes seconds to build on JAX.
def test_vgg16_parameter_count_from_its_definition():
    model = build_model("vgg16", num_classes=10)
    expected, in_channels = 0, 3
    for stage in VGG16_STAGES:
        for filters in stage:
            expected += 9 * in_channels * filters + 2 * filters  # conv (no bias) + BN
            in_channels = filters
    expected += 512 * 512 + 512 + 512 * 10 + 10  # one 512-unit FC layer + logits
    assert trainable_count(model) == expected == 14_986_698
    assert len(model.probes) == 13


@pytest.mark.backends
@pytest.mark.parametrize("name,probes", [("resnet8", 7), ("resnet32", 31)])
def test_resnet_family_probe_counts(name, probes):
    assert len(build_model(name, input_shape=(16, 16, 3)).probes) == probes


@pytest.mark.backends
def test_probes_follow_activations_and_carry_alpha():
    model = build_model("resnet8", alpha=-2.5, activation="leaky_relu", leaky_slope=0.3)
    for probe in model.probes:
        assert probe.alpha == -2.5
        assert probe.share == pytest.approx(1 / 7)
    leaky = [l for l in model.layers if isinstance(l, keras.layers.LeakyReLU)]
    assert len(leaky) == 7 and all(l.negative_slope == pytest.approx(0.3) for l in leaky)
    assert model.alpha == -2.5


def test_bad_arguments():
    with pytest.raises(ValueError, match="Unknown model 'resnet21'"):
        build_model("resnet21")
    with pytest.raises(ValueError, match="Unknown activation"):
        build_model("resnet8", activation="gelu")
    with pytest.raises(ValueError, match="only applies"):
        build_model("resnet8", leaky_slope=0.1)
    with pytest.raises(ValueError, match="multiples of 32"):
        build_model("vgg16", input_shape=(16, 16, 3))


@pytest.mark.backends
def test_zero_pad_shortcut_subsamples_and_pads():
    x = np.arange(2 * 4 * 4 * 3, dtype="float32").reshape(2, 4, 4, 3)
    y = ops.convert_to_numpy(ZeroPadShortcut(filters=7, stride=2)(x))
    assert y.shape == (2, 2, 2, 7)
    np.testing.assert_array_equal(y[..., 2:5], x[:, ::2, ::2, :])
    assert not y[..., :2].any() and not y[..., 5:].any()


@pytest.mark.backends
def test_input_is_standardized_inside_the_model(rng):
    mean, std = (10.0, 20.0, 30.0), (2.0, 4.0, 5.0)
    model = build_model("resnet8", input_shape=(8, 8, 3), pixel_mean=mean, pixel_std=std)
    x = rng.uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    normalized = keras.Model(model.inputs[0], model.get_layer("normalize").output)(x)
    np.testing.assert_allclose(ops.convert_to_numpy(normalized), (x - mean) / std, rtol=1e-5)


@pytest.mark.backends
def test_keras_file_round_trip(tmp_path, rng):
    model = build_model("resnet8", alpha=-1.0, input_shape=(8, 8, 3))
    x = rng.uniform(0, 255, (4, 8, 8, 3)).astype("float32")
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded).__name__ == "SelectivityModel"
    assert [p.alpha for p in loaded.probes] == [-1.0] * 7
    np.testing.assert_allclose(
        ops.convert_to_numpy(loaded(x)), ops.convert_to_numpy(model(x)), rtol=1e-6, atol=1e-6
    )
    assert all(isinstance(p, SelectivityProbe) for p in loaded.probes)


def test_registry_names():
    assert {"resnet20", "vgg16"} <= set(MODELS)

"""`load_torch_weights`: our ResNets are the reference PyTorch network, weight for weight.

The reference is a CIFAR ResNet written in PyTorch in the layout of
Idelbayev's pytorch_resnet_cifar10 (the paper's code): 3x3 convs with
padding=1 and no bias, BatchNorm2d, option-A shortcuts (subsample by 2,
zero-pad channels), global average pooling, `linear`. Its random weights and
randomized batch-norm statistics (`references/torch_cases.py`) are loaded into
`build_model(...)`; the logits, and five SGD steps from them, must agree with
PyTorch's, committed in `references/` by `references/make_torch_references.py`.
Where PyTorch is installed, one test also compares with it live, through a
checkpoint file written by `torch.save`.
"""

import numpy as np
import pytest
import keras
from keras import ops

from tf_selectivity.models import AKAMASTER_NORMALIZATION, build_model, load_torch_weights

from references import torch_cases

pytestmark = pytest.mark.backends

NO_TORCH = "PyTorch is an optional extra (pip install -e \".[torch]\"); needed for the live comparison"


def keras_logits(model, images):
    return ops.convert_to_numpy(model(images.astype("float32"), training=False))


def normalization(inputs):
    return {"normalize_mean": tuple(inputs["mean"]), "normalize_std": tuple(inputs["std"])}


def test_resnet20_matches_the_reference_network():
    # A checkpoint as Idelbayev's trainer writes it: DataParallel's "module."
    # prefix, inside {"state_dict": ...}.
    inputs = torch_cases.resnet20_logits()
    expected = torch_cases.expected("resnet20_logits", inputs)["logits"]
    assert normalization(inputs) == AKAMASTER_NORMALIZATION
    checkpoint = {"state_dict": {f"module.{k}": v for k, v in inputs["state"].items()}, "best_prec1": 91.7}
    model = build_model("resnet20")
    assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == 269_722
    assert load_torch_weights(model, checkpoint, **AKAMASTER_NORMALIZATION) is model
    assert expected.std() > 0.5  # a comparison of non-trivial numbers
    np.testing.assert_allclose(keras_logits(model, inputs["images"]), expected, rtol=1e-4, atol=1e-4)
    # The probes' inference outputs (analysis) come from the same network.
    responses = model.unit_response_model()(inputs["images"])
    np.testing.assert_allclose(ops.convert_to_numpy(responses["logits"]), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.torch
def test_a_checkpoint_file_written_by_pytorch_matches_pytorch_live(tmp_path):
    """The one live comparison: a `.th` file of torch tensors (read with
    `torch.load`), and PyTorch's logits computed now, which must also be the
    committed ones."""
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    from references import make_torch_references as reference

    inputs = torch_cases.resnet20_logits()
    net = reference.cifar_resnet(inputs["state"])
    path = tmp_path / "resnet20.th"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}, "best_prec1": 91.7}, path)
    model = load_torch_weights(build_model("resnet20"), str(path), **AKAMASTER_NORMALIZATION)
    live = reference.logits(net, inputs["images"], inputs["mean"], inputs["std"])
    np.testing.assert_allclose(live, torch_cases.expected("resnet20_logits", inputs)["logits"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(keras_logits(model, inputs["images"]), live, rtol=1e-4, atol=1e-4)


def test_resnet8_state_dict_in_memory_other_normalization_and_input_size():
    inputs = torch_cases.resnet8_logits()
    expected = torch_cases.expected("resnet8_logits", inputs)["logits"]
    model = build_model("resnet8", num_classes=4, input_shape=(16, 16, 3))
    images = inputs["images"]
    keras_logits(model, images)  # a model already called keeps working after the load
    load_torch_weights(model, inputs["state"], **normalization(inputs))
    np.testing.assert_allclose(keras_logits(model, images), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.predict(images, verbose=0), expected, rtol=1e-4, atol=1e-4)
    # The normalization travels with the model (it is part of its config).
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(keras_logits(clone, images), expected, rtol=1e-4, atol=1e-4)


def test_wrong_depth_wrong_classes_and_non_resnets_are_refused():
    state32 = torch_cases.cifar_resnet_state(32, seed=32)
    model = build_model("resnet20")
    before = [np.array(w) for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"checkpoint is a resnet32 \(5 blocks per stage\), the model a resnet20 \(3\)"):
        load_torch_weights(model, state32, **AKAMASTER_NORMALIZATION)
    with pytest.raises(ValueError, match=r"not in the model: layer1\.3\.bn1\.bias"):
        load_torch_weights(model, state32, **AKAMASTER_NORMALIZATION)
    state20 = torch_cases.cifar_resnet_state(20, num_classes=100, seed=20)
    with pytest.raises(ValueError, match=r"linear\.weight: checkpoint \(100, 64\), model \(10, 64\)"):
        load_torch_weights(model, state20, **AKAMASTER_NORMALIZATION)
    for got, want in zip(model.get_weights(), before):  # nothing was written
        np.testing.assert_array_equal(got, want)


def test_numpy_state_dict_needs_no_torch_and_lands_where_it_belongs(rng, tmp_path):
    model = build_model("resnet8", input_shape=(8, 8, 3))
    names = {"stem_conv": "conv1", "stem_bn": "bn1", "logits": "linear"}
    for stage in (1, 2, 3):
        for index in (1, 2):
            names[f"s{stage}b1_conv{index}"] = f"layer{stage}.0.conv{index}"
            names[f"s{stage}b1_bn{index}"] = f"layer{stage}.0.bn{index}"
    state = {}
    for ours, theirs in names.items():
        layer = model.get_layer(ours)
        if isinstance(layer, keras.layers.Conv2D):
            h, w, i, o = layer.kernel.shape
            state[f"{theirs}.weight"] = rng.normal(size=(o, i, h, w)).astype("float32")
        elif isinstance(layer, keras.layers.Dense):
            state[f"{theirs}.weight"] = rng.normal(size=tuple(layer.kernel.shape[::-1])).astype("float32")
            state[f"{theirs}.bias"] = rng.normal(size=layer.bias.shape).astype("float32")
        else:
            for field in ("weight", "bias", "running_mean", "running_var"):
                state[f"{theirs}.{field}"] = rng.uniform(0.5, 1.5, size=layer.gamma.shape).astype("float32")
            state[f"{theirs}.num_batches_tracked"] = np.array(3)
    path = tmp_path / "weights.npz"
    np.savez(path, **state)
    load_torch_weights(model, str(path), normalize_mean=(0.0, 0.0, 0.0), normalize_std=(1.0, 1.0, 1.0))
    conv = ops.convert_to_numpy(model.get_layer("s2b1_conv1").kernel)
    torch_kernel = state["layer2.0.conv1.weight"]  # (out, in, kh, kw)
    assert conv[0, 2, 5, 7] == torch_kernel[7, 5, 0, 2]
    np.testing.assert_array_equal(ops.convert_to_numpy(model.get_layer("logits").kernel), state["linear.weight"].T)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(model.get_layer("s3b1_bn2").moving_variance), state["layer3.0.bn2.running_var"]
    )
    normalize = keras.Model(model.inputs[0], model.get_layer("normalize").output)
    x = rng.uniform(0, 255, (1, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(ops.convert_to_numpy(normalize(x)), x / 255.0, rtol=1e-6)
    # Missing weights are named.
    del state["layer3.0.bn2.running_var"]
    with pytest.raises(ValueError, match=r"missing from the checkpoint: layer3\.0\.bn2\.running_var"):
        load_torch_weights(model, state, normalize_mean=(0.0,) * 3, normalize_std=(1.0,) * 3)


def test_bad_models_and_normalizations_are_refused():
    other = build_model("user_model_zoo:small_cnn", num_classes=10, input_shape=(8, 8, 3))  # not a CIFAR ResNet
    with pytest.raises(ValueError, match=f"model '{other.name}' is not one"):
        load_torch_weights(other, {}, **AKAMASTER_NORMALIZATION)
    model = build_model("resnet8", input_shape=(8, 8, 3))
    with pytest.raises(ValueError, match=r"pixels in \[0, 1\].*divide \[0, 255\] statistics by 255"):
        load_torch_weights(model, {}, normalize_mean=(125.3, 123.0, 113.9), normalize_std=(63.0, 62.1, 66.7))
    with pytest.raises(ValueError, match="must hold 3 finite numbers"):
        load_torch_weights(model, {}, normalize_mean=(0.5, 0.5), normalize_std=(0.2, 0.2, 0.2))
    with pytest.raises(ValueError, match="does not exist"):
        load_torch_weights(model, "/nonexistent/model.th", **AKAMASTER_NORMALIZATION)


def test_training_steps_equal_pytorchs():
    """Same weights, same batches: SGD steps of our train step (alpha = 0) and of
    torch.optim.SGD on the reference network give the same losses, weights and
    batch-norm statistics (the protocol's optimizer, BN and loss, end to end)."""
    from tf_selectivity.training import TorchSGD

    inputs = torch_cases.sgd_steps()
    expected = torch_cases.expected("sgd_steps", inputs)
    model = build_model("resnet8", input_shape=(16, 16, 3))
    load_torch_weights(model, inputs["state"], **normalization(inputs))
    model.compile(optimizer=TorchSGD(float(inputs["learning_rate"]), momentum=float(inputs["momentum"]),
                                     weight_decay_l2=float(inputs["weight_decay"])))
    for images, labels, loss in zip(inputs["images"], inputs["labels"], expected["losses"]):
        logs = model.train_on_batch(images, labels, return_dict=True)
        assert logs["cross_entropy"] == pytest.approx(loss, rel=1e-4)
    kernel = np.transpose(expected["layer2.0.conv1.weight"], (2, 3, 1, 0))
    np.testing.assert_allclose(ops.convert_to_numpy(model.get_layer("s2b1_conv1").kernel), kernel, atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(model.get_layer("logits").kernel), expected["linear.weight"].T, atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(model.get_layer("s3b1_bn2").moving_variance),
                               expected["layer3.0.bn2.running_var"], rtol=1e-4)
    np.testing.assert_allclose(ops.convert_to_numpy(model.get_layer("s3b1_bn2").gamma),
                               expected["layer3.0.bn2.weight"], atol=1e-5)

"""`load_torch_weights`: our ResNets are the reference PyTorch network, weight for weight.

The PyTorch side is a CIFAR ResNet written here in the layout of Idelbayev's
pytorch_resnet_cifar10 (the paper's code): 3x3 convs with padding=1 and no
bias, BatchNorm2d, option-A shortcuts (subsample by 2, zero-pad channels),
global average pooling, `linear`. Its random weights and randomized batch-norm
statistics are loaded into `build_model(...)`; the logits must agree.
"""

import numpy as np
import pytest
import keras
from keras import ops

from tf_selectivity.models import AKAMASTER_NORMALIZATION, build_model, load_torch_weights

pytestmark = pytest.mark.core

NO_TORCH = "PyTorch is an optional extra (pip install -e \".[torch]\"); needed to build the reference network"


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason=NO_TORCH)


def torch_cifar_resnet(torch, depth, num_classes=10):
    """The reference CIFAR ResNet-(6n+2), random weights, randomized BN, eval mode."""
    nn, functional = torch.nn, torch.nn.functional

    class BasicBlock(nn.Module):
        def __init__(self, in_planes, planes, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.subsample = stride != 1 or in_planes != planes
            self.extra = planes - in_planes

        def forward(self, x):
            out = functional.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            shortcut = x
            if self.subsample:  # option A
                half = self.extra // 2
                shortcut = functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, half, self.extra - half))
            return functional.relu(out + shortcut)

    class ResNet(nn.Module):
        def __init__(self, blocks):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            in_planes, stages = 16, []
            for planes, stride in ((16, 1), (32, 2), (64, 2)):
                stage = []
                for index in range(blocks):
                    stage.append(BasicBlock(in_planes, planes, stride if index == 0 else 1))
                    in_planes = planes
                stages.append(nn.Sequential(*stage))
            self.layer1, self.layer2, self.layer3 = stages
            self.linear = nn.Linear(64, num_classes)

        def forward(self, x):
            out = functional.relu(self.bn1(self.conv1(x)))
            out = self.layer3(self.layer2(self.layer1(out)))
            return self.linear(out.mean(dim=(2, 3)))

    generator = torch.Generator().manual_seed(depth)
    net = ResNet((depth - 2) // 6)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, generator=generator)
            if isinstance(module, nn.BatchNorm2d):  # not the identity in eval mode
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0.0, 0.3, generator=generator)
                module.running_mean.normal_(0.0, 0.3, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
                module.num_batches_tracked.fill_(7)
            if isinstance(module, nn.Linear):
                module.bias.normal_(0.0, 0.5, generator=generator)
    return net.eval()


def torch_logits(torch, net, images, mean, std):
    """The reference pipeline: ToTensor (/255, NCHW), Normalize(mean, std), forward."""
    x = torch.from_numpy(np.transpose(images / 255.0, (0, 3, 1, 2)).astype("float32"))
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        return net(x.float()).numpy()


def keras_logits(model, images):
    return ops.convert_to_numpy(model(images.astype("float32"), training=False))


def test_resnet20_matches_the_reference_network(torch, tmp_path, rng):
    # A checkpoint as Idelbayev's trainer writes it: DataParallel's "module."
    # prefix, inside {"state_dict": ...}, read from a file.
    net = torch_cifar_resnet(torch, 20)
    path = tmp_path / "resnet20.th"
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "best_prec1": 91.7}, path)
    model = build_model("resnet20")
    assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == 269_722
    assert load_torch_weights(model, str(path), **AKAMASTER_NORMALIZATION) is model
    images = rng.uniform(0, 255, (6, 32, 32, 3))
    expected = torch_logits(torch, net, images, **{
        "mean": AKAMASTER_NORMALIZATION["normalize_mean"], "std": AKAMASTER_NORMALIZATION["normalize_std"]})
    assert expected.std() > 0.5  # a comparison of non-trivial numbers
    np.testing.assert_allclose(keras_logits(model, images), expected, rtol=1e-4, atol=1e-4)
    # The probes' inference outputs (analysis) come from the same network.
    responses = model.unit_response_model()(images.astype("float32"))
    np.testing.assert_allclose(ops.convert_to_numpy(responses["logits"]), expected, rtol=1e-4, atol=1e-4)


def test_resnet8_state_dict_in_memory_other_normalization_and_input_size(torch, rng):
    net = torch_cifar_resnet(torch, 8, num_classes=4)
    mean, std = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)
    model = build_model("resnet8", num_classes=4, input_shape=(16, 16, 3))
    images = rng.uniform(0, 255, (5, 16, 16, 3))
    keras_logits(model, images)  # a model already called keeps working after the load
    load_torch_weights(model, net.state_dict(), normalize_mean=mean, normalize_std=std)
    expected = torch_logits(torch, net, images, mean, std)
    np.testing.assert_allclose(keras_logits(model, images), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.predict(images.astype("float32"), verbose=0), expected, rtol=1e-4, atol=1e-4)
    # The normalization travels with the model (it is part of its config).
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(keras_logits(clone, images), expected, rtol=1e-4, atol=1e-4)


def test_wrong_depth_wrong_classes_and_non_resnets_are_refused(torch):
    state32 = torch_cifar_resnet(torch, 32).state_dict()
    model = build_model("resnet20")
    before = [np.array(w) for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"checkpoint is a resnet32 \(5 blocks per stage\), the model a resnet20 \(3\)"):
        load_torch_weights(model, state32, **AKAMASTER_NORMALIZATION)
    with pytest.raises(ValueError, match=r"not in the model: layer1\.3\.bn1\.bias"):
        load_torch_weights(model, state32, **AKAMASTER_NORMALIZATION)
    state20 = torch_cifar_resnet(torch, 20, num_classes=100).state_dict()
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
    with pytest.raises(ValueError, match="model 'vgg16' is not one"):
        load_torch_weights(build_model("vgg16"), {}, **AKAMASTER_NORMALIZATION)
    model = build_model("resnet8", input_shape=(8, 8, 3))
    with pytest.raises(ValueError, match=r"pixels in \[0, 1\].*divide \[0, 255\] statistics by 255"):
        load_torch_weights(model, {}, normalize_mean=(125.3, 123.0, 113.9), normalize_std=(63.0, 62.1, 66.7))
    with pytest.raises(ValueError, match="must hold 3 finite numbers"):
        load_torch_weights(model, {}, normalize_mean=(0.5, 0.5), normalize_std=(0.2, 0.2, 0.2))
    with pytest.raises(ValueError, match="does not exist"):
        load_torch_weights(model, "/nonexistent/model.th", **AKAMASTER_NORMALIZATION)


def test_training_steps_equal_pytorchs(torch, rng):
    """Same weights, same batches: SGD steps of our train step (alpha = 0) and of
    torch.optim.SGD on the reference network give the same losses, weights and
    batch-norm statistics (the protocol's optimizer, BN and loss, end to end)."""
    from tf_selectivity.training import TorchSGD

    net = torch_cifar_resnet(torch, 8)
    for module in net.modules():  # train from scratch: default BN state
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_parameters()
            module.reset_running_stats()
    net.train()
    mean, std = (0.5, 0.45, 0.4), (0.25, 0.25, 0.3)
    model = build_model("resnet8", input_shape=(16, 16, 3))
    load_torch_weights(model, net.state_dict(), normalize_mean=mean, normalize_std=std)
    model.compile(optimizer=TorchSGD(0.1, momentum=0.9, weight_decay_l2=1e-4))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    for _ in range(5):
        images = rng.uniform(0, 255, (32, 16, 16, 3))
        labels = rng.integers(0, 10, 32)
        x = torch.from_numpy(np.transpose(images / 255.0, (0, 3, 1, 2))).float()
        x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), torch.from_numpy(labels))
        loss.backward()
        optimizer.step()
        logs = model.train_on_batch(images.astype("float32"), labels, return_dict=True)
        assert logs["cross_entropy"] == pytest.approx(float(loss.detach()), rel=1e-4)
    kernel = np.transpose(net.layer2[0].conv1.weight.detach().numpy(), (2, 3, 1, 0))
    np.testing.assert_allclose(ops.convert_to_numpy(model.get_layer("s2b1_conv1").kernel), kernel, atol=1e-5)
    np.testing.assert_allclose(
        ops.convert_to_numpy(model.get_layer("logits").kernel), net.linear.weight.detach().numpy().T, atol=1e-5
    )
    bn = net.layer3[0].bn2
    np.testing.assert_allclose(ops.convert_to_numpy(model.get_layer("s3b1_bn2").moving_variance),
                               bn.running_var.numpy(), rtol=1e-4)
    np.testing.assert_allclose(ops.convert_to_numpy(model.get_layer("s3b1_bn2").gamma),
                               bn.weight.detach().numpy(), atol=1e-5)

"""Writes PyTorch's answers to the cases of `torch_cases.py` (one `<case>.npz` each, beside this file).

Run it from the repository root where PyTorch is installed
(``pip install -e ".[torch]"``) after changing a case, then commit the files::

    python tests/references/make_torch_references.py

The reference is written in PyTorch alone and imports nothing of
tf_selectivity: a CIFAR ResNet in the layout of Idelbayev's
pytorch_resnet_cifar10 (the paper's code: 3x3 convolutions with padding 1 and
no bias, BatchNorm2d, option-A shortcuts that subsample by 2 and zero-pad
channels, global average pooling, `linear`), its ToTensor + Normalize input
pipeline, `torch.optim.SGD`, FGSM/PGD written with `torch.autograd`, and
`nn.BatchNorm2d`. `tests/test_torch_weights.py` also imports it for its one
live comparison where PyTorch is installed.
"""

import os
import sys

import numpy as np
import torch
from torch import nn
from torch.nn import functional

if __package__:  # imported by a test (tests/ is on the path)
    from . import torch_cases
else:  # run as a script
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch_cases


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


class CifarResNet(nn.Module):
    def __init__(self, blocks, num_classes):
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


def cifar_resnet(state: dict) -> CifarResNet:
    """The reference network holding `state` (a NumPy state dict of `torch_cases.cifar_resnet_state`), in eval mode."""
    blocks = sum(1 for key in state if key.startswith("layer1.") and key.endswith(".conv1.weight"))
    net = CifarResNet(blocks, num_classes=state["linear.weight"].shape[0])
    net.load_state_dict({key: torch.from_numpy(np.array(value)) for key, value in state.items()}, strict=True)
    return net.eval()


def normalized(images, mean, std):
    """ToTensor (/255, NCHW) and Normalize(mean, std) of [0, 255] NHWC images (a NumPy array or a tensor)."""
    x = torch.as_tensor(images, dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
    mean = torch.tensor(np.asarray(mean), dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(np.asarray(std), dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean) / std


def logits(net, images, mean, std) -> np.ndarray:
    with torch.no_grad():
        return net(normalized(images, mean, std)).numpy()


def logits_case(inputs: dict) -> dict:
    return {"logits": logits(cifar_resnet(inputs["state"]), inputs["images"], inputs["mean"], inputs["std"])}


def sgd_steps(inputs: dict) -> dict:
    """Cross-entropy of each step, then weights and statistics after the last."""
    net = cifar_resnet(inputs["state"]).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=float(inputs["learning_rate"]), momentum=float(inputs["momentum"]),
                                weight_decay=float(inputs["weight_decay"]))
    losses = []
    for images, labels in zip(inputs["images"], inputs["labels"]):
        optimizer.zero_grad()
        loss = functional.cross_entropy(net(normalized(images, inputs["mean"], inputs["std"])), torch.from_numpy(labels))
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    bn = net.layer3[0].bn2
    return {"losses": np.array(losses), "layer2.0.conv1.weight": net.layer2[0].conv1.weight.detach().numpy(),
            "linear.weight": net.linear.weight.detach().numpy(), "layer3.0.bn2.running_var": bn.running_var.numpy(),
            "layer3.0.bn2.weight": bn.weight.detach().numpy()}


def attack(net, images, labels, epsilon, steps, step_size, start, mean, std):
    """L-infinity PGD on [0, 255] NHWC images, summed cross-entropy (FGSM: steps=1, step_size=epsilon, start=0).

    Returns the adversarial images and the network's accuracy on them.
    """
    clean = torch.from_numpy(images)
    target = torch.from_numpy(labels.astype("int64"))
    adversarial = torch.clamp(torch.min(torch.max(clean + torch.from_numpy(start), clean - epsilon), clean + epsilon), 0, 255)
    for _ in range(steps):
        adversarial = adversarial.detach().requires_grad_(True)
        loss = functional.cross_entropy(net(normalized(adversarial, mean, std)), target, reduction="sum")
        (gradient,) = torch.autograd.grad(loss, adversarial)
        step = adversarial.detach() + step_size * gradient.sign()
        adversarial = torch.clamp(torch.min(torch.max(step, clean - epsilon), clean + epsilon), 0, 255)
    with torch.no_grad():
        predicted = net(normalized(adversarial, mean, std)).argmax(dim=1).numpy()
    return adversarial.detach().numpy(), float(np.mean(predicted == labels))


def attacks(inputs: dict) -> dict:
    """The clean predictions, then FGSM and PGD against labels of which every fourth is wrong.

    Adversarial images are stored as their offset from the clean images
    (the files stay small: most offsets are +-epsilon).
    """
    net = cifar_resnet(inputs["state"])
    images, mean, std = inputs["images"], inputs["mean"], inputs["std"]
    epsilon, steps, step_size = float(inputs["epsilon"]), int(inputs["steps"]), float(inputs["step_size"])
    predicted = logits(net, images, mean, std).argmax(axis=1)
    labels = torch_cases.attack_labels(predicted)
    fgsm, fgsm_accuracy = attack(net, images, labels, epsilon, 1, epsilon, np.zeros_like(images), mean, std)
    pgd, pgd_accuracy = attack(net, images, labels, epsilon, steps, step_size, inputs["start"], mean, std)
    return {"predicted": predicted, "fgsm_offset": fgsm - images, "fgsm_accuracy": np.array(fgsm_accuracy),
            "pgd_offset": pgd - images, "pgd_accuracy": np.array(pgd_accuracy)}


def batch_norm_step(inputs: dict) -> dict:
    layer = nn.BatchNorm2d(inputs["x"].shape[-1], momentum=float(inputs["momentum"]), eps=float(inputs["epsilon"]))
    with torch.no_grad():
        for field, name in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                            ("running_var", "moving_variance")):
            getattr(layer, field).copy_(torch.tensor(inputs[name]))
        outputs = layer.train()(torch.from_numpy(np.transpose(inputs["x"], (0, 3, 1, 2)))).numpy()
    return {"outputs": np.transpose(outputs, (0, 2, 3, 1)), "running_mean": layer.running_mean.numpy(),
            "running_var": layer.running_var.numpy()}


ANSWERS = {"resnet20_logits": logits_case, "resnet8_logits": logits_case, "sgd_steps": sgd_steps,
           "attacks": attacks, "batch_norm_step": batch_norm_step}


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # one summation order, whatever the machine
    for case, make_inputs in torch_cases.CASES.items():
        inputs = make_inputs()
        outputs = ANSWERS[case](inputs)
        with open(torch_cases.path(case), "wb") as f:
            np.savez_compressed(f, input_checksum=torch_cases.checksum(inputs), **outputs)
        print(f"{torch_cases.path(case)}: {os.path.getsize(torch_cases.path(case)):,} bytes")


if __name__ == "__main__":
    main()

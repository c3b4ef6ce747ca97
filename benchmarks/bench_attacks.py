"""What PGD costs (`tf_selectivity.analysis.stages.robustness.attacks`), beside the same attack in PyTorch.

Builds the reference CIFAR ResNet20 in PyTorch (the layout of
`../shared/bench/torch_resnet20_reference.py` and Idelbayev's code: option-A
shortcuts, BatchNorm in eval mode), loads its weights into our `resnet20`
with `load_torch_weights`, and times an untargeted L-infinity PGD
(epsilon 8, step 2, `--steps` steps, random start) over `--images` random
32x32 images in batches of `--batch_size`: ours (compiled: `tf.function` on
TensorFlow, `jax.jit` on JAX; the backend is KERAS_BACKEND's) and an
idiomatic PyTorch loop (`torch.autograd.grad`, eager; same process, same
threads). The first batch of each is a warm-up (tracing, compilation) and
is not timed. Also reports how many perturbed pixels differ between the two
(> 1e-3) and both adversarial accuracies, as a check that they did the same
work::

    python benchmarks/bench_attacks.py --images=1024
    KERAS_BACKEND=jax python benchmarks/bench_attacks.py --images=1024

Prints one JSON line; benchmarks/RESULTS.md records the results with machine and date.
"""

from __future__ import annotations

import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

flags.DEFINE_integer("images", 1024, "Images attacked (timed; one more batch is the warm-up).")
flags.DEFINE_integer("batch_size", 256, "Images per batch.")
flags.DEFINE_integer("steps", 10, "PGD steps.")
flags.DEFINE_float("epsilon", 8.0, "L-infinity budget in pixel units.")
flags.DEFINE_float("step_size", 2.0, "PGD step in pixel units.")
flags.DEFINE_boolean("torch", True, "Also time the PyTorch attack.")
FLAGS = flags.FLAGS

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def torch_resnet20(torch):
    """The reference ResNet20 with Idelbayev's parameter names, eval mode."""
    nn, functional = torch.nn, torch.nn.functional

    class BasicBlock(nn.Module):
        def __init__(self, in_planes, planes, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.extra = planes - in_planes if (stride != 1 or in_planes != planes) else None

        def forward(self, x):
            out = self.bn2(self.conv2(functional.relu(self.bn1(self.conv1(x)))))
            shortcut = x
            if self.extra is not None:
                half = self.extra // 2
                shortcut = functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, half, self.extra - half))
            return functional.relu(out + shortcut)

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            stages, in_planes = [], 16
            for planes, stride in ((16, 1), (32, 2), (64, 2)):
                blocks = []
                for index in range(3):
                    blocks.append(BasicBlock(in_planes, planes, stride if index == 0 else 1))
                    in_planes = planes
                stages.append(nn.Sequential(*blocks))
            self.layer1, self.layer2, self.layer3 = stages
            self.linear = nn.Linear(64, 10)

        def forward(self, x):
            out = functional.relu(self.bn1(self.conv1(x)))
            return self.linear(self.layer3(self.layer2(self.layer1(out))).mean(dim=(2, 3)))

    torch.manual_seed(0)
    return ResNet().eval()


def torch_pgd(torch, net, images, labels, start, epsilon, step_size, steps, device="cpu"):
    """PGD on [0, 255] NHWC images through ToTensor + Normalize, as the reference pipeline
    (`device`: where `net` is and the attack runs; results come back as NumPy)."""
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    clean = torch.from_numpy(images).to(device)
    target = torch.from_numpy(labels.astype("int64")).to(device)
    low, high = clean - epsilon, clean + epsilon
    adversarial = torch.clamp(torch.min(torch.max(clean + torch.from_numpy(start).to(device), low), high), 0, 255)
    for _ in range(steps):
        adversarial.requires_grad_(True)
        logits = net((adversarial.permute(0, 3, 1, 2) / 255.0 - mean) / std)
        loss = torch.nn.functional.cross_entropy(logits, target, reduction="sum")
        (gradient,) = torch.autograd.grad(loss, adversarial)
        with torch.no_grad():
            adversarial = torch.clamp(torch.min(torch.max(adversarial + step_size * gradient.sign(), low), high), 0, 255)
    with torch.no_grad():
        predicted = net((adversarial.permute(0, 3, 1, 2) / 255.0 - mean) / std).argmax(dim=1)
    return adversarial.cpu().numpy(), predicted.cpu().numpy()


def main(_):
    import keras
    import torch

    from tf_selectivity.analysis.stages.robustness.attacks import perturb
    from tf_selectivity.models import build_model, load_torch_weights

    net = torch_resnet20(torch)
    model = build_model("resnet20")
    load_torch_weights(model, net.state_dict(), normalize_mean=MEAN, normalize_std=STD)
    batch = FLAGS.batch_size
    total = FLAGS.images + batch  # the first batch warms up
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (total, 32, 32, 3)).astype("float32")
    labels = np.argmax(model.predict(images, batch_size=batch, verbose=0), axis=-1)
    attack = dict(attack="pgd", steps=FLAGS.steps, step_size=FLAGS.step_size, random_start=True, seed=1,
                  batch_size=batch)

    perturb(model, images[:batch], labels[:batch], FLAGS.epsilon, **attack)  # trace / compile
    start = time.perf_counter()
    ours = perturb(model, images[batch:], labels[batch:], FLAGS.epsilon, **attack)
    ours_seconds = time.perf_counter() - start
    ours_predicted = np.argmax(model.predict(ours, batch_size=batch, verbose=0), axis=-1)
    result = {
        "benchmark": "pgd", "backend": keras.backend.backend(), "images": FLAGS.images, "batch_size": batch,
        "steps": FLAGS.steps, "epsilon": FLAGS.epsilon, "step_size": FLAGS.step_size,
        "ours_seconds": round(ours_seconds, 2), "ours_images_per_s": round(FLAGS.images / ours_seconds, 1),
        "ours_accuracy": float(np.mean(ours_predicted == labels[batch:])),
    }
    if FLAGS.torch:
        # The same random starts as ours: `perturb` draws one per batch, in order, from a fresh `seed` per call.
        draws = np.random.default_rng(1)
        starts = [draws.uniform(-FLAGS.epsilon, FLAGS.epsilon, (min(batch, FLAGS.images - b), 32, 32, 3))
                  .astype("float32") for b in range(0, FLAGS.images, batch)]
        torch_pgd(torch, net, images[:batch], labels[:batch], starts[0][: batch], FLAGS.epsilon, FLAGS.step_size,
                  FLAGS.steps)  # warm-up
        outputs, predicted = [], []
        start = time.perf_counter()
        for index, begin in enumerate(range(batch, total, batch)):
            x, p = torch_pgd(torch, net, images[begin : begin + batch], labels[begin : begin + batch],
                             starts[index], FLAGS.epsilon, FLAGS.step_size, FLAGS.steps)
            outputs.append(x)
            predicted.append(p)
        torch_seconds = time.perf_counter() - start
        theirs = np.concatenate(outputs)
        result.update(
            torch=torch.__version__, torch_threads=torch.get_num_threads(),
            torch_seconds=round(torch_seconds, 2), torch_images_per_s=round(FLAGS.images / torch_seconds, 1),
            torch_accuracy=float(np.mean(np.concatenate(predicted) == labels[batch:])),
            speedup_vs_torch=round(torch_seconds / ours_seconds, 2),
            pixels_differing=float(np.mean(np.abs(ours - theirs) > 1e-3)),
        )
    result.update(machine=platform.machine(), processor=platform.processor() or platform.machine(),
                  cpus=os.cpu_count(), python=platform.python_version(), keras=keras.__version__)
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)

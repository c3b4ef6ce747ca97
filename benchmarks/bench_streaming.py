"""Throughput of the streaming input pipeline against what training consumes.

Times `data.stream_pipeline.training_stream` (read the file, decode the
JPEG, transform, batch: the whole per-image path of ``--dataset=stream:``)
on this machine's CPUs, for

* synthetic ImageNet-size JPEGs (``--synthetic_images`` of 500x375, the
  typical ImageNet photo, quality 90) with ImageNet's random-resized crop
  to 224 and flip;
* the CIFAR-10 JPEG copy (``--cifar_folder``, 32x32) with the same
  transform to 224, and with the paper's pad-crop-flip at 32;

then one ResNet-50 training step at 224 (``--train_steps``, TensorFlow) to
compare with what one step consumes here, and prints how many CPU cores
per GPU keep a GPU fed, from the GPU throughputs given as assumptions
(``--gpu_images_per_second``: name=img/s, published figures)::

    python benchmarks/bench_streaming.py
    python benchmarks/bench_streaming.py --train_steps=0 --batches=20

Prints one JSON object.
"""

from __future__ import annotations

import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

flags.DEFINE_string("cifar_folder", "../shared/data/cifar10-jpeg", "CIFAR-10 as JPEGs ({train,test}/<class>/); "
                    "empty: skip.")
flags.DEFINE_integer("synthetic_images", 512, "ImageNet-size JPEGs to generate (0: skip).")
flags.DEFINE_integer("batch_size", 64, "Images per batch of the timed pipelines.")
flags.DEFINE_integer("batches", 30, "Timed batches per pipeline (after --warmup_batches).")
flags.DEFINE_integer("warmup_batches", 3, "Batches before the timing starts.")
flags.DEFINE_integer("train_steps", 3, "Timed ResNet-50 train steps at 224 (0: skip).")
flags.DEFINE_integer("train_batch", 16, "Batch of the ResNet-50 steps.")
flags.DEFINE_list(
    "gpu_images_per_second",
    ["A100_float32=938", "A100_mixed=2470", "V100_float32=367", "V100_mixed=1200"],
    "Assumed ResNet-50 training throughput per GPU (name=img/s): NVIDIA DeepLearningExamples, PyTorch "
    "ResNet50 v1.5 README (1 GPU; TF32 on A100).",
)
flags.DEFINE_float("cifar_gpu_images_per_second", 70000.0,
                   "Assumed ResNet20 training throughput of one GPU on CIFAR-10 (32x32).")
FLAGS = flags.FLAGS


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _synthetic_folder(root: str, count: int) -> str:
    """`count` JPEGs of 500x375 (smooth colour fields with noise: ~photo-sized files), two classes."""
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:375, 0:500] / 100.0
    for split, number in (("train", count), ("val", 2)):
        for label in range(2):
            folder = os.path.join(root, split, f"class_{label}")
            os.makedirs(folder, exist_ok=True)
            for index in range(number // 2 if split == "train" else number):
                phase = rng.uniform(0, 6.3, 3)
                image = 127 + 80 * np.sin(xx[..., None] * (1 + label) + yy[..., None] + phase)
                image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
                Image.fromarray(image).save(os.path.join(folder, f"{index}.jpg"), quality=90)
    return root


def _pipeline_rate(spec: str, augmentation: str, size: int) -> dict:
    from tf_selectivity.data.stream_pipeline import training_stream
    from tf_selectivity.data.streams import load_stream

    data = load_stream(spec, image_size=size, augmentation=augmentation, cache_dir=None)
    needed = (FLAGS.warmup_batches + FLAGS.batches) * FLAGS.batch_size
    epochs = -(-needed // max(data.num_train, 1))
    images, start, seen = 0, None, 0
    for epoch in range(epochs):
        for batch, _ in training_stream(data, FLAGS.batch_size, seed=0, epoch=epoch).as_numpy_iterator():
            seen += 1
            if seen == FLAGS.warmup_batches:
                start = time.perf_counter()
            elif seen > FLAGS.warmup_batches:
                images += len(batch)
            if seen >= FLAGS.warmup_batches + FLAGS.batches:
                break
        if seen >= FLAGS.warmup_batches + FLAGS.batches:
            break
    seconds = time.perf_counter() - start
    rate = images / seconds
    return {"images_per_second": round(rate, 1), "per_core": round(rate / _cores(), 1), "images": images,
            "seconds": round(seconds, 2)}


def _train_rate() -> dict:
    import keras

    from tf_selectivity.models import build_model
    from tf_selectivity.training.optimizers import TorchSGD

    keras.utils.set_random_seed(0)
    model = build_model("resnet50_imagenet", num_classes=1000, alpha=-1.0, input_shape=(224, 224, 3))
    model.compile(optimizer=TorchSGD(0.1, momentum=0.9, weight_decay_l2=1e-4))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (FLAGS.train_batch, 224, 224, 3)).astype(np.float32)
    y = rng.integers(0, 1000, FLAGS.train_batch).astype(np.int32)
    model.train_on_batch(x, y)  # traced and run once
    start = time.perf_counter()
    for _ in range(FLAGS.train_steps):
        model.train_on_batch(x, y)
    seconds = time.perf_counter() - start
    return {"images_per_second": round(FLAGS.train_steps * FLAGS.train_batch / seconds, 2),
            "batch": FLAGS.train_batch, "steps": FLAGS.train_steps, "seconds": round(seconds, 2)}


def main(argv):
    del argv
    import keras

    results = {"cores": _cores(), "backend": keras.backend.backend(), "pipelines": {}}
    with tempfile.TemporaryDirectory() as scratch:
        if FLAGS.synthetic_images:
            folder = _synthetic_folder(os.path.join(scratch, "imagenet_like"), FLAGS.synthetic_images)
            results["pipelines"]["synthetic_500x375_rrc224"] = _pipeline_rate(
                f"stream:imagefolder:{folder}", "random_resized_crop", 224)
        if FLAGS.cifar_folder and os.path.isdir(FLAGS.cifar_folder):
            spec = f"stream:imagefolder:{FLAGS.cifar_folder}"
            results["pipelines"]["cifar_32_rrc224"] = _pipeline_rate(spec, "random_resized_crop", 224)
            results["pipelines"]["cifar_32_pad_crop_flip"] = _pipeline_rate(spec, "pad_crop_flip", 32)
    if FLAGS.train_steps:
        results["resnet50_train_step_224"] = _train_rate()
    imagenet = results["pipelines"].get("synthetic_500x375_rrc224")
    if imagenet:
        per_core = imagenet["per_core"]
        results["cores_per_gpu_imagenet"] = {
            name: round(float(rate) / per_core, 1)
            for name, rate in (item.split("=") for item in FLAGS.gpu_images_per_second)
        }
    cifar = results["pipelines"].get("cifar_32_pad_crop_flip")
    if cifar:
        results["cores_per_gpu_cifar_streamed"] = round(FLAGS.cifar_gpu_images_per_second / cifar["per_core"], 1)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    app.run(main)

"""What `compile(split_selectivity=True)` costs in the validation pass.

Times `model.evaluate` of a network (ResNet20 by default) on a validation
split of random images (5,000 at batch 500 by default), with and without the
split selectivity, on the running backend (TensorFlow: its default graph mode
on CPU; JAX: jitted steps). Two models with the same weights, each compiled
once and warmed up (tracing excluded), are timed alternately `--repeats`
times; the medians are reported. For scale, it also times `--train_steps`
training steps (one `fit` epoch, traced beforehand) and reports the extra validation time as a share of a
training epoch of `--train_images` images at `--train_batch` (the paper's
CIFAR-10 protocol: 45,000 images at batch 128)::

    python benchmarks/bench_split_selectivity.py
    KERAS_BACKEND=jax python benchmarks/bench_split_selectivity.py
"""

from __future__ import annotations

import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tf_selectivity  # noqa: F401,E402
from absl import app, flags  # noqa: E402

flags.DEFINE_string("model", "resnet20", "Model name (tf_selectivity.models.MODELS).")
flags.DEFINE_integer("validation_images", 5000, "Images in the validation split.")
flags.DEFINE_integer("batch_size", 500, "Validation batch size.")
flags.DEFINE_integer("repeats", 5, "Timed validation passes per setting.")
flags.DEFINE_integer("train_steps", 10, "Timed training steps (0: skip the epoch estimate).")
flags.DEFINE_integer("train_batch", 128, "Training batch size of the epoch estimate.")
flags.DEFINE_integer("train_images", 45000, "Training images per epoch of the estimate.")
FLAGS = flags.FLAGS


def _model(split_selectivity):
    import keras

    from tf_selectivity.models import build_model
    from tf_selectivity.training.optimizers import TorchSGD

    keras.utils.set_random_seed(0)
    model = build_model(FLAGS.model, num_classes=10, alpha=-1.0, input_shape=(32, 32, 3))
    model.compile(optimizer=TorchSGD(0.1, momentum=0.9, weight_decay_l2=1e-4),
                  split_selectivity=split_selectivity)
    return model


def _time(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv):
    del argv
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (FLAGS.validation_images, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 10, FLAGS.validation_images)
    models = {False: _model(False), True: _model(True)}
    for model in models.values():  # tracing and compilation, untimed
        model.evaluate(images, labels, batch_size=FLAGS.batch_size, verbose=0)
    times = {False: [], True: []}
    for _ in range(FLAGS.repeats):
        for setting, model in models.items():
            times[setting].append(_time(
                lambda: model.evaluate(images, labels, batch_size=FLAGS.batch_size, verbose=0)))
    without, with_split = statistics.median(times[False]), statistics.median(times[True])
    result = {
        "backend": keras.backend.backend(),
        "model": FLAGS.model,
        "validation_images": FLAGS.validation_images,
        "batch_size": FLAGS.batch_size,
        "repeats": FLAGS.repeats,
        "validation_s_without": round(without, 3),
        "validation_s_with": round(with_split, 3),
        "extra_s": round(with_split - without, 3),
        "extra_percent_of_validation": round(100 * (with_split - without) / without, 2),
        "all_times_s": {str(k): [round(t, 3) for t in v] for k, v in times.items()},
    }
    if FLAGS.train_steps:
        model = models[False]
        count = FLAGS.train_steps * FLAGS.train_batch
        x = np.resize(images, (count, 32, 32, 3))
        y = np.resize(labels, count)
        fit = lambda n: model.fit(x[:n], y[:n], batch_size=FLAGS.train_batch, epochs=1, verbose=0)
        fit(2 * FLAGS.train_batch)  # tracing
        seconds = _time(lambda: fit(count))
        epoch = seconds / FLAGS.train_steps * FLAGS.train_images / FLAGS.train_batch
        result["train_epoch_s_estimate"] = round(epoch, 1)
        result["extra_percent_of_train_epoch"] = round(100 * (with_split - without) / epoch, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)

"""What every unit's label-permutation null costs (`tf_selectivity.measures.unit_null`).

Times `permutation_null` on synthetic per-image responses with ResNet20's
layer widths (19 probed layers, 688 units: 16, 6 x 16, 6 x 32, 6 x 64) for
a CIFAR-10-sized test set (10,000 images, 10 classes) and B = 1,000
permutations: the way the analysis calls it (`permutation_nulls` over the
run's 19 layers: one one-hot matrix per permutation for all of them), one
`permutation_null` call per layer, and one call over all 688 units. For scale it also times the
dense one-hot product the sparse one replaces (`--dense_permutations` of
them, extrapolated to B)::

    python benchmarks/bench_unit_null.py
    python benchmarks/bench_unit_null.py --images=10000 --permutations=1000 --repeats=3

Prints one JSON line; benchmarks/RESULTS.md records the results with machine and date.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

flags.DEFINE_integer("images", 10_000, "Test images.")
flags.DEFINE_integer("classes", 10, "Classes.")
flags.DEFINE_integer("permutations", 1000, "B.")
flags.DEFINE_integer("repeats", 3, "Timed repetitions (the median is reported).")
flags.DEFINE_integer("dense_permutations", 50, "Permutations timed with a dense one-hot product (0: skip).")
FLAGS = flags.FLAGS

RESNET20_WIDTHS = [16] + [16] * 6 + [32] * 6 + [64] * 6


def _responses(rng, images, classes):
    labels = rng.permutation(np.arange(images) % classes)
    layers = []
    for width in RESNET20_WIDTHS:
        responses = np.maximum(rng.normal(size=(images, width)), 0.0)
        # A few units prefer a class, as a trained network's do.
        preferred = rng.integers(0, classes, width)
        responses += 0.3 * (labels[:, None] == preferred[None]) * rng.uniform(0, 1, width)
        layers.append(responses.astype(np.float32))
    return labels, layers


def _median_time(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _dense_class_sums(responses, labels, classes, count, rng):
    responses = responses.astype(np.float64)
    one_hot = np.zeros((count * classes, len(labels)))
    permuted = np.stack([rng.permutation(labels) for _ in range(count)])
    one_hot[(np.arange(count)[:, None] * classes + permuted).ravel(), np.tile(np.arange(len(labels)), count)] = 1.0
    return one_hot @ responses


def main(argv):
    del argv
    from tf_selectivity.measures.unit_null import permutation_null, permutation_nulls

    rng = np.random.default_rng(0)
    labels, layers = _responses(rng, FLAGS.images, FLAGS.classes)
    every_unit = np.concatenate(layers, axis=1)
    B = FLAGS.permutations

    def per_layer():
        for responses in layers:
            permutation_null(responses, labels, FLAGS.classes, num_permutations=B, seed=0)

    def run():
        permutation_nulls(dict(enumerate(layers)), labels, FLAGS.classes, num_permutations=B, seed=0)

    def one_call():
        permutation_null(every_unit, labels, FLAGS.classes, num_permutations=B, seed=0)

    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average": os.getloadavg()[0],
        "images": FLAGS.images,
        "classes": FLAGS.classes,
        "units": every_unit.shape[1],
        "layers": len(layers),
        "permutations": B,
        "run_seconds": _median_time(run, FLAGS.repeats),
        "per_layer_seconds": _median_time(per_layer, FLAGS.repeats),
        "one_call_seconds": _median_time(one_call, FLAGS.repeats),
    }
    if FLAGS.dense_permutations:
        count = FLAGS.dense_permutations
        seconds = _median_time(
            lambda: _dense_class_sums(every_unit, labels, FLAGS.classes, count, rng), FLAGS.repeats
        )
        result["dense_class_sums_seconds_extrapolated"] = seconds * B / count
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)

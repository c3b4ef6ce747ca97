"""What ablation costs (`tf_selectivity.analysis.stages.ablation`): suffix path vs naive, beside the floor.

One ResNet20 (random weights; the cost does not depend on them) on
`--images` random 32x32 images. For a sample of its 19 probes
(`--layers`, depth indices) it times, per layer, `--masks` random masks:

* **suffix** (the library's path): the cut (the prefix's tensors the rest
  needs) computed once per layer and the compiled suffix re-run per mask,
  masks stacked along the batch (`batch_size` rows per pass); the one-time
  cost per layer (prefix pass, tracing) is timed apart;
* **naive** (``method="full"``): the whole network per mask;
* **floor**: the suffix forward passes alone: the same compiled function
  called on the same pre-sliced, pre-padded inputs for the same number of
  passes, nothing else (no slicing, padding, comparison with the labels).

From the per-mask times it extrapolates what the analysis needs for one run
on 10,000 test images: cumulative curves (19 layers x (2 + R=3 orders) x 6
fractions = 570 masks) and single-unit importance (688 units, 19 layers +
one clean pass each), each layer taking the per-mask time of the nearest
sampled layer, scaled linearly in the number of images (the suffix path's
one-time cost per layer: its measured set-up, unscaled, plus one
whole-network pass, scaled: an upper bound of its prefix pass). Prints one JSON
line::

    python benchmarks/bench_ablation.py --images=2000 --layers=0,6,12,18 --masks=6
"""

from __future__ import annotations

import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

flags.DEFINE_integer("images", 2000, "Test images (random).")
flags.DEFINE_list("layers", ["0", "6", "12", "18"], "Depth indices of the probes timed.")
flags.DEFINE_integer("masks", 6, "Random masks timed per layer and method.")
flags.DEFINE_integer("batch_size", 500, "Rows per forward pass (images x stacked masks).")
flags.DEFINE_integer("target_images", 10_000, "Images of the extrapolation.")
flags.DEFINE_enum("on_device", "auto", ["auto", "true", "false"],
                  "JAX: keep the cut on the device (auto: where it fits); the floor is always the host path's.")
FLAGS = flags.FLAGS


def _time(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main(argv):
    del argv
    import keras
    from keras import ops

    from tf_selectivity.analysis.stages.ablation.network import ablated_network
    from tf_selectivity.models import build_model

    keras.utils.set_random_seed(0)
    model = build_model("resnet20", num_classes=10, input_shape=(32, 32, 3))
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (FLAGS.images, 32, 32, 3)).astype(np.float32)
    labels = rng.integers(0, 10, FLAGS.images)
    probes = list(model.probe_names)
    sampled = [int(i) for i in FLAGS.layers]
    on_device = {"auto": None, "true": True, "false": False}[FLAGS.on_device]
    suffix = ablated_network(model, probes, images, labels, FLAGS.batch_size, "suffix", on_device)
    # The floor calls the host path's compiled suffix on pre-sliced inputs.
    host = ablated_network(model, probes, images, labels, FLAGS.batch_size, "suffix", False)
    full = ablated_network(model, probes, images, labels, FLAGS.batch_size, "full")
    per_layer = {}
    for index in sampled:
        name = probes[index]
        units = int(model.get_layer(name).output.shape[-1])
        keeps = (rng.uniform(size=(FLAGS.masks, units)) < 0.5).astype(np.float32)
        fill = np.zeros(units, np.float32)
        setup = _time(lambda: suffix.prepare(name, FLAGS.masks))
        suffix.prepare(name, FLAGS.masks)
        values, function, rows, copies, _ = host.prepare(name, FLAGS.masks)
        warm = [*(v[:rows] for v in values), np.ones((copies, units), np.float32), np.zeros((1, units), np.float32)]
        ops.convert_to_numpy(function(warm))  # warm-up (tracing) of the floor's function
        # Warm-up (tracing) of the compiled suffix: part of the one-time cost.
        setup += _time(lambda: suffix.correct(name, keeps[:copies], fill))
        fast = _time(lambda: suffix.correct(name, keeps, fill))
        passes = []
        for first in range(0, FLAGS.masks, copies):
            keep = keeps[first : first + copies]
            keep = np.concatenate([keep, np.ones((copies - len(keep), units), np.float32)])
            for start in range(0, FLAGS.images, rows):
                chunk = [v[start : start + rows] for v in values]
                chunk = [np.concatenate([c, np.zeros((rows - len(c), *c.shape[1:]), np.float32)]) for c in chunk]
                passes.append([*chunk, keep, fill[None]])
        floor = _time(lambda: [ops.convert_to_numpy(function(inputs)) for inputs in passes])
        full.correct(name, keeps[:1], fill)  # warm-up
        naive = _time(lambda: full.correct(name, keeps, fill))
        per_layer[index] = {"layer": name, "units": units, "copies": copies, "setup_s": setup,
                            "cut_on_device": suffix.resident,
                            "suffix_per_mask_s": fast / FLAGS.masks, "floor_per_mask_s": floor / FLAGS.masks,
                            "naive_per_mask_s": naive / FLAGS.masks}
        print(json.dumps(per_layer[index]), flush=True)

    scale = FLAGS.target_images / FLAGS.images
    totals = {"curves": {"suffix": 0.0, "floor": 0.0, "naive": 0.0}, "importance": {"suffix": 0.0, "floor": 0.0, "naive": 0.0}}
    for index, name in enumerate(probes):
        nearest = per_layer[min(sampled, key=lambda s: abs(s - index))]
        units = int(model.get_layer(name).output.shape[-1])
        for task, masks in (("curves", 5 * 6), ("importance", units + 1)):
            # The one-time cost per layer: its tracing (not scaled) and the
            # prefix pass over the images, bounded by one whole-network pass
            # (scaled): an upper bound.
            totals[task]["suffix"] += (scale * (masks * nearest["suffix_per_mask_s"] + nearest["naive_per_mask_s"])
                                       + nearest["setup_s"])
            totals[task]["floor"] += scale * masks * nearest["floor_per_mask_s"]
            totals[task]["naive"] += scale * masks * nearest["naive_per_mask_s"]
    for task in totals.values():
        task["suffix_over_floor"] = task["suffix"] / task["floor"]
        task["naive_over_suffix"] = task["naive"] / task["suffix"]
    print(json.dumps({
        "backend": keras.backend.backend(), "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "on_device": FLAGS.on_device, "images": FLAGS.images, "batch_size": FLAGS.batch_size, "masks": FLAGS.masks,
        "sampled_layers": sampled, "extrapolated_to_images": FLAGS.target_images,
        "extrapolated_seconds": totals,
    }))


if __name__ == "__main__":
    app.run(main)

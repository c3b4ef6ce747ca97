"""Builds the bundled `cifar10_sample` from a CIFAR-10 image folder.

The sample keeps the first `--train_per_class` training and `--test_per_class`
test images of every class, stored as their original JPEG bytes (about 1 KB
each) so that the package stays small::

    python -m tf_selectivity.data.make_sample \
        --source=../shared/data/cifar10-jpeg \
        --output=tf_selectivity/data/cifar10_sample.npz
"""

from __future__ import annotations

import os
import sys

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("source", None, "Image folder with train/<class>/*.jpg and test/<class>/*.jpg.")
flags.DEFINE_string("output", None, "Path of the .npz file to write.")
flags.DEFINE_integer("train_per_class", 400, "Training images kept per class.")
flags.DEFINE_integer("test_per_class", 100, "Test images kept per class.")


def _collect(split_dir: str, per_class: int):
    class_names = sorted(
        d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d))
    )
    blobs, labels = [], []
    for label, name in enumerate(class_names):
        files = sorted(os.listdir(os.path.join(split_dir, name)))[:per_class]
        for file_name in files:
            with open(os.path.join(split_dir, name, file_name), "rb") as f:
                blobs.append(f.read())
            labels.append(label)
    return class_names, blobs, np.asarray(labels, dtype=np.int64)


def _pack(blobs):
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    return np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets


def main(argv):
    del argv
    if not FLAGS.source or not FLAGS.output:
        print("make_sample: error: --source and --output are required", file=sys.stderr)
        return 2
    arrays = {}
    for split, per_class in (("train", FLAGS.train_per_class), ("test", FLAGS.test_per_class)):
        class_names, blobs, labels = _collect(os.path.join(FLAGS.source, split), per_class)
        data, offsets = _pack(blobs)
        arrays[f"{split}_jpeg"] = data
        arrays[f"{split}_offsets"] = offsets
        arrays[f"{split}_labels"] = labels
    arrays["class_names"] = np.asarray(class_names)
    np.savez(FLAGS.output, **arrays)
    print(f"wrote {FLAGS.output}: {os.path.getsize(FLAGS.output) / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    app.run(main)

"""Data: datasets as in-memory arrays (or streamed from disk) and the batches that feed training.

`sources` needs only NumPy (and PIL / tensorflow-datasets when used); the
batching classes import Keras and are loaded on first use, so that command
lines can print their help and usage errors without starting a backend.
"""

import importlib

from tf_selectivity.data.sources import (
    DATASET_HELP,
    DatasetSplits,
    DatasetUnavailableError,
    check_dataset,
    describe_classes,
    load_dataset,
    load_test_split,
    make_synthetic,
    needs_tensorflow,
    split_train_validation,
)

_LAZY = {
    "ImageBatches": "pipeline",
    "augment_images": "pipeline",
    "crop_and_flip": "pipeline",
    "draw_crop_and_flip": "pipeline",
}

__all__ = [
    "DATASET_HELP",
    "DatasetSplits",
    "DatasetUnavailableError",
    "check_dataset",
    "describe_classes",
    "needs_tensorflow",
    "ImageBatches",
    "augment_images",
    "crop_and_flip",
    "draw_crop_and_flip",
    "load_dataset",
    "load_test_split",
    "make_synthetic",
    "split_train_validation",
]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"tf_selectivity.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'tf_selectivity.data' has no attribute {name!r}")

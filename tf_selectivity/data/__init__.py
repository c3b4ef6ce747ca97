"""Data: datasets as in-memory arrays and the batches that feed training."""

from tf_selectivity.data.pipeline import EpochSync, ImageBatches, augment_images
from tf_selectivity.data.sources import (
    DATASET_HELP,
    DatasetSplits,
    DatasetUnavailableError,
    load_dataset,
    load_test_split,
    make_synthetic,
    split_train_validation,
)

__all__ = [
    "DATASET_HELP",
    "DatasetSplits",
    "DatasetUnavailableError",
    "EpochSync",
    "ImageBatches",
    "augment_images",
    "load_dataset",
    "load_test_split",
    "make_synthetic",
    "split_train_validation",
]

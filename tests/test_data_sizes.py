"""Data at sizes and class counts other than CIFAR-10's: Tiny ImageNet-like
64x64 image folders with 200 classes, augmentation of non-32 (and
non-square) images in both input pipelines."""

import os

import numpy as np
import pytest

from tf_selectivity.data import ImageBatches, augment_images, load_dataset


def _crop_offsets(image, crop, padding):
    """(dy, dx, flipped) of every window of the zero-padded image equal to `crop`."""
    height, width = image.shape[:2]
    padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
    found = []
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            window = padded[dy : dy + height, dx : dx + width]
            if np.array_equal(window, crop):
                found.append((dy, dx, False))
            if np.array_equal(window[:, ::-1], crop):
                found.append((dy, dx, True))
    return found


def test_numpy_augmentation_crops_any_size(rng):
    images = rng.integers(1, 256, size=(24, 64, 48, 3), dtype=np.uint8)  # no zeros
    out = augment_images(images, np.random.default_rng(0))
    assert out.shape == images.shape
    offsets = [_crop_offsets(image, crop, 4) for image, crop in zip(images, out)]
    assert all(offsets), "an output is not a pad-4 crop of its image"
    assert len({found[0][:2] for found in offsets}) > 5  # offsets vary


@pytest.mark.tensorflow_only
def test_tf_augmentation_crops_any_size(rng):
    from tf_selectivity.data.tf_pipeline import training_dataset

    images = rng.integers(1, 256, size=(20, 64, 48, 3), dtype=np.uint8)
    labels = np.arange(20)
    for x, y in training_dataset(images, labels, 10, seed=1, first_epoch=0, epochs=1):
        assert x.shape == (len(y), 64, 48, 3)
        for crop, label in zip(x.numpy().astype(np.uint8), y.numpy()):
            assert _crop_offsets(images[label], crop, 4), "not a pad-4 crop"


def _write_tiny_imagenet_like(root, classes=200, train_per_class=2, size=64):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", train_per_class), ("test", 1)):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            os.makedirs(folder)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def test_image_folder_with_200_classes_of_64x64_images(tmp_path):
    _write_tiny_imagenet_like(tmp_path / "tiny")
    data = load_dataset(f"imagefolder:{tmp_path / 'tiny'}", cache_dir=None)
    assert data.num_classes == 200 and data.image_shape == (64, 64, 3)
    assert len(data.train_labels) + len(data.validation_labels) == 400 and len(data.test_labels) == 200
    assert data.class_names[:2] == ["n00000000", "n00000001"]
    batches = ImageBatches(data.train_images, data.train_labels, 64, shuffle=True, augment=True)
    x, y = batches[0]
    assert x.shape == (64, 64, 64, 3) and x.dtype == np.float32 and y.max() < 200

"""Batches from in-memory arrays: shuffling and augmentation in NumPy.

The same code feeds every backend (`keras.utils.PyDataset`). Shuffling and
augmentation are pure functions of (seed, epoch, batch index), so a run that
resumes at epoch k sees exactly the batches an uninterrupted run sees, and the
order in which worker threads prepare batches does not matter.
"""

from __future__ import annotations

import math

import keras
import numpy as np

__all__ = ["augment_images", "crop_and_flip", "draw_crop_and_flip", "ImageBatches"]


def draw_crop_and_flip(rng: np.random.Generator, batch: int, padding: int = 4):
    """Random parameters of `crop_and_flip` for `batch` images.

    Offsets are uniform over 0 .. 2 * padding (each of the (2p + 1)^2 crops
    of the padded image equally likely), flips have probability 1/2, as
    torchvision's RandomCrop(size, padding) + RandomHorizontalFlip.

    Args:
        rng: NumPy random generator (consumed: offsets_y, offsets_x, flips).
        batch: number of images.
        padding: pixels of zero padding on each side.

    Returns:
        (offsets_y, offsets_x, flips): int64, int64 and bool arrays (batch,).
    """
    offsets_y = rng.integers(0, 2 * padding + 1, size=batch)
    offsets_x = rng.integers(0, 2 * padding + 1, size=batch)
    flips = rng.random(batch) < 0.5
    return offsets_y, offsets_x, flips


def crop_and_flip(images, offsets_y, offsets_x, flips, padding: int = 4) -> np.ndarray:
    """Zero-pads, crops at given offsets and mirrors the flagged images.

    Image b of the result is ``padded[b, oy : oy + H, ox : ox + W]`` of the
    image zero-padded by `padding` on every side, with oy = offsets_y[b] and
    ox = offsets_x[b] (0 .. 2 * padding; `padding` is the unshifted image),
    then mirrored left-right (``[:, ::-1]``) where flips[b]. One gather does
    the crop and the flip for the whole batch.
    `tf_selectivity.data.tf_pipeline.crop_and_flip_tf` is the same map in
    TensorFlow ops (tested pixel for pixel).

    Args:
        images: (B, H, W, C) array.
        offsets_y, offsets_x: integer arrays (B,) in [0, 2 * padding].
        flips: boolean array (B,).
        padding: pixels of zero padding on each side.

    Returns:
        A new (B, H, W, C) array of the dtype of `images`.
    """
    images = np.asarray(images)
    batch, height, width, _ = images.shape
    offsets_y = np.asarray(offsets_y, dtype=np.int64).reshape(-1)
    offsets_x = np.asarray(offsets_x, dtype=np.int64).reshape(-1)
    flips = np.asarray(flips, dtype=bool).reshape(-1)
    if not offsets_y.shape == offsets_x.shape == flips.shape == (batch,):
        raise ValueError(
            f"need one offset pair and one flip per image ({batch}); got "
            f"{offsets_y.shape[0]}, {offsets_x.shape[0]} and {flips.shape[0]}."
        )
    for offsets in (offsets_y, offsets_x):
        if batch and (offsets.min() < 0 or offsets.max() > 2 * padding):
            raise ValueError(f"offsets must be in [0, {2 * padding}]; got [{offsets.min()}, {offsets.max()}].")
    padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    rows = offsets_y[:, None] + np.arange(height)[None, :]  # (B, H)
    cols = offsets_x[:, None] + np.arange(width)[None, :]  # (B, W)
    cols = np.where(flips[:, None], cols[:, ::-1], cols)
    return padded[np.arange(batch)[:, None, None], rows[:, :, None], cols[:, None, :]]


def augment_images(images: np.ndarray, rng: np.random.Generator, padding: int = 4) -> np.ndarray:
    """Standard CIFAR augmentation: zero-pad, random crop, random horizontal flip.

    Each image is padded with `padding` zero pixels on every side, cropped back
    to its size at a random offset, and mirrored with probability 1/2 (as
    torchvision's RandomCrop(32, padding=4) + RandomHorizontalFlip):
    `crop_and_flip` with parameters from `draw_crop_and_flip`.

    Args:
        images: (B, H, W, C) array.
        rng: NumPy random generator.
        padding: pixels of zero padding on each side.

    Returns:
        A new (B, H, W, C) array of the same dtype.
    """
    offsets_y, offsets_x, flips = draw_crop_and_flip(rng, len(images), padding)
    return crop_and_flip(images, offsets_y, offsets_x, flips, padding)


class ImageBatches(keras.utils.PyDataset):
    """(images float32 in [0, 255], labels int32) batches for `fit`/`evaluate`.

    Args:
        images: (N, H, W, C) uint8 array.
        labels: (N,) integer array.
        batch_size: samples per batch; the last batch may be smaller (as in
            PyTorch's DataLoader, the paper's pipeline).
        shuffle: reshuffle every epoch.
        augment: apply `augment_images`.
        seed: seed of the shuffling and augmentation.
        **kwargs: `keras.utils.PyDataset` options (`workers`, `max_queue_size`).
    """

    def __init__(self, images, labels, batch_size, *, shuffle=False, augment=False, seed=0, **kwargs):
        super().__init__(**kwargs)
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels.")
        if len(images) == 0:
            raise ValueError("Cannot batch an empty split.")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int32)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0
        self._order = None
        self._order_epoch = None

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose shuffle and augmentation to produce."""
        self.epoch = int(epoch)

    def _epoch_order(self):
        if not self.shuffle:
            return None
        if self._order_epoch != self.epoch:
            rng = np.random.default_rng([self.seed, self.epoch, 0])
            self._order = rng.permutation(len(self.labels))
            self._order_epoch = self.epoch
        return self._order

    def __len__(self):
        return math.ceil(len(self.labels) / self.batch_size)

    def __getitem__(self, index):
        start = index * self.batch_size
        stop = min(start + self.batch_size, len(self.labels))
        order = self._epoch_order()
        indices = np.arange(start, stop) if order is None else order[start:stop]
        images = self.images[indices]
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, 1, index])
            images = augment_images(images, rng)
        return images.astype(np.float32), self.labels[indices]

"""Training batches cut, shuffled and augmented inside a compiled JAX program.

The device twin of `tf_selectivity.data.pipeline.ImageBatches` for the JAX
backend: the split lives on the accelerator as uint8 images and int32 labels,
and every random choice is a pure function of the run seed, the epoch and
the step, derived with `jax.random.fold_in`::

    run_key       = jax.random.key(seed)
    order(e)      = jax.random.permutation(fold_in(fold_in(run_key, 0), e), N)
    step_key(e, s) = fold_in(fold_in(fold_in(run_key, 1), e), s)
    offsets, flips = draw_augmentation(step_key(e, s), batch size)

Step s of epoch e trains on the samples at positions ``s * B .. s * B + B - 1``
of ``order(e)``. A run resumed at epoch e therefore sees exactly what an
uninterrupted run sees, whatever the number of steps per compiled call, and
replicates packed with `jax.vmap` differ only through their `run_key`.

The numbers differ from the NumPy pipeline's (another generator): both draw
the same distribution (uniformly random order, crop offsets uniform in
0..2p on each axis, flips with probability 1/2), not the same sample.

Only imported on the JAX backend.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "PADDING",
    "EpochPlan",
    "epoch_plan",
    "run_key",
    "epoch_order",
    "step_key",
    "draw_augmentation",
    "crop_and_flip",
    "training_batch",
    "evaluation_batch",
]

# Pixels of zero padding before the random crop (the paper's pad-4 crop).
PADDING = 4

# Streams of the run key: one for the epoch order, one for the augmentation.
_ORDER_STREAM = 0
_AUGMENT_STREAM = 1


class EpochPlan(NamedTuple):
    """What one epoch's steps draw from: the run key, the epoch and its order.

    Attributes:
        key: the run key (`run_key`).
        epoch: int32 scalar.
        order: int32 (N,): the sample trained on at each position.
    """

    key: jax.Array
    epoch: jax.Array
    order: jax.Array


def epoch_plan(key, epoch, count: int) -> EpochPlan:
    """The `EpochPlan` of `epoch` (computes its order)."""
    epoch = jnp.asarray(epoch, jnp.int32)
    return EpochPlan(key, epoch, epoch_order(key, epoch, count))


def run_key(seed):
    """The key every random draw of a run derives from (`seed`: int or int array)."""
    return jax.random.key(seed)


def epoch_order(key, epoch, count: int):
    """The sample order of one epoch: a uniform permutation of range(count).

    Args:
        key: the run key (`run_key`).
        epoch: epoch index (int or int32 scalar, may be traced).
        count: number of training samples (static).

    Returns:
        int32 array (count,).
    """
    order_key = jax.random.fold_in(jax.random.fold_in(key, _ORDER_STREAM), epoch)
    return jax.random.permutation(order_key, count).astype(jnp.int32)


def step_key(key, epoch, step):
    """The augmentation key of one training step (pure in key, epoch, step)."""
    epoch_key = jax.random.fold_in(jax.random.fold_in(key, _AUGMENT_STREAM), epoch)
    return jax.random.fold_in(epoch_key, step)


def draw_augmentation(key, count: int, padding: int = PADDING):
    """Random crop offsets and flips, distributed as `augment_images` draws them.

    Args:
        key: the step's key (`step_key`).
        count: number of images (static).
        padding: pixels of padding on each side.

    Returns:
        offsets: int32 (count, 2), (row, column) of each crop's top-left
            corner in the padded image, each uniform in 0..2 * padding.
        flips: bool (count,), True with probability 1/2: mirror the crop.
    """
    offset_key, flip_key = jax.random.split(key)
    offsets = jax.random.randint(offset_key, (count, 2), 0, 2 * padding + 1, dtype=jnp.int32)
    flips = jax.random.bernoulli(flip_key, 0.5, (count,))
    return offsets, flips


def crop_and_flip(images, offsets, flips, padding: int = PADDING):
    """Zero-pads, crops back to size at `offsets` and mirrors where `flips`.

    Pixel for pixel what `tf_selectivity.data.pipeline.augment_images` does
    with the same offsets and flips. One batched dynamic slice (an XLA
    gather of whole crops) and one select: on a CPU several times faster than
    the element-wise index gather of the NumPy version (benchmarks/RESULTS.md).

    Args:
        images: (B, H, W, C) array of any dtype.
        offsets: int (B, 2) crop corners in the padded image, in 0..2 * padding.
        flips: bool (B,).
        padding: pixels of zero padding on each side.

    Returns:
        (B, H, W, C) array of the input's dtype.
    """
    _, height, width, channels = images.shape
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))

    def crop(image, corner):
        return jax.lax.dynamic_slice(image, (corner[0], corner[1], 0), (height, width, channels))

    crops = jax.vmap(crop)(padded, offsets)
    return jnp.where(flips[:, None, None, None], crops[:, :, ::-1], crops)


def training_batch(images, labels, plan: EpochPlan, step, batch_size: int, stride=None,
                   augment: bool = True):
    """Training batch `step` of an epoch: float32 images in [0, 255], int32 labels.

    Args:
        images: uint8 (N, H, W, C) on the device.
        labels: int32 (N,) on the device.
        plan: the epoch's `EpochPlan`.
        step: step index in the epoch (int32 scalar, may be traced).
        batch_size: samples in this batch (static); the last batch of an
            epoch may be smaller than the others.
        stride: static size of the epoch's full batches: the batch starts at
            position ``step * stride`` of `order`; None means `batch_size`
            (differs only for the smaller last batch).
        augment: pad-crop-flip augmentation.

    Returns:
        (images float32 (batch_size, H, W, C), labels int32 (batch_size,)).
    """
    stride = batch_size if stride is None else stride
    indices = jax.lax.dynamic_slice_in_dim(plan.order, step * stride, batch_size)
    batch = jnp.take(images, indices, axis=0)
    if augment:
        # Drawn here from the step's key rather than read from an array drawn
        # per epoch: XLA:CPU fuses such a read into the crop and repeats it
        # for every pixel, several times slower (benchmarks/RESULTS.md).
        offsets, flips = draw_augmentation(step_key(plan.key, plan.epoch, step), batch_size)
        batch = crop_and_flip(batch, offsets, flips)
    return batch.astype(jnp.float32), jnp.take(labels, indices, axis=0)


def evaluation_batch(images, labels, start, batch_size: int):
    """Fixed-order batch of `batch_size` samples from `start` (float32, int32)."""
    batch = jax.lax.dynamic_slice_in_dim(images, start, batch_size)
    return batch.astype(jnp.float32), jax.lax.dynamic_slice_in_dim(labels, start, batch_size)

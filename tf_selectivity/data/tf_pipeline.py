"""The training input pipeline in `tf.data` ops, for the TensorFlow backend.

Same contract as `tf_selectivity.data.pipeline.ImageBatches` (pad-crop-flip
augmentation; order and augmentation pure functions of (seed, epoch, batch)),
but built from TensorFlow ops so that batches are prepared by tf.data's C++
threads. On a CPU the Python `PyDataset` path (a generator feeding
`tf.data.Dataset.from_generator`) cost TensorFlow a large share of its
training throughput (benchmarks/RESULTS.md); this pipeline runs beside the
train step instead of in front of it. JAX uses the NumPy `ImageBatches` (the JAX machines may have no
TensorFlow). The two draw different random numbers: a run is reproducible
and resumable on one backend, not bit-identical across backends. The
transformation is the same: `crop_and_flip_tf` equals the NumPy
`crop_and_flip` pixel for pixel given the same offsets and flips, and both
draw offsets uniformly over 0 .. 2 * padding and flips with probability 1/2
(`tests/test_tf_pipeline.py`).

Only imported on the TensorFlow backend.
"""

from __future__ import annotations

import math

import tensorflow as tf

__all__ = [
    "augment_images_tf",
    "crop_and_flip_tf",
    "draw_crop_and_flip_tf",
    "training_dataset",
    "evaluation_dataset",
]


def draw_crop_and_flip_tf(seed, batch, padding: int = 4):
    """Random parameters of `crop_and_flip_tf` (stateless, a function of `seed`).

    The distribution of `tf_selectivity.data.pipeline.draw_crop_and_flip`:
    offsets uniform over 0 .. 2 * padding, flips with probability 1/2 (the
    random numbers themselves differ).

    Args:
        seed: int32 tensor of shape (2,), the stateless seed of this batch.
        batch: number of images (int or scalar tensor).
        padding: pixels of zero padding on each side.

    Returns:
        (offsets_y, offsets_x, flips): int32, int32 and bool tensors (batch,).
    """
    offsets = tf.random.stateless_uniform(
        [batch, 2], seed=seed, minval=0, maxval=2 * padding + 1, dtype=tf.int32
    )
    flip_seed = tf.random.experimental.stateless_fold_in(seed, 1)
    flips = tf.random.stateless_uniform([batch], seed=flip_seed) < 0.5
    return offsets[:, 0], offsets[:, 1], flips


def crop_and_flip_tf(images, offsets_y, offsets_x, flips, padding: int = 4):
    """`tf_selectivity.data.pipeline.crop_and_flip` in TensorFlow ops.

    Image b is the crop at (offsets_y[b], offsets_x[b]) of the image
    zero-padded by `padding`, mirrored left-right where flips[b].

    Args:
        images: tensor (B, H, W, C).
        offsets_y, offsets_x: int32 tensors (B,) in [0, 2 * padding].
        flips: bool tensor (B,).
        padding: pixels of zero padding on each side.

    Returns:
        tensor (B, H, W, C) of the dtype of `images`.
    """
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]])
    rows = tf.cast(offsets_y, tf.int32)[:, None] + tf.range(height)[None, :]  # (B, H)
    cols = tf.cast(offsets_x, tf.int32)[:, None] + tf.range(width)[None, :]  # (B, W)
    cols = tf.where(tf.cast(flips, tf.bool)[:, None], tf.reverse(cols, axis=[1]), cols)
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)  # (B, H, W + 2p, C)
    return tf.gather(cropped, cols, axis=2, batch_dims=1)


def augment_images_tf(images, seed, padding: int = 4):
    """Zero-pad, random crop and random horizontal flip (stateless):
    `crop_and_flip_tf` with parameters from `draw_crop_and_flip_tf`.

    Args:
        images: uint8 tensor (B, H, W, C).
        seed: int32 tensor of shape (2,), the stateless seed of this batch.
        padding: pixels of zero padding on each side.

    Returns:
        uint8 tensor (B, H, W, C).
    """
    offsets_y, offsets_x, flips = draw_crop_and_flip_tf(seed, tf.shape(images)[0], padding)
    return crop_and_flip_tf(images, offsets_y, offsets_x, flips, padding)


def training_dataset(images, labels, batch_size, *, seed, first_epoch, epochs, augment=True):
    """Batches of every epoch from `first_epoch` to `epochs` - 1, in order.

    Use with ``fit(..., steps_per_epoch=ceil(N / batch_size))``: Keras then
    keeps one iterator across epochs. The last batch of an epoch may be
    smaller, as in PyTorch's DataLoader.

    Args:
        images: uint8 array (N, H, W, C).
        labels: integer array (N,).
        batch_size: samples per batch.
        seed: run seed.
        first_epoch: epoch to start at (a resumed run's initial epoch).
        epochs: total epochs of the run.
        augment: pad-crop-flip augmentation.

    Returns:
        A `tf.data.Dataset` of (float32 images in [0, 255], int32 labels).
    """
    images = tf.constant(images)
    labels = tf.constant(labels, dtype=tf.int32)
    count = int(labels.shape[0])
    steps = math.ceil(count / batch_size)

    def epoch_batches(epoch):
        epoch_seed = tf.stack([tf.constant(seed, tf.int32), tf.cast(epoch, tf.int32)])
        order = tf.random.experimental.stateless_shuffle(tf.range(count), seed=epoch_seed)

        def make_batch(step):
            step = tf.cast(step, tf.int32)
            start = step * batch_size
            indices = order[start : tf.minimum(start + batch_size, count)]
            batch = tf.gather(images, indices)
            if augment:
                batch_seed = tf.random.experimental.stateless_fold_in(epoch_seed, step)
                batch = augment_images_tf(batch, batch_seed)
            return tf.cast(batch, tf.float32), tf.gather(labels, indices)

        return tf.data.Dataset.range(steps).map(
            make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )

    dataset = tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch_batches)
    return dataset.prefetch(tf.data.AUTOTUNE)


def evaluation_dataset(images, labels, batch_size):
    """Fixed-order batches (float32 images, int32 labels) without augmentation."""
    dataset = tf.data.Dataset.from_tensor_slices((images, labels.astype("int32")))
    return dataset.batch(batch_size).map(
        lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE
    ).prefetch(tf.data.AUTOTUNE)

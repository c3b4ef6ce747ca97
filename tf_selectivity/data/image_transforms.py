"""Per-image transforms of streamed images, in stateless TensorFlow ops.

Two protocols, each a training transform and an evaluation transform:

* ``"random_resized_crop"`` (ImageNet's): training takes a random crop of
  8% to 100% of the image's area and aspect ratio 3/4 to 4/3, resized to
  `size` x `size`, and mirrors it with probability 1/2 (torchvision's
  ``RandomResizedCrop(size) + RandomHorizontalFlip``); evaluation resizes
  the shorter side to ``round(size * 256 / 224)`` and takes the center
  `size` x `size` (``Resize(256) + CenterCrop(224)`` at 224).
* ``"pad_crop_flip"`` (the paper's CIFAR one): the image resized to `size`
  x `size` when it is not already, zero-padded by 4, cropped back at a
  random offset and mirrored with probability 1/2; evaluation is the resize
  alone.

Every random number is drawn with stateless ops from the seed passed in,
so a transformed image is a pure function of (seed, image).
"""

from __future__ import annotations

import math

import tensorflow as tf

from tf_selectivity.data.tf_pipeline import crop_and_flip_tf

__all__ = [
    "AUGMENTATIONS",
    "CROP_ATTEMPTS",
    "draw_crop_uniforms",
    "crop_box_from_uniforms",
    "center_crop_box",
    "resized_shorter_side",
    "train_transform",
    "eval_transform",
]

AUGMENTATIONS = ("pad_crop_flip", "random_resized_crop")
CROP_ATTEMPTS = 10
SCALE = (0.08, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)
# Evaluation resizes the shorter side to 256 for a 224 crop (the crop keeps 87.5% of it).
EVAL_RESIZE_RATIO = 256.0 / 224.0


def draw_crop_uniforms(seed):
    """The random numbers of `crop_box_from_uniforms`: float32 (CROP_ATTEMPTS, 4) in [0, 1).

    Column 0 picks the area, 1 the log aspect ratio, 2 and 3 the top and
    left offsets of each attempt.
    """
    return tf.random.stateless_uniform([CROP_ATTEMPTS, 4], seed=seed, dtype=tf.float32)


def crop_box_from_uniforms(uniforms, height, width, scale=SCALE, ratio=RATIO):
    """The crop box of torchvision's `RandomResizedCrop.get_params`, from given random numbers.

    Attempt k targets ``area * (scale[0] + u[k, 0] * (scale[1] - scale[0]))``
    with aspect ratio ``exp(log(ratio[0]) + u[k, 1] * log(ratio[1] / ratio[0]))``;
    its width and height are ``round(sqrt(area * aspect))`` and
    ``round(sqrt(area / aspect))`` (half to even, as Python's ``round``). The
    first attempt that fits is placed at top ``floor(u[k, 2] * (height - h + 1))``
    and left ``floor(u[k, 3] * (width - w + 1))``. When none of the attempts
    fits, the box is the center crop of the whole image clamped to the ratio
    range (torchvision's fallback).

    Args:
        uniforms: float (attempts, 4) in [0, 1) (`draw_crop_uniforms`).
        height: the image's height (int32 scalar).
        width: the image's width (int32 scalar).
        scale: range of the area fraction.
        ratio: range of the aspect ratio (width / height).

    Returns:
        (top, left, crop_height, crop_width): int32 scalars.
    """
    height = tf.cast(height, tf.int32)
    width = tf.cast(width, tf.int32)
    uniforms = tf.cast(uniforms, tf.float64)
    area = tf.cast(height * width, tf.float64)
    target_area = area * (scale[0] + uniforms[:, 0] * (scale[1] - scale[0]))
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = tf.exp(log_low + uniforms[:, 1] * (log_high - log_low))
    widths = tf.cast(tf.round(tf.sqrt(target_area * aspect)), tf.int32)
    heights = tf.cast(tf.round(tf.sqrt(target_area / aspect)), tf.int32)
    fits = (widths > 0) & (heights > 0) & (widths <= width) & (heights <= height)
    tops = tf.cast(tf.floor(uniforms[:, 2] * tf.cast(height - heights + 1, tf.float64)), tf.int32)
    lefts = tf.cast(tf.floor(uniforms[:, 3] * tf.cast(width - widths + 1, tf.float64)), tf.int32)
    first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)

    in_ratio = tf.cast(width, tf.float64) / tf.cast(height, tf.float64)
    fallback_width = tf.where(
        in_ratio > ratio[1], tf.cast(tf.round(tf.cast(height, tf.float64) * ratio[1]), tf.int32), width
    )
    fallback_height = tf.where(
        in_ratio < ratio[0], tf.cast(tf.round(tf.cast(width, tf.float64) / ratio[0]), tf.int32), height
    )
    found = tf.reduce_any(fits)
    crop_height = tf.where(found, heights[first], fallback_height)
    crop_width = tf.where(found, widths[first], fallback_width)
    top = tf.where(found, tops[first], (height - fallback_height) // 2)
    left = tf.where(found, lefts[first], (width - fallback_width) // 2)
    return top, left, crop_height, crop_width


def resized_shorter_side(height, width, shorter):
    """(new_height, new_width) with the shorter side `shorter` and the longer
    one ``int(shorter * long / short)`` (truncated, as torchvision's `Resize`)."""
    height = tf.cast(height, tf.int64)
    width = tf.cast(width, tf.int64)
    short, long = tf.minimum(height, width), tf.maximum(height, width)
    new_long = (shorter * long) // short
    new_height = tf.where(height <= width, tf.cast(shorter, tf.int64), new_long)
    new_width = tf.where(height <= width, new_long, tf.cast(shorter, tf.int64))
    return tf.cast(new_height, tf.int32), tf.cast(new_width, tf.int32)


def center_crop_box(height, width, size):
    """(top, left) of torchvision's `CenterCrop(size)`: ``int(round((h - size) / 2))``."""
    top = tf.cast(tf.round(tf.cast(height - size, tf.float64) / 2.0), tf.int32)
    left = tf.cast(tf.round(tf.cast(width - size, tf.float64) / 2.0), tf.int32)
    return top, left


def _resize(image, height, width):
    """Bilinear resize with antialiasing (as PIL's and torchvision's), float32."""
    return tf.image.resize(tf.cast(image, tf.float32), tf.stack([height, width]), method="bilinear",
                           antialias=True)


def _to_uint8(image):
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def _flip(image, seed):
    flip = tf.random.stateless_uniform([], seed=seed) < 0.5
    return tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)


def _resized_to(image, size):
    shape = tf.shape(image)
    same = tf.logical_and(tf.equal(shape[0], size), tf.equal(shape[1], size))
    return tf.cond(same, lambda: image, lambda: _to_uint8(_resize(image, size, size)))


def train_transform(image, seed, size: int, augmentation: str):
    """One training image: uint8 (H, W, 3) -> uint8 (size, size, 3).

    Args:
        image: the decoded image, any size.
        seed: int32 (2,), this image's stateless seed.
        size: the output's side.
        augmentation: one of `AUGMENTATIONS`.
    """
    if augmentation == "random_resized_crop":
        shape = tf.shape(image)
        top, left, crop_height, crop_width = crop_box_from_uniforms(draw_crop_uniforms(seed), shape[0], shape[1])
        crop = image[top : top + crop_height, left : left + crop_width]
        resized = _to_uint8(_resize(crop, size, size))
        return _flip(resized, tf.random.experimental.stateless_fold_in(seed, 1))
    if augmentation == "pad_crop_flip":
        resized = _resized_to(image, size)
        offsets = tf.random.stateless_uniform([2], seed=seed, minval=0, maxval=9, dtype=tf.int32)
        flip = tf.random.stateless_uniform([1], seed=tf.random.experimental.stateless_fold_in(seed, 1)) < 0.5
        return crop_and_flip_tf(resized[None], offsets[:1], offsets[1:], flip)[0]
    raise ValueError(f"augmentation must be one of {', '.join(AUGMENTATIONS)}; got {augmentation!r}")


def eval_transform(image, size: int, augmentation: str):
    """One evaluation image: uint8 (H, W, 3) -> uint8 (size, size, 3).

    ``random_resized_crop``: shorter side to ``round(size * 256 / 224)``,
    then the center crop (`center_crop_box`); ``pad_crop_flip``: the image
    resized to `size` x `size` where it is not already.
    """
    if augmentation == "random_resized_crop":
        shape = tf.shape(image)
        shorter = int(round(size * EVAL_RESIZE_RATIO))
        height, width = resized_shorter_side(shape[0], shape[1], shorter)
        resized = _resize(image, height, width)
        top, left = center_crop_box(height, width, size)
        return _to_uint8(resized[top : top + size, left : left + size])
    if augmentation == "pad_crop_flip":
        return _resized_to(image, size)
    raise ValueError(f"augmentation must be one of {', '.join(AUGMENTATIONS)}; got {augmentation!r}")

"""The tf.data training pipeline of the TensorFlow backend against the NumPy one.

The two pipelines draw different random numbers (stateless TF seeds vs NumPy
generators), so "augments like the NumPy one" means: the same transformation
given the same offsets and flips, the same distribution of offsets and flips,
and batches that are a pure function of (seed, epoch, step).
"""

import numpy as np
import pytest

from tf_selectivity.data.pipeline import crop_and_flip, draw_crop_and_flip

pytestmark = pytest.mark.tensorflow_only


def every_crop_and_flip(padding):
    """(offsets_y, offsets_x, flips) listing each of the (2p+1)^2 x 2 choices once."""
    grid = np.array(
        [(dy, dx, flip) for dy in range(2 * padding + 1) for dx in range(2 * padding + 1) for flip in (0, 1)]
    )
    return grid[:, 0], grid[:, 1], grid[:, 2].astype(bool)


def test_tf_crop_and_flip_equals_the_numpy_one_pixel_for_pixel(rng):
    import tensorflow as tf
    from tf_selectivity.data.tf_pipeline import crop_and_flip_tf

    for padding, size in ((4, 8), (2, 5)):
        offsets_y, offsets_x, flips = every_crop_and_flip(padding)
        images = rng.integers(0, 256, size=(len(flips), size, size + 1, 3), dtype=np.uint8)
        expected = crop_and_flip(images, offsets_y, offsets_x, flips, padding)
        got = crop_and_flip_tf(
            tf.constant(images), tf.constant(offsets_y, tf.int32), tf.constant(offsets_x, tf.int32),
            tf.constant(flips), padding,
        ).numpy()
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, expected)
        # ... and both are the written-out definition.
        padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
        for b in (0, 1, len(flips) // 2, len(flips) - 1):
            crop = padded[b, offsets_y[b] : offsets_y[b] + size, offsets_x[b] : offsets_x[b] + size + 1]
            np.testing.assert_array_equal(expected[b], crop[:, ::-1] if flips[b] else crop)


def test_tf_and_numpy_draws_have_the_same_distribution():
    import tensorflow as tf
    from tf_selectivity.data.tf_pipeline import draw_crop_and_flip_tf

    count, padding = 18_000, 4
    tf_draws = [t.numpy() for t in draw_crop_and_flip_tf(tf.constant([7, 3], tf.int32), count, padding)]
    np_draws = draw_crop_and_flip(np.random.default_rng(7), count, padding)
    for offsets_y, offsets_x, flips in (tf_draws, np_draws):
        for offsets in (offsets_y, offsets_x):
            frequencies = np.bincount(offsets, minlength=9) / count
            assert offsets.min() == 0 and offsets.max() == 8
            # Each of 0..8 has probability 1/9: +-0.012 is 5 standard errors.
            np.testing.assert_allclose(frequencies, 1 / 9, atol=0.012)
        assert np.mean(flips) == pytest.approx(0.5, abs=0.02)
        # The three choices are independent of each other.
        assert abs(np.corrcoef(offsets_y, offsets_x)[0, 1]) < 0.04
        assert abs(np.corrcoef(offsets_y, flips)[0, 1]) < 0.04


def test_tf_batches_are_the_drawn_crops_of_the_shuffled_images(rng):
    import tensorflow as tf
    from tf_selectivity.data.tf_pipeline import crop_and_flip_tf, draw_crop_and_flip_tf, training_dataset

    images = rng.integers(0, 256, size=(60, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(60)
    seed, batch_size = 5, 16
    dataset = training_dataset(images, labels, batch_size, seed=seed, first_epoch=0, epochs=2)
    batches = [(x.numpy(), y.numpy()) for x, y in dataset]
    assert [len(y) for _, y in batches] == [16, 16, 16, 12] * 2
    epoch0 = np.concatenate([y for _, y in batches[:4]])
    epoch1 = np.concatenate([y for _, y in batches[4:]])
    assert sorted(epoch0) == sorted(epoch1) == list(range(60)) and not np.array_equal(epoch0, epoch1)
    # Batch `step` of `epoch` is a pure function of (seed, epoch, step): the
    # images of its labels, cropped and flipped by the draws of its seed.
    for index, (x, y) in enumerate(batches):
        epoch, step = divmod(index, 4)
        batch_seed = tf.random.experimental.stateless_fold_in(tf.constant([seed, epoch], tf.int32), step)
        draws = draw_crop_and_flip_tf(batch_seed, len(y))
        expected = crop_and_flip_tf(tf.constant(images[y]), *draws).numpy()
        assert x.dtype == np.float32
        np.testing.assert_array_equal(x, expected.astype(np.float32))
        np.testing.assert_array_equal(
            x, crop_and_flip(images[y], *(d.numpy() for d in draws)).astype(np.float32)
        )
    # Starting at epoch 1 (a resumed run) gives exactly epoch 1's batches.
    resumed = [(x.numpy(), y.numpy()) for x, y in training_dataset(images, labels, 16, seed=seed, first_epoch=1, epochs=2)]
    assert len(resumed) == 4
    for (xa, ya), (xb, yb) in zip(resumed, batches[4:]):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    # Another seed gives other batches.
    other = next(iter(training_dataset(images, labels, 16, seed=6, first_epoch=0, epochs=1)))
    assert not np.array_equal(other[1].numpy(), batches[0][1])

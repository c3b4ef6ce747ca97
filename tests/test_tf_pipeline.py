"""The tf.data training pipeline of the TensorFlow backend."""

import numpy as np
import pytest

pytestmark = pytest.mark.tensorflow_only


def _is_padded_crop(image, crop, padding):
    size = image.shape[0]
    padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
    found = []
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            window = padded[dy : dy + size, dx : dx + size]
            if np.array_equal(window, crop):
                found.append(False)
            if np.array_equal(window[:, ::-1], crop):
                found.append(True)
    return found


def test_tf_pipeline_augments_like_the_numpy_one_and_is_deterministic(rng):
    from tf_selectivity.data.tf_pipeline import training_dataset

    images = rng.integers(1, 256, size=(60, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(60)
    dataset = training_dataset(images, labels, 16, seed=5, first_epoch=0, epochs=2)
    batches = [(x.numpy(), y.numpy()) for x, y in dataset]
    assert [len(y) for _, y in batches] == [16, 16, 16, 12] * 2
    epoch0 = np.concatenate([y for _, y in batches[:4]])
    epoch1 = np.concatenate([y for _, y in batches[4:]])
    assert sorted(epoch0) == sorted(epoch1) == list(range(60)) and not np.array_equal(epoch0, epoch1)
    flips = []
    for x, y in batches[:4]:
        for crop, label in zip(x.astype(np.uint8), y):
            found = _is_padded_crop(images[label], crop, 4)
            assert found, "not a padded crop"
            flips.append(any(found))
    assert 15 < sum(flips) < 45
    # Starting at epoch 1 (a resumed run) gives exactly epoch 1's batches.
    resumed = [(x.numpy(), y.numpy()) for x, y in training_dataset(images, labels, 16, seed=5, first_epoch=1, epochs=2)]
    for (xa, ya), (xb, yb) in zip(resumed, batches[4:]):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)

"""Data: sources, the train/validation split, augmentation and batches."""

import os

import numpy as np
import pytest

from tf_selectivity.data import (
    DatasetUnavailableError,
    ImageBatches,
    augment_images,
    crop_and_flip,
    draw_crop_and_flip,
    load_dataset,
    load_test_split,
    split_train_validation,
)
from tf_selectivity.data import sources


def test_augmentation_is_a_padded_crop_with_optional_flip(rng):
    images = rng.integers(1, 256, size=(64, 8, 8, 3), dtype=np.uint8)  # no zeros
    out = augment_images(images, np.random.default_rng(0), padding=2)
    assert out.shape == images.shape and out.dtype == np.uint8
    flips = 0
    for image, crop in zip(images, out):
        padded = np.pad(image, ((2, 2), (2, 2), (0, 0)))
        candidates = [
            (dy, dx, flip)
            for dy in range(5) for dx in range(5) for flip in (False, True)
            if np.array_equal(padded[dy : dy + 8, dx : dx + 8][:, ::-1] if flip else padded[dy : dy + 8, dx : dx + 8], crop)
        ]
        assert candidates, "output is not a crop of the padded image"
        flips += any(flip for _, _, flip in candidates)
    assert 15 < flips < 50


def test_crop_and_flip_is_the_written_out_definition(rng):
    images = rng.integers(0, 256, size=(50, 6, 7, 2), dtype=np.uint8)
    offsets_y, offsets_x = rng.integers(0, 7, 50), rng.integers(0, 7, 50)
    flips = rng.random(50) < 0.5
    out = crop_and_flip(images, offsets_y, offsets_x, flips, padding=3)
    padded = np.pad(images, ((0, 0), (3, 3), (3, 3), (0, 0)))
    for b in range(50):
        crop = padded[b, offsets_y[b] : offsets_y[b] + 6, offsets_x[b] : offsets_x[b] + 7]
        np.testing.assert_array_equal(out[b], crop[:, ::-1] if flips[b] else crop)
    # augment_images is these two steps, drawing from the generator in this order.
    draws = draw_crop_and_flip(np.random.default_rng(9), 50, padding=3)
    np.testing.assert_array_equal(
        augment_images(images, np.random.default_rng(9), padding=3), crop_and_flip(images, *draws, padding=3)
    )
    with pytest.raises(ValueError, match=r"offsets must be in \[0, 6\]"):
        crop_and_flip(images, np.where(np.arange(50) == 0, 7, offsets_y), offsets_x, flips, padding=3)
    with pytest.raises(ValueError, match="one offset pair and one flip per image"):
        crop_and_flip(images, offsets_y[:3], offsets_x, flips, padding=3)


def test_batches_cover_each_sample_once_per_epoch_and_depend_on_seed_and_epoch(rng):
    images = np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1).repeat(4, axis=1).repeat(4, axis=2)
    labels = np.arange(50)
    batches = ImageBatches(images, labels, 16, shuffle=True, augment=False, seed=3)
    assert len(batches) == 4 and len(batches[3][1]) == 2

    def epoch_labels(epoch):
        batches.set_epoch(epoch)
        return np.concatenate([batches[i][1] for i in range(len(batches))])

    first = epoch_labels(0)
    assert sorted(first) == list(range(50))
    assert not np.array_equal(first, epoch_labels(1))
    np.testing.assert_array_equal(first, epoch_labels(0))
    x, y = batches[0]
    assert x.dtype == np.float32 and y.dtype == np.int32


def test_augmentation_is_deterministic_per_epoch_and_batch(rng):
    images = rng.integers(0, 256, size=(40, 8, 8, 3), dtype=np.uint8)
    a = ImageBatches(images, np.zeros(40), 10, shuffle=True, augment=True, seed=1)
    b = ImageBatches(images, np.zeros(40), 10, shuffle=True, augment=True, seed=1)
    a.set_epoch(5)
    b.set_epoch(5)
    np.testing.assert_array_equal(a[2][0], b[2][0])
    b.set_epoch(6)
    assert not np.array_equal(a[2][0], b[2][0])


def test_split_is_the_papers_45k_5k_and_fixed():
    labels = np.arange(50_000) % 10
    images = np.zeros((50_000, 1, 1, 1), dtype=np.uint8)
    train_x, train_y, val_x, val_y = split_train_validation(images, labels, 0.1, split_seed=0)
    assert len(train_y) == 45_000 and len(val_y) == 5_000
    again = split_train_validation(images, np.arange(50_000), 0.1, split_seed=0)
    other = split_train_validation(images, np.arange(50_000), 0.1, split_seed=1)
    assert not set(again[1]) & set(again[3])
    assert not np.array_equal(again[3], other[3])


def test_bundled_cifar10_sample():
    data = load_dataset("cifar10_sample")
    assert data.class_names[:3] == ["airplane", "automobile", "bird"]
    assert (len(data.train_labels), len(data.validation_labels), len(data.test_labels)) == (3600, 400, 1000)
    assert data.image_shape == (32, 32, 3) and data.train_images.dtype == np.uint8
    assert np.bincount(data.test_labels).tolist() == [100] * 10
    mean, std = data.pixel_statistics()
    assert all(100 < m < 140 for m in mean) and all(50 < s < 80 for s in std)
    assert len(load_dataset("cifar10_sample", max_train_samples=100).train_labels) == 100


def test_synthetic_options_and_errors():
    data = load_dataset("synthetic:train=100,test=30,size=8,classes=3")
    assert data.image_shape == (8, 8, 3) and data.num_classes == 3 and len(data.test_labels) == 30
    with pytest.raises(DatasetUnavailableError, match="bad synthetic dataset options"):
        load_dataset("synthetic:colour=2")
    with pytest.raises(DatasetUnavailableError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")


def _write_folder(root, classes=("cat", "ant"), per_class=3, size=6):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in classes:
            os.makedirs(root / split / name)
            for i in range(per_class * (4 if split == "train" else 1)):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / split / name / f"{i}.png")


def test_image_folder(tmp_path):
    _write_folder(tmp_path / "images")
    cache = tmp_path / "cache"
    data = load_dataset(f"imagefolder:{tmp_path / 'images'}", cache_dir=str(cache))
    assert data.class_names == ["ant", "cat"]  # sorted: label order
    assert len(data.train_labels) + len(data.validation_labels) == 24 and len(data.test_labels) == 6
    assert len(os.listdir(cache)) == 2
    images, labels, names = load_test_split(f"imagefolder:{tmp_path / 'images'}", cache_dir=str(cache))
    np.testing.assert_array_equal(images, data.test_images)
    with pytest.raises(DatasetUnavailableError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'missing'}")
    os.makedirs(tmp_path / "flat" / "train")
    with pytest.raises(DatasetUnavailableError, match="one subfolder per class"):
        load_dataset(f"imagefolder:{tmp_path / 'flat'}")


def test_cifar10_without_network_names_the_alternatives(tmp_path, monkeypatch):
    # CI machines may have a network; the check under test is what happens
    # without one, so the reachability probe is forced to fail here instead
    # of letting tfds download 170 MB.
    monkeypatch.setattr(sources, "_network_reachable", lambda host, port=443, timeout=3.0: False)
    with pytest.raises(DatasetUnavailableError) as error:
        load_dataset("cifar10", data_dir=str(tmp_path))
    message = str(error.value)
    assert "cannot be reached" in message and "cifar10_sample" in message and "imagefolder" in message



def _break(path, how):
    if how == "truncate":
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
    else:
        with open(path, "wb") as f:
            f.write(b"not an image at all")


def test_undecodable_images_are_named_or_skipped_and_listed(tmp_path):
    from PIL import Image

    root = tmp_path / "images"
    _write_folder(root, per_class=5, size=8)
    jpeg = root / "train" / "ant" / "z.jpg"
    Image.fromarray(np.full((8, 8, 3), 200, dtype=np.uint8)).save(jpeg, quality=95)
    _break(jpeg, "truncate")
    _break(root / "test" / "cat" / "2.png", "garbage")
    cache = tmp_path / "cache"
    spec = f"imagefolder:{root}"
    with pytest.raises(DatasetUnavailableError, match=r"cannot decode image .*z\.jpg .* and 1 more; fix or remove"):
        load_dataset(spec, cache_dir=str(cache))
    assert not cache.exists() or not os.listdir(cache)  # no cache entry for a failed load
    data = load_dataset(spec, cache_dir=str(cache), skip_bad_images=True)
    assert data.skipped_images == [str(jpeg), str(root / "test" / "cat" / "2.png")]
    assert len(data.train_labels) + len(data.validation_labels) == 40 and len(data.test_labels) == 9
    assert "2 unreadable image(s) skipped" in data.summary_line()
    # From the cache: the same result, and still an error without skipping.
    again = load_dataset(spec, cache_dir=str(cache), skip_bad_images=True)
    np.testing.assert_array_equal(again.test_images, data.test_images)
    np.testing.assert_array_equal(again.test_labels, data.test_labels)
    assert again.skipped_images == data.skipped_images
    with pytest.raises(DatasetUnavailableError, match="cannot decode image"):
        load_dataset(spec, cache_dir=str(cache))
    images, labels, _ = load_test_split(spec, cache_dir=str(cache), skip_bad_images=True)
    assert len(labels) == 9 and np.bincount(labels).tolist() == [5, 4]


def test_folder_layout_errors_name_the_folder(tmp_path):
    from tf_selectivity.data import check_dataset

    root = tmp_path / "images"
    _write_folder(root, classes=("ant", "bee", "cat"), per_class=1)
    check_dataset(f"imagefolder:{root}")
    for name in os.listdir(root / "train" / "bee"):
        os.remove(root / "train" / "bee" / name)
    with pytest.raises(DatasetUnavailableError, match=r"class folder .*train/bee holds no images"):
        check_dataset(f"imagefolder:{root}")
    with pytest.raises(DatasetUnavailableError, match=r"train/bee holds no images"):
        load_dataset(f"imagefolder:{root}", cache_dir=None)
    os.rmdir(root / "train" / "bee")
    with pytest.raises(DatasetUnavailableError, match=r"class folder\(s\) bee in test/ but not in train/"):
        check_dataset(f"imagefolder:{root}")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetUnavailableError, match="is a file, not a folder"):
        check_dataset(f"imagefolder:{tmp_path / 'file'}")
    with pytest.raises(DatasetUnavailableError, match="unknown option 'colour'"):
        check_dataset("synthetic:colour=2")
    with pytest.raises(DatasetUnavailableError, match="classes must be at least 2"):
        check_dataset("synthetic:classes=1")


def test_images_of_different_sizes_name_two_files(tmp_path):
    from PIL import Image

    root = tmp_path / "images"
    _write_folder(root, per_class=2, size=6)
    Image.fromarray(np.zeros((7, 7, 3), dtype=np.uint8)).save(root / "train" / "cat" / "big.png")
    with pytest.raises(DatasetUnavailableError, match=r"images differ in size: .*0\.png is 6x6, .*big\.png is 7x7"):
        load_dataset(f"imagefolder:{root}", cache_dir=None)

"""Datasets as in-memory uint8 arrays, split into train / validation / test.

CIFAR-10 is 180 MB as uint8, so every source is loaded into NumPy arrays once
and batched from memory; this keeps one input pipeline for every backend
(TensorFlow, JAX with or without TensorFlow installed).

Sources (the ``--dataset`` flag):

* ``cifar10``: CIFAR-10 through tensorflow-datasets (``data_dir`` for a
  prepared tfds directory). Needs a network the first time.
* ``imagefolder:PATH``: any folder laid out as ``PATH/{train,test}/<class>/<image>``
  (class names sorted alphabetically give the label order).
* ``cifar10_sample``: 4,000 training and 1,000 test images of CIFAR-10 (400 and
  100 per class) shipped inside the package: the offline default of the quick
  start.
* ``synthetic[:key=value,...]``: small class-structured images generated from
  a seed (keys: ``train``, ``test``, ``size``, ``classes``, ``seed``), for tests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np

__all__ = [
    "DatasetSplits",
    "DatasetUnavailableError",
    "load_dataset",
    "split_train_validation",
    "make_synthetic",
    "load_test_split",
    "DATASET_HELP",
]

DATASET_HELP = (
    "cifar10 (tensorflow-datasets; downloads once), imagefolder:PATH "
    "(PATH/{train,test}/<class>/<image>), cifar10_sample (bundled, offline), "
    "synthetic[:train=N,test=N,size=S,classes=K,seed=S] (generated)"
)

_SAMPLE_PATH = os.path.join(os.path.dirname(__file__), "cifar10_sample.npz")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


class DatasetUnavailableError(ValueError):
    """The requested dataset cannot be loaded; the message says what to do."""


@dataclasses.dataclass
class DatasetSplits:
    """Images (N, H, W, C) uint8 in [0, 255] and integer labels (N,) per split."""

    name: str
    class_names: list
    train_images: np.ndarray
    train_labels: np.ndarray
    validation_images: np.ndarray
    validation_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple:
        return tuple(self.train_images.shape[1:])

    def pixel_statistics(self):
        """Per-channel mean and standard deviation of the training images.

        Returns:
            (mean, std): two tuples of floats, one value per channel, in the
            [0, 255] pixel scale. Computed in chunks in float64.
        """
        images = self.train_images
        channels = images.shape[-1]
        total = np.zeros(channels)
        total_sq = np.zeros(channels)
        count = 0
        for start in range(0, len(images), 4096):
            chunk = images[start : start + 4096].reshape(-1, channels).astype(np.float64)
            total += chunk.sum(axis=0)
            total_sq += np.square(chunk).sum(axis=0)
            count += chunk.shape[0]
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
        return tuple(float(m) for m in mean), tuple(float(s) for s in std)

    def describe(self) -> dict:
        return {
            "dataset": self.name,
            "num_classes": self.num_classes,
            "image_shape": list(self.image_shape),
            "num_train": int(len(self.train_labels)),
            "num_validation": int(len(self.validation_labels)),
            "num_test": int(len(self.test_labels)),
        }


def split_train_validation(images, labels, validation_fraction=0.1, split_seed=0):
    """Splits the training set into train and validation parts.

    The split depends only on `split_seed` (not on the run's seed), so every run
    of a sweep sees the same validation images. For CIFAR-10's 50,000 training
    images the default gives the paper's 45,000 / 5,000 split. Both parts keep
    the seeded random order, so "the first N training images" (the
    `max_train_samples` option) are a random sample of every class even when
    the source is stored class by class.

    Returns:
        (train_images, train_labels, validation_images, validation_labels).
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1); got {validation_fraction}.")
    num = len(labels)
    num_validation = int(round(num * validation_fraction))
    if num_validation < 1 or num_validation >= num:
        raise ValueError(f"Cannot carve a validation split from {num} training images.")
    order = np.random.default_rng(split_seed).permutation(num)
    validation, train = order[:num_validation], order[num_validation:]
    return images[train], labels[train], images[validation], labels[validation]


def make_synthetic(train=2000, test=500, size=32, classes=10, seed=0, channels=3):
    """Class-structured random images: a smooth template per class plus noise.

    Each class has its own random low-frequency colour pattern; a sample is
    its class template, shifted by up to 2 pixels, with random contrast and
    pixel noise. Small networks learn it in a few epochs, and their units
    become class selective, which is what the tests need.

    Returns:
        (train_images, train_labels, test_images, test_labels, class_names).
    """
    rng = np.random.default_rng(seed)
    coords = np.linspace(0.0, 1.0, size)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    templates = np.zeros((classes, size, size, channels))
    for c in range(classes):
        for _ in range(3):
            fy, fx = rng.uniform(0.5, 3.0, size=2)
            phase = rng.uniform(0, 2 * np.pi, size=channels)
            amplitude = rng.uniform(20, 50, size=channels)
            wave = np.sin(2 * np.pi * (fy * yy + fx * xx)[..., None] + phase)
            templates[c] += amplitude * wave

    def sample(count):
        labels = np.arange(count) % classes
        rng.shuffle(labels)
        shifts = rng.integers(-2, 3, size=(count, 2))
        images = np.empty((count, size, size, channels))
        for i, (label, (dy, dx)) in enumerate(zip(labels, shifts)):
            images[i] = np.roll(templates[label], (dy, dx), axis=(0, 1))
        contrast = rng.uniform(0.6, 1.4, size=(count, 1, 1, 1))
        images = 128.0 + contrast * images + rng.normal(0, 25, size=images.shape)
        return np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.int64)

    train_images, train_labels = sample(train)
    test_images, test_labels = sample(test)
    names = [f"class_{c}" for c in range(classes)]
    return train_images, train_labels, test_images, test_labels, names


def _parse_options(text: str) -> dict:
    options = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"Expected key=value in dataset options; got {item!r}.")
        options[key.strip()] = int(value)
    return options


def _decode_images(paths: Sequence[str]) -> np.ndarray:
    from PIL import Image

    def decode(path):
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        images = list(pool.map(decode, paths))
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise DatasetUnavailableError(
            f"Images have different sizes {sorted(shapes)[:3]}; resize them to one size first."
        )
    return np.stack(images)


def _decode_jpeg_blobs(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    import io

    from PIL import Image

    images = []
    raw = data.tobytes()
    for start, end in zip(offsets[:-1], offsets[1:]):
        with Image.open(io.BytesIO(raw[start:end])) as image:
            images.append(np.asarray(image.convert("RGB")))
    return np.stack(images)


def _list_image_folder(root: str, split: str):
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
        raise DatasetUnavailableError(
            f"Image folder {root!r} has no {split!r} subfolder; expected "
            f"{root}/{{train,test}}/<class>/<image>."
        )
    class_names = sorted(
        d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d))
    )
    if len(class_names) < 2:
        raise DatasetUnavailableError(
            f"{split_dir!r} must hold one subfolder per class (found {len(class_names)})."
        )
    paths, labels = [], []
    for label, name in enumerate(class_names):
        class_dir = os.path.join(split_dir, name)
        for file_name in sorted(os.listdir(class_dir)):
            if file_name.lower().endswith(_IMAGE_SUFFIXES):
                paths.append(os.path.join(class_dir, file_name))
                labels.append(label)
    if not paths:
        raise DatasetUnavailableError(f"No images found under {split_dir!r}.")
    return class_names, paths, np.asarray(labels, dtype=np.int64)


def _folder_cache_key(paths: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _load_image_folder(root: str, cache_dir: str | None, splits=("train", "test")):
    root = os.path.expanduser(root)
    if not os.path.isdir(root):
        raise DatasetUnavailableError(f"Image folder {root!r} does not exist.")
    loaded = {"train": None, "test": None}
    class_names = None
    for split in splits:
        names, paths, labels = _list_image_folder(root, split)
        if class_names is not None and names != class_names:
            raise DatasetUnavailableError(
                f"train and test of {root!r} have different class folders."
            )
        class_names = names
        # Decoding 60k JPEGs takes ~30 s on 2 cores; cache the decoded arrays,
        # keyed by every file's path, size and modification time.
        cache_path = None
        if cache_dir:
            cache_path = os.path.join(cache_dir, f"imagefolder-{split}-{_folder_cache_key(paths)}.npy")
        if cache_path and os.path.exists(cache_path):
            images = np.load(cache_path, mmap_mode=None)
        else:
            images = _decode_images(paths)
            if cache_path:
                os.makedirs(cache_dir, exist_ok=True)
                tmp = f"{cache_path}.{os.getpid()}.tmp.npy"
                np.save(tmp, images)
                os.replace(tmp, cache_path)
        loaded[split] = (images, labels)
    return class_names, loaded["train"], loaded["test"]


def _network_reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _load_tfds_cifar10(data_dir: str | None, splits=("train", "test")):
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise DatasetUnavailableError(
            "--dataset=cifar10 needs tensorflow-datasets (and TensorFlow); "
            "use --dataset=imagefolder:PATH or --dataset=cifar10_sample instead."
        ) from error
    builder = tfds.builder("cifar10", data_dir=data_dir)
    if not builder.is_prepared():
        # tfds retries a failing download for minutes; check the network first.
        if not _network_reachable("www.cs.toronto.edu"):
            raise DatasetUnavailableError(
                "CIFAR-10 is not prepared in "
                f"{data_dir or 'the default tfds directory (~/tensorflow_datasets)'} and its "
                "download host www.cs.toronto.edu cannot be reached (no network?). Use "
                "--data_dir=DIR with a prepared tfds directory, "
                "--dataset=imagefolder:PATH for images on disk, or "
                "--dataset=cifar10_sample for the bundled 5,000-image subset."
            )
        builder.download_and_prepare()
    arrays = {"train": None, "test": None}
    for split in splits:
        images, labels = tfds.as_numpy(
            builder.as_dataset(split=split, batch_size=-1, as_supervised=True)
        )
        arrays[split] = (np.asarray(images, dtype=np.uint8), np.asarray(labels, dtype=np.int64))
    class_names = list(builder.info.features["label"].names)
    return class_names, arrays["train"], arrays["test"]


def _load_cifar10_sample():
    with np.load(_SAMPLE_PATH) as archive:
        arrays = {}
        for split in ("train", "test"):
            images = _decode_jpeg_blobs(archive[f"{split}_jpeg"], archive[f"{split}_offsets"])
            arrays[split] = (images, archive[f"{split}_labels"].astype(np.int64))
        class_names = [str(n) for n in archive["class_names"]]
    return class_names, arrays["train"], arrays["test"]


def _default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
    return os.path.join(base, "tf_selectivity")


def _load_splits(spec: str, data_dir, cache_dir, splits=("train", "test")):
    """(class_names, (train_images, train_labels) or None, (test_images, test_labels) or None)."""
    if cache_dir == "default":
        cache_dir = _default_cache_dir()
    kind, _, argument = spec.partition(":")
    if kind == "cifar10" and not argument:
        return _load_tfds_cifar10(data_dir, splits)
    if kind == "cifar10_sample" and not argument:
        return _load_cifar10_sample()
    if kind == "imagefolder":
        if not argument:
            raise DatasetUnavailableError("--dataset=imagefolder:PATH needs a PATH.")
        return _load_image_folder(argument, cache_dir, splits)
    if kind == "synthetic":
        try:
            options = _parse_options(argument)
            *arrays, class_names = make_synthetic(**options)
        except (TypeError, ValueError) as error:
            raise DatasetUnavailableError(f"Bad synthetic dataset options {argument!r}: {error}") from error
        return class_names, (arrays[0], arrays[1]), (arrays[2], arrays[3])
    raise DatasetUnavailableError(f"Unknown dataset {spec!r}; choose one of: {DATASET_HELP}.")


def load_test_split(spec: str, *, data_dir: str | None = None, cache_dir: str | None = "default"):
    """Only the test split of a dataset (what the analyses use).

    Returns:
        (images uint8 (N, H, W, C), labels int64 (N,), class_names).
    """
    class_names, _, test = _load_splits(spec, data_dir, cache_dir, splits=("test",))
    return test[0], test[1], list(class_names)


def load_dataset(
    spec: str,
    *,
    data_dir: str | None = None,
    validation_fraction: float = 0.1,
    split_seed: int = 0,
    max_train_samples: int | None = None,
    cache_dir: str | None = "default",
) -> DatasetSplits:
    """Loads a dataset and splits its training part into train and validation.

    Args:
        spec: "cifar10", "cifar10_sample", "imagefolder:PATH" or
            "synthetic[:key=value,...]" (see the module docstring).
        data_dir: tensorflow-datasets data directory for "cifar10".
        validation_fraction: share of the training images held out for
            validation (0.1: CIFAR-10's 45k/5k split).
        split_seed: seed of the train/validation split.
        max_train_samples: keep only the first N training images (after the
            split), for quick runs.
        cache_dir: where decoded image folders are cached; "default" is
            ~/.cache/tf_selectivity, None disables the cache.

    Returns:
        A `DatasetSplits`.

    Raises:
        DatasetUnavailableError: unknown spec, missing folder, no network.
    """
    class_names, train, test = _load_splits(spec, data_dir, cache_dir)
    train_images, train_labels, val_images, val_labels = split_train_validation(
        train[0], train[1], validation_fraction, split_seed
    )
    if max_train_samples is not None:
        if max_train_samples < 1:
            raise ValueError(f"max_train_samples must be positive; got {max_train_samples}.")
        train_images = train_images[:max_train_samples]
        train_labels = train_labels[:max_train_samples]
    return DatasetSplits(
        name=spec,
        class_names=list(class_names),
        train_images=train_images,
        train_labels=train_labels,
        validation_images=val_images,
        validation_labels=val_labels,
        test_images=test[0],
        test_labels=test[1],
    )

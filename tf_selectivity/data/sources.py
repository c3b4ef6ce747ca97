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
* ``stream:...``: data read from disk while training, for datasets that do not
  fit in memory (`tf_selectivity.data.streams`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np

from tf_selectivity.core.files import read_json, replacing, write_json_atomic
from tf_selectivity.data.streams import STREAM_HELP, check_stream, is_stream

__all__ = [
    "DatasetSplits",
    "DatasetUnavailableError",
    "load_dataset",
    "load_config_dataset",
    "split_train_validation",
    "make_synthetic",
    "load_test_split",
    "check_dataset",
    "describe_classes",
    "DATASET_HELP",
]

DATASET_HELP = (
    "cifar10 (tensorflow-datasets; downloads once), imagefolder:PATH "
    "(PATH/{train,test}/<class>/<image>), cifar10_sample (bundled, offline), "
    "synthetic[:train=N,test=N,size=S,classes=K,seed=S] (generated); for data larger than memory "
    "(read while training): " + STREAM_HELP
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
    # Files of an image folder left out because they could not be decoded
    # (``skip_bad_images``); recorded in the run's config.json.
    skipped_images: list = dataclasses.field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple:
        return tuple(self.train_images.shape[1:])

    @property
    def num_train(self) -> int:
        return len(self.train_labels)

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

    def summary_line(self) -> str:
        """One line for the console: classes, their names and split sizes."""
        line = (
            f"Data {self.name}: {describe_classes(self.class_names)}; {len(self.train_labels):,} train, "
            f"{len(self.validation_labels):,} validation, {len(self.test_labels):,} test images"
        )
        if self.skipped_images:
            line += f"; {len(self.skipped_images)} unreadable image(s) skipped (listed in config.json)"
        return line


def describe_classes(class_names, shown: int = 12) -> str:
    """"10 classes (airplane, automobile, ...)": the count and the first names."""
    names = [str(n) for n in class_names]
    listed = ", ".join(names[:shown])
    if len(names) > shown:
        listed += f", ... (+{len(names) - shown} more)"
    return f"{len(names)} classes ({listed})"


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
        raise ValueError(f"validation_fraction must be in (0, 1); got {validation_fraction}")
    num = len(labels)
    num_validation = int(round(num * validation_fraction))
    if num_validation < 1 or num_validation >= num:
        raise ValueError(
            f"a validation fraction of {validation_fraction:g} of {num} training images leaves "
            f"{num_validation} for validation and {num - num_validation} for training; both need at least one"
        )
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


_SYNTHETIC_MINIMUM = {"train": 2, "test": 1, "size": 4, "classes": 2, "seed": 0}


def _parse_options(text: str) -> dict:
    """"train=100,size=8" -> {"train": 100, "size": 8}; checks names and ranges."""
    options = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise ValueError(f"expected key=value, got {item!r}")
        if key not in _SYNTHETIC_MINIMUM:
            raise ValueError(f"unknown option {key!r}; the options are {', '.join(_SYNTHETIC_MINIMUM)}")
        try:
            options[key] = int(value)
        except ValueError:
            raise ValueError(f"{key}={value.strip()!r} is not an integer") from None
        if options[key] < _SYNTHETIC_MINIMUM[key]:
            raise ValueError(f"{key} must be at least {_SYNTHETIC_MINIMUM[key]}; got {options[key]}")
    return options


class _BadImages(Exception):
    """Image files that cannot be decoded: [(path, reason)]."""

    def __init__(self, bad):
        super().__init__(bad)
        self.bad = bad


def _bad_images_error(bad) -> DatasetUnavailableError:
    path, reason = bad[0]
    more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
    return DatasetUnavailableError(
        f"cannot decode image {path} ({reason}){more}; fix or remove the file(s), or pass "
        "`skip_bad_images=True` to train without them (they are listed in the run's config.json)"
    )


def _decode_images(paths: Sequence[str], skip_bad: bool = False, description: str | None = None):
    """Decodes image files to one uint8 array (N, H, W, 3).

    `description`: show the decoding's progress under this name (None: quiet).

    Returns:
        (images, bad): the decoded images of the good files, in order, and
        the indices (into `paths`) of files that could not be decoded (only
        with `skip_bad`; otherwise they raise).

    Raises:
        _BadImages: some files cannot be decoded and `skip_bad` is False.
        DatasetUnavailableError: the images differ in size.
    """
    from PIL import Image

    def decode(path):
        problem = _unreadable_file(path)
        if problem:
            return problem
        try:
            with Image.open(path) as image:
                return np.asarray(image.convert("RGB"))
        except Exception as error:  # PIL raises OSError, ValueError, SyntaxError... per format
            return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__

    from tf_selectivity.core.progress import progress

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        decoded = list(progress(pool.map(decode, paths), description or "", total=len(paths), unit="image",
                                enabled=description is not None))
    bad = [i for i, image in enumerate(decoded) if isinstance(image, str)]
    if bad and not skip_bad:
        raise _BadImages([(paths[i], decoded[i]) for i in bad])
    images = [(i, image) for i, image in enumerate(decoded) if not isinstance(image, str)]
    if not images:
        raise DatasetUnavailableError(f"none of the {len(paths)} images could be decoded (first: {paths[0]})")
    first_index, first = images[0]
    for index, image in images:
        if image.shape != first.shape:
            raise DatasetUnavailableError(
                f"images differ in size: {paths[first_index]} is {first.shape[1]}x{first.shape[0]}, "
                f"{paths[index]} is {image.shape[1]}x{image.shape[0]}; resize them to one size first"
            )
    return np.stack([image for _, image in images]), bad


def _decode_jpeg_blobs(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    import io

    from PIL import Image

    images = []
    raw = data.tobytes()
    for start, end in zip(offsets[:-1], offsets[1:]):
        with Image.open(io.BytesIO(raw[start:end])) as image:
            images.append(np.asarray(image.convert("RGB")))
    return np.stack(images)


def _class_folders(root: str, split: str) -> list:
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
        what = "is a file, not a folder" if os.path.exists(split_dir) else "does not exist"
        raise DatasetUnavailableError(
            f"image folder {root}: {split_dir} {what}; expected {root}/{{train,test}}/<class>/<image>"
        )
    try:
        names = sorted(d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d)))
    except OSError as error:
        raise DatasetUnavailableError(f"cannot list {split_dir}: {error.strerror or error}") from None
    if len(names) < 2:
        raise DatasetUnavailableError(
            f"{split_dir} must hold one subfolder per class, at least two (found {len(names)}); "
            f"expected {root}/{{train,test}}/<class>/<image>"
        )
    return names


def _list_image_folder(root: str, split: str, class_names=None):
    """(class names, image paths, labels) of one split; checks the layout."""
    split_dir = os.path.join(root, split)
    names = class_names if class_names is not None else _class_folders(root, split)
    paths, labels = [], []
    for label, name in enumerate(names):
        class_dir = os.path.join(split_dir, name)
        try:
            files = sorted(os.listdir(class_dir))
        except OSError as error:
            raise DatasetUnavailableError(f"cannot list {class_dir}: {error.strerror or error}") from None
        images = [f for f in files if f.lower().endswith(_IMAGE_SUFFIXES)]
        if not images:
            raise DatasetUnavailableError(
                f"class folder {class_dir} holds no images ({', '.join(_IMAGE_SUFFIXES)}); add images or "
                "remove the folder (every class folder is a class)"
            )
        paths.extend(os.path.join(class_dir, f) for f in images)
        labels.extend([label] * len(images))
    return list(names), paths, np.asarray(labels, dtype=np.int64)


def _image_folder_layout(root: str, splits=("train", "test")) -> list:
    """Checks ``root/{splits}/<class>/<image>`` without decoding; returns the class names.

    Raises:
        DatasetUnavailableError: naming the missing folder, the file in the
            way, the class missing from a split or the empty class folder.
    """
    if not root:
        raise DatasetUnavailableError("`dataset='imagefolder:PATH'` needs a PATH")
    if not os.path.exists(root):
        raise DatasetUnavailableError(f"image folder {root} does not exist")
    if not os.path.isdir(root):
        raise DatasetUnavailableError(
            f"image folder {root} is a file, not a folder; expected {root}/{{train,test}}/<class>/<image>"
        )
    per_split = {split: _class_folders(root, split) for split in splits}
    if len(splits) == 2:
        train, test = (set(per_split[s]) for s in splits)
        for a, b in ((splits[0], splits[1]), (splits[1], splits[0])):
            missing = sorted(set(per_split[a]) - set(per_split[b]))
            if missing:
                listed = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
                raise DatasetUnavailableError(
                    f"image folder {root}: class folder(s) {listed} in {a}/ but not in {b}/; "
                    "both splits need the same classes"
                )
    names = per_split[splits[0]]
    for split in splits:
        _list_image_folder(root, split, names)  # raises on an empty class folder
    return names


def _unreadable_file(path: str):
    """Why `path` cannot be opened as a file (a dangling symbolic link, a
    loop of them, no permission...), in words; None when it can be."""
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "a loop of symbolic links"
        if isinstance(error, FileNotFoundError) and os.path.islink(path):
            try:
                target = os.readlink(path)
            except OSError:
                target = "?"
            return f"a symbolic link to {target}, which does not exist"
        return error.strerror or str(error)
    return None


def _folder_cache_key(paths: Sequence[str]) -> str:
    """A key of the files at `paths`: each one's path, size and modification
    time (a file that cannot be stat'ed, such as a dangling symbolic link,
    by its path and the error)."""
    digest = hashlib.sha256()
    for path in paths:
        try:
            stat = os.stat(path)
            identity = f"{stat.st_size}|{stat.st_mtime_ns}"
        except OSError as error:
            identity = f"unreadable|{error.errno}"
        digest.update(f"{os.path.abspath(path)}|{identity}\n".encode())
    return digest.hexdigest()[:24]


def _load_image_folder(root: str, cache_dir: str | None, splits=("train", "test"), skip_bad: bool = False,
                       verbose: int = 0):
    """(class names, {split: (images, labels)}, skipped paths) of an image folder.

    `verbose` > 0 shows the progress of decoding (not of a cached split).
    """
    root = os.path.expanduser(root)
    class_names = _image_folder_layout(root, splits)
    loaded = {"train": None, "test": None}
    bad_found, skipped = [], []
    # Decoding 60k JPEGs takes tens of seconds; the decoded arrays are
    # cached, keyed by every file's path, size and modification time. Cache
    # entries are written only once every split decoded (or its unreadable
    # files were skipped on request: they are listed beside the entry) and
    # the folder was found usable: a command refused for one split's
    # images writes no other split's entry either.
    to_cache = []
    for split in splits:
        _, paths, labels = _list_image_folder(root, split, class_names)
        cache_path = None
        if cache_dir:
            cache_path = os.path.join(cache_dir, f"imagefolder-{split}-{_folder_cache_key(paths)}.npy")
        skipped_path = f"{cache_path}.skipped.json" if cache_path else None
        if cache_path and os.path.exists(cache_path):
            images = np.load(cache_path)
            bad = []
            if os.path.exists(skipped_path):
                bad = [int(i) for i in read_json(skipped_path)["indices"]]
        else:
            try:
                description = f"Decoding {root} {split}/" if verbose else None
                images, bad = _decode_images(paths, skip_bad, description)
            except _BadImages as error:
                bad_found.extend(error.bad)
                continue
            if cache_path:
                to_cache.append((cache_path, images, {"indices": bad, "paths": [paths[i] for i in bad]} if bad else None))
        if bad and not skip_bad:
            bad_found.extend((paths[i], "could not be decoded earlier") for i in bad)
            continue
        keep = np.ones(len(paths), dtype=bool)
        keep[bad] = False
        skipped.extend(paths[i] for i in bad)
        loaded[split] = (images, labels[keep])
    if bad_found:
        raise _bad_images_error(bad_found)
    for split in splits:
        images, labels = loaded[split]
        missing = sorted(set(range(len(class_names))) - set(labels.tolist()))
        if missing:
            raise DatasetUnavailableError(
                f"image folder {root}: every image of class {class_names[missing[0]]} in {split}/ was "
                "skipped as unreadable; fix the files"
            )
    for cache_path, images, skipped_record in to_cache:
        os.makedirs(cache_dir, exist_ok=True)
        if skipped_record:
            write_json_atomic(f"{cache_path}.skipped.json", skipped_record)
        with replacing(cache_path, suffix=".npy") as tmp:
            np.save(tmp, images)
    return class_names, loaded, skipped


def _network_reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


class _MissingDatasetInfo:
    """Drops tensorflow-datasets' "Variant folder ... has no
    dataset_info.json" warning: it says that CIFAR-10 is not prepared, which
    `_load_tfds_cifar10` says itself (prepares it, or names the ways on)."""

    def filter(self, record) -> bool:
        return "has no dataset_info.json" not in record.getMessage()


@contextlib.contextmanager
def _without_missing_dataset_info_warnings():
    import logging

    logger = logging.getLogger("absl")  # absl.logging's Python logger, which tfds writes to
    dropped = _MissingDatasetInfo()
    logger.addFilter(dropped)
    try:
        yield
    finally:
        logger.removeFilter(dropped)


def _load_tfds_cifar10(data_dir: str | None, splits=("train", "test")):
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise DatasetUnavailableError(
            "`dataset='cifar10'` needs tensorflow-datasets (and TensorFlow); "
            "use `dataset='imagefolder:PATH'` or `dataset='cifar10_sample'` instead."
        ) from error
    with _without_missing_dataset_info_warnings():
        builder = tfds.builder("cifar10", data_dir=data_dir)
        prepared = builder.is_prepared()
    if not prepared:
        # tfds retries a failing download for minutes; check the network first.
        if not _network_reachable("www.cs.toronto.edu"):
            raise DatasetUnavailableError(
                "CIFAR-10 is not prepared in "
                f"{data_dir or 'the default tfds directory (~/tensorflow_datasets)'} and its "
                "download host www.cs.toronto.edu cannot be reached (no network?). Use "
                "`data_dir='DIR'` with a prepared tfds directory, "
                "`dataset='imagefolder:PATH'` for images on disk, or "
                "`dataset='cifar10_sample'` for the bundled 5,000-image subset."
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


def _split_spec(spec: str):
    kind, _, argument = (spec or "").strip().partition(":")
    return kind.strip(), argument


def check_dataset(spec: str, data_dir: str | None = None) -> None:
    """Cheap checks of a dataset spec before anything is loaded or written.

    Parses the spec, checks an image folder's layout (both splits, the same
    class folders, none empty) without decoding an image, and that a given
    tfds `data_dir` is a directory. Unreadable image files are found when
    the folder is loaded (`load_dataset`).

    Raises:
        DatasetUnavailableError: naming what is wrong.
    """
    if is_stream(spec):
        check_stream(spec, data_dir)
        return
    kind, argument = _split_spec(spec)
    if kind == "cifar10" and not argument:
        if data_dir is not None:
            data_dir = os.path.expanduser(data_dir)
            if not os.path.exists(data_dir):
                raise DatasetUnavailableError(f"`data_dir` {data_dir} does not exist")
            if not os.path.isdir(data_dir):
                raise DatasetUnavailableError(f"`data_dir` {data_dir} is a file, not a tensorflow-datasets directory")
        return
    if kind == "cifar10_sample" and not argument:
        return
    if kind == "imagefolder":
        _image_folder_layout(os.path.expanduser(argument))
        from tf_selectivity.data.streams import memory_rule

        too_large = memory_rule(spec)
        if too_large:
            raise DatasetUnavailableError(f"image folder {argument} is too large to decode into memory: {too_large}")
        return
    if kind == "synthetic":
        try:
            _parse_options(argument)
        except ValueError as error:
            raise DatasetUnavailableError(f"bad synthetic dataset options {argument!r}: {error}") from None
        return
    raise DatasetUnavailableError(f"unknown dataset {spec!r}; choose one of: {DATASET_HELP}")


def _load_splits(spec: str, data_dir, cache_dir, splits=("train", "test"), skip_bad: bool = False, verbose: int = 0):
    """(class_names, {split: (images, labels)}, skipped image paths)."""
    if cache_dir == "default":
        cache_dir = _default_cache_dir()
    kind, argument = _split_spec(spec)
    if kind == "cifar10" and not argument:
        class_names, train, test = _load_tfds_cifar10(data_dir, splits)
        return class_names, {"train": train, "test": test}, []
    if kind == "cifar10_sample" and not argument:
        class_names, train, test = _load_cifar10_sample()
        return class_names, {"train": train, "test": test}, []
    if kind == "imagefolder":
        return _load_image_folder(argument, cache_dir, splits, skip_bad, verbose)
    if kind == "synthetic":
        try:
            options = _parse_options(argument)
            *arrays, class_names = make_synthetic(**options)
        except (TypeError, ValueError) as error:
            raise DatasetUnavailableError(f"bad synthetic dataset options {argument!r}: {error}") from error
        return class_names, {"train": (arrays[0], arrays[1]), "test": (arrays[2], arrays[3])}, []
    raise DatasetUnavailableError(f"unknown dataset {spec!r}; choose one of: {DATASET_HELP}")


def needs_tensorflow(spec: str) -> bool:
    """Whether loading `spec` imports TensorFlow (tensorflow-datasets, a stream)."""
    kind, argument = _split_spec(spec)
    return (kind == "cifar10" and not argument) or is_stream(spec)


def load_test_split(
    spec: str,
    *,
    data_dir: str | None = None,
    cache_dir: str | None = "default",
    skip_bad_images: bool = False,
    verbose: int = 0,
    image_size: int | None = None,
    augmentation: str = "random_resized_crop",
):
    """Only the test split of a dataset (what the analyses use).

    Arguments as for `load_dataset`; a streamed dataset's test split is
    read through its evaluation transform (`augmentation`) at
    `image_size` (`streams.load_stream`).

    Returns:
        (images uint8 (N, H, W, C), labels int64 (N,), class_names).
    """
    if is_stream(spec):
        from tf_selectivity.data.stream_pipeline import test_arrays
        from tf_selectivity.data.streams import load_stream

        stream = load_stream(spec, data_dir=data_dir, image_size=image_size, augmentation=augmentation,
                             cache_dir=cache_dir)
        images, labels = test_arrays(stream)
        return images, labels, list(stream.class_names)
    class_names, loaded, _ = _load_splits(spec, data_dir, cache_dir, ("test",), skip_bad_images, verbose)
    images, labels = loaded["test"]
    return images, labels, list(class_names)


def load_dataset(
    spec: str,
    *,
    data_dir: str | None = None,
    validation_fraction: float = 0.1,
    split_seed: int = 0,
    max_train_samples: int | None = None,
    cache_dir: str | None = "default",
    skip_bad_images: bool = False,
    verbose: int = 0,
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
        skip_bad_images: leave out image-folder files that cannot be decoded
            (listed in the result's `skipped_images`) instead of raising.
        verbose: 1 shows the progress of decoding an image folder (a bar on
            a terminal, one line otherwise); 0 is quiet.

    Returns:
        A `DatasetSplits`.

    Raises:
        DatasetUnavailableError: unknown spec, missing folder or class, an
            empty class folder, an image that cannot be decoded (naming it),
            no network, too few images for a validation split.
    """
    class_names, loaded, skipped = _load_splits(spec, data_dir, cache_dir, ("train", "test"), skip_bad_images,
                                                verbose)
    train, test = loaded["train"], loaded["test"]
    try:
        train_images, train_labels, val_images, val_labels = split_train_validation(
            train[0], train[1], validation_fraction, split_seed
        )
    except ValueError as error:
        raise DatasetUnavailableError(f"{spec}: {error}") from None
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
        skipped_images=list(skipped),
    )


def load_config_dataset(config, verbose: int = 0) -> DatasetSplits:
    """The `DatasetSplits` of a run: `load_dataset` with `config`'s data settings.

    Args:
        config: a `TrainConfig` (its dataset, data_dir, validation_fraction,
            split_seed, max_train_samples and skip_bad_images are read; for
            a stream, image_size and augmentation).
        verbose: as for `load_dataset`.

    Returns:
        A `DatasetSplits`, or a `streams.StreamSplits` for ``stream:`` data.
    """
    if is_stream(config.dataset):
        from tf_selectivity.data.streams import load_stream

        return load_stream(
            config.dataset, data_dir=config.data_dir, validation_fraction=config.validation_fraction,
            split_seed=config.split_seed, max_train_samples=config.max_train_samples,
            image_size=config.image_size, augmentation=config.augmentation,
        )
    return load_dataset(
        config.dataset,
        data_dir=config.data_dir,
        validation_fraction=config.validation_fraction,
        split_seed=config.split_seed,
        max_train_samples=config.max_train_samples,
        skip_bad_images=config.skip_bad_images,
        verbose=verbose,
    )

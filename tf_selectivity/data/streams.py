"""Datasets read from disk while training: ``--dataset=stream:KIND:WHERE``.

A dataset too large for memory (ImageNet: 1.28 M images, about 150 GB as
JPEG, of many sizes) is not decoded into arrays; its encoded images are
read, decoded and transformed by `tf.data` in parallel, batch by batch
(`data/stream_pipeline.py`). Three kinds:

* ``stream:imagefolder:PATH``: ``PATH/train/<class>/<image>`` and
  ``PATH/val/<class>/<image>`` (ImageNet's layout; ``PATH/test/`` also
  serves as the test split). Class names sorted give the labels.
* ``stream:tfrecord:PATTERN``: TFRecord shards of `tf.train.Example`s with
  ``image/encoded`` (the JPEG/PNG bytes) and ``image/class/label`` (int64,
  0-based); ``{split}`` in the glob `PATTERN` stands for ``train`` and for
  ``validation`` (or ``test``), e.g. ``/data/imagenet/{split}-*-of-*``.
* ``stream:tfds:NAME``: a prepared tensorflow-datasets builder with
  supervised keys (image, label) in ``--data_dir``, e.g. ``imagenet2012``
  (tfds prepares it from the archives in ``DATA_DIR/downloads/manual``).

The streamed splits match the in-memory ones: the test split is the
folder's ``val``/``test`` (tfds: ``validation``, else ``test``), and the
validation split is the seeded `validation_fraction` of the training
split (`sources.split_train_validation`'s order, so ``max_train_samples``
keeps its meaning). The data are named explicitly rather than picked by
size: a streamed run draws other random numbers than an in-memory one of
the same images, so the choice is part of the run's identity.

Only the listing and the checks live here (NumPy, no TensorFlow); the
TFRecord count pass and tfds import TensorFlow when a stream is loaded.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import typing

import numpy as np

from tf_selectivity.core.files import read_json, write_json_atomic

__all__ = [
    "STREAM_HELP",
    "DEFAULT_IMAGE_SIZE",
    "StreamSplits",
    "FolderElements",
    "RecordElements",
    "is_stream",
    "check_stream",
    "load_stream",
    "memory_rule",
]

STREAM_HELP = (
    "stream:imagefolder:PATH (PATH/{train,val}/<class>/<image>, read while training), "
    "stream:tfrecord:PATTERN ({split} in the glob: train, validation), stream:tfds:NAME (with --data_dir)"
)
STREAM_KINDS = ("imagefolder", "tfrecord", "tfds")
DEFAULT_IMAGE_SIZE = 224
# The TFRecord feature spec of `stream:tfrecord:` (that of TensorFlow's
# ImageNet conversion scripts, with 0-based labels).
IMAGE_FEATURE = "image/encoded"
LABEL_FEATURE = "image/class/label"
# Share of the machine's memory that decoded in-memory images may take
# before `memory_rule` advises streaming.
MEMORY_FRACTION = 0.5


def is_stream(spec: str) -> bool:
    """Whether `spec` names a streamed dataset (``stream:...``)."""
    return (spec or "").strip().startswith("stream:")


def _parts(spec: str):
    from tf_selectivity.data.sources import DatasetUnavailableError

    _, _, rest = spec.strip().partition(":")
    kind, _, where = rest.partition(":")
    if kind not in STREAM_KINDS or not where.strip():
        raise DatasetUnavailableError(f"bad streamed dataset {spec!r}; choose one of: {STREAM_HELP}")
    return kind, os.path.expanduser(where.strip())


@dataclasses.dataclass(frozen=True)
class FolderElements:
    """Images as files: ``paths[i]`` has label ``labels[i]``."""

    paths: np.ndarray
    labels: np.ndarray

    @property
    def count(self) -> int:
        return len(self.labels)


@dataclasses.dataclass(frozen=True)
class RecordElements:
    """Images inside record files: ``files[f]`` holds ``counts[f]`` records,
    element ids numbered file by file (file f's first is ``sum(counts[:f])``).

    ``parse``: "tfrecord" (`IMAGE_FEATURE`, `LABEL_FEATURE`) or "tfds:NAME"
    (the builder's features; its ``data_dir`` in ``data_dir``).
    """

    files: tuple
    counts: tuple
    parse: str
    data_dir: typing.Optional[str] = None

    @property
    def count(self) -> int:
        return int(sum(self.counts))


@dataclasses.dataclass
class StreamSplits:
    """A streamed dataset: what `DatasetSplits` says of its data, without the images.

    Attributes:
        name: the spec.
        class_names: in label order.
        train_elements: the training split's elements (train and validation
            members are ids into it).
        test_elements: the test split's elements (all of them are members).
        train_members, validation_members: int64 ids, in the split's order.
        image_size: side of the square images the network sees.
        augmentation: the transforms (`image_transforms.AUGMENTATIONS`).
    """

    name: str
    class_names: list
    train_elements: object
    test_elements: object
    train_members: np.ndarray
    validation_members: np.ndarray
    image_size: int
    augmentation: str
    skipped_images: list = dataclasses.field(default_factory=list)
    _pixel_statistics: typing.Optional[tuple] = None

    streamed: typing.ClassVar[bool] = True

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple:
        return (self.image_size, self.image_size, 3)

    @property
    def num_train(self) -> int:
        return len(self.train_members)

    @property
    def num_validation(self) -> int:
        return len(self.validation_members)

    @property
    def num_test(self) -> int:
        return self.test_elements.count

    def pixel_statistics(self, sample: int = 256):
        """Per-channel mean and standard deviation (0-255 scale) of the first
        `sample` training images after the evaluation transform (computed
        once; a sample, where in-memory data use every training image)."""
        if self._pixel_statistics is None:
            from tf_selectivity.data.stream_pipeline import sample_statistics

            self._pixel_statistics = sample_statistics(self, sample)
        return self._pixel_statistics

    def describe(self) -> dict:
        return {
            "dataset": self.name,
            "num_classes": self.num_classes,
            "image_shape": list(self.image_shape),
            "num_train": self.num_train,
            "num_validation": self.num_validation,
            "num_test": self.num_test,
        }

    def summary_line(self) -> str:
        from tf_selectivity.data.sources import describe_classes

        return (
            f"Data {self.name} (streamed, {self.augmentation} at {self.image_size}x{self.image_size}): "
            f"{describe_classes(self.class_names)}; {self.num_train:,} train, {self.num_validation:,} validation, "
            f"{self.num_test:,} test images"
        )


def _folder_test_split(root: str) -> str:
    for split in ("val", "test"):
        if os.path.isdir(os.path.join(root, split)):
            return split
    return "val"


def _check_folder(root: str):
    from tf_selectivity.data.sources import DatasetUnavailableError, _image_folder_layout

    if not os.path.isdir(root):
        what = "is a file, not a folder" if os.path.exists(root) else "does not exist"
        raise DatasetUnavailableError(f"image folder {root} {what}; expected {root}/{{train,val}}/<class>/<image>")
    return _image_folder_layout(root, ("train", _folder_test_split(root)))


def _split_files(pattern: str, split: str) -> list:
    return sorted(glob.glob(pattern.replace("{split}", split)))


def _record_files(pattern: str):
    """(train files, test files) of a TFRecord pattern; raises naming the glob that matches nothing."""
    from tf_selectivity.data.sources import DatasetUnavailableError

    if "{split}" not in pattern:
        raise DatasetUnavailableError(
            f"stream:tfrecord:{pattern}: the glob needs {{split}} where the split's name stands "
            "(train, validation or test), e.g. /data/imagenet/{split}-*"
        )
    train = _split_files(pattern, "train")
    test = _split_files(pattern, "validation") or _split_files(pattern, "test")
    for files, split in ((train, "train"), (test, "validation")):
        if not files:
            raise DatasetUnavailableError(
                f"stream:tfrecord: no TFRecord file matches {pattern.replace('{split}', split)}"
                + (" (nor with test)" if split == "validation" else "")
            )
    for path in train + test:
        problem = _not_tfrecord(path)
        if problem:
            raise DatasetUnavailableError(f"stream:tfrecord: cannot read the records of {path} ({problem})")
    return train, test


def _not_tfrecord(path: str):
    """Why `path` is not a TFRecord file, from its first record's framing (a
    little-endian uint64 length, CRCs, the data); None when it may be one."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as file:
            header = file.read(8)
    except OSError as error:
        return error.strerror or str(error)
    if size == 0:
        return None  # a shard without records
    if len(header) < 8 or int.from_bytes(header, "little") + 16 > size:
        return "not a TFRecord file: its first record's length does not fit"
    return None


def check_stream(spec: str, data_dir=None) -> None:
    """Cheap checks of a streamed dataset before anything is loaded or written.

    An image folder's layout (both splits, the same class folders, none
    empty), a TFRecord glob's files, a tfds ``data_dir``. Nothing is decoded.

    Raises:
        DatasetUnavailableError: naming what is wrong.
    """
    kind, where = _parts(spec)
    if kind == "imagefolder":
        _check_folder(where)
    elif kind == "tfrecord":
        _record_files(where)
    else:
        _check_tfds_prepared(where, data_dir)


def _check_tfds_prepared(name: str, data_dir) -> None:
    """A tfds builder is prepared in `data_dir` when it holds its
    ``NAME[/CONFIG]/VERSION/dataset_info.json``; this never prepares one
    (ImageNet's preparation takes hours, from archives tfds cannot download)."""
    from tf_selectivity.data.sources import DatasetUnavailableError

    where = os.path.expanduser(data_dir or os.path.join("~", "tensorflow_datasets"))
    if data_dir is not None and not os.path.isdir(where):
        raise DatasetUnavailableError(f"`data_dir` {data_dir} is not a folder (a tensorflow-datasets directory)")
    folder = os.path.join(where, name.replace(":", os.sep))
    if not glob.glob(os.path.join(folder, "**", "dataset_info.json"), recursive=True):
        manual = os.path.join(where, "downloads", "manual")
        raise DatasetUnavailableError(
            f"stream:tfds:{name} is not prepared in {where}: prepare it once with `tfds build {name} "
            f"--data_dir={where}` (a builder with manual downloads, such as imagenet2012, reads its archives "
            f"from {manual}, where its manual files are not)"
            if not (os.path.isdir(manual) and os.listdir(manual)) else
            f"stream:tfds:{name} is not prepared in {where}: prepare it once with `tfds build {name} "
            f"--data_dir={where}` (it reads the archives in {manual})"
        )


def memory_rule(spec: str, memory_bytes=None):
    """Why an in-memory image folder should be streamed, or None when it fits.

    The decoded size is estimated from the number of files and the size of
    the first training image (its header only); beyond `MEMORY_FRACTION` of
    the machine's memory the answer names ``stream:imagefolder:PATH``.
    """
    from tf_selectivity.data.sources import _list_image_folder, _split_spec

    kind, root = _split_spec(spec)
    if kind != "imagefolder":
        return None
    root = os.path.expanduser(root)
    if memory_bytes is None:
        try:
            memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return None
    count, first = 0, None
    for split in ("train", "test"):
        _, paths, _ = _list_image_folder(root, split)
        count += len(paths)
        first = first or (paths[0] if paths else None)
    try:
        from PIL import Image

        with Image.open(first) as image:
            width, height = image.size
    except Exception:  # an unreadable first image is reported when the folder is decoded
        return None
    needed = count * width * height * 3
    if needed <= MEMORY_FRACTION * memory_bytes:
        return None
    return (
        f"{count:,} images of {width}x{height} need about {needed / 1e9:,.1f} GB decoded, more than "
        f"{MEMORY_FRACTION:.0%} of this machine's {memory_bytes / 1e9:,.1f} GB: use --dataset=stream:imagefolder:{root}"
    )


def _listing_key(root: str, split: str, class_names) -> str:
    import hashlib

    digest = hashlib.sha256(os.path.abspath(root).encode())
    for name in class_names:
        folder = os.path.join(root, split, name)
        digest.update(f"{name}|{os.stat(folder).st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _folder_elements(root: str, split: str, class_names, cache_dir) -> FolderElements:
    """A split's files and labels, listed once and cached (keyed by every
    class folder's modification time, which adding or removing a file changes)."""
    from tf_selectivity.data.sources import _list_image_folder

    cache_path = None
    if cache_dir:
        cache_path = os.path.join(cache_dir, f"stream-listing-{split}-{_listing_key(root, split, class_names)}.json")
        if os.path.exists(cache_path):
            try:
                listing = read_json(cache_path)
                return FolderElements(np.asarray([os.path.join(root, p) for p in listing["paths"]]),
                                      np.asarray(listing["labels"], dtype=np.int64))
            except (OSError, ValueError, KeyError):
                pass  # listed again below
    _, paths, labels = _list_image_folder(root, split, class_names)
    if cache_path:
        os.makedirs(cache_dir, exist_ok=True)
        write_json_atomic(cache_path, {"paths": [os.path.relpath(p, root) for p in paths],
                                       "labels": [int(label) for label in labels]})
    return FolderElements(np.asarray(paths), np.asarray(labels, dtype=np.int64))


def _split_members(elements, validation_fraction: float, split_seed: int, max_train_samples, spec: str):
    """(train ids, validation ids) of the training split's elements.

    Image files: `sources.split_train_validation`'s split of the ids, as
    for in-memory data. Record shards, which are read whole: the ids in an
    order of shards permuted by `split_seed`, the first ones validation,
    so that a validation pass reads a `validation_fraction` of the shards,
    not all of them (shards are written shuffled: ImageNet's, tfds').
    """
    from tf_selectivity.data.sources import DatasetUnavailableError, split_train_validation

    ids = np.arange(elements.count, dtype=np.int64)
    try:
        train, _, validation, _ = split_train_validation(ids, ids, validation_fraction, split_seed)
    except ValueError as error:
        raise DatasetUnavailableError(f"{spec}: {error}") from None
    if isinstance(elements, RecordElements):
        offsets = np.concatenate([[0], np.cumsum(elements.counts)]).astype(np.int64)
        shards = np.random.default_rng(split_seed).permutation(len(elements.counts))
        in_shard_order = np.concatenate([ids[offsets[f] : offsets[f + 1]] for f in shards])
        validation, train = in_shard_order[: len(validation)], in_shard_order[len(validation) :]
    if max_train_samples is not None:
        train = train[:max_train_samples]
    return train, validation


def load_stream(spec: str, *, data_dir=None, validation_fraction=0.1, split_seed=0, max_train_samples=None,
                image_size=None, augmentation="random_resized_crop", cache_dir="default") -> StreamSplits:
    """A streamed dataset's `StreamSplits`: its files listed (or records counted), no image decoded.

    Args:
        spec: ``stream:imagefolder:PATH``, ``stream:tfrecord:PATTERN`` or
            ``stream:tfds:NAME``.
        data_dir: the tensorflow-datasets directory of ``stream:tfds:``.
        validation_fraction: as for `sources.load_dataset`.
        split_seed: as for `sources.load_dataset`.
        max_train_samples: as for `sources.load_dataset`.
        image_size: side of the images the network sees (None:
            `DEFAULT_IMAGE_SIZE`).
        augmentation: the transforms (`image_transforms.AUGMENTATIONS`).
        cache_dir: where listings and record counts are cached ("default":
            ~/.cache/tf_selectivity; None: not cached).

    Raises:
        DatasetUnavailableError: a missing folder or class, an empty class
            folder, a glob without files, unreadable records, a tfds builder
            that is not prepared (naming its manual download directory).
    """
    from tf_selectivity.data.sources import _default_cache_dir

    if cache_dir == "default":
        cache_dir = _default_cache_dir()
    kind, where = _parts(spec)
    if kind == "imagefolder":
        class_names = _check_folder(where)
        train = _folder_elements(where, "train", class_names, cache_dir)
        test = _folder_elements(where, _folder_test_split(where), class_names, cache_dir)
    elif kind == "tfrecord":
        from tf_selectivity.data.stream_pipeline import count_records

        train_files, test_files = _record_files(where)
        train_counts, train_classes = count_records(train_files, cache_dir)
        test_counts, test_classes = count_records(test_files, cache_dir)
        class_names = [f"class_{c}" for c in range(max(train_classes, test_classes))]
        train = RecordElements(tuple(train_files), tuple(train_counts), "tfrecord")
        test = RecordElements(tuple(test_files), tuple(test_counts), "tfrecord")
    else:
        from tf_selectivity.data.stream_pipeline import tfds_elements

        class_names, train, test = tfds_elements(where, data_dir)
    train_members, validation_members = _split_members(
        train, validation_fraction, split_seed, max_train_samples, spec
    )
    return StreamSplits(
        name=spec, class_names=list(class_names), train_elements=train, test_elements=test,
        train_members=train_members, validation_members=validation_members,
        image_size=int(image_size or DEFAULT_IMAGE_SIZE), augmentation=augmentation,
    )

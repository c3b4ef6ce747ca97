"""Batches of a streamed dataset (`data/streams.py`) through `tf.data`.

Files are read and decoded, and images transformed, by tf.data's parallel
map (``AUTOTUNE``), record shards interleaved, and batches prefetched, so
the input runs beside the train step. TensorFlow trains from the
`tf.data.Dataset` itself; JAX from its NumPy batches (`numpy_batches`).

Order and augmentation are pure functions of (seed, epoch, position): an
image folder's epoch e is its training members permuted by the stateless
seed (seed, e); record shards, which cannot be read in any order, are
read in an order of shards permuted by (seed, e), interleaved, then mixed
in a buffer seeded by (seed, e). The image at position p of epoch e is
transformed with the stateless seed ``fold_in((seed, e), p)``. A resumed
run therefore sees the batches of an uninterrupted one.

Sharding: a pipeline given ``shard=(index, count)`` keeps the positions p
with ``p % count == index`` and batches ``batch_size // count`` of them,
so that the `count` pipelines' batch s together are the global batch s
of one pipeline (`host_shard` for JAX processes, `distributed_dataset_fn`
for `tf.distribute`'s input contexts).

Only imported where TensorFlow is installed.
"""

from __future__ import annotations

import math
import os

import numpy as np
import tensorflow as tf

from tf_selectivity.data.image_transforms import eval_transform, train_transform
from tf_selectivity.data.streams import IMAGE_FEATURE, LABEL_FEATURE, FolderElements, RecordElements

__all__ = [
    "training_stream",
    "evaluation_stream",
    "numpy_batches",
    "steps_per_epoch",
    "host_shard",
    "distributed_dataset_fn",
    "count_records",
    "tfds_elements",
    "sample_statistics",
    "test_arrays",
]

# Record shards read at once, and the buffer that mixes their records.
INTERLEAVE_SHARDS = 16
SHUFFLE_BUFFER = 10_000


def _unavailable(message):
    from tf_selectivity.data.sources import DatasetUnavailableError

    return DatasetUnavailableError(message)


def _parse_tfrecord(serialized):
    features = tf.io.parse_single_example(serialized, {
        IMAGE_FEATURE: tf.io.FixedLenFeature([], tf.string),
        LABEL_FEATURE: tf.io.FixedLenFeature([], tf.int64),
    })
    return features[IMAGE_FEATURE], tf.cast(features[LABEL_FEATURE], tf.int32)


def _tfds_builder(name, data_dir):
    import tensorflow_datasets as tfds

    return tfds.builder(name, data_dir=data_dir)


def _parser(elements: RecordElements):
    """serialized record -> (encoded image, int32 label)."""
    if elements.parse == "tfrecord":
        return _parse_tfrecord
    import tensorflow_datasets as tfds

    builder = _tfds_builder(elements.parse.partition(":")[2], elements.data_dir)
    image_key, label_key = builder.info.supervised_keys
    features = builder.info.features

    def parse(serialized):
        example = features.deserialize_example(serialized, decoders={image_key: tfds.decode.SkipDecoding()})
        return example[image_key], tf.cast(example[label_key], tf.int32)

    return parse


def _epoch_seed(seed, epoch):
    return tf.constant([int(seed) % 2**31, int(epoch) % 2**31], dtype=tf.int32)


def _record_dataset(elements: RecordElements, members, order_seed):
    """(encoded, label) of the records whose id is in `members`: shards in
    order, or (with `order_seed`, an int32 (2,)) shuffled as described above."""
    member = np.zeros(elements.count, dtype=bool)
    member[np.asarray(members, dtype=np.int64)] = True
    bounds = np.concatenate([[0], np.cumsum(elements.counts)]).astype(np.int64)
    # Only the shards that hold members are read (a validation pass: a few).
    used = [f for f in range(len(elements.files)) if member[bounds[f] : bounds[f + 1]].any()]
    files = tf.constant([elements.files[f] for f in used])
    offsets = tf.constant(bounds[used])
    member = tf.constant(member)
    parse = _parser(elements)
    shards = tf.data.Dataset.from_tensor_slices((files, offsets))
    if order_seed is not None:
        order = tf.random.experimental.stateless_shuffle(tf.range(len(used)), seed=order_seed)
        shards = tf.data.Dataset.from_tensor_slices((tf.gather(files, order), tf.gather(offsets, order)))

    def records(path, offset):
        return tf.data.TFRecordDataset(path).enumerate(offset)

    cycle = INTERLEAVE_SHARDS if order_seed is not None else 1
    dataset = shards.interleave(records, cycle_length=cycle, block_length=1,
                                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.filter(lambda index, _: tf.gather(member, index)).map(
        lambda _, record: parse(record), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    if order_seed is not None:
        shuffle_seed = int(tf.random.stateless_uniform([], seed=order_seed, maxval=2**31 - 1, dtype=tf.int32))
        dataset = dataset.shuffle(min(SHUFFLE_BUFFER, len(members)), seed=shuffle_seed)
    return dataset


def _element_dataset(elements, members, order_seed=None):
    """(encoded image bytes, int32 label) of `members`, in order or shuffled by `order_seed`."""
    if isinstance(elements, FolderElements):
        ids = tf.constant(np.asarray(members, dtype=np.int64))
        if order_seed is not None:
            ids = tf.random.experimental.stateless_shuffle(ids, seed=order_seed)
        paths = tf.constant(elements.paths)
        labels = tf.constant(elements.labels.astype(np.int32))
        return tf.data.Dataset.from_tensor_slices(ids).map(
            lambda i: (tf.io.read_file(tf.gather(paths, i)), tf.gather(labels, i)),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
        )
    return _record_dataset(elements, members, order_seed)


def _decode(encoded):
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def _sharded(dataset, shard):
    index, count = shard
    if count == 1:
        return dataset.enumerate()
    return dataset.enumerate().filter(lambda position, _: position % count == index)


def _local_batch(batch_size, shard):
    if batch_size % shard[1]:
        raise ValueError(f"the batch of {batch_size} does not split over {shard[1]} input pipelines")
    return batch_size // shard[1]


def steps_per_epoch(data, batch_size: int) -> int:
    """Training steps of one epoch: ``ceil(num_train / batch_size)`` (the last batch smaller)."""
    return math.ceil(data.num_train / batch_size)


def training_stream(data, batch_size: int, *, seed: int, epoch: int, augment: bool = True, shard=(0, 1)):
    """Epoch `epoch`'s training batches: (float32 (B, S, S, 3) in [0, 255], int32 (B,)).

    Args:
        data: a `StreamSplits`.
        batch_size: the global batch.
        seed: the run's seed.
        epoch: the epoch (its order and augmentation).
        augment: the training transform (else the evaluation one).
        shard: (index, count): this pipeline's share (see the module docstring).
    """
    epoch_seed = _epoch_seed(seed, epoch)
    size, augmentation = data.image_size, data.augmentation
    order_seed = tf.random.experimental.stateless_fold_in(epoch_seed, 0)
    transform_seed = tf.random.experimental.stateless_fold_in(epoch_seed, 1)
    dataset = _sharded(_element_dataset(data.train_elements, data.train_members, order_seed), shard)

    def prepare(position, element):
        encoded, label = element
        image = _decode(encoded)
        if augment:
            image = train_transform(image, tf.random.experimental.stateless_fold_in(transform_seed, position),
                                    size, augmentation)
        else:
            image = eval_transform(image, size, augmentation)
        return image, label

    return _batched(dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True),
                    _local_batch(batch_size, shard))


def _batched(dataset, batch_size):
    return dataset.batch(batch_size).map(
        lambda images, labels: (tf.cast(images, tf.float32), labels), num_parallel_calls=tf.data.AUTOTUNE
    ).prefetch(tf.data.AUTOTUNE)


def evaluation_stream(data, split: str, batch_size: int, shard=(0, 1)):
    """Fixed-order batches of "validation" or "test" after the evaluation transform
    (float32 (B, S, S, 3) in [0, 255], int32 (B,))."""
    if split == "validation":
        elements, members = data.train_elements, data.validation_members
    elif split == "test":
        elements, members = data.test_elements, np.arange(data.test_elements.count)
    else:
        raise ValueError(f"split must be 'validation' or 'test'; got {split!r}")
    size, augmentation = data.image_size, data.augmentation
    dataset = _sharded(_element_dataset(elements, members), shard).map(
        lambda _, element: (eval_transform(_decode(element[0]), size, augmentation), element[1]),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
    )
    return _batched(dataset, _local_batch(batch_size, shard))


def numpy_batches(dataset):
    """The dataset's batches as NumPy arrays (for JAX)."""
    return dataset.as_numpy_iterator()


def host_shard():
    """(index, count) of this process among the hosts of a multi-host JAX run; (0, 1) otherwise."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return jax.process_index(), jax.process_count()
    return 0, 1


def distributed_dataset_fn(data, global_batch: int, *, seed: int, epoch: int, augment: bool = True):
    """The ``dataset_fn`` of ``strategy.distribute_datasets_from_function`` for epoch `epoch`.

    Each input pipeline keeps its shard (``input_pipeline_id`` of
    ``num_input_pipelines``) and batches per replica
    (``get_per_replica_batch_size``), so the replicas' batches together
    are the global batch of one pipeline.
    """

    def dataset_fn(input_context):
        pipelines = input_context.num_input_pipelines
        per_replica = input_context.get_per_replica_batch_size(global_batch)
        # Batches of `per_replica` from this pipeline's shard: consecutive
        # ones go to its replicas, so one step's batches are the global batch.
        return training_stream(data, per_replica * pipelines, seed=seed, epoch=epoch, augment=augment,
                               shard=(input_context.input_pipeline_id, pipelines))

    return dataset_fn


def count_records(files, cache_dir=None):
    """(records per file, number of classes) of TFRecord shards, counted once and cached.

    The cache is keyed by every file's path, size and modification time.

    Raises:
        DatasetUnavailableError: a file that is not TFRecord, or whose
            examples lack the feature spec (`streams.IMAGE_FEATURE`,
            `streams.LABEL_FEATURE`).
    """
    from tf_selectivity.core.files import read_json, write_json_atomic
    from tf_selectivity.data.sources import _folder_cache_key

    cache_path = os.path.join(cache_dir, f"tfrecord-counts-{_folder_cache_key(files)}.json") if cache_dir else None
    if cache_path and os.path.exists(cache_path):
        try:
            cached = read_json(cache_path)
            return [int(c) for c in cached["counts"]], int(cached["classes"])
        except (OSError, ValueError, KeyError):
            pass
    counts, classes = [], 0
    label_spec = {LABEL_FEATURE: tf.io.FixedLenFeature([], tf.int64)}
    for path in files:
        count, top = 0, -1
        try:
            batches = tf.data.TFRecordDataset(path).batch(4096).map(
                lambda records: tf.io.parse_example(records, label_spec)[LABEL_FEATURE]
            )
            for labels in batches.as_numpy_iterator():
                count += len(labels)
                top = max(top, int(labels.max()))
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
            reason = error.message.splitlines()[0] if error.message else type(error).__name__
            raise _unavailable(
                f"stream:tfrecord: cannot read the records of {path} ({reason}); expected tf.train.Examples "
                f"with {IMAGE_FEATURE} (bytes) and {LABEL_FEATURE} (int64)"
            ) from None
        counts.append(count)
        classes = max(classes, top + 1)
    if cache_path:
        os.makedirs(cache_dir, exist_ok=True)
        write_json_atomic(cache_path, {"counts": counts, "classes": classes})
    return counts, classes


def tfds_elements(name: str, data_dir=None):
    """(class names, train `RecordElements`, test `RecordElements`) of a prepared tfds builder.

    The test split is ``validation`` where the builder has one (ImageNet),
    else ``test``.

    Raises:
        DatasetUnavailableError: tensorflow-datasets missing, an unknown
            builder, one not prepared in `data_dir` (for a builder with
            manual downloads such as ``imagenet2012``: naming the folder
            its archives go to), no supervised (image, label) keys.
    """
    import importlib.util

    if importlib.util.find_spec("tensorflow_datasets") is None:
        raise _unavailable("stream:tfds: needs tensorflow-datasets (pip install tensorflow-datasets)")
    from tf_selectivity.data.sources import _without_missing_dataset_info_warnings

    where = data_dir or "~/tensorflow_datasets"
    try:
        with _without_missing_dataset_info_warnings():
            builder = _tfds_builder(name, data_dir)
            prepared = builder.is_prepared()
    except Exception as error:  # tfds raises DatasetNotFoundError and others by builder
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise _unavailable(f"stream:tfds:{name}: no such prepared tensorflow-datasets builder in {where} ({reason})") from None
    if not prepared:
        manual = os.path.join(os.path.expanduser(where), "downloads", "manual")
        if getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None):
            present = os.path.isdir(manual) and os.listdir(manual)
            if not present:
                raise _unavailable(
                    f"stream:tfds:{name} is not prepared in {where} and its manual files are not in {manual}: "
                    f"put them there (see tfds' {name} instructions) and run `tfds build {name} "
                    f"--data_dir={where}` once"
                )
        raise _unavailable(
            f"stream:tfds:{name} is not prepared in {where}: run `tfds build {name} --data_dir={where}` once "
            "(it reads its downloads or manual files), then train"
        )
    keys = builder.info.supervised_keys
    if not keys or len(keys) != 2:
        raise _unavailable(f"stream:tfds:{name} has no supervised (image, label) keys")
    splits = builder.info.splits
    test_split = "validation" if "validation" in splits else "test"
    if "train" not in splits or test_split not in splits:
        raise _unavailable(f"stream:tfds:{name} needs a train split and a validation or test split; "
                           f"it has {', '.join(splits)}")
    elements = []
    for split in ("train", test_split):
        instructions = splits[split].file_instructions
        elements.append(RecordElements(
            tuple(str(i.filename) for i in instructions), tuple(int(i.take if i.take >= 0 else i.examples_in_shard) for i in instructions),
            f"tfds:{name}", data_dir,
        ))
    class_names = list(builder.info.features[keys[1]].names)
    return class_names, elements[0], elements[1]


def sample_statistics(data, sample: int = 256):
    """Per-channel (mean, std) in [0, 255] of the first `sample` training
    members (of record shards: those of the first shards in the split's
    order) after the evaluation transform (float64 sums)."""
    members = data.train_members[:sample]
    size, augmentation = data.image_size, data.augmentation
    dataset = _element_dataset(data.train_elements, members).take(len(members)).map(
        lambda encoded, _: eval_transform(_decode(encoded), size, augmentation),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
    ).batch(64)
    total, total_sq, count = np.zeros(3), np.zeros(3), 0
    for images in dataset.as_numpy_iterator():
        pixels = images.reshape(-1, 3).astype(np.float64)
        total += pixels.sum(axis=0)
        total_sq += np.square(pixels).sum(axis=0)
        count += len(pixels)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def test_arrays(data, batch_size: int = 256):
    """The test split after the evaluation transform, as uint8 (N, S, S, 3) and int64 (N,) arrays."""
    images, labels = [], []
    for batch_images, batch_labels in evaluation_stream(data, "test", batch_size).as_numpy_iterator():
        images.append(batch_images.astype(np.uint8))
        labels.append(batch_labels.astype(np.int64))
    return np.concatenate(images), np.concatenate(labels)

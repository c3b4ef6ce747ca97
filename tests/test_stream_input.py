"""Streamed datasets (`data/streams.py`, `data/stream_pipeline.py`, `data/image_transforms.py`).

The transforms are compared with NumPy/PIL references of torchvision's
`RandomResizedCrop`, `Resize` + `CenterCrop` and the paper's pad-crop-flip;
the pipeline's order and augmentation are checked to be functions of
(seed, epoch, position), its shards to make up the global batch, and
a tiny ImageNet-layout folder (4 classes, JPEGs of two sizes) to train,
evaluate and analyse.
"""

import glob
import json
import math
import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tf_selectivity.data import image_transforms as transforms  # noqa: E402
from tf_selectivity.data import stream_pipeline  # noqa: E402
from tf_selectivity.data.sources import DatasetUnavailableError, check_dataset  # noqa: E402
from tf_selectivity.data.streams import load_stream  # noqa: E402


def make_imagenet_folder(root, classes=4, train=6, val=2, seed=0):
    """ImageNet's layout: root/{train,val}/<class>/<image>.JPEG, images 40x64 and 64x48."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val)):
        for c in range(classes):
            folder = os.path.join(root, split, f"n{c:08d}")
            os.makedirs(folder)
            for i in range(count):
                shape = (64, 48, 3) if i % 2 else (40, 64, 3)
                image = np.clip(40 * c + rng.integers(0, 80, shape), 0, 255).astype(np.uint8)
                Image.fromarray(image).save(os.path.join(folder, f"{split}_{c}_{i}.JPEG"), quality=95)
    return str(root)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_imagenet_folder(tmp_path_factory.mktemp("imagenet"))


# ---------------------------------------------------------------- references


def reference_crop_box(uniforms, height, width, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """torchvision's RandomResizedCrop.get_params with its random draws given:
    10 attempts (area, log-ratio, top, left), then the clamped center crop."""
    area = height * width
    for u_area, u_ratio, u_top, u_left in uniforms:
        target_area = area * (scale[0] + u_area * (scale[1] - scale[0]))
        log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
        aspect = math.exp(log_low + u_ratio * (log_high - log_low))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(u_top * (height - h + 1)), int(u_left * (width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def pil_resize(image, height, width):
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR), dtype=np.float64)


def test_crop_box_is_torchvisions_including_the_fallback():
    rng = np.random.default_rng(0)
    # Random sizes, then shapes so thin that every attempt fails (the fallback), both ways.
    sizes = [tuple(rng.integers(8, 300, 2)) for _ in range(60)] + [(10, 200), (300, 12), (9, 9)]
    for height, width in sizes:
        uniforms = rng.random((transforms.CROP_ATTEMPTS, 4)).astype(np.float32)
        got = [int(v) for v in transforms.crop_box_from_uniforms(tf.constant(uniforms), height, width)]
        assert tuple(got) == reference_crop_box(uniforms.astype(np.float64), height, width), (height, width)
    # A 10x200 image never fits a crop of ratio <= 4/3 and area >= 8%: the center crop of 10 x 13.
    assert reference_crop_box(rng.random((10, 4)), 10, 200) == (0, 93, 10, 13)


def test_eval_transform_is_resize_256_center_crop_224_scaled():
    rng = np.random.default_rng(1)
    size = 16  # shorter side resized to round(16 * 256 / 224) = 18
    for height, width in ((40, 64), (64, 48), (18, 18)):
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        got = transforms.eval_transform(tf.constant(image), size, "random_resized_crop").numpy()
        assert got.shape == (size, size, 3) and got.dtype == np.uint8
        short = min(height, width)
        new_h, new_w = (18, 18 * width // height) if height <= width else (18 * height // width, 18)
        top, left = int(round((new_h - size) / 2)), int(round((new_w - size) / 2))
        expected = pil_resize(image, new_h, new_w)[top : top + size, left : left + size]
        assert short and np.abs(got - expected).mean() < 1.5, (height, width)


def test_random_resized_crop_matches_pil_on_its_box_and_flips():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (40, 64, 3), dtype=np.uint8)
    flips = []
    for index in range(12):
        seed = tf.constant([3, index], tf.int32)
        got = transforms.train_transform(tf.constant(image), seed, 16, "random_resized_crop").numpy()
        assert got.shape == (16, 16, 3) and got.dtype == np.uint8
        uniforms = transforms.draw_crop_uniforms(seed).numpy().astype(np.float64)
        top, left, h, w = reference_crop_box(uniforms, 40, 64)
        expected = pil_resize(np.ascontiguousarray(image[top : top + h, left : left + w]), 16, 16)
        flipped = np.abs(got - expected[:, ::-1]).mean() < np.abs(got - expected).mean()
        flips.append(flipped)
        assert np.abs(got - (expected[:, ::-1] if flipped else expected)).mean() < 3.0
    assert 0 < sum(flips) < len(flips)  # both ways occur
    again = transforms.train_transform(tf.constant(image), tf.constant([3, 0], tf.int32), 16, "random_resized_crop")
    first = transforms.train_transform(tf.constant(image), tf.constant([3, 0], tf.int32), 16, "random_resized_crop")
    np.testing.assert_array_equal(again.numpy(), first.numpy())  # stateless: a function of the seed


def test_pad_crop_flip_stream_transform_is_the_papers():
    from tf_selectivity.data.pipeline import crop_and_flip

    image = np.random.default_rng(3).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    seed = tf.constant([5, 7], tf.int32)
    got = transforms.train_transform(tf.constant(image), seed, 8, "pad_crop_flip").numpy()
    offsets = tf.random.stateless_uniform([2], seed=seed, minval=0, maxval=9, dtype=tf.int32).numpy()
    flip = tf.random.stateless_uniform([1], seed=tf.random.experimental.stateless_fold_in(seed, 1)).numpy() < 0.5
    np.testing.assert_array_equal(got, crop_and_flip(image[None], offsets[:1], offsets[1:], flip)[0])
    np.testing.assert_array_equal(transforms.eval_transform(tf.constant(image), 8, "pad_crop_flip").numpy(), image)


# ---------------------------------------------------------------- pipeline


def _epoch(stream, batch, seed, epoch, shard=(0, 1)):
    return [(x, y) for x, y in stream_pipeline.training_stream(
        stream, batch, seed=seed, epoch=epoch, shard=shard).as_numpy_iterator()]


def test_image_folder_stream_splits_order_and_shards(folder, tmp_path):
    stream = load_stream(f"stream:imagefolder:{folder}", image_size=16, validation_fraction=0.25,
                         cache_dir=str(tmp_path))
    assert (stream.num_train, stream.num_validation, stream.num_test, stream.num_classes) == (18, 6, 8, 4)
    assert stream.image_shape == (16, 16, 3)
    # The in-memory split of the same ids: sources.split_train_validation's.
    ids = np.arange(24)
    order = np.random.default_rng(0).permutation(24)
    np.testing.assert_array_equal(stream.validation_members, ids[order[:6]])
    assert glob.glob(str(tmp_path / "stream-listing-train-*.json"))  # listed once, cached
    again = load_stream(f"stream:imagefolder:{folder}", image_size=16, validation_fraction=0.25,
                        cache_dir=str(tmp_path))
    np.testing.assert_array_equal(again.train_elements.paths, stream.train_elements.paths)

    epoch0 = _epoch(stream, 8, seed=1, epoch=0)
    assert [len(y) for _, y in epoch0] == [8, 8, 2]  # the last batch smaller
    assert all(x.dtype == np.float32 and x.shape[1:] == (16, 16, 3) for x, _ in epoch0)
    for (x, y), (x2, y2) in zip(epoch0, _epoch(stream, 8, seed=1, epoch=0)):  # a resumed epoch is the same
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    epoch1 = _epoch(stream, 8, seed=1, epoch=1)
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(epoch0, epoch1))
    labels = np.concatenate([y for _, y in epoch0])
    np.testing.assert_array_equal(np.sort(labels), np.sort(stream.train_elements.labels[stream.train_members]))

    # Two shards' batch s together are batch s of one pipeline, images and all.
    shards = [_epoch(stream, 8, seed=1, epoch=0, shard=(i, 2)) for i in range(2)]
    for s, (x, y) in enumerate(epoch0):
        together = np.concatenate([shards[0][s][0], shards[1][s][0]])
        key = lambda images: np.sort(images.reshape(len(images), -1).sum(axis=1))  # noqa: E731
        np.testing.assert_allclose(key(together), key(x))
        np.testing.assert_array_equal(np.sort(np.concatenate([shards[0][s][1], shards[1][s][1]])), np.sort(y))
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=2)
    dataset = stream_pipeline.distributed_dataset_fn(stream, 8, seed=1, epoch=0)(context)
    for (x, _), (x1, _) in zip(dataset.as_numpy_iterator(), shards[1]):
        np.testing.assert_array_equal(x, x1)

    test = list(stream_pipeline.evaluation_stream(stream, "test", 5).as_numpy_iterator())
    assert [len(y) for _, y in test] == [5, 3] and test[0][0].shape[1:] == (16, 16, 3)


def _write_records(path, images, labels):
    with tf.io.TFRecordWriter(path) as writer:
        for image, label in zip(images, labels):
            encoded = tf.io.encode_png(image).numpy()
            example = tf.train.Example(features=tf.train.Features(feature={
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
                "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
            }))
            writer.write(example.SerializeToString())


def test_tfrecord_stream_counts_once_and_reads_every_member(tmp_path):
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (20, 12, 12, 3), dtype=np.uint8)
    labels = np.arange(20) % 3
    for shard in range(2):
        _write_records(str(tmp_path / f"train-{shard}-of-2"), images[shard * 10 : shard * 10 + 10],
                       labels[shard * 10 : shard * 10 + 10])
    _write_records(str(tmp_path / "validation-0-of-1"), images[:6], labels[:6])
    spec = f"stream:tfrecord:{tmp_path}/{{split}}-*"
    check_dataset(spec)
    cache = tmp_path / "cache"
    stream = load_stream(spec, image_size=12, augmentation="pad_crop_flip", validation_fraction=0.2,
                         cache_dir=str(cache))
    assert (stream.num_train, stream.num_validation, stream.num_test, stream.num_classes) == (16, 4, 6, 3)
    assert len(set(stream.validation_members // 10)) == 1  # whole shards first: a validation pass reads one
    assert len(glob.glob(str(cache / "tfrecord-counts-*.json"))) == 2
    seen = np.concatenate([y for _, y in _epoch(stream, 5, seed=0, epoch=0)])
    np.testing.assert_array_equal(np.sort(seen), np.sort(labels[stream.train_members]))
    validation = list(stream_pipeline.evaluation_stream(stream, "validation", 10).as_numpy_iterator())
    np.testing.assert_array_equal(np.sort(validation[0][1]), np.sort(labels[stream.validation_members]))
    first = _epoch(stream, 5, seed=0, epoch=0)
    for (x, _), (x2, _) in zip(first, _epoch(stream, 5, seed=0, epoch=0)):
        np.testing.assert_array_equal(x, x2)
    with pytest.raises(DatasetUnavailableError, match="no TFRecord file matches"):
        check_dataset(f"stream:tfrecord:{tmp_path}/nothing-{{split}}-*")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "train-0").write_bytes(b"not a record")
    (tmp_path / "bad" / "validation-0").write_bytes(b"not a record")
    with pytest.raises(DatasetUnavailableError, match="cannot read the records of"):
        load_stream(f"stream:tfrecord:{tmp_path}/bad/{{split}}-*", cache_dir=None)


def _stream_config(folder, output_dir, **changes):
    """A tiny run of ImageNet's transforms on `folder`: resnet8 at 16x16, two steps of 9 images."""
    from tf_selectivity.training.config import TrainConfig

    settings = dict(
        model="resnet8", dataset=f"stream:imagefolder:{folder}", augmentation="random_resized_crop",
        image_size=16, epochs=1, batch_size=9, eval_batch_size=8, validation_fraction=0.25, alpha=-1.0,
        output_dir=str(output_dir),
    )
    return TrainConfig(**{**settings, **changes})


@pytest.mark.backends
def test_this_backends_host_runner_trains_and_validates_from_a_stream(folder, tmp_path):
    """TensorFlow's runner takes the tf.data batches, JAX's their NumPy copies: one epoch each."""
    from tf_selectivity.data.streams import load_stream as load
    from tf_selectivity.training.host_epochs import host_runner
    from tf_selectivity.training.loop import build_compiled_model

    config = _stream_config(folder, tmp_path / "run")
    data = load(config.dataset, image_size=16, validation_fraction=0.25, cache_dir=None)
    model, _ = build_compiled_model(config, data)
    runner = host_runner(model, config, data, progress=False)
    assert runner.steps_per_epoch == 2
    before = [np.array(v) for v in model.trainable_variables[:1]]
    train_logs = runner.train_epochs([0], [0], None)[0]
    validation_logs = runner.validate_epochs([0])[0]
    runner.store([0])
    assert np.isfinite(train_logs["loss"]) and train_logs["selectivity_term"] != 0
    assert 0.0 <= validation_logs["accuracy"] <= 1.0
    assert not np.array_equal(before[0], np.array(model.trainable_variables[0]))


def test_followup_preset_trains_on_a_tiny_imagenet_folder_and_analyze_reads_it(folder, tmp_path):
    """The follow-up's preset as one command on the ImageNet-layout folder (a small network
    and crop so that it takes seconds): its transforms recorded, its streamed test set analysed."""
    from conftest import run_cli

    from tf_selectivity.models.registry import MODELS

    assert MODELS["resnet50_imagenet"].kwargs["stem"] == "imagenet"  # the preset's network: torchvision's
    completed = run_cli(
        "tf_selectivity.sweep", "--preset=followup_resnet50_imagenet", f"--dataset=stream:imagefolder:{folder}",
        "--model=resnet8", "--image_size=16", "--epochs=1", "--batch_size=9", "--eval_batch_size=8",
        "--validation_fraction=0.25", "--keep_checkpoints=0,0.5,1", "--selectivity_every_steps=1",
        "--selectivity_steps_until=1", f"--output_dir={tmp_path / 'sweep'}", "--verbose=0",
        env={"XDG_CACHE_HOME": str(tmp_path / "cache")},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    (run,) = glob.glob(str(tmp_path / "sweep" / "runs" / "*"))
    recorded = json.load(open(os.path.join(run, "config.json")))
    assert recorded["identity"]["augmentation"] == "random_resized_crop"
    assert recorded["identity"]["image_size"] == 16 and recorded["identity"]["epochs"] == 1
    assert recorded["config"]["selectivity_every"] == 1 and recorded["num_train"] == 18
    summary = json.load(open(os.path.join(run, "summary.json")))
    assert summary["image_shape"] == [16, 16, 3] and summary["status"] == "completed"
    assert summary["kept_checkpoints"] == [0.0, 0.5, 1.0] and summary["devices"] == 1
    steps = np.loadtxt(os.path.join(run, "selectivity_steps.csv"), delimiter=",", skiprows=1, usecols=0)
    assert sorted(set(steps.astype(int))) == [0, 1]  # 2 steps per epoch: steps 0 and 1 below epoch 1

    from tf_selectivity.analysis.context import TestDataLoader
    from tf_selectivity.analysis.options import AnalysisOptions
    from tf_selectivity.analysis.runs import _load_record

    test = TestDataLoader(AnalysisOptions()).for_run(_load_record(run))
    assert test.images.shape == (8, 16, 16, 3) and test.images.dtype == np.uint8


def test_in_memory_folder_larger_than_memory_is_sent_to_streaming(tmp_path):
    """The size rule: decoded images beyond half the memory name stream:imagefolder:PATH."""
    from tf_selectivity.data.streams import memory_rule

    root = make_imagenet_folder(tmp_path / "f", classes=2, train=2, val=1)
    os.rename(os.path.join(root, "val"), os.path.join(root, "test"))  # the in-memory layout
    assert memory_rule(f"imagefolder:{root}") is None  # 6 small images fit
    advice = memory_rule(f"imagefolder:{root}", memory_bytes=10_000)
    assert advice.startswith("6 images of 64x40 need") and advice.endswith(f"use --dataset=stream:imagefolder:{root}")


def test_tfds_builder_stream_reads_a_tiny_prepared_builder(tmp_path):
    """stream:tfds: a prepared builder (made here, offline) read from its record files: its
    class names, its validation split as the test split, every training member once."""
    tfds = pytest.importorskip("tensorflow_datasets")

    class TinyStreamImages(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, supervised_keys=("image", "label"), features=(
                tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(None, None, 3)),
                                            "label": tfds.features.ClassLabel(names=["a", "b", "c"])})))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(12, 0), "validation": self._generate_examples(6, 1)}

        def _generate_examples(self, count, seed):
            rng = np.random.default_rng(seed)
            for i in range(count):
                yield i, {"image": rng.integers(0, 256, (10 + i % 3, 12, 3), dtype=np.uint8), "label": i % 3}

    TinyStreamImages(data_dir=str(tmp_path)).download_and_prepare()
    spec = "stream:tfds:tiny_stream_images"
    check_dataset(spec, str(tmp_path))
    stream = load_stream(spec, data_dir=str(tmp_path), image_size=8, augmentation="pad_crop_flip",
                         validation_fraction=0.25, cache_dir=None)
    assert stream.class_names == ["a", "b", "c"]
    assert (stream.num_train, stream.num_validation, stream.num_test) == (9, 3, 6)
    labels = np.concatenate([y for _, y in _epoch(stream, 4, seed=0, epoch=0)])
    validation = np.concatenate([y for _, y in stream_pipeline.evaluation_stream(stream, "validation", 4)
                                 .as_numpy_iterator()])
    assert len(labels) == 9 and len(validation) == 3
    np.testing.assert_array_equal(np.bincount(np.concatenate([labels, validation])), [4, 4, 4])  # each record once
    images, test_labels = stream_pipeline.test_arrays(stream)
    assert images.shape == (6, 8, 8, 3) and sorted(test_labels) == [0, 0, 1, 1, 2, 2]
    with pytest.raises(DatasetUnavailableError, match="is not prepared in"):
        check_dataset("stream:tfds:imagenet2012", str(tmp_path))

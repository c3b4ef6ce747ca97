"""`WeightsFile` writes the file `save_weights` writes, in milliseconds after the first time."""

import os

import keras
import numpy as np
import pytest

from tf_selectivity.training.weights_file import WeightsFile

pytestmark = pytest.mark.backends


def small_model(seed):
    from tf_selectivity.models import build_model
    from tf_selectivity.training import TorchSGD

    keras.utils.set_random_seed(seed)
    model = build_model("resnet8", num_classes=4, alpha=-1.0, input_shape=(8, 8, 3))
    model.compile(optimizer=TorchSGD(0.1, momentum=0.9, weight_decay_l2=1e-4))
    return model


def contents(path):
    """{object path: (attributes, array or None)} of an HDF5 file."""
    import h5py

    found = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: found.__setitem__(
            name, (dict(item.attrs), item[()] if isinstance(item, h5py.Dataset) else None)
        ))
    return found


def test_the_file_equals_keras_own_and_loads_back(tmp_path, rng):
    model = small_model(0)
    images = rng.integers(0, 256, (16, 8, 8, 3)).astype("float32")
    labels = rng.integers(0, 4, 16)
    model.fit(images, labels, batch_size=8, epochs=1, verbose=0)
    writer = WeightsFile(model)
    first = str(tmp_path / "first.weights.h5")
    writer.save(first)  # Keras writes it; the layout is learned on the way
    assert writer._sources, "the layout was not learned: every save would go through Keras"
    assert writer._offsets, "Keras' datasets are no longer contiguous: saves go through h5py"
    before = [np.array(v) for v in model.weights + model.optimizer.variables]
    model.fit(images, labels, batch_size=8, epochs=1, verbose=0)  # new values, same layout
    ours, theirs = str(tmp_path / "ours.weights.h5"), str(tmp_path / "theirs.weights.h5")
    writer.save(ours)
    model.save_weights(theirs)
    assert not [n for n in os.listdir(tmp_path) if "tmp" in n]
    ours_contents, theirs_contents = contents(ours), contents(theirs)
    assert list(ours_contents) == list(theirs_contents)
    changed = 0
    for name, (attrs, value) in theirs_contents.items():
        assert ours_contents[name][0] == attrs, name
        if value is not None:
            assert ours_contents[name][1].dtype == value.dtype, name
            np.testing.assert_array_equal(ours_contents[name][1], value, err_msg=name)
            changed += 1
    assert changed > 20
    # Learning the layout left the model as it was; the first file holds those values.
    restored = small_model(1)
    restored.optimizer.build(restored.trainable_variables)
    restored.load_weights(first)
    for a, b in zip(restored.weights + restored.optimizer.variables, before):
        np.testing.assert_array_equal(np.array(a), b)
    restored.load_weights(ours)
    for a, b in zip(restored.weights + restored.optimizer.variables, model.weights + model.optimizer.variables):
        np.testing.assert_array_equal(np.array(a), np.array(b))


def test_the_h5py_fallback_writes_the_same_file(tmp_path, rng):
    """Where datasets cannot be patched as raw bytes, h5py writes them."""
    model = small_model(0)
    model.fit(rng.integers(0, 256, (8, 8, 8, 3)).astype("float32"), rng.integers(0, 4, 8), verbose=0)
    writer = WeightsFile(model)
    writer.save(str(tmp_path / "first.weights.h5"))
    writer._offsets = None
    ours, theirs = str(tmp_path / "ours.weights.h5"), str(tmp_path / "theirs.weights.h5")
    writer.save(ours)
    model.save_weights(theirs)
    ours_contents, theirs_contents = contents(ours), contents(theirs)
    assert list(ours_contents) == list(theirs_contents)
    for name, (attrs, value) in theirs_contents.items():
        if value is not None:
            np.testing.assert_array_equal(ours_contents[name][1], value, err_msg=name)

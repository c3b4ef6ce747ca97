"""`instrument`: probes inserted into existing Keras models (Functional,
Sequential, nested, keras.applications), shared weights, logits unchanged,
and the regularizer acting through the inserted probes."""

import warnings

import numpy as np
import pytest
import keras
from keras import ops

from tf_selectivity import instrument
from tf_selectivity.data.sources import make_synthetic
from tf_selectivity.models.probe import SelectivityProbe
from tf_selectivity.models import DenseLogits, SelectivityModel
from tf_selectivity.measures.selectivity import class_selectivity

pytestmark = pytest.mark.backends


def readme_model(size=32, classes=10, seed=0):
    """A small model of two fused conv-ReLUs, as a plain keras.Model."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(16, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(32, 3, activation="relu", name="conv2")(x)
    logits = keras.layers.Dense(classes, name="logits")(keras.layers.GlobalAveragePooling2D(name="pool")(x))
    return keras.Model(inputs, logits, name="small")


def numpy_of(x):
    return ops.convert_to_numpy(x)


def images(rng, count=4, size=32):
    return rng.uniform(0, 255, (count, size, size, 3)).astype("float32")


def test_functional_model_probes_logits_and_shared_weights(rng):
    model = readme_model()
    selective = instrument(model, alpha=-1.0)
    assert isinstance(selective, SelectivityModel)
    assert selective.probe_names == ["probe_conv1", "probe_conv2"]
    assert [p.num_classes for p in selective.probes] == [10, 10]
    assert [p.share for p in selective.probes] == [0.5, 0.5]
    assert selective.alpha == -1.0
    x = images(rng)
    np.testing.assert_array_equal(numpy_of(selective(x)), numpy_of(model(x)))
    # The same variables, not copies.
    assert selective.get_layer("conv1").kernel is model.get_layer("conv1").kernel
    assert len(selective.trainable_variables) == len(model.trainable_variables)
    # Training the instrumented model trains the original.
    before = numpy_of(model.get_layer("conv2").kernel).copy()
    selective.compile(optimizer=keras.optimizers.SGD(0.1))
    selective.train_on_batch(x, np.arange(4))
    assert not np.allclose(numpy_of(model.get_layer("conv2").kernel), before)
    np.testing.assert_allclose(numpy_of(selective(x)), numpy_of(model(x)), rtol=1e-5, atol=1e-5)


def test_sequential_model(rng):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(8, 3, name="c1"),
            keras.layers.BatchNormalization(name="bn1"),
            keras.layers.ReLU(name="relu1"),
            keras.layers.MaxPooling2D(name="pool1"),
            keras.layers.Conv2D(8, 3, activation="elu", name="c2"),
            keras.layers.Flatten(name="flat"),
            keras.layers.Dense(16, activation="relu", name="fc"),
            keras.layers.Dense(4, name="out"),
        ],
        name="seq",
    )
    selective = instrument(model, alpha=0.5)
    # conv -> BN -> ReLU and a fused conv activation; not the Dense ReLU.
    assert selective.probe_names == ["probe_relu1", "probe_c2"]
    x = images(rng, size=16)
    np.testing.assert_allclose(numpy_of(selective(x)), numpy_of(model(x)), rtol=1e-6, atol=1e-6)
    unbuilt = keras.Sequential([keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="no defined inputs"):
        instrument(unbuilt, alpha=0.0)


def nested_model():
    """A Functional model with a nested Sequential block and a nested
    Functional backbone, the backbone called with training=False."""
    keras.utils.set_random_seed(0)
    block = keras.Sequential(
        [keras.layers.Conv2D(6, 3, padding="same", name="block_conv"),
         keras.layers.BatchNormalization(name="block_bn"),
         keras.layers.Activation("relu", name="block_relu")],
        name="block",
    )
    backbone_in = keras.Input((16, 16, 6))
    h = keras.layers.Conv2D(8, 3, padding="same", name="bb_conv")(backbone_in)
    h = keras.layers.BatchNormalization(name="bb_bn")(h)
    shortcut = keras.layers.Conv2D(8, 1, name="bb_proj")(backbone_in)
    h = keras.layers.Add(name="bb_add")([h, shortcut])
    h = keras.layers.ReLU(name="bb_out")(h)
    backbone = keras.Model(backbone_in, h, name="backbone")

    inputs = keras.Input((16, 16, 3), name="images")
    x = keras.layers.Rescaling(1 / 255, name="rescale")(inputs)
    x = block(x)
    x = backbone(x, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="outer")


def test_nested_models_are_flattened(rng):
    model = nested_model()
    selective = instrument(model, alpha=0.0)
    assert selective.probe_names == ["probe_block_relu", "probe_bb_out"]
    # One flat graph: no nested model left, every probe reachable.
    assert not any(isinstance(layer, keras.Model) for layer in selective.layers)
    x = images(rng, size=16)
    activations = selective.activation_model()(x)
    assert numpy_of(activations["probe_bb_out"]).shape == (4, 16, 16, 8)
    # The softmax Dense became logits on the same weights.
    assert isinstance(selective.layers[-1], DenseLogits)
    for training in (False, True):
        np.testing.assert_allclose(
            numpy_of(ops.softmax(selective(x, training=training))),
            numpy_of(model(x, training=training)),
            rtol=1e-5, atol=1e-6,
        )
    by_name = instrument(model, alpha=0.0, after=["block_conv", "bb_add", "backbone"])
    assert by_name.probe_names == ["probe_block_conv", "probe_bb_add", "probe_backbone"]


def test_after_names_predicate_and_shared_layers(rng):
    keras.utils.set_random_seed(0)
    relu = keras.layers.ReLU(name="relu")  # one activation object used twice
    inputs = keras.Input((8, 8, 3))
    x = relu(keras.layers.Conv2D(4, 3, name="c1")(inputs))
    x = relu(keras.layers.Conv2D(4, 3, name="c2")(x))
    x = keras.layers.Dense(5, activation="relu", name="fc")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(x))
    assert instrument(model, alpha=0.0).probe_names == ["probe_relu", "probe_relu_2"]
    chosen = instrument(model, alpha=0.0, after=lambda layer: isinstance(layer, keras.layers.Dense))
    assert chosen.probe_names == ["probe_fc", "probe_out"]
    assert instrument(model, alpha=0.0, after="fc").probe_names == ["probe_fc"]
    x = images(rng, size=8)
    np.testing.assert_allclose(numpy_of(chosen(x)), numpy_of(model(x)), rtol=1e-6)
    with pytest.raises(ValueError, match=r"No layer named 'fcc' \(did you mean fc"):
        instrument(model, alpha=0.0, after=["fcc"])
    with pytest.raises(ValueError, match="No layer .* was selected"):
        instrument(model, alpha=0.0, after=lambda layer: False)


def test_output_activations():
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(4, activation="relu", name="h")(inputs)
    separate = keras.Model(inputs, keras.layers.Softmax(name="sm")(keras.layers.Dense(3, name="d")(hidden)))
    selective = instrument(separate, alpha=0.0, after=["h"])
    assert selective.layers[-1].name == "d"  # the Softmax layer is dropped
    x = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
    np.testing.assert_allclose(numpy_of(ops.softmax(selective(x))), numpy_of(separate(x)), rtol=1e-5, atol=1e-7)
    sigmoid = keras.Model(inputs, keras.layers.Dense(3, activation="sigmoid")(hidden))
    with pytest.raises(ValueError, match="sigmoid"):
        instrument(sigmoid, alpha=0.0, after=["h"])
    with pytest.raises(ValueError, match="at least 2"):
        instrument(keras.Model(inputs, keras.layers.Dense(1)(hidden)), alpha=0.0, after=["h"])
    with pytest.raises(ValueError, match="does not match"):
        instrument(separate, alpha=0.0, num_classes=4, after=["h"])
    two = keras.Model(inputs, [keras.layers.Dense(3)(hidden), keras.layers.Dense(3)(hidden)])
    with pytest.raises(ValueError, match="2 outputs"):
        instrument(two, alpha=0.0, after=["h"])


def test_refuses_subclassed_and_instrumented_models():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    with pytest.raises(ValueError, match="subclassed"):
        instrument(Subclassed(), alpha=0.0)
    selective = instrument(readme_model(), alpha=0.0)
    with pytest.raises(ValueError, match="already has SelectivityProbe"):
        instrument(selective, alpha=0.0)


def test_keras_file_round_trip_with_dense_logits(tmp_path, rng):
    selective = instrument(nested_model(), alpha=-1.0)
    path = str(tmp_path / "m.keras")
    selective.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.probe_names == selective.probe_names
    x = images(rng, size=16)
    np.testing.assert_allclose(numpy_of(loaded(x)), numpy_of(selective(x)), rtol=1e-5, atol=1e-6)


def _trained_selectivity(alpha, data):
    x_train, y_train, x_test, y_test = data
    selective = instrument(readme_model(size=16, classes=5, seed=0), alpha=alpha)
    selective.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    keras.utils.set_random_seed(1)
    selective.fit(x_train, y_train, epochs=4, batch_size=50, shuffle=False, verbose=0)
    activations = selective.activation_model()(x_test)
    return [class_selectivity(numpy_of(activations[n]), y_test, 5).mean() for n in selective.probe_names]


def test_negative_alpha_lowers_selectivity_of_probed_layers():
    """The same initial weights trained with alpha = 0 and alpha = -10: every
    probed layer ends less class selective (test set) with the regularizer."""
    x_train, y_train, x_test, y_test, _ = make_synthetic(train=600, test=300, size=16, classes=5, seed=0)
    data = (x_train.astype("float32") / 255, y_train, x_test.astype("float32") / 255, y_test)
    baseline = _trained_selectivity(0.0, data)
    suppressed = _trained_selectivity(-10.0, data)
    assert min(baseline) > 0.05
    for plain, regularized in zip(baseline, suppressed):
        assert regularized < 0.5 * plain


def test_probe_without_labels_warns_once(monkeypatch, rng):
    from tf_selectivity.models import probe as layers

    monkeypatch.setattr(layers, "_NO_LABELS_WARNED", False)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = SelectivityProbe(num_classes=3, alpha=-5.0)(x)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = SelectivityProbe(num_classes=3, alpha=-5.0)(x)
    plain = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(x)))
    plain.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x_data, y_data = images(rng, count=16, size=8), np.arange(16) % 3
    with pytest.warns(UserWarning, match="without labels") as record:
        plain.fit(x_data, y_data, epochs=2, batch_size=8, verbose=0)
        plain.fit(x_data, y_data, epochs=1, batch_size=8, verbose=0)
    assert sum("without labels" in str(w.message) for w in record) == 1
    assert "instrument" in str(record[0].message)
    # No warning where labels do reach the probes, or at inference.
    monkeypatch.setattr(layers, "_NO_LABELS_WARNED", False)
    selective = SelectivityModel(plain.inputs, plain.outputs)
    selective.compile(optimizer="sgd")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*without labels.*")
        selective.fit(x_data, y_data, epochs=1, batch_size=8, verbose=0)
        plain.predict(x_data, verbose=0)
        plain(x_data)

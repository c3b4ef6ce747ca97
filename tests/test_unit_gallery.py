"""Unit galleries from the Python API: `unit_gallery(model, images, labels)`
against NumPy / pandas / SciPy references computed from the full feature maps."""

import keras
import numpy as np
import pandas as pd
import pytest
from keras import ops
from scipy import stats as scipy_stats

from tf_selectivity import instrument
from tf_selectivity.analysis.stages.units.gallery import RunningTopValues, unit_gallery
from tf_selectivity.models import build_model
from tf_selectivity.core.settings import ParameterError
from tf_selectivity.measures.selectivity import ClassSelectivityAccumulator


def _user_model(classes=4, shape=(16, 16, 3)):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape)
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv1")(x)
    x = keras.layers.Conv2D(5, 3, strides=2, activation="relu", name="conv2")(x)
    logits = keras.layers.Dense(classes, name="logits")(keras.layers.GlobalAveragePooling2D()(x))
    return instrument(keras.Model(inputs, logits), alpha=0.0)


def _data(rng, count=60, shape=(16, 16, 3), classes=4):
    images = rng.uniform(0, 255, (count, *shape)).astype("float32")
    return images, np.resize(np.arange(classes), count)


def _full_maps(model, images):
    outputs = model.activation_model().predict_on_batch(images)
    return {name: ops.convert_to_numpy(outputs[name]).astype(np.float64) for name in model.probe_names}


def _check_against_reference(gallery, model, images, labels, k, fraction=0.005):
    maps = _full_maps(model, images)
    assert len(gallery.units) > 0
    for row in gallery.units.itertuples():
        unit_maps = maps[row.layer][..., row.unit]  # (N, h, w)
        scores = {"max": unit_maps.max(axis=(1, 2)), "mean": unit_maps.mean(axis=(1, 2))}
        for ranking, score in scores.items():
            expected = np.argsort(-score, kind="stable")[:k]
            top = gallery.top_images[(gallery.top_images["layer"] == row.layer)
                                     & (gallery.top_images["unit"] == row.unit)
                                     & (gallery.top_images["ranking"] == ranking)].sort_values("rank")
            np.testing.assert_array_equal(top["image"], expected)
            np.testing.assert_allclose(top["value"], score[expected], rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(top["label"], labels[expected])
            np.testing.assert_allclose(gallery.maps[(row.layer, row.unit, ranking)], unit_maps[expected],
                                       rtol=1e-5, atol=1e-6)
        assert row.threshold == pytest.approx(np.quantile(unit_maps.ravel(), 1 - fraction), rel=1e-6, abs=1e-7)
        # The tuning curve: a pandas groupby of the spatial means, with SciPy's t interval.
        frame = pd.DataFrame({"label": labels, "response": scores["mean"]})
        grouped = frame.groupby("label")["response"]
        curve = gallery.tuning[(gallery.tuning["layer"] == row.layer) & (gallery.tuning["unit"] == row.unit)]
        curve = curve.sort_values("class")
        assert list(curve["class"]) == list(range(gallery.num_classes))
        np.testing.assert_allclose(curve["mean"], grouped.mean(), rtol=1e-6, atol=1e-8)
        np.testing.assert_array_equal(curve["count"], grouped.size())
        sem = grouped.sem().to_numpy()
        with np.errstate(invalid="ignore"):
            low, high = scipy_stats.t.interval(0.95, grouped.size() - 1, loc=grouped.mean(), scale=sem)
        # A class whose responses are all equal (e.g. 0 under a ReLU): an interval of width 0.
        low, high = np.where(sem == 0, grouped.mean(), low), np.where(sem == 0, grouped.mean(), high)
        np.testing.assert_allclose(curve["ci_low"], low, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(curve["ci_high"], high, rtol=1e-6, atol=1e-8)
        # SI and preferred class: the streaming accumulator over the same responses.
        accumulator = ClassSelectivityAccumulator(gallery.num_classes)
        layer_means = maps[row.layer].mean(axis=(1, 2))
        accumulator.update(layer_means, labels)
        assert row.selectivity == pytest.approx(accumulator.selectivity()[row.unit], rel=1e-5, abs=1e-7)
        assert row.preferred_class == accumulator.preferred_class()[row.unit]
        assert curve[curve["preferred"]]["class"].tolist() == [row.preferred_class]
    return maps


@pytest.mark.backends
def test_top_images_threshold_and_tuning_match_references(rng):
    model = _user_model()
    images, labels = _data(rng)
    gallery = unit_gallery(model, images, labels, units={"probe_conv1": [0, 3, 5], "probe_conv2": [1]}, k=7, batch_size=13)
    assert gallery.units[["layer", "unit"]].values.tolist() == [["probe_conv1", 0], ["probe_conv1", 3], ["probe_conv1", 5], ["probe_conv2", 1]]
    assert gallery.maps[("probe_conv1", 3, "max")].shape == (7, 14, 14)
    assert gallery.maps[("probe_conv2", 1, "mean")].shape == (7, 6, 6)
    _check_against_reference(gallery, model, images, labels, k=7)


@pytest.mark.backends
def test_results_do_not_depend_on_the_batch_size(rng):
    model = _user_model()
    images, labels = _data(rng)
    one = unit_gallery(model, images, labels, units={"probe_conv2": [0, 2, 4]}, k=5, batch_size=60)
    other = unit_gallery(model, images, labels, units={"probe_conv2": [0, 2, 4]}, k=5, batch_size=7)
    np.testing.assert_array_equal(one.top_images["image"], other.top_images["image"])
    for column in ("threshold", "selectivity", "precision"):
        np.testing.assert_allclose(one.units[column], other.units[column], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(one.tuning["mean"], other.tuning["mean"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(one.tuning["ci_high"], other.tuning["ci_high"], rtol=1e-5, atol=1e-7)


@pytest.mark.backends
def test_default_units_are_each_layers_most_and_least_selective(rng):
    model = build_model("resnet8", num_classes=4, input_shape=(16, 16, 3))
    images, labels = _data(rng, count=40)
    gallery = unit_gallery(model, images, labels, k=3, batch_size=16)
    maps = _check_against_reference(gallery, model, images, labels, k=3)
    assert list(gallery.units["layer"].unique()) == model.probe_names
    for name in model.probe_names:
        accumulator = ClassSelectivityAccumulator(4)
        accumulator.update(maps[name].mean(axis=(1, 2)), labels)
        si, alive = accumulator.selectivity(), ~accumulator.dead_units()
        candidates = np.flatnonzero(alive) if alive.any() else np.arange(len(si))
        expected = sorted({int(candidates[np.argmax(si[candidates])]), int(candidates[np.argmin(si[candidates])])})
        assert gallery.units[gallery.units["layer"] == name]["unit"].tolist() == expected


@pytest.mark.backends
def test_an_instrumented_model_with_another_image_size_and_200_classes(rng):
    model = _user_model(classes=200, shape=(20, 24, 3))
    images, labels = _data(rng, count=400, shape=(20, 24, 3), classes=200)
    gallery = unit_gallery(model, images, labels, units={"probe_conv2": [0, 3]}, layers=["probe_conv1"], k=4, batch_size=150)
    assert gallery.num_classes == 200 and gallery.image_shape == (20, 24, 3)
    assert gallery.tuning.groupby(["layer", "unit"]).size().eq(200).all()
    assert set(gallery.units["layer"]) == {"probe_conv1", "probe_conv2"}
    _check_against_reference(gallery, model, images, labels, k=4)


def test_running_top_values_give_the_exact_quantile(rng):
    values = rng.normal(size=(1000, 3))
    values[:50, 0] = 0.0  # ties
    for q, batch in ((0.995, 37), (0.9, 100), (0.999, 1000)):
        total = values.shape[0]
        keep = total - int(np.floor((total - 1) * q))
        top = RunningTopValues(keep)
        for start in range(0, total, batch):
            top.update(values[start : start + batch])
        np.testing.assert_allclose(top.quantile(q), np.quantile(values, q, axis=0), rtol=0, atol=1e-15)
    with pytest.raises(ValueError):
        top.quantile(0.5)


@pytest.mark.backends
@pytest.mark.parametrize(
    "kwargs, parameter",
    [
        ({"units": {"nope": [0]}}, "units"),
        ({"layers": ["nope"]}, "layers"),
        ({"units": {"probe_conv1": [6]}}, "units"),
        ({"units": {"probe_conv1": [-1]}}, "units"),
        ({"units": {"probe_conv1": []}}, "units"),
        ({"k": 0}, "k"),
        ({"k": 2.5}, "k"),
        ({"top_fraction": 0.0}, "top_fraction"),
        ({"confidence": 1.5}, "confidence"),
        ({"index": "nope"}, "index"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs, parameter, rng):
    model = _user_model()
    images, labels = _data(rng, count=8)
    with pytest.raises(ParameterError) as error:
        unit_gallery(model, images, labels, **kwargs)
    assert error.value.parameter == parameter
    with pytest.raises(ParameterError) as error:
        unit_gallery(model, images, labels[:5])
    assert error.value.parameter == "labels"


@pytest.mark.backends
def test_a_probe_after_a_dense_layer_has_one_by_one_maps(rng):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(keras.layers.Rescaling(1 / 255.0)(inputs))
    x = keras.layers.Dense(6, activation="relu", name="fc")(keras.layers.Flatten()(x))
    model = instrument(keras.Model(inputs, keras.layers.Dense(3)(x)), alpha=0.0, after=["conv1", "fc"])
    images, labels = _data(rng, count=30, shape=(8, 8, 3), classes=3)
    gallery = unit_gallery(model, images, labels, units={"probe_fc": [0, 5]}, k=4, batch_size=8)
    assert gallery.maps[("probe_fc", 5, "max")].shape == (4, 1, 1)
    responses = ops.convert_to_numpy(model.activation_model().predict_on_batch(images)["probe_fc"])
    for row in gallery.units.itertuples():
        # Spatial max and mean of a 1 x 1 map are the response itself: both rankings agree.
        expected = np.argsort(-responses[:, row.unit].astype(np.float64), kind="stable")[:4]
        for ranking in ("max", "mean"):
            top = gallery.top_images[(gallery.top_images["unit"] == row.unit) & (gallery.top_images["ranking"] == ranking)]
            np.testing.assert_array_equal(top.sort_values("rank")["image"], expected)
        assert row.threshold == pytest.approx(np.quantile(responses[:, row.unit].astype(np.float64), 0.995), rel=1e-6)


def test_the_pass_over_the_images_shows_its_progress_when_verbose(rng, capsys):
    from conftest import log_lines

    model = _user_model()
    images, labels = _data(rng, count=30)
    quiet = unit_gallery(model, images, labels, k=2, batch_size=8)
    assert capsys.readouterr().out == ""
    shown = unit_gallery(model, images, labels, k=2, batch_size=8, verbose=1)
    assert [line.split(", ")[0] for line in log_lines(capsys.readouterr().out)] == ["Unit galleries: 30/30 images"]
    pd.testing.assert_frame_equal(shown.units, quiet.units)

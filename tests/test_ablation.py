"""Ablation curves (`analysis.ablation.ablation_curves`): known answers."""

import keras
import numpy as np
import pytest
from keras import ops

from tf_selectivity import instrument
from tf_selectivity.analysis.ablation import ablation_curves
from tf_selectivity.models import build_model
from tf_selectivity.options import ParameterError
from tf_selectivity.selectivity import class_selectivity

pytestmark = pytest.mark.core


def _plain(classes=4):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv1")(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(classes, name="logits")(x))


def _data(rng, count=80, classes=4):
    return rng.uniform(0, 255, (count, 12, 12, 3)).astype("float32"), np.repeat(np.arange(classes), count // classes)


def _accuracy(model, images, labels):
    return float((ops.convert_to_numpy(model(images)).argmax(-1) == labels).mean())


def test_fraction_zero_is_the_clean_accuracy_and_curves_equal_a_hand_built_masking(rng):
    plain = _plain()
    model = instrument(plain, alpha=0.0)
    images, labels = _data(rng)
    curves = ablation_curves(model, images, labels, fractions=(0, 0.25, 0.5, 1.0), random_seeds=(3,), batch_size=30)
    clean = _accuracy(model, images, labels)
    assert (curves.loc[curves["fraction"] == 0, "accuracy"] == clean).all()
    assert len(curves) == len(model.probe_names) * 3 * 4
    # A hand-built masking: conv2's output multiplied by a constant mask.
    conv2_probe = [n for n in model.probe_names if "conv2" in n][0]
    responses = ops.convert_to_numpy(model.unit_response_model()(images)[conv2_probe])
    si = class_selectivity(responses, labels, 4)
    order = np.lexsort((np.arange(8), -si))
    for fraction in (0.25, 0.5, 1.0):
        keep = np.ones(8, "float32")
        keep[order[: int(round(fraction * 8))]] = 0
        inputs = keras.Input((12, 12, 3))
        x = plain.get_layer("conv2")(plain.get_layer("conv1")(plain.layers[1](inputs)))
        x = keras.layers.Lambda(lambda t: t * keep)(x)
        hand = keras.Model(inputs, plain.get_layer("logits")(plain.get_layer("pool")(x)))
        row = curves[(curves["layer"] == conv2_probe) & (curves["order"] == "selective_first")
                     & (curves["fraction"] == fraction)]
        assert row["accuracy"].item() == pytest.approx(_accuracy(hand, images, labels), abs=1e-12)
        assert row["units_ablated"].item() == int(round(fraction * 8))


def test_random_orders_are_reproducible_and_a_whole_layer_gives_one_class(rng):
    keras.utils.set_random_seed(0)
    model = build_model("resnet8", num_classes=4, input_shape=(12, 12, 3))
    images, labels = _data(rng, count=40)
    layer = [model.probe_names[1]]
    kwargs = dict(layers=layer, orders=("random",), random_seeds=(5, 6), fractions=(0.5,))
    first = ablation_curves(model, images, labels, **kwargs)
    again = ablation_curves(model, images, labels, **kwargs)
    assert first.equals(again) and list(first["seed"]) == [5, 6]
    # Zeroing a whole layer of a network without skips gives one class for
    # every image: the accuracy of predicting one class (1/4 here).
    plain = instrument(_plain(), alpha=0.0)
    whole = ablation_curves(plain, images, labels, layers=[plain.probe_names[-1]], orders=("selective_first",),
                            fractions=(1.0,))
    assert whole["accuracy"].item() == pytest.approx(0.25)
    # Mean-ablation of the whole layer: a constant map, one class again.
    mean = ablation_curves(plain, images, labels, layers=[plain.probe_names[-1]], orders=("selective_first",),
                           fractions=(0.0, 1.0), mode="mean")
    assert list(mean["accuracy"]) == [pytest.approx(_accuracy(plain, images, labels)), pytest.approx(0.25)]


def test_bad_arguments_are_named(rng):
    model = instrument(_plain(), alpha=0.0)
    images, labels = _data(rng, count=8)
    for kwargs, message in (({"fractions": (0.5, 1.5)}, "^fractions must be fractions in"),
                            ({"layers": ["nope"]}, "^layers must name probes"),
                            ({"orders": ("sideways",)}, "^orders must be among"),
                            ({"mode": "noise"}, "^mode must be zero or mean")):
        with pytest.raises(ParameterError, match=message):
            ablation_curves(model, images, labels, **kwargs)

"""Ablation curves (`analysis.stages.ablation.ablate.ablation_curves`): known answers."""

import keras
import numpy as np
import pandas as pd
import pytest
from keras import ops

from tf_selectivity import instrument
from tf_selectivity.analysis.stages.ablation.ablate import ablation_curves
from tf_selectivity.models import build_model
from tf_selectivity.models.imagenet_resnet import IMAGENET_RESNET_BLOCKS
from tf_selectivity.core.settings import ParameterError
from tf_selectivity.measures.selectivity import class_selectivity


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


@pytest.mark.backends
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


@pytest.mark.backends
def test_random_orders_are_reproducible_and_a_whole_layer_gives_one_class(rng):
    keras.utils.set_random_seed(0)
    model = build_model("resnet8", num_classes=4, input_shape=(12, 12, 3))
    images, labels = _data(rng, count=40)
    layer = [model.probe_names[1]]
    kwargs = dict(layers=layer, orders=("random",), random_seeds=(5, 6), fractions=(0.5,))
    first = ablation_curves(model, images, labels, **kwargs)
    again = ablation_curves(model, images, labels, **kwargs)
    assert first.equals(again) and list(first["order_seed"]) == [5, 6]
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


@pytest.mark.backends
def test_bad_arguments_are_named(rng):
    model = instrument(_plain(), alpha=0.0)
    images, labels = _data(rng, count=8)
    for kwargs, message in (({"fractions": (0.5, 1.5)}, "^fractions must be fractions in"),
                            ({"layers": ["nope"]}, "^layers must name probes"),
                            ({"orders": ("sideways",)}, "^orders must be among"),
                            ({"mode": "noise"}, "^mode must be zero or mean")):
        with pytest.raises(ParameterError, match=message):
            ablation_curves(model, images, labels, **kwargs)
    # A model without probes.
    with pytest.raises(ParameterError, match="^model has no selectivity probes"):
        ablation_curves(_plain(), images, labels)
    with pytest.raises(ParameterError, match="^model has no selectivity probes"):
        unit_importance(_plain(), images, labels)


# -- The suffix path, single-unit importance, the correlation.
from tf_selectivity.analysis.stages.ablation.ablate import importance_correlations, unit_importance  # noqa: E402
from tf_selectivity.analysis.stages.ablation.network import ablated_network, masked_model  # noqa: E402


def _skip_model(classes=4):
    """conv1 -> probe -> conv2, plus conv1's INPUT added after conv2 (a skip around the probe)."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((12, 12, 3))
    x0 = keras.layers.Conv2D(6, 3, padding="same", name="stem")(keras.layers.Rescaling(1 / 255.0)(inputs))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv1")(x0)
    x = keras.layers.Conv2D(6, 3, padding="same", name="conv2")(x)
    x = keras.layers.Activation("relu", name="relu_out")(keras.layers.Add(name="add")([x, x0]))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(classes, name="logits")(x))


@pytest.mark.backends
def test_the_suffix_path_equals_the_whole_network(rng):
    images, labels = _data(rng, count=40)
    keras.utils.set_random_seed(0)
    resnet = build_model("resnet8", num_classes=4, input_shape=(12, 12, 3))
    user = instrument(_skip_model(), alpha=0.0, after=["conv1"])
    # batch_size 16: 3 passes of 16 images (the last padded), one mask each;
    # 100: 40 images x 2 stacked masks per pass (the last pass padded with a mask).
    for model, batch_size in ((resnet, 16), (resnet, 100), (user, 16), (user, 100)):
        layers = list(model.probe_names)
        full = ablated_network(model, layers, images.astype("float32"), labels, batch_size, "full")
        suffix = ablated_network(model, layers, images.astype("float32"), labels, batch_size, "suffix")
        assert suffix.method == "suffix" and full.method == "full"
        keep_rng = np.random.default_rng(0)
        for name in layers if batch_size == 16 else [layers[0], layers[-1]]:
            assert suffix.prepare(name, 5)[3] == (1 if batch_size == 16 else 2)  # masks per pass
            units = model.get_layer(name).output.shape[-1]
            keeps = (keep_rng.uniform(size=(5, units)) < 0.5).astype("float32")
            fill = keep_rng.uniform(size=units).astype("float32")
            np.testing.assert_array_equal(suffix.correct(name, keeps, fill), full.correct(name, keeps, fill))
    # On JAX the cut is kept on the device where it fits (here: the host's
    # memory); on the host it gives the same right/wrong per image.
    if keras.backend.backend() == "jax":
        for model, batch_size in ((resnet, 16), (user, 100)):
            layers = list(model.probe_names)
            full = ablated_network(model, layers, images.astype("float32"), labels, batch_size, "full")
            for on_device in (None, True, False):
                suffix = ablated_network(model, layers, images.astype("float32"), labels, batch_size, "suffix", on_device)
                keep_rng = np.random.default_rng(1)
                for name in (layers[0], layers[-1]):
                    units = model.get_layer(name).output.shape[-1]
                    keeps = (keep_rng.uniform(size=(3, units)) < 0.5).astype("float32")
                    fill = keep_rng.uniform(size=units).astype("float32")
                    np.testing.assert_array_equal(suffix.correct(name, keeps, fill), full.correct(name, keeps, fill))
                    assert suffix.resident == (on_device is not False)
    else:
        with pytest.raises(ParameterError, match="on_device applies on the jax backend"):
            ablated_network(resnet, list(resnet.probe_names), images.astype("float32"), labels, 16, "suffix", True)
    # The cut of the user model's probe: the probe's output and the skip (stem's output).
    masked, _, outputs = masked_model(user, list(user.probe_names))
    from tf_selectivity.core.compat import graph_cut

    assert len(graph_cut(masked, outputs[user.probe_names[0]])) == 2


@pytest.mark.backends
def test_unit_importance_equals_one_unit_hand_masked(rng):
    plain = _plain()
    model = instrument(plain, alpha=0.0)
    images, labels = _data(rng)
    conv2_probe = [n for n in model.probe_names if "conv2" in n][0]
    frame = unit_importance(model, images, labels, layers=[conv2_probe], batch_size=64)
    assert list(frame["unit"]) == list(range(8)) and (frame["layer"] == conv2_probe).all()
    clean = _accuracy(model, images, labels)
    assert frame["clean_accuracy"].eq(clean).all()
    for unit in (0, 5):
        keep = np.ones(8, "float32")
        keep[unit] = 0
        inputs = keras.Input((12, 12, 3))
        x = plain.get_layer("conv2")(plain.get_layer("conv1")(plain.layers[1](inputs)))
        hand = keras.Model(inputs, plain.get_layer("logits")(plain.get_layer("pool")(keras.layers.Lambda(lambda t: t * keep)(x))))
        predicted = ops.convert_to_numpy(hand(images)).argmax(-1)
        row = frame.iloc[unit]
        assert row["accuracy"] == pytest.approx((predicted == labels).mean(), abs=1e-12)
        assert row["importance"] == pytest.approx(clean - (predicted == labels).mean(), abs=1e-12)
        clean_predicted = ops.convert_to_numpy(model(images)).argmax(-1)
        drops = [(clean_predicted[labels == c] == c).mean() - (predicted[labels == c] == c).mean() for c in range(4)]
        assert row["max_class_drop"] == pytest.approx(max(drops), abs=1e-12)
        assert row["max_drop_class"] == int(np.argmax(drops))


def test_importance_correlations_are_scipy_spearman_with_a_bootstrap_ci():
    from scipy.stats import spearmanr

    data_rng = np.random.default_rng(3)
    si = data_rng.uniform(size=30)
    frame = pd.DataFrame({"layer": "a", "unit": np.arange(30), "selectivity": si,
                          "importance": si + data_rng.normal(0, 0.3, 30)})
    table = importance_correlations(frame, n_resamples=2000)
    row = table.iloc[0]
    assert row["si_column"] == "selectivity" and row["num_units"] == 30 and len(table) == 1
    assert row["spearman"] == pytest.approx(spearmanr(frame["selectivity"], frame["importance"]).statistic, abs=1e-12)
    assert row["ci_low"] < row["spearman"] < row["ci_high"]


# ResNet-18's and ResNet-50's blocks, one, two and one per stage: every kind
# of block the full networks have (identity shortcuts, 1x1 projections of
# stride 1 and 2) in a network small enough to ablate by the whole network.
FEW_BLOCKS = {18: ("basic", (1, 2, 1)), 50: ("bottleneck", (1, 2, 1))}


@pytest.mark.backends
@pytest.mark.parametrize("depth", [18, 50])
def test_imagenet_resnets_ablate_by_their_suffix_as_by_the_whole_network(rng, depth, monkeypatch):
    # The Tiny ImageNet networks (basic and bottleneck blocks, 1x1 stride-2
    # shortcuts): labels are the clean network's own predictions, so the
    # clean accuracy is 1 and every mask that changes a prediction shows.
    monkeypatch.setitem(IMAGENET_RESNET_BLOCKS, depth, FEW_BLOCKS[depth])
    keras.utils.set_random_seed(0)
    model = build_model(f"resnet{depth}", num_classes=10, width=16, input_shape=(32, 32, 3))
    images = rng.uniform(0, 255, (24, 32, 32, 3)).astype("float32")
    labels = ops.convert_to_numpy(model(images)).argmax(-1)
    probes = list(model.probe_names)
    # Bottleneck blocks: one block output (after the residual sum; a
    # residual branch whose last batch norm starts at zero would hide a mask
    # inside the block), to keep the whole-network reference (a pass per
    # mask) short.
    outputs = [name for name in probes if name.endswith("_out")]
    layers = [probes[0], probes[len(probes) // 2], probes[-1]] if depth == 18 else [outputs[len(outputs) // 2]]
    kwargs = dict(layers=layers, fractions=(0.0, 0.5, 1.0), random_seeds=(0,), batch_size=16)
    suffix = ablation_curves(model, images, labels, method="suffix", **kwargs)
    full = ablation_curves(model, images, labels, method="full", **kwargs)
    pd.testing.assert_frame_equal(suffix, full)
    assert (suffix[suffix["fraction"] == 0.0]["accuracy"] == 1.0).all()
    assert suffix["accuracy"].min() < 1.0
    importance = unit_importance(model, images, labels, layers=[probes[0]], method="suffix", batch_size=16)
    reference = unit_importance(model, images, labels, layers=[probes[0]], method="full", batch_size=16)
    pd.testing.assert_frame_equal(importance, reference)


def test_progress_is_one_line_per_pass_off_a_terminal_and_nothing_at_verbose_0(rng, capsys):
    from conftest import log_lines

    model = instrument(_plain(), alpha=0.0)
    images, labels = _data(rng, count=24)
    quiet = ablation_curves(model, images, labels, fractions=(0.0, 1.0), random_seeds=(0,))
    quiet_importance = unit_importance(model, images, labels)
    assert capsys.readouterr().out == ""
    shown = ablation_curves(model, images, labels, fractions=(0.0, 1.0), random_seeds=(0,), verbose=1)
    shown_importance = unit_importance(model, images, labels, verbose=1)
    ablation_curves(model, images, labels, fractions=(0.0, 1.0), random_seeds=(0,), method="full", verbose=1)
    # Every mask of every layer is an item: 2 probes x 3 orders x 2 fractions; each unit and each layer intact.
    assert [line.split(", ")[0] for line in log_lines(capsys.readouterr().out)] == [
        "Ablation curves: 12/12 ablations", "Unit importance: 16/16 ablations", "Ablation curves: 12/12 ablations"]
    pd.testing.assert_frame_equal(shown, quiet)
    pd.testing.assert_frame_equal(shown_importance, quiet_importance)

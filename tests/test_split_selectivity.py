"""Selectivity over the validation split, from the validation pass Keras runs
anyway (`SelectivityModel.compile(split_selectivity=True)`).

The oracle is the analysis itself: `unit_statistics.evaluate_responses` (NumPy,
float64) on the same split with the final weights. The metric accumulates in
float32 on the device; the tolerance below is float32 rounding of the class
sums and of the index.
"""

import keras
import numpy as np
import pytest
from keras import ops

from tf_selectivity.models.probe import SelectivityProbe
from tf_selectivity.models import SelectivityModel
from tf_selectivity.measures.selectivity import (
    ClassSelectivityAccumulator,
    selectivity_from_class_means,
    selectivity_from_class_sums,
)
from tf_selectivity.measures.unit_statistics import evaluate_responses

pytestmark = pytest.mark.backends

CLASSES = 4
PROBES = ("probe_relu", "probe_linear", "probe_top")
# float32 class sums over a few hundred samples, then the index in float32:
# the differences from the float64 analysis were <= 2e-7 when this was
# written (both backends); 1e-5 absolute leaves room for other compilers.
TOLERANCE = 1e-5

# The on-device data path is JAX's (tests/conftest.py: jax_only).
jax_only = pytest.mark.jax_only


def tiny_model(seed=0, alpha=-0.5, size=8):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv1")(x)
    x = SelectivityProbe(num_classes=CLASSES, alpha=alpha, name="probe_relu")(x)
    # Before its activation: mixed-sign responses, where eq. 1 and its guard
    # differ from the bounded index.
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv2")(x)
    x = SelectivityProbe(num_classes=CLASSES, alpha=alpha, name="probe_linear")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(5, activation="relu", name="hidden")(x)
    x = SelectivityProbe(num_classes=CLASSES, alpha=alpha, name="probe_top")(x)  # a dense layer's units
    return SelectivityModel(inputs, keras.layers.Dense(CLASSES, name="logits")(x))


def tiny_data(train=96, validation=70, size=8, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (train, size, size, 3), dtype=np.uint8),
        rng.integers(0, CLASSES, train),
        rng.integers(0, 256, (validation, size, size, 3), dtype=np.uint8),
        rng.integers(0, CLASSES, validation),
    )


def analysis(model, images, labels, batch_size=32, index="eq1"):
    """The analysis' per-probe mean SI (float64, NumPy) and eq. 3 mean."""
    responses = model.unit_response_model()
    batches = [
        (images[i : i + batch_size].astype("float32"), labels[i : i + batch_size])
        for i in range(0, len(labels), batch_size)
    ]
    result = evaluate_responses(
        lambda x: responses(x, training=False), batches, num_classes=CLASSES,
        layer_names=list(PROBES), selectivity_index=index,
    )
    return dict(zip(PROBES, result.layer_selectivity())), result.mean_selectivity()


def assert_matches_analysis(logs, expected, prefix=""):
    layers, mean = expected
    for name in PROBES:
        assert logs[f"{prefix}split_selectivity/{name}"] == pytest.approx(layers[name], abs=TOLERANCE), name
    assert logs[f"{prefix}split_mean_selectivity"] == pytest.approx(mean, abs=TOLERANCE)


def test_validation_split_selectivity_equals_the_analysis_of_the_final_weights():
    x, y, x_val, y_val = tiny_data()
    model = tiny_model()
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), split_selectivity=True)
    history = model.fit(
        x.astype("float32"), y, validation_data=(x_val.astype("float32"), y_val),
        batch_size=32, validation_batch_size=32, epochs=2, shuffle=False, verbose=0,
    ).history
    # Only the validation logs: a training batch is not a split.
    assert not [key for key in history if key.startswith("split_")]
    assert len(history["val_split_mean_selectivity"]) == 2
    expected = analysis(model, x_val, y_val)
    assert_matches_analysis({k: v[-1] for k, v in history.items()}, expected, prefix="val_")
    # The non-trivial case is exercised: some units respond with both signs.
    linear = model.activation_model()(x_val.astype("float32"))["probe_linear"]
    assert float(ops.convert_to_numpy(ops.min(linear))) < 0
    # Each evaluation starts from zero (the statistics are metric state): a
    # part of the split gives that part's index, not a running total.
    part = slice(0, 40)
    logs = model.evaluate(x_val[part].astype("float32"), y_val[part], batch_size=16, return_dict=True, verbose=0)
    assert_matches_analysis(logs, analysis(model, x_val[part], y_val[part]))
    assert logs["split_mean_selectivity"] != pytest.approx(expected[1], abs=1e-4)


def test_the_bounded_index_and_a_recompiled_model_follow_the_probes():
    x, y, x_val, y_val = tiny_data()
    model = tiny_model()
    model.set_selectivity_index("bounded")
    model.compile(optimizer="sgd", split_selectivity=True)
    logs = model.evaluate(x_val.astype("float32"), y_val, batch_size=32, return_dict=True, verbose=0)
    assert_matches_analysis(logs, analysis(model, x_val, y_val, index="bounded"))
    assert logs["split_selectivity/probe_linear"] != pytest.approx(
        analysis(model, x_val, y_val, index="eq1")[0]["probe_linear"], abs=1e-4
    )
    # Off (the default): nothing is recorded or logged.
    model.compile(optimizer="sgd")
    logs = model.evaluate(x_val.astype("float32"), y_val, batch_size=32, return_dict=True, verbose=0)
    assert not [key for key in logs if "split" in key]
    fresh = tiny_model()
    fresh.compile(optimizer="sgd")
    assert fresh.split_selectivity_tracker.variables == []
    assert "split_selectivity" not in fresh.get_compile_config()


def test_saved_models_keep_the_setting(tmp_path):
    x, y, x_val, y_val = tiny_data()
    model = tiny_model()
    model.compile(optimizer="sgd", split_selectivity=True)
    model.fit(x.astype("float32"), y, batch_size=32, epochs=1, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.split_selectivity
    logs = loaded.evaluate(x_val.astype("float32"), y_val, batch_size=32, return_dict=True, verbose=0)
    assert_matches_analysis(logs, analysis(model, x_val, y_val))


def test_statistics_stay_float32_under_mixed_bfloat16():
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        x, y, x_val, y_val = tiny_data()
        model = tiny_model()
        model.compile(optimizer="sgd", split_selectivity=True)
        logs = model.evaluate(x_val.astype("float32"), y_val, batch_size=32, return_dict=True, verbose=0)
        assert {v.dtype for v in model.split_selectivity_tracker.variables} == {"float32"}
        # The analysis sees the same bf16 feature maps (its unit responses
        # are float32 means of them too).
        assert_matches_analysis(logs, analysis(model, x_val, y_val))
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def test_model_without_probes_or_with_a_shared_probe_is_refused():
    inputs = keras.Input((4,))
    plain = SelectivityModel(inputs, keras.layers.Dense(CLASSES)(inputs))
    with pytest.raises(ValueError, match="needs a model with SelectivityProbe"):
        plain.compile(optimizer="sgd", split_selectivity=True)
    x_val, y_val = np.zeros((8, 4), "float32"), np.arange(8) % CLASSES
    for split_selectivity in (False, True):  # without it, a shared probe is fine
        shared = SelectivityProbe(num_classes=CLASSES, name="shared")
        x = shared(keras.layers.Dense(4)(shared(inputs)))
        model = SelectivityModel(inputs, keras.layers.Dense(CLASSES)(x))
        model.compile(optimizer="sgd", split_selectivity=split_selectivity)
        if split_selectivity:
            with pytest.raises(ValueError, match="'shared' was called more than once"):
                model.evaluate(x_val, y_val, verbose=0)
        else:
            model.evaluate(x_val, y_val, verbose=0)


def test_the_device_index_is_the_analysis_index():
    """`selectivity_from_class_sums` (keras.ops, float32 here) and the NumPy
    accumulator (float64) run one implementation: same values on units that
    are dead, negative for every class, mixed-sign near eq. 1's pole, and
    with a class absent."""
    rng = np.random.default_rng(5)
    responses = rng.normal(0.5, 1.0, (300, 7))
    responses[:, 0] = 0.0  # dead
    responses[:, 1] = -np.abs(responses[:, 1]) - 0.1  # negative for every class
    labels = rng.integers(0, 5, 300)
    labels[labels == 3] = 4  # class 3 absent
    responses[:, 2] = np.where(labels == 0, 1.0, -0.999 + 0.001 * rng.random(300))  # near the pole
    accumulator = ClassSelectivityAccumulator(5).update(responses, labels)
    for index in ("eq1", "bounded"):
        expected = accumulator.selectivity(index)
        got = ops.convert_to_numpy(
            selectivity_from_class_sums(
                ops.convert_to_tensor(accumulator.class_sums, "float32"),
                ops.convert_to_tensor(accumulator.class_counts, "float32"),
                index,
            )
        )
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=index)
        means = accumulator.class_means()
        means[3] = 123.0  # an absent class' row is ignored, whatever it holds
        np.testing.assert_array_equal(
            selectivity_from_class_means(means, accumulator.class_counts > 0, index), expected
        )
    assert expected[0] == 0.0 and np.all(np.isfinite(expected))


@jax_only
def test_split_selectivity_on_the_device_and_packed():
    """The device loop's validation (a `fori_loop` over `test_step`) logs it
    too, and `jax.vmap` over two replicates gives each its own value."""
    import jax
    import jax.numpy as jnp

    from tf_selectivity.training.device_loop import DeviceTrainer, model_state

    data = tiny_data()
    model = tiny_model()
    model.compile(optimizer=keras.optimizers.SGD(0.05), split_selectivity=True)
    trainer = DeviceTrainer(model, *data, batch_size=32, eval_batch_size=32, seed=0)
    history = trainer.fit(epochs=2, verbose=0).history
    assert not [key for key in history if key.startswith("split_")]
    expected = analysis(model, data[2], data[3])
    assert_matches_analysis({k: v[-1] for k, v in history.items()}, expected, prefix="val_")

    other = tiny_model(seed=1)
    other.compile(optimizer=keras.optimizers.SGD(0.05), split_selectivity=True)
    other.optimizer.build(other.trainable_variables)
    fn = trainer.functions
    states = [fn.reset_metrics(model_state(m)) for m in (model, other)]
    packed = jax.jit(jax.vmap(fn.evaluate, in_axes=(0, None)))(
        jax.tree.map(lambda *a: jnp.stack(a), *states), trainer.data
    )[1]
    for lane, replica in enumerate((model, other)):
        assert_matches_analysis({k: float(v[lane]) for k, v in packed.items()},
                                analysis(replica, data[2], data[3]))

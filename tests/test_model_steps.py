"""SelectivityModel's train/test steps: sample weights, class weights and
the metrics of `compile(metrics=...)`, on every backend."""

import numpy as np
import pytest
import keras
from keras import ops

from tf_selectivity.models.probe import SelectivityProbe
from tf_selectivity.models import SelectivityModel
from test_selectivity import reference_si

pytestmark = pytest.mark.backends

CLASSES = 4


def probed_model(alpha, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(5, 3, activation="relu", name="conv1")(inputs)
    x = SelectivityProbe(num_classes=CLASSES, alpha=alpha, name="probe1")(x)
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv2")(x)
    x = SelectivityProbe(num_classes=CLASSES, alpha=alpha, name="probe2")(x)
    # A random bias: a sample whose units are all silent still gets distinct
    # logits (no ties for top-k).
    logits = keras.layers.Dense(CLASSES, bias_initializer="random_normal", name="logits")(
        keras.layers.GlobalAveragePooling2D()(x)
    )
    return SelectivityModel(inputs, logits)


def batch(rng, count=24):
    x = rng.normal(size=(count, 6, 6, 3)).astype("float32")
    y = np.arange(count) % CLASSES
    rng.shuffle(y)
    return x, y


def log_softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def test_sample_weights_weight_the_cross_entropy_not_the_selectivity_term(rng):
    alpha = -3.0
    model = probed_model(alpha)
    model.compile(optimizer="sgd")
    x, y = batch(rng)
    weights = rng.uniform(0, 2, size=len(y)).astype("float32")
    weights[:3] = 0.0
    logs = model.test_on_batch(x, y, sample_weight=weights, return_dict=True)

    logits = ops.convert_to_numpy(model(x))
    per_sample = -log_softmax(logits.astype(np.float64))[np.arange(len(y)), y]
    expected_ce = np.sum(weights * per_sample) / len(y)  # Keras' sum_over_batch_size
    activations = model.activation_model()(x)
    # Unweighted class means: every sample counts once, weight 0 included.
    layer_si = [
        reference_si(ops.convert_to_numpy(activations[name]), y, CLASSES, epsilon=1e-6).mean()
        for name in ("probe1", "probe2")
    ]
    expected_term = -alpha * np.mean(layer_si)
    assert logs["cross_entropy"] == pytest.approx(expected_ce, rel=1e-5)
    assert logs["selectivity_term"] == pytest.approx(expected_term, rel=1e-4)
    assert logs["loss"] == pytest.approx(expected_ce + expected_term, rel=1e-5)
    keras_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits, sample_weight=weights)
    assert logs["cross_entropy"] == pytest.approx(float(ops.convert_to_numpy(keras_loss)), rel=1e-5)
    unweighted = model.test_on_batch(x, y, return_dict=True)
    assert unweighted["cross_entropy"] == pytest.approx(per_sample.mean(), rel=1e-5)
    assert unweighted["selectivity_term"] == pytest.approx(expected_term, rel=1e-4)


def test_class_weight_equals_per_sample_weights_and_changes_the_step(rng):
    x, y = batch(rng)
    class_weight = {0: 0.5, 1: 2.0, 2: 1.0, 3: 0.0}
    results = []
    for kind in ("class_weight", "sample_weight", "none"):
        model = probed_model(-1.0, seed=3)
        model.compile(optimizer=keras.optimizers.SGD(0.5))
        arguments = {
            "class_weight": {"class_weight": class_weight},
            "sample_weight": {"sample_weight": np.array([class_weight[c] for c in y], "float32")},
            "none": {},
        }[kind]
        model.fit(x, y, batch_size=len(y), epochs=1, shuffle=False, verbose=0, **arguments)
        results.append(ops.convert_to_numpy(model.get_layer("conv1").kernel))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-7)
    assert not np.allclose(results[0], results[2])


def test_compiled_metrics_are_updated_with_logits_and_logged(rng):
    model = probed_model(-1.0)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2")],
        weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="weighted_acc")],
    )
    x, y = batch(rng, count=40)
    weights = rng.uniform(0, 1, size=len(y)).astype("float32")
    # evaluate: several batches, metrics reset first, the model unchanged.
    logs = model.evaluate(x, y, sample_weight=weights, batch_size=16, return_dict=True, verbose=0)
    logits = ops.convert_to_numpy(model.predict(x, verbose=0))
    top2 = np.argsort(-logits, axis=1)[:, :2]
    correct = logits.argmax(axis=1) == y
    assert logs["top2"] == pytest.approx(np.mean([y[i] in top2[i] for i in range(len(y))]), abs=1e-6)
    assert logs["weighted_acc"] == pytest.approx(np.sum(weights * correct) / np.sum(weights), rel=1e-5)
    assert logs["accuracy"] == pytest.approx(correct.mean(), abs=1e-6)
    assert logs == model.evaluate(x, y, sample_weight=weights, batch_size=16, return_dict=True, verbose=0)
    history = model.fit(x, y, validation_data=(x, y), batch_size=16, epochs=2, verbose=0).history
    for key in ("top2", "val_top2", "weighted_acc", "accuracy", "val_accuracy", "cross_entropy"):
        assert len(history[key]) == 2, key


def test_metric_names_must_not_shadow_the_built_in_logs(rng):
    model = probed_model(0.0)
    model.compile(optimizer="sgd", weighted_metrics=["accuracy"])
    x, y = batch(rng)
    with pytest.raises(ValueError, match="already one of SelectivityModel's logs"):
        model.test_on_batch(x, y)
    with pytest.raises(ValueError, match="do not pass `loss`"):
        model.compile(optimizer="sgd", loss="mse")

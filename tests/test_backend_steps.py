"""SelectivityModel's per-backend train step against Keras' own.

At alpha = 0 the selectivity term is 0, so a SelectivityModel must take
exactly the steps of a plain `keras.Model` with the same weights, trained
with sparse categorical cross-entropy from logits by Keras' own trainer of
the backend. Under `mixed_float16` Keras wraps the optimizer in a
`LossScaleOptimizer`, which divides the gradients by its loss scale: a step
that forgets `optimizer.scale_loss` moves the weights ~2^15 times too little.
"""

import keras
import numpy as np
import pytest
from keras import ops

from tf_selectivity.models.probe import SelectivityProbe
from tf_selectivity.models import SelectivityModel

pytestmark = pytest.mark.backends

CLASSES = 4
BATCH = 16


@pytest.fixture(params=["float32", "mixed_float16"])
def policy(request):
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(request.param)
    try:
        yield request.param
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def network(with_probes, alpha=0.0):
    """(inputs, logits) of a small conv net; probes after each activation."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv1")(inputs)
    if with_probes:
        x = SelectivityProbe(num_classes=CLASSES, alpha=alpha, name="probe1")(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv2")(x)
    if with_probes:
        x = SelectivityProbe(num_classes=CLASSES, alpha=alpha, name="probe2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    # float32 logits as Keras' mixed-precision guide advises; the Dense
    # layer itself computes in the policy's dtype.
    logits = keras.layers.Dense(CLASSES, name="logits")(x)
    return inputs, logits


def twin_models(alpha=0.0):
    """A SelectivityModel and a plain keras.Model with the same weights."""
    keras.utils.set_random_seed(7)
    selective = SelectivityModel(*network(True, alpha))
    plain = keras.Model(*network(False))
    for name in ("conv1", "conv2", "logits"):
        plain.get_layer(name).set_weights(selective.get_layer(name).get_weights())
    selective.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    plain.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return selective, plain


def data(steps):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(steps * BATCH, 8, 8, 3)).astype("float32")
    y = rng.integers(0, CLASSES, steps * BATCH)
    return x, y


def kernels(model):
    return {name: ops.convert_to_numpy(model.get_layer(name).kernel).astype(np.float64)
            for name in ("conv1", "conv2", "logits")}


@pytest.mark.parametrize("steps", [1, 5])
def test_alpha_zero_steps_equal_keras_own_steps(policy, steps):
    selective, plain = twin_models()
    if policy == "mixed_float16":
        assert isinstance(selective.optimizer, keras.optimizers.LossScaleOptimizer)
    before = kernels(selective)
    x, y = data(steps)
    for model in (selective, plain):
        model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    after_selective, after_plain = kernels(selective), kernels(plain)
    # Both steps run the same operations: the weights agreed bit for bit on
    # both backends when this test was written; the margin is for compilers
    # that fuse the two programs differently.
    tolerance = 1e-6
    for name in before:
        moved_plain = after_plain[name] - before[name]
        moved_selective = after_selective[name] - before[name]
        scale = np.abs(moved_plain).max()
        assert scale > 1e-4, name  # the plain model did move
        np.testing.assert_allclose(
            moved_selective, moved_plain, rtol=0, atol=tolerance * scale, err_msg=name
        )


def test_alpha_changes_the_total_loss_and_the_step(policy):
    x, y = data(1)
    results = {}
    for alpha in (0.0, -2.0):
        model, _ = twin_models(alpha)
        logs = model.test_on_batch(x, y, return_dict=True)
        before = kernels(model)
        history = model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0).history
        results[alpha] = logs, history, kernels(model), before
    zero, regularized = results[0.0][0], results[-2.0][0]
    assert zero["selectivity_term"] == 0.0
    assert zero["loss"] == pytest.approx(zero["cross_entropy"], rel=1e-6)
    # -alpha * mu_SI with alpha = -2 and a mean SI well above 0.
    assert regularized["selectivity_term"] == pytest.approx(2.0 * regularized["batch_selectivity"], rel=1e-5)
    assert regularized["selectivity_term"] > 0.05
    assert regularized["loss"] == pytest.approx(
        regularized["cross_entropy"] + regularized["selectivity_term"], rel=1e-5
    )
    assert regularized["cross_entropy"] == pytest.approx(zero["cross_entropy"], rel=1e-6)  # same weights
    fit_zero, fit_regularized = results[0.0][1], results[-2.0][1]
    assert fit_regularized["loss"][0] - fit_regularized["cross_entropy"][0] == pytest.approx(
        fit_regularized["selectivity_term"][0], rel=1e-4
    )
    assert fit_zero["selectivity_term"][0] == 0.0
    # The regularizer's gradient moves the weights (through the loss scale too).
    moved_zero = results[0.0][2]["conv1"] - results[0.0][3]["conv1"]
    moved_regularized = results[-2.0][2]["conv1"] - results[-2.0][3]["conv1"]
    assert np.abs(moved_regularized - moved_zero).max() > 0.05 * np.abs(moved_zero).max()


def _with_module_of_older_saves(path):
    """Rewrites a saved model's config as the code before TorchSGD moved to
    `tf_selectivity.training.optimizers` wrote it: the optimizer's `module` was
    `tf_selectivity.training.optimizers` (its registered name is unchanged)."""
    import json
    import zipfile

    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    optimizer = config["compile_config"]["optimizer"]
    assert optimizer["registered_name"] == "tf_selectivity>TorchSGD"
    assert optimizer["module"] == "tf_selectivity.training.optimizers"
    optimizer["module"] = "tf_selectivity.training.optimizers"
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)


def test_models_saved_with_torch_sgd_load_and_resume(tmp_path):
    from tf_selectivity.training.optimizers import TorchSGD
    from tf_selectivity.training import TorchSGD as ReExported
    from tf_selectivity.training.optimizers import TorchSGD as FromItsOldModule

    assert ReExported is TorchSGD and FromItsOldModule is TorchSGD
    model, _ = twin_models(alpha=-1.0)
    model.compile(optimizer=TorchSGD(0.05, momentum=0.9, weight_decay_l2=1e-3),
                  metrics=[keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2")])
    x, y = data(2)
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    _with_module_of_older_saves(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.optimizer, TorchSGD) and loaded.optimizer.momentum == 0.9
    for saved, restored in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(ops.convert_to_numpy(saved), ops.convert_to_numpy(restored))
    # Training on resumes where it stopped: the same next step as the original.
    for m in (model, loaded):
        m.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    for name, kernel in kernels(model).items():
        np.testing.assert_allclose(kernels(loaded)[name], kernel, rtol=1e-6, atol=1e-7)
    assert "top2" in loaded.evaluate(x, y, return_dict=True, verbose=0)

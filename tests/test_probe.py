"""SelectivityProbe and SelectivityModel: identity, losses = eq. 2-3, serialization."""

import numpy as np
import pytest
import keras
from keras import ops

from conftest import value_and_grad
from tf_selectivity.models.probe import SelectivityProbe, UnitResponses, find_probes
from tf_selectivity.models import SelectivityModel, build_model
from test_selectivity import reference_si

pytestmark = pytest.mark.backends


def small_model(alpha, probes=3, num_classes=5, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = inputs
    for i in range(probes):
        x = keras.layers.Conv2D(4 + 2 * i, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = SelectivityProbe(num_classes=num_classes, alpha=alpha, name=f"probe{i}")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return SelectivityModel(inputs, keras.layers.Dense(num_classes)(x))


def test_probe_is_identity_and_adds_no_loss_without_labels(rng):
    model = small_model(alpha=-3.0)
    x = rng.normal(size=(6, 8, 8, 3)).astype("float32")
    probe_out = keras.Model(model.inputs[0], model.get_layer("probe1").output)(x, training=True)
    conv_out = keras.Model(model.inputs[0], model.get_layer("conv1").output)(x, training=True)
    np.testing.assert_array_equal(ops.convert_to_numpy(probe_out), ops.convert_to_numpy(conv_out))
    model(x, training=True)
    assert model.losses == []


def test_shares_are_filled_with_one_over_layers():
    model = small_model(alpha=1.0, probes=4)
    assert [p.share for p in model.probes] == [0.25] * 4
    assert model.alpha == 1.0


@pytest.mark.parametrize("alpha", [-2.0, 0.5])
def test_probe_losses_sum_to_eq3(rng, alpha):
    model = small_model(alpha=alpha)
    x = rng.normal(size=(40, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 5, size=40)
    model(x, training=True, selectivity_labels=y)
    assert len(model.losses) == 3
    total = sum(float(ops.convert_to_numpy(l)) for l in model.losses)
    recorded = [float(ops.convert_to_numpy(p.batch_selectivity)) for p in model.probes]
    # (Calling another model that shares the layers clears their losses.)
    activations = model.activation_model()(x)
    per_layer = [
        reference_si(ops.convert_to_numpy(activations[p.name]), y, 5, epsilon=p.epsilon).mean()
        for p in model.probes
    ]
    np.testing.assert_allclose(total, -alpha * np.mean(per_layer), rtol=1e-4)
    np.testing.assert_allclose(recorded, per_layer, rtol=1e-4)


def test_probe_alone_counts_as_whole_network(rng):
    probe = SelectivityProbe(num_classes=3, alpha=-1.0)
    x = rng.gamma(2.0, size=(30, 4)).astype("float32")
    y = rng.integers(0, 3, size=30)
    probe(x, selectivity_labels=y)
    expected = np.mean(reference_si(x, y, 3, epsilon=1e-6))
    np.testing.assert_allclose(float(ops.convert_to_numpy(probe.losses[0])), expected, rtol=1e-5)


def test_probe_config_round_trip():
    probe = SelectivityProbe(num_classes=7, alpha=-0.3, share=0.25, epsilon=1e-5, index="bounded", name="p")
    clone = SelectivityProbe.from_config(probe.get_config())
    assert (clone.num_classes, clone.alpha, clone.share, clone.epsilon, clone.index, clone.name) == (
        7, -0.3, 0.25, 1e-5, "bounded", "p"
    )
    assert SelectivityProbe().index == "eq1"
    with pytest.raises(ValueError, match="at least 2"):
        SelectivityProbe(num_classes=1)
    with pytest.raises(ValueError, match="index must be one of eq1, bounded"):
        SelectivityProbe(index="eq2")


@pytest.mark.parametrize("index", ["eq1", "bounded"])
def test_probe_regularizes_the_index_it_is_given(rng, index):
    # Mixed-sign class means (as leaky-ReLU units have): the two indices differ here.
    y = rng.integers(0, 3, size=60)
    class_means = np.array([[1.0, -0.3, 0.5], [-0.2, 0.8, -0.4], [-0.1, -0.2, 0.6]])  # (classes, units)
    x = (class_means[y] + rng.normal(scale=0.05, size=(60, 3))).astype("float32")
    probe = SelectivityProbe(num_classes=3, alpha=-2.0, index=index)
    probe(x, selectivity_labels=y)
    expected = np.mean(reference_si(x, y, 3, epsilon=1e-6, index=index))
    other = np.mean(reference_si(x, y, 3, epsilon=1e-6, index="bounded" if index == "eq1" else "eq1"))
    assert abs(expected - other) > 1e-3  # the test can tell the indices apart
    np.testing.assert_allclose(float(ops.convert_to_numpy(probe.losses[0])), 2.0 * expected, rtol=1e-5)


def test_build_model_sets_the_index_on_every_probe():
    model = build_model("resnet8", input_shape=(16, 16, 3), selectivity_index="bounded")
    assert {p.index for p in model.probes} == {"bounded"} and model.selectivity_index == "bounded"
    model.set_selectivity_index("eq1")
    assert model.selectivity_index == "eq1"
    assert build_model("resnet8", input_shape=(16, 16, 3)).selectivity_index == "eq1"


def test_unit_responses_layer(rng):
    x = rng.normal(size=(2, 3, 4, 5)).astype("float32")
    np.testing.assert_allclose(ops.convert_to_numpy(UnitResponses()(x)), x.mean(axis=(1, 2)), rtol=1e-6)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
@pytest.mark.parametrize("alpha", [-1.0, 1.0])
def test_regularizer_gradient_step_moves_network_si(rng, alpha, activation):
    """One gradient step on the regularizer alone (no cross-entropy), through
    the weights of a real network, moves its batch SI in the sign of alpha,
    also for leaky-ReLU units (eq. 1, signed responses)."""
    slope = 0.3 if activation == "leaky_relu" else 0.0
    model = build_model(
        "resnet8", alpha=alpha, activation=activation, leaky_slope=slope, input_shape=(16, 16, 3)
    )
    x = rng.uniform(0, 255, size=(64, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 10, size=64)
    kernel = model.get_layer("s2b1_conv1").kernel
    index = [id(v) for v in model.trainable_variables].index(id(kernel))

    def regularizer(kernel_value):
        trainable = [v.value for v in model.trainable_variables]
        trainable[index] = kernel_value
        non_trainable = [v.value for v in model.non_trainable_variables]
        _, _, losses = model.stateless_call(
            trainable, non_trainable, x, training=True, return_losses=True, selectivity_labels=y
        )
        return sum(losses)

    def mean_si():
        model(x, training=True, selectivity_labels=y)
        return np.mean([float(ops.convert_to_numpy(p.batch_selectivity)) for p in model.probes])

    _, grad = value_and_grad(regularizer, ops.convert_to_numpy(kernel.value))
    before = mean_si()
    kernel.assign(ops.convert_to_numpy(kernel.value) - 0.05 * grad / np.abs(grad).max())
    after = mean_si()
    assert np.sign(after - before) == np.sign(alpha)


def test_find_probes_in_nested_models(rng):
    inner = small_model(alpha=-1.0, probes=2)
    inputs = keras.Input((8, 8, 3))
    outer = SelectivityModel(inputs, inner(inputs))
    assert [p.name for p in find_probes(outer)] == ["probe0", "probe1"]


class _ProbeOwner(keras.layers.Layer):
    """A user layer holding sublayers in a private attribute, a public one
    and a list with a dict inside, in that order."""

    def __init__(self, num_classes, **kwargs):
        super().__init__(**kwargs)
        self._conv = keras.layers.Conv2D(4, 1, activation="relu", name="owned_conv")
        self.probe = SelectivityProbe(num_classes=num_classes, alpha=-1.0, name="owned_probe")
        self.tail = [keras.layers.ReLU(name="r1"), {"last": SelectivityProbe(num_classes=num_classes, alpha=-1.0, name="listed_probe")}]

    def call(self, inputs):
        x = self.probe(self._conv(inputs))
        return self.tail[1]["last"](self.tail[0](x))


def test_find_probes_in_layers_that_own_sublayers(rng):
    from tf_selectivity.models.probe import all_layers, child_layers

    inputs = keras.Input((8, 8, 3))
    owner = _ProbeOwner(num_classes=3, name="owner")
    x = owner(inputs)
    sequential = keras.Sequential(
        [keras.layers.Conv2D(3, 1, name="seq_conv"), SelectivityProbe(num_classes=3, alpha=-1.0, name="seq_probe")],
        name="seq",
    )
    x = SelectivityProbe(num_classes=3, alpha=-1.0, name="top_probe")(sequential(x))
    model = SelectivityModel(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))
    assert [p.name for p in find_probes(model)] == ["owned_probe", "listed_probe", "seq_probe", "top_probe"]
    assert [layer.name for layer in child_layers(owner)] == ["owned_conv", "owned_probe", "r1", "listed_probe"]
    names = [layer.name for layer in all_layers(model)]
    assert names.index("owner") < names.index("owned_conv") < names.index("seq") < names.index("seq_conv")
    assert len(names) == len(set(names))
    # The probes inside get the labels: each records a batch SI and a loss term.
    x_batch = rng.normal(size=(12, 8, 8, 3)).astype("float32")
    y_batch = np.arange(12) % 3
    model(x_batch, training=True, selectivity_labels=y_batch)
    assert len(model.losses) == 4

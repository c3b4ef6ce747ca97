"""The class selectivity index against plain-NumPy references and known cases."""

import numpy as np
import pytest
from keras import ops

from conftest import value_and_grad
from tf_selectivity.measures.selectivity import (
    EQ1_GUARD,
    ClassSelectivityAccumulator,
    batch_class_selectivity,
    class_selectivity,
    eq1_guard_active,
    mean_selectivity,
    selectivity_from_class_means,
)


def reference_si(activations, labels, num_classes, epsilon=0.0, index="eq1"):
    """Eq. 1 written out with loops: "eq1" floors the denominator mu_max +
    mu_rest at 0.1 (|mu_max| + |mu_rest|); "bounded" divides by
    |mu_max| + |mu_rest|."""
    acts = np.asarray(activations, dtype=np.float64)
    if acts.ndim > 2:
        acts = acts.reshape(acts.shape[0], -1, acts.shape[-1]).mean(axis=1)
    out = np.zeros(acts.shape[1])
    present = [c for c in range(num_classes) if np.any(labels == c)]
    for u in range(acts.shape[1]):
        means = [acts[labels == c, u].mean() for c in present]
        if len(means) < 2:
            continue
        top = max(means)
        rest = (sum(means) - top) / (len(means) - 1)
        magnitude = abs(top) + abs(rest)
        den = magnitude if index == "bounded" else max(top + rest, 0.1 * magnitude)
        den += epsilon
        out[u] = (top - rest) / den if den > 0 else 0.0
    return out


def test_matches_reference_on_random_dense(rng):
    acts = rng.gamma(2.0, 1.0, size=(300, 17))
    labels = rng.integers(0, 10, size=300)
    np.testing.assert_allclose(class_selectivity(acts, labels, 10), reference_si(acts, labels, 10), rtol=1e-12)


def test_matches_reference_on_random_feature_maps(rng):
    acts = np.maximum(rng.normal(size=(120, 5, 6, 8)), 0)
    labels = rng.integers(0, 4, size=120)
    np.testing.assert_allclose(class_selectivity(acts, labels, 4), reference_si(acts, labels, 4), rtol=1e-12)


def test_known_cases():
    labels = np.repeat(np.arange(5), 20)
    only_class_3 = (labels == 3).astype(float) * 2.5
    flat = np.full(100, 0.7)
    dead = np.zeros(100)
    # Means 4 for class 0 and 1 elsewhere: (4 - 1) / (4 + 1) = 0.6.
    graded = np.where(labels == 0, 4.0, 1.0)
    acts = np.stack([only_class_3, flat, dead, graded], axis=1)
    np.testing.assert_allclose(class_selectivity(acts, labels, 5), [1.0, 0.0, 0.0, 0.6], atol=1e-15)


def test_relu_responses_give_the_same_value_under_both_indices(rng):
    acts = np.maximum(rng.normal(size=(300, 4, 4, 9)), 0)
    labels = rng.integers(0, 10, size=300)
    eq1 = class_selectivity(acts, labels, 10, index="eq1")
    np.testing.assert_allclose(eq1, class_selectivity(acts, labels, 10, index="bounded"), rtol=1e-12)
    np.testing.assert_allclose(eq1, reference_si(acts, labels, 10), rtol=1e-12)
    assert np.all((eq1 >= 0) & (eq1 <= 1))
    assert not eq1_guard_active(np.stack([acts[labels == c].mean(axis=(0, 1, 2)) for c in range(10)])).any()


def test_eq1_for_mixed_sign_units_is_the_printed_formula():
    labels = np.repeat(np.arange(2), 10)
    # Class means 1 and -0.2: eq. 1 = 1.2 / 0.8 = 1.5; the bounded index says 1.
    mixed = np.where(labels == 0, 1.0, -0.2)
    acts = mixed[:, None]
    np.testing.assert_allclose(class_selectivity(acts, labels, 2), [1.5], rtol=1e-12)
    np.testing.assert_allclose(class_selectivity(acts, labels, 2, index="bounded"), [1.0], rtol=1e-12)
    # Means 2 (class 3) and -0.5 (the other three): (2.5) / (1.5) = 5/3.
    labels4 = np.repeat(np.arange(4), 5)
    graded = np.where(labels4 == 3, 2.0, -0.5)[:, None]
    np.testing.assert_allclose(class_selectivity(graded, labels4, 4), [5 / 3], rtol=1e-12)


def test_eq1_guard_near_and_beyond_the_pole(rng):
    labels = np.repeat(np.arange(4), 10)
    # Preferred mean 1, others -1: eq. 1 divides by zero; guarded: 2 / (0.1 * 2) = 10.
    at_pole = np.where(labels == 2, 1.0, -1.0)
    # Just past the guard's edge: 1 and -0.8 -> eq. 1 = 1.8 / 0.2 = 9 < 10: exact.
    below_guard = np.where(labels == 2, 1.0, -0.8)
    # Every class negative (means -0.5 and -2): eq. 1 = -0.6; guarded: 1.5 / (0.1 * 2.5) = 6.
    all_negative = np.where(labels == 1, -0.5, -2.0)
    acts = np.stack([at_pole, below_guard, all_negative], axis=1)
    si = class_selectivity(acts, labels, 4)
    np.testing.assert_allclose(si, [1 / EQ1_GUARD, 9.0, 6.0], rtol=1e-12)
    means = np.stack([acts[labels == c].mean(axis=0) for c in range(4)])
    assert eq1_guard_active(means).tolist() == [True, False, True]
    normal, normal_labels = rng.normal(size=(200, 300)), rng.integers(0, 10, 200)
    random = class_selectivity(normal, normal_labels, 10)
    assert np.all(np.isfinite(random)) and np.all((random >= 0) & (random <= 1 / EQ1_GUARD))
    np.testing.assert_allclose(random, reference_si(normal, normal_labels, 10), rtol=1e-12)
    bounded = class_selectivity(rng.normal(size=(200, 30)), rng.integers(0, 10, 200), 10, index="bounded")
    assert np.all((bounded >= 0) & (bounded <= 1))


def test_eq1_is_continuous_across_the_guard_edge():
    # Sweep the non-preferred mean through the pole at mu_rest = -mu_max.
    labels = np.array([0, 1])
    rests = np.linspace(-3.0, 0.5, 3501)
    acts = np.stack([np.ones_like(rests), rests])  # (2 samples, units)
    si = class_selectivity(acts, labels, 2)
    assert np.all(np.isfinite(si))
    # Lipschitz: |dSI/dmu_rest| <= 2 / (g^2 (|mu_max| + |mu_rest|)) <= 2 / g^2 here,
    # so no step of 1e-3 may move SI by more than 0.2 (a jump to the plateau would).
    assert np.max(np.abs(np.diff(si))) <= 1e-3 * 2 / EQ1_GUARD**2
    exact = rests > -(1 - EQ1_GUARD) / (1 + EQ1_GUARD)  # 1 + r >= 0.1 (1 - r)
    np.testing.assert_allclose(si[exact], (1 - rests[exact]) / (1 + rests[exact]), rtol=1e-12)


def test_streaming_equals_one_shot_and_merge(rng):
    acts = rng.gamma(1.5, size=(250, 3, 3, 6))
    labels = rng.integers(0, 10, size=250)
    expected = class_selectivity(acts, labels, 10)
    acc = ClassSelectivityAccumulator(10)
    for start in range(0, 250, 37):
        acc.update(acts[start : start + 37], labels[start : start + 37])
    np.testing.assert_allclose(acc.selectivity(), expected, rtol=1e-12)
    first, second = ClassSelectivityAccumulator(10), ClassSelectivityAccumulator(10)
    first.update(acts[:100], labels[:100])
    second.update(acts[100:], labels[100:])
    np.testing.assert_allclose(first.merge(second).selectivity(), expected, rtol=1e-12)
    assert acc.num_samples == 250


def test_absent_class_is_ignored_and_one_hot_labels(rng):
    acts = rng.gamma(2.0, size=(60, 4))
    labels = rng.integers(0, 3, size=60)  # classes 3..9 never appear
    expected = reference_si(acts, labels, 10)
    np.testing.assert_allclose(class_selectivity(acts, labels, 10), expected, rtol=1e-12)
    one_hot = np.eye(10)[labels]
    np.testing.assert_allclose(class_selectivity(acts, one_hot, 10), expected, rtol=1e-12)


def test_dead_units_and_preferred_class():
    labels = np.array([0, 1, 2, 0, 1, 2])
    acts = np.array([[0, 1.0], [0, 2.0], [0, 9.0], [0, 1.0], [0, 2.0], [0, 9.0]])
    acc = ClassSelectivityAccumulator(3).update(acts, labels)
    assert acc.dead_units().tolist() == [True, False]
    assert acc.preferred_class()[1] == 2
    assert acc.selectivity()[0] == 0.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="labels must be in"):
        class_selectivity(np.ones((3, 2)), np.array([0, 1, 5]), 3)
    with pytest.raises(ValueError, match="3 activations but 2 labels"):
        class_selectivity(np.ones((3, 2)), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="at least 2"):
        ClassSelectivityAccumulator(1)
    with pytest.raises(ValueError, match="No activations"):
        ClassSelectivityAccumulator(3).selectivity()


def test_single_present_class_has_no_contrast():
    assert selectivity_from_class_means(np.array([[1.0, 2.0], [0, 0]]), np.array([True, False])).tolist() == [0, 0]


def test_mean_selectivity_averages_layers_first():
    # Layer means 1.0 (1 unit) and 0.0 (3 units): eq. 3 gives 0.5, not 0.25.
    assert mean_selectivity([np.array([1.0]), np.zeros(3)]) == 0.5


@pytest.mark.backends
@pytest.mark.parametrize("index", ["eq1", "bounded"])
@pytest.mark.parametrize("epsilon", [0.0, 1e-6])
def test_batch_version_matches_reference(rng, epsilon, index):
    acts = rng.gamma(2.0, size=(64, 4, 4, 12)).astype("float32")
    labels = rng.integers(0, 6, size=64)  # classes 6..9 absent
    got = ops.convert_to_numpy(batch_class_selectivity(acts, labels, 10, epsilon=epsilon, index=index))
    np.testing.assert_allclose(got, reference_si(acts, labels, 10, epsilon, index), rtol=2e-5, atol=1e-6)


@pytest.mark.backends
@pytest.mark.parametrize("index", ["eq1", "bounded"])
def test_batch_version_matches_reference_for_leaky_responses(rng, index):
    # Leaky-ReLU-like responses with a wide spread of class means, so that some
    # units are mixed-sign, some negative for every class, some near the pole.
    pre = rng.normal(size=(96, 3, 3, 40)) + rng.normal(scale=0.6, size=(10, 1, 1, 40))[rng.integers(0, 10, 96) % 10]
    acts = np.where(pre > 0, pre, 0.3 * pre).astype("float32")
    labels = rng.integers(0, 10, size=96)
    got = ops.convert_to_numpy(batch_class_selectivity(acts, labels, 10, epsilon=0.0, index=index))
    expected = reference_si(acts, labels, 10, 0.0, index)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert np.all(np.isfinite(got))


@pytest.mark.backends
def test_mixed_sign_unit_has_a_gradient_under_eq1_only():
    labels = np.repeat(np.arange(2), 8)
    acts = np.where(labels == 0, 1.0, -0.2)[:, None].astype("float32")  # class means 1 and -0.2

    def si(index):
        return lambda a: ops.sum(batch_class_selectivity(a, labels, 2, epsilon=0.0, index=index))

    value, grad = value_and_grad(si("eq1"), acts)
    np.testing.assert_allclose(value, 1.5, rtol=1e-6)
    # d/dmu_max = 2 mu_rest / d^2 = -0.625, d/dmu_rest = -2 mu_max / d^2 = -3.125,
    # each shared by the 8 samples of its class.
    np.testing.assert_allclose(grad[labels == 0, 0], -0.625 / 8, rtol=1e-5)
    np.testing.assert_allclose(grad[labels == 1, 0], -3.125 / 8, rtol=1e-5)
    value, grad = value_and_grad(si("bounded"), acts)
    np.testing.assert_allclose(value, 1.0, rtol=1e-6)
    assert np.all(grad == 0.0)


@pytest.mark.backends
def test_eq1_gradient_is_finite_and_bounded_at_and_past_the_pole():
    labels = np.array([0, 1])
    # Units: exactly at the pole (1, -1), just below the guard (1, -0.8), all negative.
    acts = np.array([[1.0, 1.0, -0.5], [-1.0, -0.8, -2.0]], dtype="float32")
    value, grad = value_and_grad(lambda a: ops.sum(batch_class_selectivity(a, labels, 2, epsilon=0.0)), acts)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(value, 10.0 + 9.0 + 6.0, rtol=1e-5)
    np.testing.assert_allclose(grad[:, 0], 0.0, atol=1e-5)  # on the plateau (round-off only)
    magnitude = np.abs(acts).sum(axis=0)
    assert np.all(np.abs(grad) <= 2.0 / (EQ1_GUARD**2 * magnitude) + 1e-6)


@pytest.mark.backends
def test_batch_version_dead_units_have_zero_si_and_finite_gradient(rng):
    acts = rng.gamma(2.0, size=(32, 6)).astype("float32")
    acts[:, 2] = 0.0
    labels = rng.integers(0, 10, size=32)
    si = ops.convert_to_numpy(batch_class_selectivity(acts, labels, 10, epsilon=0.0))
    assert si[2] == 0.0
    _, grad = value_and_grad(lambda a: ops.sum(batch_class_selectivity(a, labels, 10, epsilon=0.0)), acts)
    assert np.all(np.isfinite(grad))
    assert np.all(grad[:, 2] == 0.0)


@pytest.mark.backends
@pytest.mark.parametrize("leaky", [False, True])
@pytest.mark.parametrize("alpha", [-1.0, 1.0])
def test_gradient_step_of_regularizer_moves_si_in_sign_of_alpha(rng, alpha, leaky):
    acts = rng.gamma(2.0, size=(128, 3, 3, 16)).astype("float32")
    if leaky:  # shift some responses below zero, as a leaky ReLU's
        acts = acts - np.float32(1.0)
    labels = rng.integers(0, 10, size=128)

    def regularizer(a):
        return -alpha * ops.mean(batch_class_selectivity(a, labels, 10))

    before, grad = value_and_grad(regularizer, acts)
    # Normalized step: the gradient per activation is tiny (1 / (N*H*W*U)).
    stepped = acts - 0.2 * (grad / np.abs(grad).max()).astype("float32")
    si_before = ops.convert_to_numpy(ops.mean(batch_class_selectivity(acts, labels, 10)))
    si_after = ops.convert_to_numpy(ops.mean(batch_class_selectivity(stepped, labels, 10)))
    assert np.sign(si_after - si_before) == np.sign(alpha)
    assert abs(si_after - si_before) > 1e-3

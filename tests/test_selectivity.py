"""The class selectivity index against plain-NumPy references and known cases."""

import numpy as np
import pytest
from keras import ops

from conftest import value_and_grad
from tf_selectivity.selectivity import (
    ClassSelectivityAccumulator,
    batch_class_selectivity,
    class_selectivity,
    mean_selectivity,
    selectivity_from_class_means,
)

pytestmark = pytest.mark.core


def reference_si(activations, labels, num_classes, epsilon=0.0):
    """Eq. 1 written out with loops (absolute-value denominator convention)."""
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
        den = abs(top) + abs(rest) + epsilon
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


def test_negative_responses_stay_in_unit_interval(rng):
    labels = np.repeat(np.arange(4), 10)
    # Class 2 at +1, the others at -1: eq. 1 would divide by zero.
    one_positive = np.where(labels == 2, 1.0, -1.0)
    all_negative = np.where(labels == 1, -0.5, -2.0)
    # Means -0.5 and -2.0: (-0.5 + 2) / (0.5 + 2) = 0.6.
    acts = np.stack([one_positive, all_negative], axis=1)
    np.testing.assert_allclose(class_selectivity(acts, labels, 4), [1.0, 0.6])
    random = class_selectivity(rng.normal(size=(200, 30)), rng.integers(0, 10, 200), 10)
    assert np.all((random >= 0) & (random <= 1))


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


@pytest.mark.parametrize("epsilon", [0.0, 1e-6])
def test_batch_version_matches_reference(rng, epsilon):
    acts = rng.gamma(2.0, size=(64, 4, 4, 12)).astype("float32")
    labels = rng.integers(0, 6, size=64)  # classes 6..9 absent
    got = ops.convert_to_numpy(batch_class_selectivity(acts, labels, 10, epsilon=epsilon))
    np.testing.assert_allclose(got, reference_si(acts, labels, 10, epsilon), rtol=2e-5, atol=1e-6)


def test_batch_version_dead_units_have_zero_si_and_finite_gradient(rng):
    acts = rng.gamma(2.0, size=(32, 6)).astype("float32")
    acts[:, 2] = 0.0
    labels = rng.integers(0, 10, size=32)
    si = ops.convert_to_numpy(batch_class_selectivity(acts, labels, 10, epsilon=0.0))
    assert si[2] == 0.0
    _, grad = value_and_grad(lambda a: ops.sum(batch_class_selectivity(a, labels, 10, epsilon=0.0)), acts)
    assert np.all(np.isfinite(grad))
    assert np.all(grad[:, 2] == 0.0)


@pytest.mark.parametrize("alpha", [-1.0, 1.0])
def test_gradient_step_of_regularizer_moves_si_in_sign_of_alpha(rng, alpha):
    acts = rng.gamma(2.0, size=(128, 3, 3, 16)).astype("float32")
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

"""The label-permutation null of every unit (`tf_selectivity.measures.unit_null`):
known answers, a plain-NumPy loop reference, BH/BY against SciPy."""

import numpy as np
import pytest
from scipy import stats as scipy_stats

from tf_selectivity.core.settings import ParameterError
from tf_selectivity.measures.selectivity import EQ1_GUARD, class_selectivity
from tf_selectivity.measures.unit_null import (
    check_fdr,
    fdr_q_values,
    permutation_null,
    permutation_nulls,
    permuted_selectivity,
    selective_units,
)


def _noise_unit():
    """The issue's pure-noise unit: 10 classes x 100 images, max(normal, 0)."""
    rng = np.random.default_rng(0)
    responses = np.maximum(rng.normal(size=(1000, 1)), 0.0)
    return responses, np.repeat(np.arange(10), 100)


def _reference_index(responses, labels, num_classes, index):
    """Eq. 1 (guarded) or the bounded index written out with loops."""
    values = []
    for unit in range(responses.shape[1]):
        means = [responses[labels == k, unit].mean() for k in range(num_classes) if np.any(labels == k)]
        mu_max = max(means)
        rest = list(means)
        rest.remove(mu_max)
        mu_rest = sum(rest) / len(rest)
        magnitude = abs(mu_max) + abs(mu_rest)
        if index == "bounded":
            denominator = magnitude
        else:
            denominator = max(mu_max + mu_rest, EQ1_GUARD * magnitude)
        values.append((mu_max - mu_rest) / denominator if denominator > 0 else 0.0)
    return np.array(values)


def test_pure_noise_scores_0_1031_and_is_not_selective():
    responses, labels = _noise_unit()
    null = permutation_null(responses, labels, 10, num_permutations=1000, seed=0)
    np.testing.assert_allclose(null.observed, [0.1031], atol=5e-5)
    np.testing.assert_allclose(null.observed, class_selectivity(responses, labels, 10), rtol=1e-12)
    # The issue: the null's mean is about 0.12, above the observed value.
    assert 0.11 < null.null_mean[0] < 0.13
    assert null.p_values[0] > 0.3
    np.testing.assert_allclose(null.chance_corrected, null.observed - null.null_mean)
    assert null.chance_corrected[0] < 0


def test_a_planted_selective_unit_gets_the_smallest_p_value():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(5), 40)
    noise = np.maximum(rng.normal(size=(200, 3)), 0.0)
    planted = noise.copy()
    planted[labels == 2, 1] += 3.0  # unit 1 prefers class 2
    null = permutation_null(planted, labels, 5, num_permutations=500, seed=3)
    assert null.p_values[1] == 1.0 / 501
    assert null.p_values[0] > 0.01 and null.p_values[2] > 0.01
    assert null.chance_corrected[1] > 0.4


@pytest.mark.parametrize("index", ["eq1", "bounded"])
def test_null_equals_a_plain_numpy_loop(index):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 4, size=60)
    raw = rng.normal(size=(60, 5)) + np.array([0.0, 0.5, -0.3, 1.0, 0.2])
    # Leaky-ReLU responses: mixed signs exercise eq. 1's guard and the bounded index.
    responses = np.where(raw > 0, raw, 0.3 * raw)
    responses[:, 4] = 0.0  # a dead unit
    null = permutation_null(responses, labels, 4, num_permutations=40, seed=7, index=index, keep_null=True)
    permutations = np.random.default_rng(7)
    reference = np.stack(
        [_reference_index(responses, permutations.permutation(labels), 4, index) for _ in range(40)]
    )
    observed = _reference_index(responses, labels, 4, index)
    np.testing.assert_allclose(null.null, reference, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(null.observed, observed, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(null.null_mean, reference.mean(axis=0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(null.null_std, reference.std(axis=0), rtol=1e-8, atol=1e-10)
    p = (1 + (reference >= observed - 1e-12).sum(axis=0)) / 41
    np.testing.assert_array_equal(null.p_values, p)
    # The dead unit: SI 0 under every labelling, p = 1.
    assert null.observed[4] == 0 and null.null_mean[4] == 0 and null.p_values[4] == 1


def test_null_does_not_depend_on_the_chunk_size_and_is_shared_across_layers():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, size=90)
    responses = np.maximum(rng.normal(size=(90, 6)), 0.0)
    whole = permutation_null(responses, labels, 3, num_permutations=37, seed=5, keep_null=True)
    chunked = permutation_null(responses, labels, 3, num_permutations=37, seed=5, keep_null=True, max_chunk_bytes=1)
    np.testing.assert_array_equal(whole.null, chunked.null)
    # Two "layers" analysed apart with the run's seed see the same permutations.
    first = permutation_null(responses[:, :2], labels, 3, num_permutations=37, seed=5, keep_null=True)
    second = permutation_null(responses[:, 2:], labels, 3, num_permutations=37, seed=5, keep_null=True)
    np.testing.assert_allclose(np.hstack([first.null, second.null]), whole.null, rtol=1e-13)
    chunks = []
    together = permutation_nulls(
        {"a": responses[:, :2], "b": responses[:, 2:]}, labels, 3, num_permutations=37, seed=5, keep_null=True,
        max_chunk_bytes=20_000, progress=chunks.append,
    )
    assert sum(chunks) == 37 and len(chunks) > 1  # the progress of each chunk of permutations
    for name, alone in (("a", first), ("b", second)):
        np.testing.assert_array_equal(together[name].null, alone.null)
        np.testing.assert_array_equal(together[name].p_values, alone.p_values)
    other_seed = permutation_null(responses, labels, 3, num_permutations=37, seed=6, keep_null=True)
    assert not np.allclose(other_seed.null, whole.null)


def test_permuted_selectivity_of_the_true_labels_is_the_analysis_index():
    rng = np.random.default_rng(8)
    labels = rng.integers(0, 6, size=120)
    responses = np.maximum(rng.normal(size=(120, 4)) + labels[:, None] * 0.1, 0.0)
    np.testing.assert_allclose(
        permuted_selectivity(responses, labels[None], 6)[0], class_selectivity(responses, labels, 6), rtol=1e-12
    )


def test_fdr_q_values_equal_scipy():
    rng = np.random.default_rng(9)
    p = np.concatenate([rng.uniform(size=200), rng.uniform(0, 0.01, size=30), [1.0, 1.0, 0.5, 0.5]])
    p = np.round(p, 3)  # ties
    for method in ("bh", "by"):
        np.testing.assert_allclose(
            fdr_q_values(p, method), scipy_stats.false_discovery_control(p, method=method), rtol=1e-12
        )
    grid = p[:230].reshape(23, 10)
    np.testing.assert_allclose(
        fdr_q_values(grid).ravel(), scipy_stats.false_discovery_control(grid, axis=None), rtol=1e-12
    )
    assert fdr_q_values([]).shape == (0,)


def test_about_five_percent_or_fewer_of_null_units_are_called_selective():
    rng = np.random.default_rng(10)
    labels = np.repeat(np.arange(10), 30)
    responses = np.maximum(rng.normal(size=(300, 1000)), 0.0)  # 1,000 units without selectivity
    null = permutation_null(responses, labels, 10, num_permutations=199, seed=11)
    # The p-values of true nulls are uniform: about 5% below 0.05 ...
    assert 0.03 < np.mean(null.p_values < 0.05) < 0.07
    # ... and after BH (BY) about 5% or fewer are called selective.
    for method in ("bh", "by"):
        assert np.mean(selective_units(fdr_q_values(null.p_values, method), 0.05)) <= 0.05


def test_bad_parameters_are_named():
    responses, labels = _noise_unit()
    for bad in (0, -3, 1.5, True):
        with pytest.raises(ParameterError, match="^num_permutations must be a positive integer"):
            permutation_null(responses, labels, 10, num_permutations=bad)
    for bad in (0, 1, 1.5, -0.1, float("nan")):
        with pytest.raises(ParameterError, match="^fdr must be a false discovery rate in"):
            check_fdr(bad)
    with pytest.raises(ParameterError, match="^method must be one of bh, by"):
        fdr_q_values([0.5], "holm")
    with pytest.raises(ParameterError, match="^index must be one of"):
        permutation_null(responses, labels, 10, index="eq2")
    with pytest.raises(ParameterError, match="^labels must hold one label per image"):
        permutation_null(responses, labels[:-1], 10)
    with pytest.raises(ParameterError, match=r"^labels must lie in \[0, 5\)"):
        permutation_null(responses, labels, 5)
    with pytest.raises(ParameterError, match="^responses must be finite"):
        permutation_null(np.full((1000, 1), np.nan), labels, 10)

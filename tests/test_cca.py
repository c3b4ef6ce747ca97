"""Tests of tf_selectivity.measures.similarity.cca (SVCCA, PWCCA, factorization, conv helper)."""

from __future__ import annotations

import ast
import functools
import pathlib

import numpy as np
import pytest

from tf_selectivity.measures.similarity import cca

# Equal to round-off: distances of invariant pairs are a few 1e-15 here.
TIGHT = 1e-9

# PWCCA has two variants (tests/test_pwcca_variants.py); the definition tests
# here are of the textbook one, the invariances hold for both.
_textbook_pwcca = functools.partial(cca.pwcca, variant="textbook")
PWCCA_TEXTBOOK = functools.partial(cca.pwcca_distance, variant="textbook")
PWCCA_SVCCA = functools.partial(cca.pwcca_distance, variant="svcca")


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _correlated_pair(
    rng: np.random.Generator,
    units1: int,
    units2: int,
    datapoints: int,
    relu: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Two layers that share a latent representation, plus independent noise."""
    latent = rng.standard_normal((max(units1, units2), datapoints))
    first = rng.standard_normal((units1, latent.shape[0])) @ latent
    second = rng.standard_normal((units2, latent.shape[0])) @ latent
    first += 0.7 * rng.standard_normal(first.shape)
    second += 1.5 * rng.standard_normal(second.shape)
    if relu:
        first, second = np.maximum(first, 0.0), np.maximum(second, 0.0)
    return first, second


def _random_rotation(rng: np.random.Generator, size: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((size, size)))
    return q * np.sign(np.diag(r))


def _well_conditioned(
    rng: np.random.Generator, size: int, max_gain: float
) -> np.ndarray:
    """Invertible matrix with singular values in [1, max_gain]."""
    gains = rng.uniform(1.0, max_gain, size)
    return _random_rotation(rng, size) @ np.diag(gains) @ _random_rotation(rng, size)


def _orthonormal_centred_rows(rng, rows: int, datapoints: int) -> np.ndarray:
    """`rows` zero-mean rows, orthogonal, each of squared norm `datapoints`."""
    raw = rng.standard_normal((datapoints, rows))
    raw -= raw.mean(axis=0)
    return np.linalg.qr(raw)[0].T * np.sqrt(datapoints)


# --- Textbook reference ---------------------------------------------------
# Direct, slow computation from the definitions, independent of cca.py:
# covariance matrices, Sxx^-1/2 Sxy Syy^-1/2, its SVD; canonical variates
# h_i = u_i^T Sxx^-1/2 Xc and weights alpha_i = sum_j |<h_i, x_j>|.


def _inverse_sqrt(symmetric: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(symmetric)
    return vectors @ np.diag(values**-0.5) @ vectors.T


def _textbook_cca(x: np.ndarray, y: np.ndarray):
    """Canonical correlations and PWCCA weights on x (min(n1, n2) of each)."""
    covariance = np.cov(x, y)
    n1 = x.shape[0]
    sxx, sxy, syy = covariance[:n1, :n1], covariance[:n1, n1:], covariance[n1:, n1:]
    whitened_x = _inverse_sqrt(sxx)
    u, rho, _ = np.linalg.svd(
        whitened_x @ sxy @ _inverse_sqrt(syy), full_matrices=False
    )
    x_centred = x - x.mean(axis=1, keepdims=True)
    variates = u.T @ whitened_x @ x_centred  # Row i: canonical variate h_i.
    alpha = np.abs(variates @ x_centred.T).sum(axis=1)
    return rho, alpha / alpha.sum()


def _textbook_svcca(x: np.ndarray, y: np.ndarray, fraction: float = 0.99) -> float:
    reduced = []
    for acts in (x, y):
        centred = acts - acts.mean(axis=1, keepdims=True)
        u, s, _ = np.linalg.svd(centred, full_matrices=False)
        explained = np.cumsum(s**2) / np.sum(s**2)
        keep = int(np.argmax(explained >= fraction)) + 1
        reduced.append(u[:, :keep].T @ centred)
    rho, _ = _textbook_cca(*reduced)
    return float(rho.mean())


# --- Agreement with the textbook -----------------------------------------


@pytest.mark.parametrize(
    "units1,units2,relu", [(6, 9, False), (9, 9, True), (12, 5, True)]
)
def test_canonical_correlations_match_textbook(units1, units2, relu):
    x, y = _correlated_pair(_rng(1), units1, units2, 600, relu)
    expected, _ = _textbook_cca(x, y)
    assert expected.shape == (min(units1, units2),)
    np.testing.assert_allclose(cca.canonical_correlations(x, y), expected, atol=1e-10)
    assert cca.mean_cca(x, y).similarity == pytest.approx(expected.mean(), abs=1e-10)


@pytest.mark.parametrize("units1,units2", [(6, 9), (8, 8), (10, 4)])
def test_pwcca_weights_and_value_match_textbook(units1, units2):
    x, y = _correlated_pair(_rng(2), units1, units2, 800, relu=True)
    expected_rho, expected_alpha = _textbook_cca(x, y)
    result = _textbook_pwcca(x, y, weight_by="first")
    assert result.weighted_side == "first"
    np.testing.assert_allclose(result.weights, expected_alpha, atol=1e-10)
    assert result.similarity == pytest.approx(expected_alpha @ expected_rho, abs=1e-10)
    # A weighting that does not follow the definition must not pass: uniform
    # weights give a clearly different value on this data.
    assert abs(result.similarity - expected_rho.mean()) > 1e-3


def test_pwcca_weight_by_second_matches_textbook_on_second():
    x, y = _correlated_pair(_rng(3), 7, 5, 700)
    expected_rho, expected_alpha = _textbook_cca(y, x)
    result = _textbook_pwcca(x, y, weight_by="second")
    np.testing.assert_allclose(result.weights, expected_alpha, atol=1e-10)
    assert result.similarity == pytest.approx(expected_alpha @ expected_rho, abs=1e-10)


def test_svcca_matches_textbook_with_active_truncation():
    rng = _rng(4)
    # Decaying spectrum: the 99% cut keeps clearly fewer directions than
    # units, and no cumulative fraction sits near 0.99.
    scales = 0.7 ** np.arange(20)
    x = (_random_rotation(rng, 20) * scales) @ rng.standard_normal((20, 1500))
    y = x[:15] + 0.3 * rng.standard_normal((15, 1500))
    result = cca.svcca(x, y)
    assert result.dims[0] < 20
    assert result.similarity == pytest.approx(_textbook_svcca(x, y), abs=1e-10)


# --- Invariances ----------------------------------------------------------


@pytest.mark.parametrize(
    "distance_fn",
    [PWCCA_TEXTBOOK, PWCCA_SVCCA, cca.svcca_distance, cca.mean_cca_distance],
)
def test_identical_inputs_give_zero_distance(distance_fn):
    x, _ = _correlated_pair(_rng(5), 12, 12, 500, relu=True)
    assert distance_fn(x, x) == pytest.approx(0.0, abs=TIGHT)


@pytest.mark.parametrize(
    "distance_fn",
    [PWCCA_TEXTBOOK, PWCCA_SVCCA, cca.svcca_distance, cca.mean_cca_distance],
)
def test_rotations_give_zero_distance(distance_fn):
    rng = _rng(6)
    x, _ = _correlated_pair(rng, 16, 16, 700, relu=True)
    rotated = _random_rotation(rng, 16) @ x
    assert distance_fn(x, rotated) == pytest.approx(0.0, abs=TIGHT)
    assert distance_fn(rotated, x) == pytest.approx(0.0, abs=TIGHT)


@pytest.mark.parametrize(
    "distance_fn", [PWCCA_TEXTBOOK, PWCCA_SVCCA, cca.mean_cca_distance]
)
def test_invertible_affine_maps_give_zero_distance(distance_fn):
    rng = _rng(7)
    x, _ = _correlated_pair(rng, 10, 10, 600, relu=True)
    mapped = rng.standard_normal((10, 10)) @ x + rng.normal(size=(10, 1)) * 100.0
    assert np.linalg.cond(mapped) < 1e6  # Invertible in practice.
    assert distance_fn(x, mapped) == pytest.approx(0.0, abs=TIGHT)
    assert distance_fn(mapped, x) == pytest.approx(0.0, abs=TIGHT)


def test_injective_map_to_more_units_gives_zero_distance():
    rng = _rng(8)
    x, _ = _correlated_pair(rng, 6, 6, 500)
    wider = rng.standard_normal((15, 6)) @ x  # Rank 6 in 15 units.
    for weight_by in ("smaller", "first", "second"):
        assert PWCCA_TEXTBOOK(x, wider, weight_by=weight_by) == pytest.approx(
            0.0, abs=TIGHT
        )
    assert cca.mean_cca_distance(wider, x) == pytest.approx(0.0, abs=TIGHT)


def _signal_plus_faint_noise(rng, units=20, signal_dims=5, datapoints=1000):
    """Layer whose 99%-variance subspace is exactly its `signal_dims` signal."""
    rows = _orthonormal_centred_rows(rng, units, datapoints)
    mixing = _random_rotation(rng, units)
    amplitudes = np.r_[np.ones(signal_dims), np.full(units - signal_dims, 1e-3)]
    return mixing, (mixing * amplitudes) @ rows


def test_svcca_invariant_to_invertible_map_of_kept_subspace():
    rng = _rng(9)
    mixing, x = _signal_plus_faint_noise(rng)
    signal, noise = mixing[:, :5], mixing[:, 5:]
    # Invertible on the signal subspace (gains <= 1.5 keep every signal
    # direction above 1% of the variance) and on the faint complement.
    invertible = (
        signal @ _well_conditioned(rng, 5, 1.5) @ signal.T
        + noise @ _well_conditioned(rng, 15, 3.0) @ noise.T
    )
    mapped = invertible @ x
    result = cca.svcca(x, mapped)
    assert result.dims == (5, 5)
    assert result.distance == pytest.approx(0.0, abs=TIGHT)


def test_svcca_not_invariant_when_map_changes_kept_subspace():
    rng = _rng(10)
    mixing, x = _signal_plus_faint_noise(rng)
    # Blowing the faint directions up makes them dominate the variance.
    boost = mixing @ np.diag(np.r_[np.ones(5), np.full(15, 1e4)]) @ mixing.T
    assert cca.svcca_distance(x, boost @ x) > 0.5
    assert PWCCA_TEXTBOOK(x, boost @ x) == pytest.approx(0.0, abs=TIGHT)


# --- Large distances, symmetry ----------------------------------------------


@pytest.mark.parametrize(
    "distance_fn",
    [PWCCA_TEXTBOOK, PWCCA_SVCCA, cca.svcca_distance, cca.mean_cca_distance],
)
def test_independent_inputs_give_large_distance(distance_fn):
    rng = _rng(11)
    x = rng.standard_normal((20, 3000))
    y = rng.standard_normal((20, 3000))
    assert distance_fn(x, y) > 0.8


@pytest.mark.parametrize("distance_fn", [cca.svcca_distance, cca.mean_cca_distance])
def test_svcca_and_mean_cca_are_symmetric(distance_fn):
    x, y = _correlated_pair(_rng(12), 10, 14, 800, relu=True)
    assert distance_fn(x, y) == pytest.approx(distance_fn(y, x), abs=1e-12)
    assert 0.05 < distance_fn(x, y) < 0.95  # Not a trivially symmetric case.


def test_pwcca_asymmetry_and_its_symmetry_property():
    x, y = _correlated_pair(_rng(13), 10, 10, 800, relu=True)
    forward = _textbook_pwcca(x, y)
    backward = _textbook_pwcca(y, x)
    # Equal ranks: each call weights its first argument, so in general the
    # two values differ (this is PWCCA's documented asymmetry) ...
    assert forward.weighted_side == backward.weighted_side == "first"
    assert abs(forward.distance - backward.distance) > 1e-3
    # ... but both weight the same canonical correlations,
    np.testing.assert_allclose(
        forward.canonical_correlations, backward.canonical_correlations, atol=1e-12
    )
    # and the result only depends on which layer's weights are used.
    assert PWCCA_TEXTBOOK(x, y, weight_by="second") == pytest.approx(
        backward.distance, abs=1e-12
    )
    assert PWCCA_TEXTBOOK(y, x, weight_by="second") == pytest.approx(
        forward.distance, abs=1e-12
    )


def test_pwcca_symmetric_when_ranks_differ():
    x, y = _correlated_pair(_rng(14), 8, 13, 800, relu=True)
    assert _textbook_pwcca(x, y).weighted_side == "first"
    assert _textbook_pwcca(y, x).weighted_side == "second"
    assert PWCCA_TEXTBOOK(x, y) == pytest.approx(
        PWCCA_TEXTBOOK(y, x), abs=1e-12
    )


def test_pwcca_weighting_larger_layer_uses_matched_directions():
    x, y = _correlated_pair(_rng(15), 12, 5, 800)
    result = _textbook_pwcca(x, y, weight_by="first")
    assert result.weights.shape == result.canonical_correlations.shape == (5,)
    assert result.weights.sum() == pytest.approx(1.0)
    assert result.similarity == pytest.approx(
        result.weights @ result.canonical_correlations, abs=1e-12
    )
    assert _textbook_pwcca(x, y).weighted_side == "second"  # The smaller layer.


# --- Degenerate inputs ------------------------------------------------------


def test_dead_units_are_dropped_without_changing_results():
    x, y = _correlated_pair(_rng(16), 12, 9, 700, relu=True)
    with_dead = np.vstack([x[:4], np.zeros((2, 700)), x[4:], np.full((1, 700), 0.25)])
    factored = cca.factorize(with_dead)
    assert factored.num_units == 15
    assert factored.live_units.sum() == 12
    assert factored.rank == 12
    # The textbook PWCCA only: google's ("svcca") projects uncentred
    # activations, to which a constant unit adds (tests/test_pwcca_variants.py).
    for fn in (PWCCA_TEXTBOOK, cca.svcca_distance, cca.mean_cca_distance):
        assert fn(with_dead, y) == pytest.approx(fn(x, y), abs=1e-12)
        assert fn(y, with_dead) == pytest.approx(fn(y, x), abs=1e-12)


def test_duplicated_and_dependent_units_give_finite_results():
    x, y = _correlated_pair(_rng(17), 10, 10, 700, relu=True)
    redundant = np.vstack([x, x[:3], x[3:4] + 2.0 * x[4:5]])
    assert cca.factorize(redundant).rank == 10
    results = [
        _textbook_pwcca(redundant, y),
        cca.svcca(redundant, y),
        cca.mean_cca(redundant, y),
    ]
    for result in results:
        assert np.isfinite(result.similarity)
        assert np.all(np.isfinite(result.canonical_correlations))
        assert 0.0 <= result.similarity <= 1.0
    # The spanned space is unchanged, so is plain CCA.
    assert results[2].distance == pytest.approx(cca.mean_cca_distance(x, y), abs=1e-9)


def test_float32_duplicates_are_exact_but_float32_combinations_need_a_tolerance():
    x, _ = _correlated_pair(_rng(32), 10, 10, 700, relu=True)
    x32 = x.astype(np.float32)
    assert cca.factorize(np.vstack([x32, x32[:4]])).rank == 10
    # A combination rounded to float32 is independent at the 1e-8 level, a
    # real (if tiny) direction for the float64 default tolerance ...
    combined = np.vstack([x32, x32[3:4] + 2.0 * x32[4:5]])
    assert cca.factorize(combined).rank == 11
    # ... which a float32-sized tolerance treats as a dependency.
    assert cca.factorize(combined, rank_rtol=1e-6).rank == 10


def test_only_duplicates_of_one_unit():
    rng = _rng(18)
    unit = rng.standard_normal(300)
    layer = np.tile(unit, (5, 1))
    assert cca.factorize(layer).rank == 1
    assert PWCCA_TEXTBOOK(layer, unit[np.newaxis] * 3.0 + 1.0) == pytest.approx(
        0.0, abs=TIGHT
    )


def test_extreme_magnitudes_and_offsets():
    x, y = _correlated_pair(_rng(19), 8, 8, 500)
    reference = PWCCA_TEXTBOOK(x, y)
    assert PWCCA_TEXTBOOK(x * 1e-200, y * 1e200) == pytest.approx(
        reference, abs=1e-9
    )
    assert PWCCA_TEXTBOOK(x + 1e6, y - 1e6) == pytest.approx(reference, abs=1e-6)


def test_float32_input_is_computed_in_float64():
    x, y = _correlated_pair(_rng(20), 8, 8, 500)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    assert cca.factorize(x32).basis.dtype == np.float64
    assert PWCCA_TEXTBOOK(x32, y32) == pytest.approx(
        PWCCA_TEXTBOOK(x32.astype(np.float64), y32.astype(np.float64)), abs=1e-13
    )


# --- Factored objects ---------------------------------------------------------


def test_factored_and_raw_inputs_agree():
    x, y = _correlated_pair(_rng(21), 9, 7, 600, relu=True)
    fx, fy = cca.factorize(x), cca.factorize(y)
    for fn in (PWCCA_TEXTBOOK, PWCCA_SVCCA, cca.svcca_distance, cca.mean_cca_distance):
        raw = fn(x, y)
        assert isinstance(raw, float)
        assert fn(fx, fy) == raw
        assert fn(fx, y) == raw
        assert fn(x, fy) == raw


def test_factorization_properties():
    x, _ = _correlated_pair(_rng(22), 9, 9, 600, relu=True)
    factored = cca.factorize(x)
    basis = factored.basis
    assert basis.shape == (600, 9)
    np.testing.assert_allclose(basis.T @ basis, np.eye(9), atol=1e-12)
    assert np.all(np.diff(factored.singular_values) <= 0)
    centred = x - x.mean(axis=1, keepdims=True)
    scale = np.abs(x).max()
    # Coordinates reproduce every centred unit, so the basis spans them all.
    np.testing.assert_allclose(
        basis @ factored.unit_coordinates, centred.T / scale, atol=1e-12
    )
    np.testing.assert_allclose(
        factored.singular_values,
        np.linalg.svd(centred / scale, compute_uv=False),
        rtol=1e-10,
    )
    with pytest.raises(ValueError):
        basis[0, 0] = 1.0  # Read-only: cached factors cannot be corrupted.


def test_ill_conditioned_layer_gets_an_orthonormal_basis():
    rng = _rng(33)
    x = rng.standard_normal((6, 800))
    # Two nearly parallel units: singular values spread over ~1e9.
    x = np.vstack([x, x[0] + 1e-9 * rng.standard_normal(800)])
    factored = cca.factorize(x)
    assert factored.rank == 7
    assert factored.singular_values[0] / factored.singular_values[-1] > 1e8
    basis = factored.basis
    np.testing.assert_allclose(basis.T @ basis, np.eye(7), atol=1e-12)
    centred = (x - x.mean(axis=1, keepdims=True)) / np.abs(x).max()
    np.testing.assert_allclose(basis @ factored.unit_coordinates, centred.T, atol=1e-12)
    rotated = _random_rotation(rng, 7) @ x
    assert cca.mean_cca_distance(x, rotated) == pytest.approx(0.0, abs=1e-7)


def test_svcca_dims_follow_variance_fraction():
    rng = _rng(23)
    variances = np.array([50.0, 30.0, 15.0, 4.5, 0.3, 0.2])  # Sums to 100.
    latent = _orthonormal_centred_rows(rng, 6, 2000)
    x = _random_rotation(rng, 6) @ (np.sqrt(variances)[:, np.newaxis] * latent)
    factored = cca.factorize(x)
    assert factored.svcca_dims(0.99) == 4
    assert factored.svcca_dims(0.996) == 5
    assert factored.svcca_dims(0.45) == 1
    assert factored.svcca_dims(1.0) == 6
    # A fraction met exactly keeps the directions that meet it.
    assert factored.svcca_dims(0.95) == 3


def test_rank_tolerance_is_configurable():
    rng = _rng(24)
    x = rng.standard_normal((6, 400))
    x = np.vstack([x, x[0] + 1e-9 * rng.standard_normal(400)])
    assert cca.factorize(x).rank == 7
    assert cca.factorize(x, rank_rtol=1e-6).rank == 6
    with pytest.raises(ValueError, match="rank_rtol"):
        cca.factorize(x, rank_rtol=0.0)


# --- Validation -------------------------------------------------------------


def test_mismatched_datapoints_raise():
    rng = _rng(25)
    with pytest.raises(ValueError, match="same datapoints"):
        PWCCA_TEXTBOOK(rng.standard_normal((4, 100)), rng.standard_normal((4, 101)))
    with pytest.raises(ValueError, match="same datapoints"):
        cca.svcca_distance(
            cca.factorize(rng.standard_normal((4, 100))),
            cca.factorize(rng.standard_normal((4, 90))),
        )


@pytest.mark.parametrize("shape", [(50, 40), (50, 50)])
def test_too_few_datapoints_raise(shape):
    rng = _rng(26)
    with pytest.raises(ValueError, match="more datapoints than units"):
        PWCCA_TEXTBOOK(
            rng.standard_normal(shape), rng.standard_normal((3, shape[1]))
        )


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_input_raises(bad_value):
    x = _rng(27).standard_normal((4, 100))
    x[2, 17] = bad_value
    with pytest.raises(ValueError, match="NaN or infinite"):
        cca.factorize(x)


@pytest.mark.parametrize("layer", [np.zeros((5, 100)), np.ones((5, 100)) * 3.0])
def test_layer_without_live_units_raises(layer):
    with pytest.raises(ValueError, match="no live unit"):
        PWCCA_TEXTBOOK(layer, _rng(28).standard_normal((5, 100)))


@pytest.mark.parametrize("shape", [(100,), (2, 3, 100), (0, 100)])
def test_bad_shapes_raise(shape):
    with pytest.raises(ValueError):
        cca.factorize(np.ones(shape))


def test_bad_options_raise():
    x, y = _correlated_pair(_rng(29), 4, 4, 100)
    with pytest.raises(ValueError, match="weight_by"):
        _textbook_pwcca(x, y, weight_by="both")
    with pytest.raises(ValueError, match="variance_fraction"):
        cca.svcca(x, y, variance_fraction=0.0)


# --- Convolutional activations --------------------------------------------------


def _position_coded(num_inputs=5, height=4, width=3) -> np.ndarray:
    """(N, H, W, 3) activations whose channels are the (n, y, x) position."""
    grid = np.stack(
        np.meshgrid(
            np.arange(num_inputs), np.arange(height), np.arange(width), indexing="ij"
        ),
        axis=-1,
    )
    return grid.astype(np.float32)


def test_conv_average_mode():
    acts = _rng(30).standard_normal((7, 4, 5, 3)).astype(np.float32)
    matrix = cca.conv_activations_to_matrix(acts)
    assert matrix.shape == (3, 7)
    assert matrix.dtype == np.float64
    np.testing.assert_allclose(
        matrix, acts.mean(axis=(1, 2), dtype=np.float64).T, rtol=1e-12
    )
    channels_first = np.transpose(acts, (0, 3, 1, 2))
    np.testing.assert_array_equal(
        cca.conv_activations_to_matrix(channels_first, data_format="channels_first"),
        matrix,
    )


def test_conv_positions_mode_keeps_every_position():
    acts = _position_coded()
    matrix = cca.conv_activations_to_matrix(acts, spatial="positions")
    assert matrix.shape == (3, 5 * 4 * 3)
    positions = {tuple(column) for column in matrix.T}
    assert len(positions) == 60  # Every (n, y, x) exactly once.


def test_conv_positions_subsampling_is_seeded_and_aligned():
    acts = _position_coded()
    first = cca.conv_activations_to_matrix(
        acts, spatial="positions", max_datapoints=20, seed=3
    )
    again = cca.conv_activations_to_matrix(
        acts, spatial="positions", max_datapoints=20, seed=3
    )
    other = cca.conv_activations_to_matrix(
        acts, spatial="positions", max_datapoints=20, seed=4
    )
    assert first.shape == (3, 20)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert len({tuple(column) for column in first.T}) == 20  # Distinct datapoints.
    # Another network's activations on the same inputs get the same positions.
    other_network = 2.0 * acts + 1.0
    np.testing.assert_array_equal(
        cca.conv_activations_to_matrix(
            other_network, spatial="positions", max_datapoints=20, seed=3
        ),
        2.0 * first + 1.0,
    )
    channels_first = np.transpose(acts, (0, 3, 1, 2))
    np.testing.assert_array_equal(
        cca.conv_activations_to_matrix(
            channels_first,
            spatial="positions",
            data_format="channels_first",
            max_datapoints=20,
            seed=3,
        ),
        first,
    )


def test_conv_average_subsampling_and_dense_input():
    acts = _position_coded(num_inputs=30)
    matrix = cca.conv_activations_to_matrix(acts, max_datapoints=10, seed=1)
    inputs = matrix[0]
    assert inputs.shape == (10,)
    assert np.all(np.diff(inputs) > 0)  # Distinct inputs, in their order.
    dense = _rng(31).standard_normal((40, 6))
    np.testing.assert_array_equal(cca.conv_activations_to_matrix(dense), dense.T)


def test_conv_helper_rejects_bad_arguments():
    acts = _position_coded()
    with pytest.raises(ValueError):
        cca.conv_activations_to_matrix(acts, spatial="max")
    with pytest.raises(ValueError):
        cca.conv_activations_to_matrix(acts, data_format="nhwc")
    with pytest.raises(ValueError):
        cca.conv_activations_to_matrix(acts, max_datapoints=0)
    with pytest.raises(ValueError):
        cca.conv_activations_to_matrix(acts[0])


def test_cca_module_does_not_import_tensorflow_or_keras():
    tree = ast.parse(pathlib.Path(cca.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    allowed = {"__future__", "collections", "dataclasses", "typing", "numpy", "scipy"}
    assert imported <= allowed

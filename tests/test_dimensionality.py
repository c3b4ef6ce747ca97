"""Participation ratio and variance components (`tf_selectivity.measures.dimensionality`)
against known answers and NumPy's covariance."""

import numpy as np
import pytest

from tf_selectivity.measures.dimensionality import (
    components_for_variance,
    components_of_spectrum,
    covariance_spectrum,
    dimensionality,
    layer_dimensionality,
    participation_ratio,
    participation_ratio_of_spectrum,
)
from tf_selectivity.core.settings import ParameterError


def with_spectrum(rng, samples, eigenvalues, units=None):
    """Responses whose covariance has exactly `eigenvalues` (then zeros), in random directions."""
    eigenvalues = np.asarray(eigenvalues, dtype="float64")
    units = units or len(eigenvalues)
    rank = len(eigenvalues)
    noise = rng.normal(size=(samples, rank))
    q, _ = np.linalg.qr(noise - noise.mean(axis=0))  # orthonormal, centered columns
    directions, _ = np.linalg.qr(rng.normal(size=(units, rank)))  # orthonormal directions among the units
    return (q * np.sqrt((samples - 1) * eigenvalues)) @ directions.T + rng.normal(size=units)  # any mean


def test_an_exact_spectrum_gives_the_exact_values(rng):
    # Eigenvalues 4, 3, 2, 1: PR = 10^2 / 30; 90% = 9 of 10 needs 3, 95% needs 4.
    for samples, units in ((200, 4), (200, 30), (12, 30)):  # covariance and Gram paths
        x = with_spectrum(rng, samples, [4.0, 3.0, 2.0, 1.0], units)
        np.testing.assert_allclose(covariance_spectrum(x)[:4], [4, 3, 2, 1], rtol=1e-10)
        assert participation_ratio(x) == pytest.approx(10 / 3, rel=1e-10)
        assert components_for_variance(x, 0.9) == 3
        assert components_for_variance(x, 0.95) == 4
        assert components_for_variance(x, 0.4) == 1
        assert dimensionality(x) == {
            "participation_ratio": pytest.approx(10 / 3, rel=1e-10),
            "components_90": 3, "components_95": 4, "units": units, "samples": samples,
        }
    assert participation_ratio_of_spectrum([4, 3, 2, 1, 0, 0]) == pytest.approx(10 / 3)
    assert components_of_spectrum([1, 2, 3, 4], 0.9) == 3  # order does not matter
    assert components_of_spectrum([1, 1, 1, 1], 1.0) == 4


def test_isotropic_data_has_the_dimension_as_participation_ratio(rng):
    for dimension in (1, 5, 20):
        x = rng.normal(size=(40_000, dimension)) * 7.0
        assert participation_ratio(x) == pytest.approx(dimension, rel=0.02)
        assert components_for_variance(x, 0.95) == int(np.ceil(0.95 * dimension))


def test_rank_k_data_has_at_most_k(rng):
    for rank in (1, 3, 6):
        x = rng.normal(size=(500, rank)) @ rng.normal(size=(rank, 40)) * rng.uniform(0.1, 10, size=40)
        assert 1.0 <= participation_ratio(x) <= rank + 1e-9
        assert components_for_variance(x, 0.95) <= rank
        assert components_for_variance(x, 1.0) <= rank
        assert np.all(covariance_spectrum(x)[rank:] < 1e-8 * covariance_spectrum(x)[0])


def test_equal_to_numpys_covariance_eigenvalues_and_invariant_to_rotation_and_scale(rng):
    x = rng.normal(size=(300, 25)) @ rng.normal(size=(25, 25))
    reference = np.sort(np.linalg.eigvalsh(np.cov(x, rowvar=False)))[::-1]
    np.testing.assert_allclose(covariance_spectrum(x), reference, rtol=1e-9, atol=1e-12)
    expected = reference.sum() ** 2 / np.sum(reference**2)
    assert participation_ratio(x) == pytest.approx(expected, rel=1e-10)
    rotation, _ = np.linalg.qr(rng.normal(size=(25, 25)))
    assert participation_ratio(3.0 * x @ rotation + 5.0) == pytest.approx(expected, rel=1e-9)
    # Spatial axes are flattened into units.
    assert participation_ratio(x.reshape(300, 5, 5)) == pytest.approx(expected, rel=1e-12)


def test_per_layer_and_constant_layers(rng):
    responses = {"early": rng.normal(size=(100, 8)), "late": np.ones((100, 3))}
    result = layer_dimensionality(responses, fractions=(0.5, 0.9))
    assert list(result) == ["early", "late"]
    assert set(result["early"]) == {"participation_ratio", "components_50", "components_90", "units", "samples"}
    assert result["early"]["participation_ratio"] == pytest.approx(participation_ratio(responses["early"]))
    assert np.isnan(result["late"]["participation_ratio"]) and result["late"]["components_90"] == 0


@pytest.mark.parametrize(
    "call, parameter",
    [
        (lambda: participation_ratio(np.zeros(5)), "responses"),
        (lambda: participation_ratio(np.zeros((1, 5))), "responses"),
        (lambda: participation_ratio(np.full((3, 2), np.nan)), "responses"),
        (lambda: components_for_variance(np.eye(3), 0.0), "fraction"),
        (lambda: components_for_variance(np.eye(3), 1.5), "fraction"),
        (lambda: participation_ratio_of_spectrum([1.0, -1.0]), "eigenvalues"),
        (lambda: layer_dimensionality({}), "responses"),
    ],
)
def test_bad_input_is_named(call, parameter):
    with pytest.raises(ParameterError) as error:
        call()
    assert error.value.parameter == parameter


def test_a_bad_layer_is_named(rng):
    with pytest.raises(ParameterError, match=r"responses \['late'\] must hold at least 2 samples"):
        layer_dimensionality({"early": rng.normal(size=(4, 2)), "late": np.zeros((1, 3))})

"""Tests of tf_selectivity.measures.similarity: CKA (linear, RBF, debiased, minibatch), Procrustes.

Known answers are Kornblith et al.'s demo values; references are plain-NumPy
transcriptions of the published formulas written here (Gram-space CKA with
Kornblith et al.'s centring, Song et al.'s unbiased HSIC) and SciPy's
`orthogonal_procrustes`.
"""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pytest
import scipy.linalg

from tf_selectivity.measures.similarity import cca
from tf_selectivity.measures import similarity
from tf_selectivity.core.settings import ParameterError

TIGHT = 1e-10


def _demo_inputs():
    """Kornblith et al.'s demo inputs, as (units, datapoints) arrays."""
    np.random.seed(1337)
    x = np.random.randn(100, 10)
    y = np.random.randn(100, 10) + x
    return x.T, y.T


def _pair(seed=0, units1=12, units2=7, n=200):
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((6, n))
    x = rng.standard_normal((units1, 6)) @ latent + 0.5 * rng.standard_normal((units1, n))
    y = rng.standard_normal((units2, 6)) @ latent + rng.standard_normal((units2, n))
    return x + 3.0, np.maximum(y, 0.0)


def _rotation(rng, size):
    q, r = np.linalg.qr(rng.standard_normal((size, size)))
    return q * np.sign(np.diag(r))


# --- references written from the papers ------------------------------------


def _reference_center(gram, unbiased):
    """Kornblith et al.'s `center_gram`, on (n, n) Gram matrices."""
    gram = gram.copy()
    n = gram.shape[0]
    if unbiased:
        np.fill_diagonal(gram, 0)
        means = np.sum(gram, 0) / (n - 2)
        means -= np.sum(means) / (2 * (n - 1))
        gram -= means[:, None]
        gram -= means[None, :]
        np.fill_diagonal(gram, 0)
    else:
        h = np.eye(n) - np.ones((n, n)) / n
        gram = h @ gram @ h
    return gram


def _reference_cka(gram_x, gram_y, debiased=False):
    gx, gy = _reference_center(gram_x, debiased), _reference_center(gram_y, debiased)
    return (gx * gy).sum() / (np.linalg.norm(gx) * np.linalg.norm(gy))


def _reference_rbf_gram(x, threshold):
    """Kornblith et al.'s `gram_rbf` on an (examples, features) array."""
    dots = x @ x.T
    norms = np.diag(dots)
    squared = -2 * dots + norms[:, None] + norms[None, :]
    return np.exp(-squared / (2 * threshold**2 * np.median(squared)))


def _song_unbiased_hsic(gram_x, gram_y):
    """Song et al. (2007), eq. 5: the unbiased HSIC from zero-diagonal Gram matrices."""
    n = gram_x.shape[0]
    k, l = gram_x.copy(), gram_y.copy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l, 0)
    one = np.ones(n)
    return (np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * (one @ k @ l @ one)) / (n * (n - 3))


# --- known answers ----------------------------------------------------------


@pytest.mark.parametrize("space", ["features", "gram", "auto"])
def test_kornblith_demo_values(space):
    x, y = _demo_inputs()
    assert round(similarity.linear_cka(x, y, space=space), 5) == 0.55761
    assert round(similarity.debiased_cka(x, y, space=space), 5) == 0.51346


def test_kornblith_demo_rbf():
    x, y = _demo_inputs()
    assert round(similarity.rbf_cka(x, y, threshold=0.5), 5) == 0.65483
    reference = _reference_cka(_reference_rbf_gram(x.T, 0.5), _reference_rbf_gram(y.T, 0.5))
    assert similarity.rbf_cka(x, y, threshold=0.5) == pytest.approx(reference, abs=TIGHT)
    reference = _reference_cka(_reference_rbf_gram(x.T, 2.0), _reference_rbf_gram(y.T, 2.0), True)
    assert similarity.rbf_cka(x, y, threshold=2.0, debiased=True) == pytest.approx(
        reference, abs=TIGHT)


@pytest.mark.parametrize("units1,units2,n", [(12, 7, 200), (300, 40, 60), (5, 90, 50), (3, 3, 4)])
@pytest.mark.parametrize("debiased", [False, True])
def test_feature_space_equals_gram_space_and_reference(units1, units2, n, debiased):
    x, y = _pair(1, units1, units2, n)
    reference = _reference_cka(x.T @ x, y.T @ y, debiased)
    features = similarity.linear_cka(x, y, debiased=debiased, space="features")
    gram = similarity.linear_cka(x, y, debiased=debiased, space="gram")
    assert features == pytest.approx(reference, abs=TIGHT)
    assert gram == pytest.approx(reference, abs=TIGHT)
    assert similarity.cka_from_grams(x.T @ x, y.T @ y, debiased=debiased) == pytest.approx(
        reference, abs=TIGHT)


@pytest.mark.parametrize("space", ["features", "gram"])
def test_unbiased_hsic_is_song_et_al(space):
    x, y = _pair(2, 6, 9, 30)
    expected = _song_unbiased_hsic(x.T @ x, y.T @ y)
    assert similarity.hsic(x, y, unbiased=True, space=space) == pytest.approx(expected, rel=1e-10)
    xc = x - x.mean(1, keepdims=True)
    yc = y - y.mean(1, keepdims=True)
    biased = np.trace(xc.T @ xc @ yc.T @ yc) / (x.shape[1] - 1) ** 2
    assert similarity.hsic(x, y, space=space) == pytest.approx(biased, rel=1e-10)


def test_debiased_cka_can_be_negative_and_stays_in_range():
    rng = np.random.default_rng(3)
    values = [similarity.debiased_cka(rng.standard_normal((5, 8)), rng.standard_normal((5, 8)))
              for _ in range(40)]
    assert min(values) < 0.0
    assert all(-1.0 <= value <= 1.0 for value in values)
    assert all(np.isfinite(values))


# --- self-comparison --------------------------------------------------------


def test_self_comparison_is_exactly_one_or_zero():
    x, _ = _pair(4, 30, 5, 97)
    copy = x.copy()
    for other in (x, copy):
        assert similarity.linear_cka(x, other) == 1.0
        assert similarity.linear_cka(x, other, space="gram") == 1.0
        assert similarity.debiased_cka(x, other) == 1.0
        assert similarity.rbf_cka(x, other, threshold=0.5) == 1.0
        assert similarity.rbf_cka(x, other, debiased=True) == 1.0
        assert similarity.minibatch_cka(x, other, batch_size=20) == 1.0
        assert similarity.procrustes_distance(x, other) == 0.0
        assert similarity.procrustes_distance(x, other, alpha=0.0, metric="euclidean") == 0.0
        assert similarity.procrustes_similarity(x, other, alpha=0.5) == 1.0
    factors = cca.factorize(x)
    assert similarity.procrustes_distance(factors, factors, alpha=0.3) == 0.0
    cka_map = similarity.MinibatchCKAMap(2, 2)
    cka_map.update([x[:, :50], 2 * x[:, :50]])
    assert np.diagonal(cka_map.result()).tolist() == [1.0, 1.0]


# --- invariances ------------------------------------------------------------


def _transforms(rng, x):
    """x under an orthogonal map, isotropic scaling and a translation, all together."""
    return 7.5 * _rotation(rng, x.shape[0]) @ x + rng.standard_normal((x.shape[0], 1))


MEASURES = {
    "linear": similarity.linear_cka,
    "linear_gram": lambda x, y: similarity.linear_cka(x, y, space="gram"),
    "debiased": similarity.debiased_cka,
    "rbf": lambda x, y: similarity.rbf_cka(x, y, threshold=0.8),
    "rbf_debiased": lambda x, y: similarity.rbf_cka(x, y, debiased=True),
    "minibatch": lambda x, y: similarity.minibatch_cka(x, y, batch_size=40),
    "procrustes_1": similarity.procrustes_distance,
    "procrustes_half": lambda x, y: similarity.procrustes_distance(x, y, alpha=0.5),
    "procrustes_0": lambda x, y: similarity.procrustes_distance(x, y, alpha=0.0),
    "procrustes_euclidean": lambda x, y: similarity.procrustes_distance(
        x, y, alpha=0.2, metric="euclidean"),
}


@pytest.mark.parametrize("measure", sorted(MEASURES))
def test_invariant_to_orthogonal_maps_scaling_and_translation(measure):
    rng = np.random.default_rng(5)
    x, y = _pair(5, 10, 8, 200)
    fn = MEASURES[measure]
    value = fn(x, y)
    assert np.isfinite(value)
    assert fn(_transforms(rng, x), y) == pytest.approx(value, abs=1e-9)
    assert fn(x, _transforms(rng, y)) == pytest.approx(value, abs=1e-9)
    assert fn(y, x) == pytest.approx(value, abs=1e-9)  # symmetric


@pytest.mark.parametrize("measure", ["linear", "debiased", "rbf", "procrustes_1", "procrustes_half"])
def test_not_invariant_to_general_linear_maps(measure):
    rng = np.random.default_rng(6)
    x, y = _pair(6, 10, 8, 200)
    stretch = _rotation(rng, 10) @ np.diag(np.geomspace(1, 30, 10)) @ _rotation(rng, 10)
    assert abs(MEASURES[measure](stretch @ x, y) - MEASURES[measure](x, y)) > 1e-3


def test_cca_like_procrustes_is_invariant_to_invertible_maps_and_is_mean_cca():
    rng = np.random.default_rng(7)
    x, y = _pair(7, 10, 8, 300)
    stretch = _rotation(rng, 10) @ np.diag(np.geomspace(1, 30, 10)) @ _rotation(rng, 10)
    value = similarity.procrustes_similarity(x, y, alpha=0.0)
    assert similarity.procrustes_similarity(stretch @ x, y, alpha=0.0) == pytest.approx(value, abs=1e-9)
    # Whitened and normalized, X~ = Qx / sqrt(r): the cosine is sum(rho) / sqrt(r1 r2).
    correlations = cca.canonical_correlations(x, y)
    assert value == pytest.approx(correlations.sum() / np.sqrt(10 * 8), abs=1e-10)


# --- minibatch CKA ----------------------------------------------------------


def test_minibatch_with_one_batch_is_debiased_cka():
    x, y = _demo_inputs()
    debiased = similarity.debiased_cka(x, y)
    assert similarity.minibatch_cka(x, y, batch_size=100) == pytest.approx(debiased, abs=1e-14)
    assert similarity.minibatch_cka(x, y, batch_size=1000) == pytest.approx(debiased, abs=1e-14)
    accumulator = similarity.MinibatchCKA()
    accumulator.update(x, y)
    assert accumulator.result() == pytest.approx(debiased, abs=1e-14)


def test_minibatch_is_the_mean_of_per_batch_hsic():
    x, y = _pair(8, 9, 14, 230)  # batches of 50: 4 full, one of 30
    batches = [slice(s, s + 50) for s in range(0, 230, 50)]

    def mean_hsic(a, b):
        return np.mean([_song_unbiased_hsic(a[:, s].T @ a[:, s], b[:, s].T @ b[:, s]) for s in batches])

    expected = mean_hsic(x, y) / np.sqrt(mean_hsic(x, x) * mean_hsic(y, y))
    assert similarity.minibatch_cka(x, y, batch_size=50) == pytest.approx(expected, abs=1e-10)
    accumulator = similarity.MinibatchCKA()
    for s in batches:
        accumulator.update(x[:, s], y[:, s])
    assert accumulator.result() == pytest.approx(expected, abs=1e-10)
    assert (accumulator.num_batches, accumulator.num_datapoints) == (5, 230)


def test_minibatch_map_equals_pairwise_minibatch_cka():
    rng = np.random.default_rng(9)
    first = [rng.standard_normal((units, 120)) for units in (4, 16, 9)]
    second = [np.maximum(first[0][:3] + rng.standard_normal((3, 120)), 0), first[2] @ first[2].T @ first[2]]
    cka_map = similarity.MinibatchCKAMap(3, 2)
    for s in range(0, 120, 30):
        cka_map.update([a[:, s:s + 30] for a in first], [b[:, s:s + 30] for b in second])
    result = cka_map.result()
    assert result.shape == (3, 2)
    for i, j in itertools.product(range(3), range(2)):
        expected = similarity.minibatch_cka(first[i], second[j], batch_size=30)
        assert result[i, j] == pytest.approx(expected, abs=1e-12)


# --- Procrustes against SciPy -----------------------------------------------


def _normalized(a):
    a = a - a.mean(1, keepdims=True)
    return a / np.linalg.norm(a)


@pytest.mark.parametrize("units1,units2", [(8, 8), (8, 5), (3, 11)])
def test_procrustes_rotation_only_against_scipy(units1, units2):
    x, y = _pair(10, units1, units2, 150)
    a, b = _normalized(x).T, _normalized(y).T  # (n, p) for SciPy
    width = max(units1, units2)  # zero-padding the narrower layer
    a = np.pad(a, ((0, 0), (0, width - units1)))
    b = np.pad(b, ((0, 0), (0, width - units2)))
    rotation, _ = scipy.linalg.orthogonal_procrustes(b, a)
    euclidean = np.linalg.norm(a - b @ rotation)
    angular = np.arccos(np.sum(a * (b @ rotation)))
    assert similarity.procrustes_distance(x, y, metric="euclidean") == pytest.approx(euclidean, abs=1e-10)
    assert similarity.procrustes_distance(x, y) == pytest.approx(angular, abs=1e-10)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_partial_whitening_against_a_whitening_matrix(alpha):
    """netrep's whitening Z = V (alpha + (1 - alpha) / s) V^T, applied to data scaled so
    that its singular values have root mean square 1 (where our definition equals netrep's)."""
    x, y = _pair(11, 9, 6, 180)

    def whitened(acts):
        centred = (acts - acts.mean(1, keepdims=True)).T  # (n, p)
        values = np.linalg.svd(centred, compute_uv=False)
        centred = centred / np.sqrt(np.mean(values**2))
        eigenvalues, vectors = np.linalg.eigh(centred.T @ centred)
        z = (vectors * (alpha + (1 - alpha) * eigenvalues**-0.5)) @ vectors.T
        out = centred @ z
        return out / np.linalg.norm(out)

    a, b = whitened(x), np.pad(whitened(y), ((0, 0), (0, 3)))
    rotation, _ = scipy.linalg.orthogonal_procrustes(b, a)
    expected = np.linalg.norm(a - b @ rotation)
    assert similarity.procrustes_distance(x, y, alpha=alpha, metric="euclidean") == pytest.approx(
        expected, abs=1e-9)


def test_procrustes_from_cca_factors_equals_raw():
    x, y = _pair(12, 10, 7, 300)
    for alpha in (0.0, 0.6, 1.0):
        raw = similarity.procrustes_distance(x, y, alpha=alpha)
        assert similarity.procrustes_distance(cca.factorize(x), cca.factorize(y), alpha=alpha) == \
            pytest.approx(raw, abs=1e-12)


def test_angular_procrustes_obeys_the_triangle_inequality():
    rng = np.random.default_rng(13)
    layers = [rng.standard_normal((6, 40)) @ np.diag(rng.uniform(0.2, 3, 40)) for _ in range(5)]
    for alpha in (0.0, 0.5, 1.0):
        d = {(i, j): similarity.procrustes_distance(layers[i], layers[j], alpha=alpha)
             for i in range(5) for j in range(5)}
        for i, j, k in itertools.permutations(range(5), 3):
            assert d[i, k] <= d[i, j] + d[j, k] + 1e-12


# --- memory -----------------------------------------------------------------


def test_feature_space_never_builds_the_gram_matrix():
    rng = np.random.default_rng(14)
    n = 5000  # an n x n Gram matrix is 200 MB
    x, y = rng.standard_normal((16, n)), rng.standard_normal((24, n))
    tracemalloc.start()
    try:
        similarity.linear_cka(x, y)
        similarity.debiased_cka(x, y)
        similarity.procrustes_distance(x, y, alpha=0.5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 8 * n * 24  # a few copies of the inputs, far below 8 n^2


# --- guards -----------------------------------------------------------------


def _raises(parameter, fn, *args, **kwargs):
    with pytest.raises(ParameterError) as caught:
        fn(*args, **kwargs)
    assert caught.value.parameter == parameter, str(caught.value)
    return str(caught.value)


def test_guards_name_the_parameter():
    x, y = _pair(15, 5, 4, 30)
    bad = x.copy()
    bad[2, 3] = np.nan
    for fn in (similarity.linear_cka, similarity.debiased_cka, similarity.rbf_cka,
               similarity.procrustes_distance):
        assert "NaN" in _raises("x", fn, bad, y)
        assert "NaN" in _raises("y", fn, x, np.where(bad > 0, np.inf, bad)[:4])
        assert "datapoints" in _raises("y", fn, x, y[:, :29])
    assert "n (n - 3)" in _raises("x", similarity.debiased_cka, x[:, :3], y[:, :3])
    assert "n (n - 3)" in _raises("x", similarity.rbf_cka, x[:, :3], y[:, :3], debiased=True)
    assert similarity.linear_cka(x[:, :3], y[:, :3]) >= 0.0  # the biased estimator is defined
    assert np.isfinite(similarity.debiased_cka(x[:, :4], y[:, :4]))
    _raises("batch_size", similarity.minibatch_cka, x, y, batch_size=3)
    assert "last batch" in _raises("batch_size", similarity.minibatch_cka, x, y, batch_size=27)
    for threshold in (0, -1.0, np.inf, np.nan, True):
        _raises("threshold", similarity.rbf_cka, x, y, threshold=threshold)
    _raises("alpha", similarity.procrustes_distance, x, y, alpha=1.5)
    _raises("metric", similarity.procrustes_distance, x, y, metric="cosine")
    _raises("space", similarity.linear_cka, x, y, space="kernel")
    _raises("x", similarity.linear_cka, x[0], y)
    _raises("x", similarity.MinibatchCKA().result)
    accumulator = similarity.MinibatchCKA()
    accumulator.update(x[:, :10], y[:, :10])
    _raises("y", accumulator.update, x[:, :10], y[:3, :10])


def test_constant_layers_are_errors_not_nan():
    x, y = _pair(16, 5, 4, 30)
    constant = np.full((3, 30), 0.1)
    for fn in (similarity.linear_cka, similarity.debiased_cka, similarity.procrustes_distance,
               lambda a, b: similarity.minibatch_cka(a, b, batch_size=10)):
        assert "undefined" in _raises("y", fn, x, constant)
        assert "undefined" in _raises("x", fn, constant, x)
    _raises("y", similarity.rbf_cka, x, constant)
    # A layer with one constant unit is fine, and the unit changes nothing.
    with_dead = np.vstack([x, np.full((1, 30), 4.0)])
    assert similarity.debiased_cka(with_dead, y) == pytest.approx(similarity.debiased_cka(x, y), abs=TIGHT)


# --- from CCA factors -------------------------------------------------------


def test_measures_from_cca_factors_equal_the_raw_ones():
    x, y = _pair(17, 12, 7, 400)
    x = np.vstack([x, np.full((2, 400), 1.5)])  # dead units, which factorize drops
    first, second = cca.factorize(x), cca.factorize(y)
    distances = similarity.distances_from_factors(
        first, second, ["procrustes", "linear_cka", "debiased_cka"], procrustes_alpha=0.4)
    assert list(distances) == ["procrustes", "linear_cka", "debiased_cka"]
    assert distances["linear_cka"] == pytest.approx(1 - similarity.linear_cka(x, y), abs=1e-12)
    assert distances["debiased_cka"] == pytest.approx(1 - similarity.debiased_cka(x, y), abs=1e-12)
    assert distances["procrustes"] == pytest.approx(
        similarity.procrustes_distance(x, y, alpha=0.4), abs=1e-12)
    assert similarity.cka_from_factors(first, second, debiased=True) == pytest.approx(
        similarity.debiased_cka(x, y), abs=1e-12)
    assert similarity.distances_from_factors(first, first, ["linear_cka", "debiased_cka", "procrustes"]) \
        == {"linear_cka": 0.0, "debiased_cka": 0.0, "procrustes": 0.0}
    _raises("measures", similarity.distances_from_factors, first, second, ["rbf_cka"])
    _raises("second", similarity.distances_from_factors, first, cca.factorize(y[:, :300]), ["linear_cka"])
    _raises("first", similarity.cka_from_factors, x, second)


def test_cka_map_equals_pairwise_cka():
    rng = np.random.default_rng(18)
    first = [rng.standard_normal((units, 60)) for units in (4, 9, 70)]  # 70 > 60: Gram space
    first[1][:4] += 2 * first[0]
    second = [np.maximum(first[1], 0), rng.standard_normal((3, 60))]
    for debiased in (False, True):
        result = similarity.cka_map(first, second, debiased=debiased)
        for i, j in itertools.product(range(3), range(2)):
            assert result[i, j] == pytest.approx(
                similarity.linear_cka(first[i], second[j], debiased=debiased), abs=1e-12)
        own = similarity.cka_map(first, debiased=debiased)
        assert np.diagonal(own).tolist() == [1.0, 1.0, 1.0]
        assert np.array_equal(own, own.T)
        assert own[0, 1] == pytest.approx(similarity.linear_cka(first[0], first[1], debiased=debiased),
                                          abs=1e-12)
    _raises("first[1]", similarity.cka_map, [first[0], np.zeros((2, 60))])
    _raises("second", similarity.cka_map, first, [second[0][:, :50]])


def test_docs_example_runs_and_prints_its_values():
    """The docs' example (docs/guides/python.md), read from the page and run."""
    import pathlib
    import re

    page = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "guides" / "python.md").read_text()
    block = re.search(r"```python\n(import numpy as np\nfrom tf_selectivity import similarity\n.*?)```",
                      page, re.S).group(1)
    namespace = {}
    checked = 0
    for line in block.splitlines():
        code, _, comment = line.partition("#")
        if code.startswith("similarity.") and re.match(r" ?\d\.\d{5}", comment):
            value = eval(code, namespace)  # noqa: S307 - the docs' own code
            assert round(value, 5) == float(comment.split()[0].rstrip(",")), line
            checked += 1
        else:
            exec(line, namespace)  # noqa: S102
    assert checked == 5


@pytest.mark.parametrize("space", ["features", "gram"])
def test_a_u_centred_gram_of_zero_is_an_error_not_a_negative_square_root(space):
    """All datapoints but one coincide: K_ij = a_i + a_j off the diagonal, so the
    U-centred Gram and the unbiased self-HSIC are 0 (round-off leaves +-1e-17);
    the biased CKA of the same layer is defined."""
    rng = np.random.default_rng(19)
    x = np.tile(0.1 * rng.standard_normal((3, 1)), (1, 12))
    x[:, 7] += 0.3 * rng.standard_normal(3)
    y = rng.standard_normal((4, 12))
    assert abs(similarity.hsic(x, x, unbiased=True, space=space)) < 1e-15
    message = _raises("x", similarity.debiased_cka, x, y, space=space)
    assert "0 to round-off" in message
    assert 0.0 <= similarity.linear_cka(x, y, space=space) <= 1.0

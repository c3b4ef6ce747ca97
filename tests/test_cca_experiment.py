"""Tests of tf_selectivity.analysis.stages.similarity.distances and .maps (the Figure 3 analysis)."""

from __future__ import annotations

import collections
import contextlib
import gc
import math
import sys
import types
import weakref
import zlib

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from tf_selectivity.measures.similarity import cca
from tf_selectivity.measures import stats
from tf_selectivity.analysis.stages.similarity import distances as similarity_distances

UNITS = 8
DATAPOINTS = 400
LAYERS = ("conv_a", "conv_b")


def _rotation(rng: np.random.Generator, size: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((size, size)))
    return q * np.sign(np.diag(r))


class SyntheticRuns:
    """Activations of replicate "networks" built from known latents.

    Each run's layer is a random rotation of a latent representation of that
    layer plus small independent noise. Runs that share a latent differ only
    by an invertible map and noise (CCA distance ratio ~1); runs built on a
    different latent differ for real (ratio >> 1). Counts every load.
    """

    def __init__(
        self, latent_of_run: dict[str, int], noise: float = 0.1, seed: int = 0
    ):
        rng = np.random.default_rng(seed)
        num_latents = max(latent_of_run.values()) + 1
        self.latents = {
            (latent, layer): rng.standard_normal((UNITS, DATAPOINTS))
            for latent in range(num_latents)
            for layer in LAYERS
        }
        self.latent_of_run = latent_of_run
        self.noise = noise
        self.seed = seed
        self.loads = collections.Counter()
        self.load_order: list[tuple[str, str]] = []

    def __call__(self, run: str, layer: str) -> np.ndarray:
        self.loads[(run, layer)] += 1
        self.load_order.append((run, layer))
        # crc32, not hash(): string hashes change between interpreter runs.
        rng = np.random.default_rng(
            [self.seed, zlib.crc32(run.encode()), LAYERS.index(layer)]
        )
        latent = self.latents[(self.latent_of_run[run], layer)]
        return _rotation(rng, UNITS) @ latent + self.noise * rng.standard_normal(
            latent.shape
        )


def _runs(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


def test_pair_counts_and_columns():
    treated, baseline = _runs("t", 4), _runs("b", 3)
    loader = SyntheticRuns({run: 0 for run in treated + baseline})
    distances = similarity_distances.figure3_distances(treated, baseline, LAYERS, loader)
    assert list(distances.columns) == [
        "layer",
        "layer_index",
        "comparison",
        "run_a",
        "run_b",
        "distance",
        "method",
        "pwcca_variant",
    ]
    counts = distances.groupby(["layer", "comparison"]).size()
    for layer in LAYERS:
        assert counts[(layer, "within")] == 6  # C(4, 2).
        assert counts[(layer, "to_baseline")] == 12  # 4 x 3.
    assert set(distances["method"]) == {"pwcca"}
    assert set(distances["pwcca_variant"]) == {"svcca"}  # The paper's, by default.
    assert distances.groupby("layer")["layer_index"].first().to_dict() == {
        "conv_a": 0,
        "conv_b": 1,
    }
    within = distances[distances["comparison"] == "within"]
    assert set(within["run_a"]) | set(within["run_b"]) == set(treated)
    assert all(
        treated.index(a) < treated.index(b)
        for a, b in zip(within["run_a"], within["run_b"], strict=True)
    )
    to_baseline = distances[distances["comparison"] == "to_baseline"]
    assert set(to_baseline["run_a"]) == set(treated)
    assert set(to_baseline["run_b"]) == set(baseline)
    assert distances["distance"].between(0.0, 1.0).all()


def test_run_seeds_leave_out_pairs_that_share_a_seed():
    treated, baseline = _runs("t", 4), _runs("b", 3)
    loader = SyntheticRuns({run: 0 for run in treated + baseline})
    seeds = {f"t{i}": i for i in range(4)} | {f"b{i}": i for i in range(3)}
    distances = similarity_distances.figure3_distances(treated, baseline, LAYERS, loader, run_seeds=seeds)
    counts = distances.groupby(["layer", "comparison"]).size()
    for layer in LAYERS:
        assert counts[(layer, "within")] == 6
        assert counts[(layer, "to_baseline")] == 12 - 3  # t0-b0, t1-b1, t2-b2 left out.
    assert (distances["run_a"].map(seeds) != distances["run_b"].map(seeds)).all()
    with pytest.raises(ValueError, match="different seeds"):
        similarity_distances.figure3_distances(
            ["t0", "t1"], ["b0"], LAYERS, SyntheticRuns({"t0": 0, "t1": 0, "b0": 0}),
            run_seeds={"t0": 0, "t1": 0, "b0": 0},
        )


def test_distances_match_direct_computation():
    treated, baseline = _runs("t", 3), _runs("b", 2)
    loader = SyntheticRuns({run: i % 2 for i, run in enumerate(treated + baseline)})
    distances = similarity_distances.figure3_distances(
        treated, baseline, LAYERS, loader, method="svcca"
    )
    row = distances[
        (distances["layer"] == "conv_b")
        & (distances["run_a"] == "t1")
        & (distances["run_b"] == "b0")
    ].iloc[0]
    fresh = SyntheticRuns(loader.latent_of_run)
    expected = cca.svcca_distance(fresh("t1", "conv_b"), fresh("b0", "conv_b"))
    assert row["distance"] == pytest.approx(expected, abs=1e-12)
    assert row["method"] == "svcca"


def _pwcca_layers(latent_of_run):
    """ReLU-like activations (non-zero means): the two PWCCA variants differ."""
    synthetic = SyntheticRuns(latent_of_run)
    return lambda run, layer: np.maximum(synthetic(run, layer) + 0.3, 0.0)


def test_pwcca_variants_match_direct_computation():
    treated, baseline = _runs("t", 3), _runs("b", 2)
    latent_of_run = {run: i % 2 for i, run in enumerate(treated + baseline)}
    loader = _pwcca_layers(latent_of_run)
    fresh = _pwcca_layers(latent_of_run)
    a, b = fresh("t1", "conv_b"), fresh("b0", "conv_b")
    expected = {
        variant: cca.pwcca_distance(a, b, variant=variant)
        for variant in ("svcca", "textbook")
    }
    assert abs(expected["svcca"] - expected["textbook"]) > 1e-3
    for variant in ("svcca", "textbook", "both"):
        distances = similarity_distances.figure3_distances(
            treated, baseline, LAYERS, loader, pwcca_variant=variant
        )
        rows = distances[
            (distances["layer"] == "conv_b")
            & (distances["run_a"] == "t1")
            & (distances["run_b"] == "b0")
        ]
        wanted = ["svcca", "textbook"] if variant == "both" else [variant]
        assert list(rows["pwcca_variant"]) == wanted
        for _, row in rows.iterrows():
            assert row["distance"] == pytest.approx(
                expected[row["pwcca_variant"]], abs=1e-12
            )


def test_both_pwcca_variants_load_and_factor_each_layer_once(monkeypatch):
    treated, baseline = _runs("t", 3), _runs("b", 2)
    loader = SyntheticRuns({run: 0 for run in treated + baseline})
    factorized = collections.Counter()
    real_factorize = cca.factorize

    def counting_factorize(acts, **kwargs):
        factorized[acts.tobytes()] += 1
        return real_factorize(acts, **kwargs)

    monkeypatch.setattr(cca, "factorize", counting_factorize)
    calls = []
    distances = similarity_distances.figure3_distances(
        treated,
        baseline,
        LAYERS,
        loader,
        pwcca_variant="both",
        progress=lambda done, total: calls.append((done, total)),
    )
    assert set(loader.loads.values()) == {1}
    assert sum(factorized.values()) == len(LAYERS) * 5
    assert set(factorized.values()) == {1}
    assert len(distances) == 2 * len(LAYERS) * (3 + 6)
    assert distances.groupby("pwcca_variant").size().to_dict() == {
        "svcca": 18,
        "textbook": 18,
    }
    total = len(LAYERS) * (3 + 6)  # Progress counts pairs, not variants.
    assert calls == [(done, total) for done in range(1, total + 1)]
    with pytest.raises(ValueError, match="several PWCCA variants"):
        similarity_distances.distance_ratios(distances)
    for _, one_variant in distances.groupby("pwcca_variant"):
        assert len(similarity_distances.distance_ratios(one_variant)) == len(LAYERS)


def test_other_methods_have_no_pwcca_variant():
    treated, baseline = _runs("t", 2), _runs("b", 1)
    loader = SyntheticRuns({run: 0 for run in treated + baseline})
    distances = similarity_distances.figure3_distances(
        treated, baseline, LAYERS, loader, method="svcca", pwcca_variant="both"
    )
    assert set(distances["pwcca_variant"]) == {""}
    assert len(distances) == len(LAYERS) * (1 + 2)


def test_each_run_and_layer_loaded_once_layer_by_layer():
    treated, baseline = _runs("t", 4), _runs("b", 3)
    loader = SyntheticRuns({run: 0 for run in treated + baseline})
    similarity_distances.figure3_distances(treated, baseline, LAYERS, loader)
    assert set(loader.loads) == {
        (run, layer) for run in treated + baseline for layer in LAYERS
    }
    assert set(loader.loads.values()) == {1}
    layers_in_load_order = [layer for _, layer in loader.load_order]
    assert layers_in_load_order == sorted(layers_in_load_order, key=LAYERS.index)


def test_previous_layer_factors_are_released_before_next_layer(monkeypatch):
    treated, baseline = _runs("t", 3), _runs("b", 2)
    runs = treated + baseline
    synthetic = SyntheticRuns({run: 0 for run in runs})
    alive_by_layer: dict[str, list[weakref.ref]] = collections.defaultdict(list)
    current_layer = []
    alive_at_layer_start = {}

    real_factorize = cca.factorize

    def tracking_factorize(acts, **kwargs):
        factored = real_factorize(acts, **kwargs)
        alive_by_layer[current_layer[-1]].append(weakref.ref(factored))
        return factored

    def loader(run, layer):
        if not current_layer or current_layer[-1] != layer:
            gc.collect()
            alive_at_layer_start[layer] = sum(
                ref() is not None for refs in alive_by_layer.values() for ref in refs
            )
            current_layer.append(layer)
        return synthetic(run, layer)

    monkeypatch.setattr(cca, "factorize", tracking_factorize)
    similarity_distances.figure3_distances(treated, baseline, LAYERS, loader)
    assert alive_at_layer_start == {"conv_a": 0, "conv_b": 0}
    assert len(alive_by_layer["conv_b"]) == len(runs)


def test_rotated_representation_gives_ratio_near_one():
    treated, baseline = _runs("t", 5), _runs("b", 5)
    loader = SyntheticRuns({run: 0 for run in treated + baseline})
    distances = similarity_distances.figure3_distances(treated, baseline, LAYERS, loader)
    ratios = similarity_distances.distance_ratios(distances)
    assert ratios["ratio"].between(0.8, 1.25).all()
    assert similarity_distances.mean_ratio(ratios) == pytest.approx(1.0, abs=0.2)


@pytest.mark.parametrize("method", ["pwcca", "svcca", "mean_cca"])
def test_changed_representation_gives_large_ratio(method):
    treated, baseline = _runs("t", 5), _runs("b", 5)
    latent_of_run = {**{run: 1 for run in treated}, **{run: 0 for run in baseline}}
    loader = SyntheticRuns(latent_of_run)
    distances = similarity_distances.figure3_distances(
        treated, baseline, LAYERS, loader, method
    )
    ratios = similarity_distances.distance_ratios(distances)
    assert (ratios["ratio"] > 3.0).all()
    test = stats.cca_ratio_summary(ratios.assign(model="m", alpha=-1.0), n_resamples=100).iloc[0]
    assert test["mean_difference"] > 0 and test["t_statistic"] > 0
    assert test["n_layers"] == 2


def test_progress_reports_every_pair():
    treated, baseline = _runs("t", 3), _runs("b", 2)
    loader = SyntheticRuns({run: 0 for run in treated + baseline})
    calls = []
    similarity_distances.figure3_distances(
        treated,
        baseline,
        LAYERS,
        loader,
        progress=lambda done, total: calls.append((done, total)),
    )
    total = len(LAYERS) * (3 + 6)
    assert calls == [(done, total) for done in range(1, total + 1)]


@pytest.mark.parametrize(
    "treated,baseline,kwargs,message",
    [
        (["t0"], ["b0", "b1"], {}, "at least 2 treated"),
        ([], ["b0"], {}, "at least 2 treated"),
        (["t0", "t1"], [], {}, "baseline run"),
        (["t0", "t1"], ["t1", "b0"], {}, "both"),
        (["t0", "t0"], ["b0"], {}, "duplicate"),
        (["t0", "t1"], ["b0"], {"treated_alpha": 0.0, "baseline_alpha": 0.0}, "alpha"),
        (["t0", "t1"], ["b0"], {"method": "cka"}, "Unknown CCA method"),
        (["t0", "t1"], ["b0"], {"pwcca_variant": "google"}, "Unknown PWCCA variant"),
    ],
)
def test_invalid_arguments_raise(treated, baseline, kwargs, message):
    loader = SyntheticRuns({run: 0 for run in ["t0", "t1", "b0", "b1"]})
    with pytest.raises(ValueError, match=message):
        similarity_distances.figure3_distances(treated, baseline, LAYERS, loader, **kwargs)
    assert not loader.loads  # Rejected before any activation is loaded.


def test_invalid_layers_raise():
    loader = SyntheticRuns({run: 0 for run in ["t0", "t1", "b0"]})
    for layers in ([], ["conv_a", "conv_a"]):
        with pytest.raises(ValueError):
            similarity_distances.figure3_distances(["t0", "t1"], ["b0"], layers, loader)


def test_unusable_activations_name_run_and_layer():
    def loader(run, layer):
        acts = np.random.default_rng(0).standard_normal((UNITS, DATAPOINTS))
        if run == "b0" and layer == "conv_b":
            acts[:] = 0.0
        return acts

    with pytest.raises(ValueError, match="'b0', layer 'conv_b'.*no live unit"):
        similarity_distances.figure3_distances(["t0", "t1"], ["b0"], LAYERS, loader)


def _hand_made_distances() -> pd.DataFrame:
    rows = [
        ("l0", 0, "within", 1.0),
        ("l0", 0, "within", 3.0),
        ("l0", 0, "to_baseline", 4.0),
        ("l0", 0, "to_baseline", 8.0),
        ("l1", 1, "within", 1.0),
        ("l1", 1, "to_baseline", 2.0),
        ("l2", 2, "within", 2.0),
        ("l2", 2, "to_baseline", 2.5),
    ]
    return pd.DataFrame(
        [
            {
                "layer": layer,
                "layer_index": index,
                "comparison": comparison,
                "run_a": "a",
                "run_b": "b",
                "distance": distance,
                "method": "pwcca",
            }
            for layer, index, comparison, distance in rows
        ]
    )


def test_distance_ratios_and_mean_on_known_numbers():
    ratios = similarity_distances.distance_ratios(_hand_made_distances())
    assert list(ratios.columns) == [
        "layer",
        "layer_index",
        "within_mean",
        "to_baseline_mean",
        "ratio",
    ]
    assert list(ratios["layer"]) == ["l0", "l1", "l2"]
    np.testing.assert_allclose(ratios["within_mean"], [2.0, 1.0, 2.0])
    np.testing.assert_allclose(ratios["to_baseline_mean"], [6.0, 2.0, 2.5])
    np.testing.assert_allclose(ratios["ratio"], [3.0, 2.0, 1.25])
    assert similarity_distances.mean_ratio(ratios) == pytest.approx(6.25 / 3)


def test_ratio_test_of_stats_on_known_numbers():
    # The paired t-test of Figure 3b lives in `stats` (one implementation for
    # the cca_tests table, the report and the figure); checked here by hand
    # on this module's ratios.
    ratios = similarity_distances.distance_ratios(_hand_made_distances())
    result = stats.cca_ratio_summary(ratios.assign(model="m", alpha=-1.0), n_resamples=100).iloc[0]
    differences = np.array([4.0, 1.0, 0.5])  # to_baseline_mean - within_mean.
    expected_t = differences.mean() / (differences.std(ddof=1) / math.sqrt(3))
    assert result["t_statistic"] == pytest.approx(expected_t)
    assert result["p_value"] == pytest.approx(2 * scipy_stats.t.sf(expected_t, df=2))
    assert result["p_bonferroni"] == pytest.approx(result["p_value"])  # One alpha.
    assert result["n_layers"] == 3
    assert result["mean_ratio"] == pytest.approx(similarity_distances.mean_ratio(ratios))


def test_ratio_functions_reject_bad_tables():
    distances = _hand_made_distances()
    with pytest.raises(ValueError, match="within"):
        similarity_distances.distance_ratios(
            distances[distances["comparison"] == "to_baseline"]
        )
    with pytest.raises(ValueError, match="lacks columns"):
        similarity_distances.distance_ratios(distances.drop(columns="method"))
    mixed = distances.assign(method=["pwcca", "svcca"] * 4)
    with pytest.raises(ValueError, match="several methods"):
        similarity_distances.distance_ratios(mixed)
    with pytest.raises(ValueError):
        similarity_distances.mean_ratio(similarity_distances.distance_ratios(distances).iloc[:0])


class FakeThreadpoolctl(types.ModuleType):
    """Stands in for threadpoolctl; records the limits that were active."""

    def __init__(self):
        super().__init__("threadpoolctl")
        self.calls = []
        self.active = None

    @contextlib.contextmanager
    def threadpool_limits(self, limits=None, user_api=None):
        self.calls.append((limits, user_api))
        self.active = limits
        try:
            yield
        finally:
            self.active = None


def test_blas_threads_limited_while_computing(monkeypatch):
    fake = FakeThreadpoolctl()
    monkeypatch.setitem(sys.modules, "threadpoolctl", fake)
    treated, baseline = _runs("t", 2), _runs("b", 1)
    synthetic = SyntheticRuns({run: 0 for run in treated + baseline})
    limits_seen = set()

    def loader(run, layer):
        limits_seen.add(fake.active)
        return synthetic(run, layer)

    similarity_distances.figure3_distances(treated, baseline, LAYERS, loader)
    assert fake.calls == [(1, "blas")]
    assert limits_seen == {1}
    assert fake.active is None  # Restored afterwards.

    fake.calls.clear()
    similarity_distances.figure3_distances(
        treated, baseline, LAYERS, synthetic, blas_threads=None
    )
    assert fake.calls == []


def test_blas_thread_limit_without_threadpoolctl(monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # Import fails.
    # Without the optional dependency the limit is a no-op context, not an
    # ImportError, and it leaves BLAS results untouched.
    limit = similarity_distances.blas_thread_limit(1)
    assert isinstance(limit, contextlib.nullcontext)
    a = np.random.default_rng(0).normal(size=(50, 40))
    with limit:
        inside = a @ a.T
    np.testing.assert_array_equal(inside, a @ a.T)
    assert isinstance(similarity_distances.blas_thread_limit(None), contextlib.nullcontext)


def test_several_measures_from_one_factorization():
    """CKA and Procrustes beside PWCCA: one load per (run, layer) for all, each
    measure's rows equal to its own single-method call and to the raw-array
    functions of tf_selectivity.measures.similarity."""
    from tf_selectivity.measures import similarity

    treated, baseline = _runs("t", 3), _runs("b", 2)
    latent_of_run = {**{run: 0 for run in treated}, **{run: 1 for run in baseline}}
    loader = SyntheticRuns(latent_of_run)
    methods = ("pwcca", "debiased_cka", "linear_cka", "procrustes", "svcca")
    distances = similarity_distances.figure3_distances(
        treated, baseline, LAYERS, loader, method=methods, pwcca_variant="both")
    assert set(loader.loads.values()) == {1}
    assert sorted(distances["method"].unique()) == sorted(methods)
    pairs = 3 + 3 * 2
    counts = distances.groupby("method").size()
    assert counts["pwcca"] == 2 * pairs * len(LAYERS)
    assert counts["debiased_cka"] == pairs * len(LAYERS)
    for method in ("debiased_cka", "procrustes"):
        alone = similarity_distances.figure3_distances(
            treated, baseline, LAYERS, SyntheticRuns(latent_of_run), method=method)
        mine = distances[distances["method"] == method].reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, alone)
        ratios = similarity_distances.distance_ratios(mine)
        assert (ratios["ratio"] > 1.5).all()  # different latents: not a rotation
    row = distances[(distances["method"] == "debiased_cka") & (distances["layer"] == "conv_b")].iloc[0]
    expected = 1 - similarity.debiased_cka(loader(row["run_a"], "conv_b"), loader(row["run_b"], "conv_b"))
    assert row["distance"] == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="Unknown CCA method 'rbf_cka'"):
        similarity_distances.figure3_distances(treated, baseline, LAYERS, loader, method=("pwcca", "rbf_cka"))


def test_rotated_replicates_have_cka_ratio_one():
    treated, baseline = _runs("t", 3), _runs("b", 3)
    loader = SyntheticRuns({run: 0 for run in treated + baseline}, noise=0.3)
    distances = similarity_distances.figure3_distances(
        treated, baseline, LAYERS, loader, method=("linear_cka", "debiased_cka", "procrustes"))
    for method, part in distances.groupby("method"):
        ratios = similarity_distances.distance_ratios(part)
        assert ratios["ratio"].to_numpy() == pytest.approx(1.0, abs=0.2), method


def test_similarity_maps_pairs_and_values():
    from tf_selectivity.measures import similarity
    from tf_selectivity.analysis.stages.similarity import maps as similarity_maps

    seeds = {"t0": 0, "t1": 1, "t2": 2, "b0": 0, "b1": 1}
    assert similarity_maps.map_pairs(["t0", "t1", "t2"], ["b0", "b1"], seeds) == [
        ("within", "t0", "t1"), ("to_baseline", "t0", "b1")]
    assert similarity_maps.map_pairs(["t0", "t1"], ["b0"], None) == [
        ("within", "t0", "t1"), ("to_baseline", "t0", "b0")]
    loader = SyntheticRuns({"t0": 0, "t1": 0, "b1": 1})
    table = similarity_maps.map_table([("within", "t0", "t1"), ("to_baseline", "t0", "b1")], LAYERS, loader)
    assert list(table.columns) == list(similarity_maps.MAP_COLUMNS)
    assert len(table) == 2 * len(LAYERS) ** 2
    expected = similarity.cka_map([loader("t0", layer) for layer in LAYERS],
                                  [loader("b1", layer) for layer in LAYERS], debiased=True)
    got = table[table["comparison"] == "to_baseline"].pivot_table(
        index="layer_index_a", columns="layer_index_b", values="similarity").to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12)
    within = table[table["comparison"] == "within"]
    diagonal = within[within["layer_index_a"] == within["layer_index_b"]]["similarity"]
    assert (diagonal > 0.9).all()  # rotations of one latent
    assert np.diagonal(got).max() < 0.2  # different latents
    own = similarity_maps.layer_similarity_map("t0", "t0", LAYERS, loader)
    assert np.diagonal(own).tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="Unknown map measure"):
        similarity_maps.layer_similarity_map("t0", "t1", LAYERS, loader, measure="pwcca")


def test_procrustes_alpha_reaches_the_measure():
    from tf_selectivity.measures import similarity

    treated, baseline = _runs("t", 2), _runs("b", 1)
    loader = SyntheticRuns({"t0": 0, "t1": 0, "b0": 1})
    distances = similarity_distances.figure3_distances(
        treated, baseline, LAYERS, loader, method="procrustes", procrustes_alpha=0.0)
    row = distances.iloc[0]
    expected = similarity.procrustes_distance(
        loader(row["run_a"], row["layer"]), loader(row["run_b"], row["layer"]), alpha=0.0)
    assert row["distance"] == pytest.approx(expected, abs=1e-12)

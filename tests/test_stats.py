"""Tests of `tf_selectivity.measures.stats` on data whose answer is known."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from tf_selectivity.measures import stats

STATS_PATH = Path(__file__).resolve().parents[1] / "tf_selectivity" / "measures" / "stats.py"


def _groups(values_by_alpha: dict) -> pd.DataFrame:
    """Long table with one row per value: columns alpha, test_accuracy."""
    rows = [
        {"alpha": alpha, "test_accuracy": value}
        for alpha, values in values_by_alpha.items()
        for value in values
    ]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- imports


def test_stats_module_imports_neither_tensorflow_nor_keras():
    # Load the file on its own in a fresh interpreter, as a re-analysis
    # script on a laptop without TensorFlow would.
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('stats_only', {str(STATS_PATH)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "leaked = [m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules]\n"
        "assert not leaked, leaked\n"
        "print(module.format_p_value(0.03))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "p = 0.03"


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_ci_covers_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(123)
    true_mean, n_datasets = 5.0, 200
    covered = 0
    for dataset in range(n_datasets):
        sample = rng.normal(true_mean, 2.0, size=40)
        low, high = stats.bootstrap_ci(sample, n_resamples=1000, seed=dataset)
        covered += low <= true_mean <= high
    # Binomial(200, ~0.94) for a percentile bootstrap at n = 40: 0.88..0.99
    # holds with overwhelming probability; a broken interval (e.g. a 50%
    # interval or a wrong centre) falls far outside.
    assert 0.88 <= covered / n_datasets <= 0.99


def test_bootstrap_ci_width_shrinks_like_one_over_sqrt_n():
    rng = np.random.default_rng(7)
    sigma = 3.0
    widths = {}
    for n in (100, 400, 1600):
        low, high = stats.bootstrap_ci(rng.normal(0.0, sigma, size=n), n_resamples=4000)
        widths[n] = high - low
        # Close to the normal-theory width 2 * 1.96 * sigma / sqrt(n).
        assert widths[n] == pytest.approx(2 * 1.96 * sigma / math.sqrt(n), rel=0.15)
    assert widths[100] / widths[400] == pytest.approx(2.0, rel=0.2)
    assert widths[400] / widths[1600] == pytest.approx(2.0, rel=0.2)


def test_bootstrap_ci_is_reproducible_and_seed_dependent():
    sample = np.random.default_rng(0).normal(size=30)
    assert stats.bootstrap_ci(sample, seed=1) == stats.bootstrap_ci(sample, seed=1)
    assert stats.bootstrap_ci(sample, seed=1) != stats.bootstrap_ci(sample, seed=2)


def test_bootstrap_ci_degenerate_inputs():
    assert stats.bootstrap_ci([0.42]) == (0.42, 0.42)
    low, high = stats.bootstrap_ci([])
    assert math.isnan(low) and math.isnan(high)
    # NaN values are dropped, so this is the single value 0.5.
    assert stats.bootstrap_ci([np.nan, 0.5, np.inf]) == (0.5, 0.5)
    # Constant samples have a zero-width interval at the constant.
    assert stats.bootstrap_ci([2.0, 2.0, 2.0]) == pytest.approx((2.0, 2.0))


def test_bootstrap_ci_other_statistics():
    sample = np.arange(1.0, 102.0)  # median 51
    low, high = stats.bootstrap_ci(sample, statistic=np.median, n_resamples=2000)
    assert low < 51 < high
    # A statistic without an `axis` argument is applied row by row.
    low_max, high_max = stats.bootstrap_ci(
        sample, statistic=lambda values: float(max(values)), n_resamples=300
    )
    assert low_max <= high_max == 101.0


def test_bootstrap_ci_rejects_bad_arguments():
    with pytest.raises(ValueError):
        stats.bootstrap_ci([1.0, 2.0], confidence=95)
    with pytest.raises(ValueError):
        stats.bootstrap_ci([1.0, 2.0], n_resamples=0)


def test_summarize_by_group_matches_pandas():
    rng = np.random.default_rng(3)
    df = _groups({-1.0: rng.normal(0.9, 0.01, 6), 0.0: rng.normal(0.8, 0.01, 5)})
    summary = stats.summarize_by_group(df, "test_accuracy", "alpha", n_resamples=500)
    expected = df.groupby("alpha")["test_accuracy"]
    assert list(summary["alpha"]) == [-1.0, 0.0]
    np.testing.assert_allclose(summary["mean"], expected.mean().to_numpy())
    np.testing.assert_allclose(summary["std"], expected.std().to_numpy())
    assert list(summary["n"]) == [6, 5]
    assert (summary["ci_low"] < summary["mean"]).all()
    assert (summary["mean"] < summary["ci_high"]).all()


# ---------------------------------------------------------------- Bonferroni


def test_bonferroni_multiplies_by_number_of_tests_and_caps_at_one():
    corrected = stats.bonferroni([0.01, 0.2, 0.0001, np.nan])
    # Three finite p-values: three tests.
    np.testing.assert_allclose(corrected[:3], [0.03, 0.6, 0.0003])
    assert math.isnan(corrected[3])
    assert stats.bonferroni([0.5, 0.6])[1] == 1.0


# ---------------------------------------------------------------- t-tests


def test_ttests_identical_groups_give_large_p():
    values = [0.90, 0.91, 0.92, 0.93]
    result = stats.ttests_vs_baseline(_groups({0.0: values, -1.0: values}))
    assert len(result) == 1
    assert result.loc[0, "difference"] == pytest.approx(0.0)
    assert result.loc[0, "p_value"] == pytest.approx(1.0)
    assert not result.loc[0, "significant"]


def test_ttests_separated_groups_give_tiny_p_and_match_scipy():
    rng = np.random.default_rng(11)
    baseline = rng.normal(0.91, 0.002, 20)
    same = rng.normal(0.91, 0.002, 20)
    collapsed = rng.normal(0.30, 0.05, 20)  # Very different variance too.
    df = _groups({0.0: baseline, -1.0: same, 5.0: collapsed})
    result = stats.ttests_vs_baseline(df).set_index("alpha")

    assert list(result.index) == [-1.0, 5.0]
    for alpha, values in ((-1.0, same), (5.0, collapsed)):
        direct = scipy_stats.ttest_ind(values, baseline, equal_var=False)
        assert result.loc[alpha, "t_statistic"] == pytest.approx(direct.statistic)
        assert result.loc[alpha, "p_value"] == pytest.approx(direct.pvalue)
        assert result.loc[alpha, "p_bonferroni"] == pytest.approx(min(1.0, 2 * direct.pvalue))
        assert result.loc[alpha, "mean"] == pytest.approx(np.mean(values))
        assert result.loc[alpha, "difference"] == pytest.approx(np.mean(values) - np.mean(baseline))
        assert result.loc[alpha, "n"] == 20 and result.loc[alpha, "baseline_n"] == 20
    assert result.loc[5.0, "p_value"] < 1e-20
    assert result.loc[5.0, "significant"]
    assert not result.loc[-1.0, "significant"]


def test_ttests_small_groups_and_missing_baseline_give_nan_with_note():
    df = _groups({0.0: [0.9, 0.91, 0.92], -1.0: [0.5], 1.0: [0.1, 0.12, 0.11]})
    result = stats.ttests_vs_baseline(df).set_index("alpha")
    assert math.isnan(result.loc[-1.0, "p_value"])
    assert "2" in result.loc[-1.0, "note"]
    # Only one test ran, so its p-value is not multiplied.
    assert result.loc[1.0, "p_bonferroni"] == pytest.approx(result.loc[1.0, "p_value"])

    no_baseline = stats.ttests_vs_baseline(_groups({-1.0: [0.1, 0.2], 1.0: [0.3, 0.4]}))
    assert no_baseline["p_value"].isna().all()
    assert no_baseline["note"].str.contains("baseline").all()
    assert not no_baseline["significant"].any()


def test_ttests_baseline_matching_tolerates_float_noise():
    df = _groups({0.1 + 0.2 - 0.3: [0.9, 0.91, 0.92], -1.0: [0.8, 0.81, 0.82]})
    result = stats.ttests_vs_baseline(df)
    assert list(result["alpha"]) == [-1.0]
    assert result.loc[0, "baseline_n"] == 3


# ---------------------------------------------------------------- rank-sum


def test_ranksum_perfectly_separated_samples_give_exact_known_statistic():
    n = 5
    negative = [0.90, 0.91, 0.92, 0.93, 0.94]
    positive = [0.10, 0.20, 0.30, 0.40, 0.50]
    df = _groups({-1.0: negative, 1.0: positive, -2.0: negative, 2.0: positive, -5.0: negative})
    result = stats.ranksum_promote_vs_suppress(df)

    # Only |alpha| present with both signs is tested.
    assert list(result["abs_alpha"]) == [1.0, 2.0]
    row = result.iloc[0]
    # Every negative-alpha value beats every positive one: U = n1 * n2 and the
    # rank sum is the n1 largest ranks, n1 * n2 + n1 (n1 + 1) / 2.
    assert row["u_statistic"] == n * n
    assert row["rank_sum"] == n * n + n * (n + 1) / 2 == sum(range(n + 1, 2 * n + 1))
    # Exact two-sided p: 2 of the C(10, 5) equally likely rankings are this extreme.
    assert row["p_value"] == pytest.approx(2 / math.comb(2 * n, n))
    assert row["method"] == "exact"
    assert row["p_bonferroni"] == pytest.approx(2 * 2 / math.comb(2 * n, n))
    assert row["difference"] == pytest.approx(np.mean(negative) - np.mean(positive))


def test_ranksum_matches_scipy_and_handles_ties():
    rng = np.random.default_rng(5)
    negative = np.round(rng.normal(0.9, 0.01, 12), 2)  # Rounded: ties.
    positive = np.round(rng.normal(0.89, 0.01, 12), 2)
    result = stats.ranksum_promote_vs_suppress(_groups({-0.5: negative, 0.5: positive}))
    direct = scipy_stats.mannwhitneyu(negative, positive, alternative="two-sided",
                                      method="asymptotic")
    assert result.loc[0, "method"] == "asymptotic"
    assert result.loc[0, "u_statistic"] == pytest.approx(direct.statistic)
    assert result.loc[0, "p_value"] == pytest.approx(direct.pvalue)


def test_ranksum_identical_samples_are_not_significant():
    values = [0.90, 0.91, 0.92, 0.93]
    result = stats.ranksum_promote_vs_suppress(_groups({-1.0: values, 1.0: values}))
    assert result.loc[0, "p_value"] > 0.5
    assert not result.loc[0, "significant"]


def test_ranksum_single_value_per_sign_is_not_tested():
    result = stats.ranksum_promote_vs_suppress(_groups({-1.0: [0.9], 1.0: [0.1, 0.2]}))
    assert math.isnan(result.loc[0, "p_value"])
    assert result.loc[0, "note"]


# ---------------------------------------------------------------- paired


def test_paired_ttest_matches_scipy_and_drops_incomplete_pairs():
    a = np.array([1.0, 2.0, 3.5, 4.0, np.nan])
    b = np.array([0.5, 1.0, 2.0, 3.9, 1.0])
    result = stats.paired_ttest(a, b)
    direct = scipy_stats.ttest_rel(a[:4], b[:4])
    assert result.n == 4
    assert result.mean_difference == pytest.approx(np.mean(a[:4] - b[:4]))
    assert result.t_statistic == pytest.approx(direct.statistic)
    assert result.p_value == pytest.approx(direct.pvalue)


def test_paired_ttest_degenerate_inputs():
    assert math.isnan(stats.paired_ttest([1.0], [2.0]).p_value)
    # Constant differences: no variance, no test.
    assert math.isnan(stats.paired_ttest([1.0, 2.0, 3.0], [0.0, 1.0, 2.0]).p_value)
    with pytest.raises(ValueError):
        stats.paired_ttest([1.0, 2.0], [1.0])


# ---------------------------------------------------------------- formatting


@pytest.mark.parametrize(
    "p, text",
    [
        (0.03, "p = 0.03"),
        (0.0312, "p = 0.031"),
        (0.6, "p = 0.6"),
        (0.0031, "p = 0.0031"),
        (2.3e-5, "p = 2.3e-5"),
        (1e-4, "p = 1e-4"),
        (5e-7, "p < 1e-6"),
        (0.0, "p < 1e-6"),
        (1.0, "p = 1"),
        (float("nan"), "p = n/a"),
    ],
)
def test_format_p_value(p, text):
    assert stats.format_p_value(p) == text


def test_significance_stars_and_legend():
    assert stats.significance_stars(0.2) == ""
    assert stats.significance_stars(0.01) == "*"
    assert stats.significance_stars(1e-4) == "**"
    assert stats.significance_stars(1e-9) == "***"
    assert stats.significance_stars(float("nan")) == ""
    assert stats.stars_legend() == "*p < 0.05, **p < 0.001, ***p < 1e-6"


# ---------------------------------------------------------------- CCA


def _cca_table() -> pd.DataFrame:
    rows = []
    # alpha -10: within 0.2 / to_baseline 0.3 (layer 0); 0.4 / 0.5 (layer 1).
    for layer_index, within, to_baseline in ((0, (0.19, 0.21), (0.29, 0.31)),
                                             (1, (0.40, 0.40), (0.50, 0.50))):
        for comparison, distances in (("within", within), ("to_baseline", to_baseline)):
            for distance in distances:
                rows.append({"model": "resnet20", "alpha": -10.0, "layer": f"conv{layer_index}",
                             "layer_index": layer_index, "comparison": comparison,
                             "run_a": "a", "run_b": "b", "distance": distance,
                             "method": "pwcca"})
    return pd.DataFrame(rows)


def test_cca_distance_ratio_known_values():
    ratio = stats.cca_distance_ratio(_cca_table())
    assert list(ratio["layer_index"]) == [0, 1]
    np.testing.assert_allclose(ratio["within_mean"], [0.2, 0.4])
    np.testing.assert_allclose(ratio["to_baseline_mean"], [0.3, 0.5])
    np.testing.assert_allclose(ratio["ratio"], [1.5, 1.25])


def test_cca_ratio_summary_known_values():
    ratio = pd.DataFrame({
        "model": ["m"] * 6,
        "alpha": [-10.0] * 3 + [-1.0] * 3,
        "layer": ["a", "b", "c"] * 2,
        "layer_index": [0, 1, 2] * 2,
        "within_mean": [0.2, 0.3, 0.4, 0.2, 0.3, 0.4],
        "to_baseline_mean": [0.3, 0.5, 0.6, 0.2, 0.31, 0.4],
    })
    ratio["ratio"] = ratio["to_baseline_mean"] / ratio["within_mean"]
    summary = stats.cca_ratio_summary(ratio, n_resamples=500).set_index("alpha")
    assert summary.loc[-10.0, "mean_ratio"] == pytest.approx(np.mean([1.5, 5 / 3, 1.5]))
    assert summary.loc[-10.0, "n_layers"] == 3
    direct = scipy_stats.ttest_rel([0.3, 0.5, 0.6], [0.2, 0.3, 0.4])
    assert summary.loc[-10.0, "p_value"] == pytest.approx(direct.pvalue)
    assert summary.loc[-10.0, "p_bonferroni"] == pytest.approx(min(1.0, 2 * direct.pvalue))
    assert summary.loc[-10.0, "ci_low"] <= summary.loc[-10.0, "mean_ratio"] <= summary.loc[-10.0, "ci_high"]


def _two_condition_ratios() -> pd.DataFrame:
    """ResNet20 at alpha = -1: ratio 1.5 in every layer with ReLU, 1.0 with leaky ReLU."""
    rows = []
    for activation, slope, to_baseline in (("relu", 0.0, (0.3, 0.45, 0.6)),
                                           ("leaky_relu", 0.5, (0.2, 0.3, 0.4))):
        for index, within in enumerate((0.2, 0.3, 0.4)):
            rows.append({"model": "resnet20", "activation": activation, "leaky_slope": slope,
                         "alpha": -1.0, "layer": f"conv{index}", "layer_index": index,
                         "within_mean": within, "to_baseline_mean": to_baseline[index]})
    ratio = pd.DataFrame(rows)
    ratio["ratio"] = ratio["to_baseline_mean"] / ratio["within_mean"]
    return ratio


def test_cca_ratio_summary_keeps_conditions_apart():
    # A ReLU ratio of 1.5 and a leaky one of 1.0 are two results, not 1.25.
    summary = stats.cca_ratio_summary(_two_condition_ratios(), n_resamples=200)
    assert len(summary) == 2
    assert list(summary["activation"]) == ["relu", "leaky_relu"]  # ReLU first.
    assert list(summary["leaky_slope"]) == [0.0, 0.5]
    np.testing.assert_allclose(summary["mean_ratio"], [1.5, 1.0])
    relu = summary.iloc[0]
    direct = scipy_stats.ttest_rel([0.3, 0.45, 0.6], [0.2, 0.3, 0.4])
    assert relu["p_value"] == pytest.approx(direct.pvalue)
    # One alpha per condition: Bonferroni over the alphas of a condition only.
    assert relu["p_bonferroni"] == pytest.approx(direct.pvalue)
    assert relu["mean_difference"] == pytest.approx(np.mean([0.1, 0.15, 0.2]))
    # Equal distances: no difference to test.
    assert summary.iloc[1]["mean_difference"] == 0.0 and np.isnan(summary.iloc[1]["p_value"])


def test_cca_ratio_summary_bonferroni_family_is_one_condition():
    ratio = _two_condition_ratios()
    relu_two_alphas = pd.concat([ratio, ratio[ratio["activation"] == "relu"].assign(alpha=-10.0)])
    summary = stats.cca_ratio_summary(relu_two_alphas, n_resamples=200)
    relu = summary[summary["activation"] == "relu"].set_index("alpha")
    assert relu.loc[-1.0, "p_bonferroni"] == pytest.approx(min(1.0, 2 * relu.loc[-1.0, "p_value"]))
    # The leaky condition has one alpha tested: its p-values are not inflated by ReLU's.
    assert summary[summary["activation"] == "leaky_relu"]["alpha"].tolist() == [-1.0]


def test_cca_distance_ratio_keeps_conditions_and_methods_apart():
    base = _cca_table()
    leaky = base.assign(distance=np.where(base["comparison"] == "within", base["distance"], 0.2))
    leaky = leaky.assign(activation="leaky_relu", leaky_slope=0.5)
    svcca = base.assign(activation="relu", leaky_slope=0.0, method="svcca",
                        distance=base["distance"] / 2)
    table = pd.concat([base.assign(activation="relu", leaky_slope=0.0), leaky, svcca])
    ratio = stats.cca_distance_ratio(table)
    assert len(ratio) == 6  # 3 conditions x 2 layers.
    relu = ratio[(ratio["activation"] == "relu") & (ratio["method"] == "pwcca")]
    np.testing.assert_allclose(relu["ratio"], [1.5, 1.25])
    np.testing.assert_allclose(ratio[ratio["method"] == "svcca"]["ratio"], [1.5, 1.25])
    np.testing.assert_allclose(ratio[ratio["activation"] == "leaky_relu"]["ratio"], [1.0, 0.5])


def test_split_by_condition_orders_relu_first_and_fills_gaps():
    runs = pd.DataFrame({
        "model": ["vgg16", "resnet20", "resnet20", "resnet20", "resnet20"],
        "activation": ["relu", "leaky_relu", "leaky_relu", None, "relu"],
        "leaky_slope": [0.0, 0.5, 0.1, np.nan, 0.0],
        "alpha": [0.0] * 5,
    })
    groups = stats.split_by_condition(runs)
    assert [condition for condition, _ in groups] == [
        {"model": "resnet20", "activation": "relu", "leaky_slope": 0.0},
        {"model": "resnet20", "activation": "leaky_relu", "leaky_slope": 0.1},
        {"model": "resnet20", "activation": "leaky_relu", "leaky_slope": 0.5},
        {"model": "vgg16", "activation": "relu", "leaky_slope": 0.0},
    ]
    assert len(groups[0][1]) == 2  # The row without activation / slope is ReLU.
    assert stats.split_by_condition(runs.iloc[:0]) == []

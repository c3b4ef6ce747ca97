"""Statistics used by the figures and the report.

The paper ("Selectivity considered harmful", Leavitt & Morcos) reports
bootstrapped 95% confidence intervals for every mean, two-sample t-tests of
each regularization scale `alpha` against the unregularized baseline
(`alpha = 0`) with a Bonferroni correction, Wilcoxon rank-sum tests of
`alpha < 0` against `alpha > 0` at equal `|alpha|`, and paired t-tests for
the CCA distance ratio; its follow-up correlates robustness with selectivity
over networks (Spearman's rho with a permutation p-value and a bootstrap
CI). This module implements exactly those, on the plain
tables produced by the analysis command (`runs`, `layers`, `cca`,
`cca_ratio`).

Numbers of different experimental conditions are never pooled. A condition
is one model with one activation and leaky-ReLU slope and, where a table has
the column, one ``condition`` (its name: runs trained on other data or
with another protocol are other conditions) (`CONDITION_COLUMNS`),
and for CCA also one distance method (`CCA_CONDITION_COLUMNS`): a leaky-ReLU
sweep has an alpha = 0 baseline per slope, and ReLU and leaky runs analysed
together are two experiments, not replicates of one.

It depends only on numpy, scipy and pandas (no TensorFlow / Keras import) so
that results can be re-analysed on a laptop without an accelerator stack.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, NamedTuple, Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

# Bootstrap resamples per confidence interval unless told otherwise.
DEFAULT_N_RESAMPLES = 10_000

# Significance level used for every "significant" column.
SIGNIFICANCE_LEVEL = 0.05

# Thresholds for the asterisks drawn on figures, strictest last. The paper
# uses per-figure thresholds; fixed thresholds keep figures comparable.
STAR_THRESHOLDS = (0.05, 1e-3, 1e-6)

# Largest sample size for which the exact Mann-Whitney U distribution is
# used. The exact distribution is cheap for the paper's n = 20 (and still
# fast at a few hundred), and for larger samples the normal approximation is
# accurate anyway.
_MAX_EXACT_RANKSUM_SIZE = 200

# Columns that identify an experimental condition (those present in a table).
CONDITION_COLUMNS = ("model", "activation", "leaky_slope", "condition")
# A CCA result is also identified by how its distances were computed: the
# method (PWCCA, SVCCA) and, where the table has one, the PWCCA variant.
CCA_CONDITION_COLUMNS = (*CONDITION_COLUMNS, "method", "pwcca_variant")
# Value of a missing activation / slope (tables of ReLU-only experiments).
_CONDITION_DEFAULTS = {"activation": "relu", "leaky_slope": 0.0}

# Resamples are drawn in chunks so that a large input (e.g. 400 CCA pairs)
# never allocates more than about this many indices at once.
_BOOTSTRAP_CHUNK_ELEMENTS = 2_000_000


class PairedTTestResult(NamedTuple):
    """Result of `paired_ttest`.

    Attributes:
        n: Number of complete pairs used.
        mean_difference: Mean of `a - b` over the pairs.
        t_statistic: Paired t statistic (NaN when undefined).
        p_value: Two-sided p-value (NaN when undefined).
    """

    n: int
    mean_difference: float
    t_statistic: float
    p_value: float


def _finite_values(values) -> np.ndarray:
    """Returns `values` as a 1-D float array without NaN / inf entries."""
    array = np.asarray(values, dtype=float).ravel()
    return array[np.isfinite(array)]


def _apply_statistic(
    statistic: Callable, samples: np.ndarray
) -> np.ndarray:
    """Applies `statistic` to each row of `samples`.

    Numpy reductions (`np.mean`, `np.median`, ...) accept `axis` and run
    vectorised; arbitrary callables fall back to a row-by-row loop.
    """
    try:
        result = np.asarray(statistic(samples, axis=1), dtype=float)
        if result.shape == (samples.shape[0],):
            return result
    except TypeError:
        pass
    return np.array([statistic(row) for row in samples], dtype=float)


def bootstrap_ci(
    values,
    statistic: Callable = np.mean,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    seed: int | None = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of a statistic.

    The sample is resampled with replacement `n_resamples` times, the
    statistic is computed on each resample, and the interval is given by the
    `(1 - confidence) / 2` and `(1 + confidence) / 2` quantiles of those
    statistics (the percentile bootstrap, as in seaborn, which the paper used
    for its error bars).

    Degenerate inputs do not raise: NaN / inf values are dropped; an empty
    sample gives `(nan, nan)`; a single value `v` gives `(v, v)` because every
    resample of one value is that value (there is no spread to estimate, so
    the interval should be read as "unknown", not as "exact").

    Args:
        values: 1-D array-like of observations (e.g. test accuracies of the
            replicate networks trained at one `alpha`).
        statistic: Function of a 1-D array returning a scalar. Numpy
            reductions that accept `axis=` are vectorised.
        confidence: Confidence level in (0, 1).
        n_resamples: Number of bootstrap resamples.
        seed: Seed of the random generator, so that figures and reports are
            reproducible. `None` draws fresh entropy.

    Returns:
        `(low, high)` bounds of the interval as Python floats.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"`confidence` must be in (0, 1), got {confidence}.")
    if n_resamples < 1:
        raise ValueError(f"`n_resamples` must be >= 1, got {n_resamples}.")
    sample = _finite_values(values)
    if sample.size == 0:
        return (math.nan, math.nan)
    if sample.size == 1:
        value = float(statistic(sample))
        return (value, value)

    rng = np.random.default_rng(seed)
    rows_per_chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // sample.size)
    resampled_statistics = []
    remaining = n_resamples
    while remaining > 0:
        rows = min(rows_per_chunk, remaining)
        indices = rng.integers(0, sample.size, size=(rows, sample.size))
        resampled_statistics.append(
            _apply_statistic(statistic, sample[indices])
        )
        remaining -= rows
    distribution = np.concatenate(resampled_statistics)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(distribution, [tail, 1.0 - tail])
    return (float(low), float(high))


def bonferroni(p_values: Sequence[float]) -> np.ndarray:
    """Bonferroni-corrects a family of p-values.

    The number of tests is the number of finite p-values (a test that could
    not be run does not spend any of the error budget); NaN stays NaN.

    Args:
        p_values: Raw p-values of one family of tests.

    Returns:
        Array of `min(1, p * number_of_tests)`.
    """
    p = np.asarray(p_values, dtype=float)
    number_of_tests = int(np.isfinite(p).sum())
    return np.minimum(1.0, p * max(number_of_tests, 1))


def _is_baseline(values: pd.Series, baseline: float) -> np.ndarray:
    """Float-tolerant `values == baseline` (alphas are parsed from text)."""
    return np.isclose(values.astype(float), baseline, rtol=0.0, atol=1e-12)


def _welch_ttest(
    treated: np.ndarray, baseline: np.ndarray
) -> tuple[float, float, str]:
    """Welch's two-sample t-test with explicit handling of degenerate input.

    Returns:
        `(t_statistic, p_value, note)`; the note explains a NaN result.
    """
    if treated.size < 2 or baseline.size < 2:
        return (
            math.nan,
            math.nan,
            f"needs >= 2 values per group (n = {treated.size} vs "
            f"{baseline.size})",
        )
    if np.ptp(treated) == 0.0 and np.ptp(baseline) == 0.0:
        return (math.nan, math.nan, "zero variance in both groups")
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # scipy warns about catastrophic cancellation for near-constant data;
        # the result is still the best available estimate.
        warnings.simplefilter("ignore", RuntimeWarning)
        result = scipy_stats.ttest_ind(treated, baseline, equal_var=False)
    return (float(result.statistic), float(result.pvalue), "")


def ttests_vs_baseline(
    df: pd.DataFrame,
    value: str = "test_accuracy",
    group: str = "alpha",
    baseline: float = 0.0,
    significance_level: float = SIGNIFICANCE_LEVEL,
) -> pd.DataFrame:
    """Two-sample t-test of every group against the baseline group.

    This is the paper's "difference from alpha = 0, t-test,
    Bonferroni-corrected". Welch's unequal-variance t-test is used rather
    than Student's: the regularizer changes the spread of the outcome as well
    as its mean (at large |alpha| some replicates collapse to chance while
    others do not), which violates Student's equal-variance assumption, and
    Welch's test loses almost no power when the variances happen to be equal.

    Pass the rows of a single condition (one model, one activation); the
    function does not split by model.

    Args:
        df: Table with one row per observation (e.g. the `runs` table).
        value: Column holding the outcome to compare.
        group: Column holding the group label (the regularization scale).
        baseline: Group value used as the reference.
        significance_level: Level for the `significant` column, applied to
            the Bonferroni-corrected p-value.

    Returns:
        DataFrame with one row per non-baseline group, sorted by group, and
        columns `[group, "n", "baseline_n", "mean", "baseline_mean",
        "difference", "t_statistic", "p_value", "p_bonferroni",
        "significant", "note"]`. `difference` is `mean - baseline_mean`.
        Groups that cannot be tested (fewer than 2 values, no baseline) get
        NaN p-values and an explanatory `note`; the Bonferroni factor counts
        only the tests that were run.
    """
    columns = [
        group,
        "n",
        "baseline_n",
        "mean",
        "baseline_mean",
        "difference",
        "t_statistic",
        "p_value",
        "p_bonferroni",
        "significant",
        "note",
    ]
    data = df[[group, value]].copy()
    is_baseline = _is_baseline(data[group], baseline)
    baseline_values = _finite_values(data.loc[is_baseline, value])
    baseline_mean = (
        float(baseline_values.mean()) if baseline_values.size else math.nan
    )

    rows = []
    for group_value, group_rows in data.loc[~is_baseline].groupby(
        group, sort=True
    ):
        treated = _finite_values(group_rows[value])
        treated_mean = float(treated.mean()) if treated.size else math.nan
        if baseline_values.size == 0:
            t_statistic, p_value, note = (
                math.nan,
                math.nan,
                f"no baseline ({group} = {baseline:g}) rows",
            )
        else:
            t_statistic, p_value, note = _welch_ttest(treated, baseline_values)
        rows.append(
            {
                group: group_value,
                "n": int(treated.size),
                "baseline_n": int(baseline_values.size),
                "mean": treated_mean,
                "baseline_mean": baseline_mean,
                "difference": treated_mean - baseline_mean,
                "t_statistic": t_statistic,
                "p_value": p_value,
                "note": note,
            }
        )
    result = pd.DataFrame(rows, columns=[c for c in columns if c not in (
        "p_bonferroni", "significant")])
    result["p_bonferroni"] = bonferroni(result["p_value"].to_numpy())
    result["significant"] = result["p_bonferroni"] < significance_level
    return result[columns].reset_index(drop=True)


def _ranksum_test(
    negative: np.ndarray, positive: np.ndarray
) -> tuple[float, float, float, str]:
    """Two-sided Wilcoxon rank-sum (Mann-Whitney U) test.

    Returns:
        `(u_statistic, rank_sum, p_value, method)` where `u_statistic` and
        `rank_sum` refer to the `negative` sample.
    """
    pooled = np.concatenate([negative, positive])
    has_ties = np.unique(pooled).size < pooled.size
    small = max(negative.size, positive.size) <= _MAX_EXACT_RANKSUM_SIZE
    method = "exact" if small and not has_ties else "asymptotic"
    result = scipy_stats.mannwhitneyu(
        negative, positive, alternative="two-sided", method=method
    )
    # W (the rank sum of the first sample) = U + n1 (n1 + 1) / 2.
    rank_sum = float(result.statistic) + negative.size * (negative.size + 1) / 2
    return float(result.statistic), rank_sum, float(result.pvalue), method


def ranksum_promote_vs_suppress(
    df: pd.DataFrame,
    value: str = "test_accuracy",
    group: str = "alpha",
    significance_level: float = SIGNIFICANCE_LEVEL,
) -> pd.DataFrame:
    """Wilcoxon rank-sum test of `alpha < 0` against `alpha > 0` per |alpha|.

    This is the paper's Figure 5 / A6 / A11 test ("difference between
    alpha < 0 and alpha > 0, Wilcoxon rank-sum test, Bonferroni-corrected").
    It uses `scipy.stats.mannwhitneyu` (two-sided), which is the same test as
    the Wilcoxon rank-sum test, rather than `scipy.stats.ranksums`: the
    latter always uses the normal approximation without a tie correction,
    whereas `mannwhitneyu` gives the exact p-value for small samples without
    ties (the paper's 20 vs 20 replicates) and a tie-corrected approximation
    otherwise. The method used is reported per row.

    Args:
        df: Table with one row per observation (e.g. the `runs` table of one
            model and activation).
        value: Column holding the outcome.
        group: Column holding the signed regularization scale.
        significance_level: Level for the `significant` column, applied to
            the Bonferroni-corrected p-value.

    Returns:
        DataFrame with one row per |alpha| present with both signs, sorted by
        |alpha|, and columns `["abs_" + group, "n_negative", "n_positive",
        "mean_negative", "mean_positive", "difference", "u_statistic",
        "rank_sum", "p_value", "p_bonferroni", "significant", "method",
        "note"]`. `difference` is `mean_negative - mean_positive`;
        `u_statistic` is the Mann-Whitney U of the negative sample and
        `rank_sum` its Wilcoxon rank sum W. The Bonferroni factor is the
        number of |alpha| values tested.
    """
    abs_column = f"abs_{group}"
    columns = [
        abs_column,
        "n_negative",
        "n_positive",
        "mean_negative",
        "mean_positive",
        "difference",
        "u_statistic",
        "rank_sum",
        "p_value",
        "p_bonferroni",
        "significant",
        "method",
        "note",
    ]
    data = df[[group, value]].copy()
    data[group] = data[group].astype(float)
    # Round so that e.g. -0.1 and 0.1 parsed from different strings match.
    data[abs_column] = data[group].abs().round(12)
    rows = []
    for abs_value, rows_at_scale in data.groupby(abs_column, sort=True):
        negative = _finite_values(rows_at_scale.loc[rows_at_scale[group] < 0, value])
        positive = _finite_values(rows_at_scale.loc[rows_at_scale[group] > 0, value])
        if abs_value == 0 or negative.size == 0 or positive.size == 0:
            continue
        u_statistic = rank_sum = p_value = math.nan
        method, note = "", ""
        if negative.size < 2 or positive.size < 2:
            note = (
                f"needs >= 2 values per sign (n = {negative.size} vs "
                f"{positive.size})"
            )
        else:
            u_statistic, rank_sum, p_value, method = _ranksum_test(
                negative, positive
            )
        rows.append(
            {
                abs_column: float(abs_value),
                "n_negative": int(negative.size),
                "n_positive": int(positive.size),
                "mean_negative": float(negative.mean()),
                "mean_positive": float(positive.mean()),
                "difference": float(negative.mean() - positive.mean()),
                "u_statistic": u_statistic,
                "rank_sum": rank_sum,
                "p_value": p_value,
                "method": method,
                "note": note,
            }
        )
    result = pd.DataFrame(
        rows,
        columns=[c for c in columns if c not in ("p_bonferroni", "significant")],
    )
    result["p_bonferroni"] = bonferroni(result["p_value"].to_numpy())
    result["significant"] = result["p_bonferroni"] < significance_level
    return result[columns].reset_index(drop=True)


def paired_ttest(a, b) -> PairedTTestResult:
    """Paired two-sided t-test of `a` against `b`.

    Pairs where either value is NaN are dropped. With fewer than two pairs,
    or when every difference is identical (zero variance), the t statistic
    and p-value are NaN instead of raising.

    Args:
        a: 1-D array-like, e.g. per-layer mean CCA distance to the baseline.
        b: 1-D array-like of the same length, e.g. per-layer mean CCA
            distance between replicates.

    Returns:
        A `PairedTTestResult`.
    """
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(
            f"`a` and `b` must have the same length, got {a.size} and {b.size}."
        )
    complete = np.isfinite(a) & np.isfinite(b)
    differences = a[complete] - b[complete]
    n = int(differences.size)
    mean_difference = float(differences.mean()) if n else math.nan
    if n < 2 or np.ptp(differences) == 0.0:
        return PairedTTestResult(n, mean_difference, math.nan, math.nan)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # Nearly constant differences trigger a precision warning; the
        # statistic is still the best available estimate.
        warnings.simplefilter("ignore", RuntimeWarning)
        result = scipy_stats.ttest_rel(a[complete], b[complete])
    return PairedTTestResult(
        n, mean_difference, float(result.statistic), float(result.pvalue)
    )


def spearman_with_ci(x, y, n_resamples: int = DEFAULT_N_RESAMPLES, seed: int = 0,
                     confidence: float = 0.95) -> dict:
    """Spearman's rank correlation of paired samples with a bootstrap CI.

    Args:
        x: 1-D observations (pairs with a NaN are dropped).
        y: the observations paired with `x`, of its length.
        n_resamples: bootstrap resamples of the pairs (percentile interval).
        seed: of the resampling.
        confidence: of the interval.

    Returns:
        {"rho", "low", "high", "p", "n"}: p is the two-sided permutation
        p-value of rho (exact over all n! orders for n <= 8, else
        (1 + #{|rho*| >= |rho|}) / (1 + n_resamples) over random orders):
        with few runs the t approximation of `scipy.stats.spearmanr` (and a
        bootstrap CI) claim far more than the runs show (n = 4 and a perfect
        rank order give p ~ 0 there, 1/12 here). NaN where fewer than 3
        pairs or a constant variable leave rho undefined.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = int(len(x))
    result = {"rho": math.nan, "low": math.nan, "high": math.nan, "p": math.nan, "n": n}
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return result
    rho = float(scipy_stats.spearmanr(x, y)[0])
    rng = np.random.default_rng(seed)
    p = _spearman_permutation_p(scipy_stats.rankdata(x), scipy_stats.rankdata(y), rho, n_resamples, rng)
    picks = rng.integers(0, n, size=(n_resamples, n))
    rx = scipy_stats.rankdata(x[picks], axis=1)
    ry = scipy_stats.rankdata(y[picks], axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = (rx * ry).sum(1) / np.sqrt((rx**2).sum(1) * (ry**2).sum(1))
    boot = boot[np.isfinite(boot)]
    tail = (1 - confidence) / 2
    low, high = (np.quantile(boot, [tail, 1 - tail]) if len(boot) else (math.nan, math.nan))
    result.update(rho=float(rho), p=float(p), low=float(low), high=float(high))
    return result


def _rank_correlations(rx, ry_rows):
    rx = rx - rx.mean()
    ry = ry_rows - ry_rows.mean(axis=1, keepdims=True)
    return (ry @ rx) / np.sqrt((rx**2).sum() * (ry**2).sum(axis=1))


def _spearman_permutation_p(rx, ry, rho, n_resamples, rng):
    import itertools

    n = len(rx)
    if n <= 8:
        orders = np.array(list(itertools.permutations(range(n))))
        null = _rank_correlations(rx, ry[orders])
        return float(np.mean(np.abs(null) >= abs(rho) - 1e-12))
    orders = np.argsort(rng.random((n_resamples, n)), axis=1)
    null = _rank_correlations(rx, ry[orders])
    return float((1 + np.sum(np.abs(null) >= abs(rho) - 1e-12)) / (1 + n_resamples))


def format_p_value(
    p: float, floor: float = 1e-6, significant_digits: int = 2
) -> str:
    """Formats a p-value for text.

    Examples: `0.0312 -> "p = 0.031"`, `0.03 -> "p = 0.03"`,
    `2.3e-5 -> "p = 2.3e-5"`, `1e-9 -> "p < 1e-6"`, `nan -> "p = n/a"`.

    Args:
        p: The p-value.
        floor: Values below this are written as `"p < floor"` (reporting
            more digits than the test's numerical accuracy is misleading).
        significant_digits: Significant digits of the printed value.

    Returns:
        The formatted string.
    """
    if p is None or not np.isfinite(p):
        return "p = n/a"
    if p < floor:
        return f"p < {_compact_scientific(floor)}"
    if p < 1e-3:
        return f"p = {_compact_scientific(p, significant_digits)}"
    return f"p = {p:.{significant_digits}g}"


def _compact_scientific(value: float, significant_digits: int = 1) -> str:
    """`2.3e-05 -> "2.3e-5"`: scientific notation without zero padding."""
    mantissa, exponent = f"{value:.{max(significant_digits - 1, 0)}e}".split("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def significance_stars(
    p: float, thresholds: Sequence[float] = STAR_THRESHOLDS
) -> str:
    """Asterisks for a (corrected) p-value: one per threshold it is below.

    Args:
        p: The p-value (NaN gives no star).
        thresholds: Increasingly strict thresholds.

    Returns:
        `""`, `"*"`, `"**"`, ... .
    """
    if p is None or not np.isfinite(p):
        return ""
    return "*" * sum(p < threshold for threshold in thresholds)


def stars_legend(thresholds: Sequence[float] = STAR_THRESHOLDS) -> str:
    """Human-readable meaning of `significance_stars`, e.g. for captions."""
    return ", ".join(
        f"{'*' * (i + 1)}p < {_format_threshold(threshold)}"
        for i, threshold in enumerate(thresholds)
    )


def _format_threshold(threshold: float) -> str:
    """`0.05 -> "0.05"`, `1e-06 -> "1e-6"`."""
    if threshold < 1e-3:
        return _compact_scientific(threshold, significant_digits=2)
    return f"{threshold:g}"


def condition_columns(
    df: pd.DataFrame, columns: Sequence[str] = CONDITION_COLUMNS
) -> list[str]:
    """The columns of `columns` that `df` has, in that order."""
    return [column for column in columns if column in df.columns]


def _is_leaky(condition: dict) -> bool:
    return "leaky" in str(condition.get("activation", "")).lower()


def split_by_condition(
    df: pd.DataFrame, columns: Sequence[str] = CONDITION_COLUMNS
) -> list[tuple[dict, pd.DataFrame]]:
    """The rows of `df` per experimental condition.

    Missing activations count as "relu" and missing slopes as 0, so a table
    without those columns (or with gaps in them) is one ReLU condition per
    model.

    Args:
        df: Any table with condition columns (`runs`, `layers`, `cca`,
            `cca_ratio`, a CCA summary).
        columns: The columns that identify a condition; those absent from
            `df` are ignored.

    Returns:
        `(condition, rows)` pairs, where `condition` maps each present
        condition column to its value, sorted by model, then ReLU before
        leaky ReLU, then slope, then the remaining columns. An empty table
        gives an empty list.
    """
    if df is None or df.empty:
        return []
    keys = condition_columns(df, columns)
    if not keys:
        return [({}, df)]
    data = df.fillna({c: v for c, v in _CONDITION_DEFAULTS.items() if c in keys})
    groups = [
        (dict(zip(keys, key)), rows)
        for key, rows in data.groupby(keys, sort=True, dropna=False)
    ]
    return sorted(groups, key=lambda item: (
        str(item[0].get("model", "")),
        _is_leaky(item[0]),
        float(item[0].get("leaky_slope", 0.0)),
        tuple(str(item[0][c]) for c in keys if c not in ("model", "activation", "leaky_slope")),
    ))


def summarize_by_group(
    df: pd.DataFrame,
    value: str,
    group: str | Sequence[str] = "alpha",
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Mean and bootstrapped confidence interval of a column per group.

    Args:
        df: Table with one row per observation.
        value: Column to summarize.
        group: Column name (or names) to group by.
        confidence: Confidence level of the interval.
        n_resamples: Bootstrap resamples per group.
        seed: Bootstrap seed (the same for every group, for reproducibility).

    Returns:
        DataFrame with the group column(s) and `["n", "mean", "std",
        "ci_low", "ci_high"]`, sorted by group. `n` counts finite values;
        `std` is the sample standard deviation (NaN for n < 2).
    """
    group_columns = [group] if isinstance(group, str) else list(group)
    rows = []
    for key, rows_in_group in df.groupby(group_columns, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        values = _finite_values(rows_in_group[value])
        low, high = bootstrap_ci(
            values,
            confidence=confidence,
            n_resamples=n_resamples,
            seed=seed,
        )
        rows.append(
            {
                **dict(zip(group_columns, key)),
                "n": int(values.size),
                "mean": float(values.mean()) if values.size else math.nan,
                "std": float(values.std(ddof=1)) if values.size > 1 else math.nan,
                "ci_low": low,
                "ci_high": high,
            }
        )
    return pd.DataFrame(
        rows, columns=group_columns + ["n", "mean", "std", "ci_low", "ci_high"]
    )


def cca_distance_ratio(cca: pd.DataFrame) -> pd.DataFrame:
    """Per-layer CCA distance ratio from the pairwise `cca` table.

    For each condition (`CCA_CONDITION_COLUMNS` present in the table: model,
    activation, leaky slope, method), treated alpha and layer this is
    `mean(to_baseline distances) / mean(within distances)`, the paper's
    ratio rho(alpha_r, alpha_0) : rho(alpha_r, alpha_r). The analysis command
    normally provides this table (`cca_ratio`); this function derives it when
    only the pairwise distances are available.

    Args:
        cca: Table with columns `model, alpha, layer, layer_index,
            comparison, distance` and any of `activation, leaky_slope,
            method, pwcca_variant`.

    Returns:
        DataFrame with the condition columns present, then `alpha, layer,
        layer_index, within_mean, to_baseline_mean, ratio`; layers lacking
        either comparison are dropped.
    """
    frames = []
    for condition, rows in split_by_condition(cca, CCA_CONDITION_COLUMNS):
        keys = ["alpha", "layer", "layer_index"]
        means = (
            rows.groupby(keys + ["comparison"], sort=True)["distance"]
            .mean()
            .unstack("comparison")
        )
        for comparison in ("within", "to_baseline"):
            if comparison not in means.columns:
                means[comparison] = math.nan
        result = means[["within", "to_baseline"]].rename(
            columns={"within": "within_mean", "to_baseline": "to_baseline_mean"}
        )
        result = result.dropna().reset_index()
        result.columns.name = None
        with np.errstate(divide="ignore", invalid="ignore"):
            result["ratio"] = result["to_baseline_mean"] / result["within_mean"]
        frames.append(result.assign(**condition)[
            list(condition) + keys + ["within_mean", "to_baseline_mean", "ratio"]
        ])
    if not frames:
        return pd.DataFrame(columns=condition_columns(cca, CCA_CONDITION_COLUMNS) + [
            "alpha", "layer", "layer_index", "within_mean", "to_baseline_mean", "ratio"])
    return pd.concat(frames, ignore_index=True)


def cca_ratio_summary(
    cca_ratio: pd.DataFrame,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    seed: int | None = 0,
    significance_level: float = SIGNIFICANCE_LEVEL,
) -> pd.DataFrame:
    """Layer-averaged CCA distance ratio per condition and alpha, with tests.

    The paper (Figure 3b) averages the ratio across layers and tests whether
    the distance to the baseline exceeds the distance between replicates
    with a paired t-test. The paper does not say what it paired; the 190
    within and 380 (or 400) to-baseline distances of a layer have no natural
    pairing, so here the pairs are the layers: each layer's mean to-baseline
    distance with its mean within distance (`paired_ttest`, two-sided). The
    layers of a network are not independent of each other, so read the
    p-values as descriptive. They are Bonferroni-corrected over the alphas
    of each condition (model, activation, leaky slope, CCA method).

    This is the only implementation of the test: the analysis command's
    `cca_tests` table, the report and Figure 3b all show its numbers.

    Args:
        cca_ratio: Table with columns `model, alpha, layer, layer_index,
            within_mean, to_baseline_mean, ratio` and any of `activation,
            leaky_slope, method, pwcca_variant`.
        confidence: Confidence level of the bootstrap interval (over layers).
        n_resamples: Bootstrap resamples.
        seed: Bootstrap seed.
        significance_level: Level for the `significant` column.

    Returns:
        DataFrame with the condition columns present, then `alpha, n_layers,
        mean_ratio, ci_low, ci_high, mean_difference, t_statistic, p_value,
        p_bonferroni, significant`; one row per condition and alpha, sorted
        by condition (ReLU before leaky ReLU) and alpha. `mean_difference`
        is the mean over layers of `to_baseline_mean - within_mean`.
    """
    statistics = [
        "alpha",
        "n_layers",
        "mean_ratio",
        "ci_low",
        "ci_high",
        "mean_difference",
        "t_statistic",
        "p_value",
        "p_bonferroni",
        "significant",
    ]
    summaries = []
    for condition, condition_rows in split_by_condition(cca_ratio, CCA_CONDITION_COLUMNS):
        rows = []
        for alpha, alpha_rows in condition_rows.groupby("alpha", sort=True):
            ratios = _finite_values(alpha_rows["ratio"])
            low, high = bootstrap_ci(
                ratios,
                confidence=confidence,
                n_resamples=n_resamples,
                seed=seed,
            )
            test = paired_ttest(
                alpha_rows["to_baseline_mean"], alpha_rows["within_mean"]
            )
            rows.append(
                {
                    **condition,
                    "alpha": float(alpha),
                    "n_layers": int(ratios.size),
                    "mean_ratio": float(ratios.mean()) if ratios.size else math.nan,
                    "ci_low": low,
                    "ci_high": high,
                    "mean_difference": test.mean_difference,
                    "t_statistic": test.t_statistic,
                    "p_value": test.p_value,
                }
            )
        summary = pd.DataFrame(rows)
        summary["p_bonferroni"] = bonferroni(summary["p_value"].to_numpy())
        summary["significant"] = summary["p_bonferroni"] < significance_level
        summaries.append(summary)
    columns = condition_columns(cca_ratio, CCA_CONDITION_COLUMNS) + statistics
    if not summaries:
        return pd.DataFrame(columns=columns)
    return pd.concat(summaries, ignore_index=True)[columns]

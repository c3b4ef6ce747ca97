"""Effects of alpha against alpha = 0 within one condition.

Selectivity, accuracy, precision and dead units per alpha with bootstrapped
CIs and Bonferroni-corrected Welch t-tests (`summarize_condition`), the
per-alpha table of the report and its headline sentences (baseline, first
significant and strongest suppression, largest harmless drop in
selectivity, strongest promotion).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tf_selectivity.measures import stats
from tf_selectivity.plots.style import format_alpha
from tf_selectivity.report.conditions import float_cell, row_at_alpha
from tf_selectivity.report.formatting import (
    format_p_cell,
    format_percent,
    format_selectivity,
    format_with_ci,
    markdown_table,
)


TTEST_NAME = "Bonferroni-corrected Welch t-test"


def summarize_condition(runs: pd.DataFrame, n_resamples: int) -> pd.DataFrame:
    """Per-alpha summary of one condition, with tests against alpha = 0.

    Args:
        runs: Runs of one model / activation.
        n_resamples: Bootstrap resamples per confidence interval.

    Returns:
        DataFrame indexed by position with columns `alpha, n` and, for each
        of `test_accuracy`, `test_mean_selectivity`,
        `test_mean_selectivity_alive`, `mean_precision`,
        `dead_unit_fraction` present, `<column>_mean`, `_ci_low`, `_ci_high`,
        `_n`; plus the t-test columns of accuracy (`difference`, `p_value`,
        `p_bonferroni`, `significant`) and of selectivity (`si_p_bonferroni`).
    """
    summary = runs.groupby("alpha", sort=True).size().rename("n").reset_index()
    for column in (
        "test_accuracy",
        "test_mean_selectivity",
        "test_mean_selectivity_alive",
        "mean_precision",
        "dead_unit_fraction",
    ):
        if column not in runs.columns:
            continue
        per_alpha = stats.summarize_by_group(runs, column, "alpha", n_resamples=n_resamples)
        per_alpha = per_alpha.rename(columns={
            "n": f"{column}_n", "mean": f"{column}_mean",
            "ci_low": f"{column}_ci_low", "ci_high": f"{column}_ci_high",
        }).drop(columns="std")
        summary = summary.merge(per_alpha, on="alpha", how="left")
    if "test_accuracy" in runs.columns:
        tests = stats.ttests_vs_baseline(runs, value="test_accuracy")
        summary = summary.merge(
            tests[["alpha", "baseline_n", "difference", "p_value", "p_bonferroni", "significant"]],
            on="alpha", how="left",
        )
    if "test_mean_selectivity" in runs.columns:
        si_tests = stats.ttests_vs_baseline(runs, value="test_mean_selectivity")
        summary = summary.merge(
            si_tests[["alpha", "p_bonferroni"]].rename(columns={"p_bonferroni": "si_p_bonferroni"}),
            on="alpha", how="left",
        )
    return summary


def _mean_with_ci(row: pd.Series, column: str, formatter) -> str:
    """ "mean [low, high]" of `column` in a row of `summarize_condition`."""
    n = float_cell(row, f"{column}_n")
    return format_with_ci(
        float_cell(row, f"{column}_mean"), float_cell(row, f"{column}_ci_low"),
        float_cell(row, f"{column}_ci_high"), formatter, int(n) if np.isfinite(n) else 0,
    )


def summary_table(summary: pd.DataFrame) -> str:
    """The per-alpha table of one condition (rows of `summarize_condition`)."""
    headers = [
        "α", "n", "Test accuracy, % [95% CI]", "Δ accuracy vs α = 0 (points)",
        "p (Welch t, Bonferroni)", "Mean SI, dead units = 0 [95% CI]", "Mean SI, live units",
        "Mean precision, live units", "Dead units, %",
    ]
    rows = []
    for _, row in summary.iterrows():
        is_baseline = np.isclose(row["alpha"], 0.0)
        difference = float_cell(row, "difference")
        rows.append([
            format_alpha(row["alpha"]),
            int(row["n"]),
            _mean_with_ci(row, "test_accuracy", format_percent),
            "baseline" if is_baseline else (
                f"{100 * difference:+.2f}" if np.isfinite(difference) else "n/a"),
            "" if is_baseline else format_p_cell(float_cell(row, "p_bonferroni")),
            _mean_with_ci(row, "test_mean_selectivity", format_selectivity),
            _mean_with_ci(row, "test_mean_selectivity_alive", format_selectivity),
            _mean_with_ci(row, "mean_precision", format_selectivity),
            format_percent(float_cell(row, "dead_unit_fraction_mean"), digits=1),
        ])
    return markdown_table(headers, rows)


def _test_clause(row: pd.Series) -> str:
    """ "(p = 0.03, Bonferroni-corrected Welch t-test, n = 20 vs 20)"."""
    n_baseline = float_cell(row, "baseline_n")
    n_baseline_text = str(int(n_baseline)) if np.isfinite(n_baseline) else "0"
    return (
        f"({stats.format_p_value(float_cell(row, 'p_bonferroni'))}, {TTEST_NAME}, "
        f"n = {int(row['n'])} vs {n_baseline_text})"
    )


def effect_sentence(title: str, summary: pd.DataFrame, alpha: float) -> str:
    """Selectivity and accuracy change from alpha = 0 to `alpha`.

    Example: "ResNet20: mean class selectivity fell from 0.22 at α = 0 to
    0.07 at α = -1 (3.1x lower); test accuracy changed by -0.30 points
    (p = 0.03, Bonferroni-corrected Welch t-test, n = 20 vs 20)."

    Args:
        title: Condition title (e.g. "ResNet20").
        summary: Output of `summarize_condition` (must contain alpha = 0).
        alpha: The treated alpha.

    Returns:
        The sentence.
    """
    baseline, treated = row_at_alpha(summary, 0.0), row_at_alpha(summary, alpha)
    parts = []
    base_si = float_cell(baseline, "test_mean_selectivity_mean")
    treated_si = float_cell(treated, "test_mean_selectivity_mean")
    if np.isfinite(base_si) and np.isfinite(treated_si):
        verb = "fell" if treated_si < base_si else "rose"
        change = (
            f"mean class selectivity {verb} from {format_selectivity(base_si)} at α = 0 to "
            f"{format_selectivity(treated_si)} at α = {format_alpha(alpha)}"
        )
        if base_si > 0 and treated_si > 0:
            factor = max(base_si, treated_si) / min(base_si, treated_si)
            change += f" ({factor:.1f}x {'lower' if treated_si < base_si else 'higher'})"
        parts.append(change)
    difference = float_cell(treated, "difference")
    if np.isfinite(difference):
        parts.append(
            f"test accuracy changed by {100 * difference:+.2f} points "
            f"({format_percent(float_cell(baseline, 'test_accuracy_mean'))}% → "
            f"{format_percent(float_cell(treated, 'test_accuracy_mean'))}%; {_test_clause(treated)[1:-1]})"
        )
    if not parts:
        return f"{title}: no selectivity or accuracy data at α = {format_alpha(alpha)}."
    return f"{title}: " + "; ".join(parts) + "."


def baseline_sentence(title: str, summary: pd.DataFrame) -> str:
    row = row_at_alpha(summary, 0.0)
    n = int(row["n"])
    si = _mean_with_ci(row, "test_mean_selectivity", format_selectivity)
    accuracy = _mean_with_ci(row, "test_accuracy", format_percent)
    return (
        f"{title} without regularization (α = 0, n = {n}): mean class selectivity "
        f"{si}, test accuracy {accuracy}% (mean [bootstrapped 95% CI])."
    )


def suppression_sentences(title: str, summary: pd.DataFrame) -> list[str]:
    """First significant, largest harmless, and strongest suppression."""
    negative = summary.loc[summary["alpha"] < 0].sort_values("alpha", ascending=False)
    if negative.empty:
        return []
    sentences = []
    tested = negative.loc[negative["p_bonferroni"].notna()] if "p_bonferroni" in negative else negative.iloc[0:0]
    significant = tested.loc[tested["significant"].astype(bool)] if not tested.empty else tested
    chosen = set()
    if not significant.empty:
        alpha = float(significant.iloc[0]["alpha"])
        chosen.add(alpha)
        sentences.append(
            f"Suppressing selectivity first changed test accuracy significantly at "
            f"α = {format_alpha(alpha)}. " + effect_sentence(title, summary, alpha)
        )
    elif not tested.empty:
        sentences.append(
            f"No negative α changed {title} test accuracy significantly "
            f"({len(tested)} α tested, {TTEST_NAME}s)."
        )
    harmless = tested.loc[~tested["significant"].astype(bool)] if not tested.empty else tested
    if not harmless.empty and "test_mean_selectivity_mean" in harmless:
        harmless = harmless.loc[harmless["test_mean_selectivity_mean"].notna()]
        if not harmless.empty:
            alpha = float(harmless.sort_values("test_mean_selectivity_mean").iloc[0]["alpha"])
            if alpha not in chosen:
                chosen.add(alpha)
                sentences.append(
                    "Largest reduction in selectivity without a significant change in "
                    "test accuracy: " + effect_sentence(title, summary, alpha)
                )
    strongest = float(negative["alpha"].min())
    if strongest not in chosen:
        sentences.append(
            f"Strongest suppression tested (α = {format_alpha(strongest)}): "
            + effect_sentence(title, summary, strongest)
        )
    return sentences


def _dead_units_clause(summary: pd.DataFrame, alpha: float) -> str:
    if "dead_unit_fraction_mean" not in summary:
        return ""
    base = float_cell(row_at_alpha(summary, 0.0), "dead_unit_fraction_mean")
    treated = float_cell(row_at_alpha(summary, alpha), "dead_unit_fraction_mean")
    if not (np.isfinite(base) and np.isfinite(treated)):
        return ""
    return (
        f" Dead units: {format_percent(treated, 1)}% of units at α = {format_alpha(alpha)} vs "
        f"{format_percent(base, 1)}% at α = 0."
    )


def promotion_sentences(title: str, summary: pd.DataFrame) -> list[str]:
    """Strongest promoting alpha, and where the effect becomes significant."""
    positive = summary.loc[summary["alpha"] > 0].sort_values("alpha")
    if positive.empty:
        return []
    strongest = float(positive["alpha"].max())
    sentences = [
        f"Strongest promotion tested (α = {format_alpha(strongest)}): "
        + effect_sentence(title, summary, strongest)
        + _dead_units_clause(summary, strongest)
    ]
    if "significant" in positive:
        significant = positive.loc[positive["significant"].fillna(False).astype(bool)]
        if not significant.empty and float(significant.iloc[0]["alpha"]) != strongest:
            row = significant.iloc[0]
            sentences.append(
                f"Promoting selectivity first changed test accuracy significantly at "
                f"α = {format_alpha(row['alpha'])}: {100 * float_cell(row, 'difference'):+.2f} points "
                f"{_test_clause(row)}."
            )
        elif significant.empty and positive["p_bonferroni"].notna().any():
            sentences.append(
                f"No positive α changed {title} test accuracy significantly ({TTEST_NAME}s)."
            )
    return sentences

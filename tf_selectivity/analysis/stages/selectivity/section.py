"""The selectivity stage's part of the report: headline sentences per condition and the "Summary per α" section.

Runs are compared only within a condition (one model with one activation
and leaky slope, `stats.split_by_condition`), always against the alpha = 0
runs of the same condition: when a condition has none, its headline says
so and only its per-alpha table is given.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from tf_selectivity.analysis.stages.selectivity.effects import (
    baseline_sentence,
    promotion_sentences,
    summarize_condition,
    summary_table,
    suppression_sentences,
)
from tf_selectivity.analysis.stages.selectivity.promote_vs_suppress import ranksum_sentence, ranksum_table
from tf_selectivity.measures import stats
from tf_selectivity.report.conditions import condition_title, has_baseline

__all__ = ["SUMMARY_INTRO", "condition_sections", "summary_section"]

SUMMARY_INTRO = (
    "Accuracy in percent; SI = class selectivity index (eq. 1, test set, mean over "
    "units then layers), with dead units counted as 0 as in eq. 3 and, in the next "
    "column, left out; precision (appendix A.5) is over live units only: a dead unit "
    "has no most-activating images. p-values are Bonferroni-corrected."
)


def _condition_section(condition: dict, runs: pd.DataFrame, n_resamples: int) -> tuple:
    """(headline bullet points, summary-table block, per-alpha summary, rank-sum tests) of one condition."""
    title = condition_title(condition)
    runs = runs.copy()
    runs["alpha"] = runs["alpha"].astype(float)
    summary = summarize_condition(runs, n_resamples)
    headlines = []
    if has_baseline(runs):
        headlines.append(baseline_sentence(title, summary))
        headlines += suppression_sentences(title, summary)
        headlines += promotion_sentences(title, summary)
    else:
        headlines.append(
            f"{title}: there are no α = 0 (unregularized) runs, so effects relative to the "
            "baseline are not reported; see the per-α table for absolute values."
        )
    tables = [f"### {title}", "", summary_table(summary), ""]
    ranksums = None
    if "test_accuracy" in runs.columns:
        ranksums = stats.ranksum_promote_vs_suppress(runs)
        sentence = ranksum_sentence(title, ranksums)
        if sentence:
            headlines.append(sentence)
        if not ranksums.empty:
            tables += [f"Promoting vs suppressing at equal |α| ({title}):", "",
                       ranksum_table(ranksums), ""]
    return headlines, tables, summary, ranksums


def condition_sections(runs: pd.DataFrame, n_resamples: int) -> list:
    """Per condition of `runs` (`stats.split_by_condition`): its headline
    sentences, its per-alpha summary block and the tests behind them.

    Args:
        runs: The `runs` table.
        n_resamples: Bootstrap resamples per confidence interval.

    Returns:
        ``[(condition, headline sentences, summary-table lines, summary,
        rank sums), ...]``: ``summary`` is `effects.summarize_condition`'s
        table, ``rank sums`` `stats.ranksum_promote_vs_suppress`'s (None
        without accuracies).
    """
    if "alpha" in runs.columns:
        runs = runs.assign(alpha=runs["alpha"].astype(float))
    return [(condition, *_condition_section(condition, condition_runs, n_resamples))
            for condition, condition_runs in stats.split_by_condition(runs)]


def summary_section(tables: Sequence[str]) -> list:
    """The "Summary per α" section: the summary blocks of `condition_sections`, joined."""
    lines = ["## Summary per α", "", SUMMARY_INTRO, "", *tables]
    # Without its last blank line: the report puts one after every section.
    return lines[:-1] if lines[-1] == "" else lines

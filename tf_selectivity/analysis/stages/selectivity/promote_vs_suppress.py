"""Promoting vs suppressing selectivity at equal |alpha| (Figure 5): sentence and table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tf_selectivity.measures import stats
from tf_selectivity.plots.style import format_alpha
from tf_selectivity.report.formatting import format_p_cell, format_percent, markdown_table


RANKSUM_NAME = "Bonferroni-corrected Wilcoxon rank-sum test"


def ranksum_sentence(title: str, tests: pd.DataFrame) -> str | None:
    """Smallest |alpha| at which promoting and suppressing differ."""
    if tests.empty or not tests["p_value"].notna().any():
        return None
    significant = tests.loc[tests["significant"]]
    tested = int(tests["p_value"].notna().sum())
    if significant.empty:
        return (
            f"{title}: promoting and suppressing selectivity did not differ significantly "
            f"in test accuracy at any of {tested} |α| values ({RANKSUM_NAME})."
        )
    row = significant.iloc[0]
    direction = "lower" if row["mean_positive"] < row["mean_negative"] else "higher"
    return (
        f"{title}: promoting selectivity gave {direction} test accuracy than suppressing it "
        f"from |α| = {format_alpha(row['abs_alpha'])} ({format_percent(row['mean_positive'])}% vs "
        f"{format_percent(row['mean_negative'])}%; {stats.format_p_value(row['p_bonferroni'])}, "
        f"{RANKSUM_NAME}, n = {int(row['n_positive'])} vs {int(row['n_negative'])}); "
        f"significant at {len(significant)} of {tested} |α| values."
    )


def ranksum_table(tests: pd.DataFrame) -> str:
    rows = [
        [
            format_alpha(row["abs_alpha"]),
            f"{int(row['n_negative'])} / {int(row['n_positive'])}",
            format_percent(row["mean_negative"]),
            format_percent(row["mean_positive"]),
            "" if not np.isfinite(row["u_statistic"]) else f"{row['u_statistic']:g}",
            format_p_cell(row["p_bonferroni"]),
        ]
        for _, row in tests.iterrows()
    ]
    return markdown_table(
        ["|α|", "n (α<0 / α>0)", "Accuracy α<0, %", "Accuracy α>0, %",
         "U (α<0)", "p (rank-sum, Bonferroni)"],
        rows,
    )

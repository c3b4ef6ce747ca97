"""The report's conditions (its first lines) and its claims section, from the ``conditions`` and ``claims`` tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tf_selectivity.report.condition_names import CONDITION_FIELDS
from tf_selectivity.report.formatting import format_number, format_p_cell, markdown_table

__all__ = ["claims_section", "conditions_lines"]

CLAIMS_INTRO = (
    "Every test of this report as a claim about trained networks (`claims.csv`, with each claim's premises in "
    "full). Its verdict follows from the numbers: *supported* (p below the level and, for a claim of one "
    "direction, the effect on its side), *contradicted* (significant the other way), *not supported* "
    "(otherwise); or it is *not testable* when a premise fails: **trained**, the condition's networks learned "
    "(its α = 0 networks, or all of them without α = 0, answer better than chance: exact one-sided binomial "
    "test of test accuracy against 1/classes or the largest class's share, p < 0.05); **baseline**, the "
    "condition has α = 0 networks; **power**, the test can reach p below its level with these sample sizes at "
    "all (the smallest p it can give is in `min_p`)."
)


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def conditions_lines(conditions: pd.DataFrame | None) -> list[str]:
    """The report's lines on its conditions: how many, what separates them, what was pooled.

    Args:
        conditions: the ``conditions`` table (`report.condition_names.Conditions.table`),
            or None (no lines).
    """
    if conditions is None or conditions.empty:
        return []
    fields = [f for f in CONDITION_FIELDS if f in conditions.columns]
    separating = [f for f in fields if conditions[f].astype(str).nunique() > 1]
    pooled = [f for f in _text(conditions["pooled_over"].iloc[0]).split(",") if f] if "pooled_over" in conditions else []
    if len(conditions) == 1:
        row = conditions.iloc[0]
        lines = [f"One condition, **{row['condition']}**: every run has the same training settings apart from α and "
                 "seed (`conditions.csv` lists them)."]
    else:
        lines = [f"{len(conditions)} conditions, separated by {', '.join(separating)}: runs are compared, tested and "
                 "drawn only within their condition, never pooled (`conditions.csv` lists every setting).", ""]
        for _, row in conditions.iterrows():
            values = "; ".join(f"{f} = {row[f]}" for f in separating if f not in ("model", "activation", "leaky_slope"))
            lender = _text(row.get("baseline_from"))
            lines.append(f"- **{row['condition']}**: {int(row['runs'])} run(s), α = {_text(row.get('alphas'))}"
                         + (f"; {values}" if values else "")
                         + (f"; its α = 0 baseline: the α = 0 runs of {lender} (an α = 0 run has no window)"
                            if lender else ""))
    if pooled:
        mixed = [f"{f} ({', '.join(sorted(set(' | '.join(conditions[f].astype(str)).split(' | '))))})"
                 for f in pooled if f in conditions]
        lines += ["", f"Pooled over {', '.join(mixed)} as asked (`--pool_over`): runs that differ only there count as "
                      "one condition."]
    return lines + [""]


def _statistic(row) -> str:
    value = format_number(row["statistic"])
    low, high = row.get("low"), row.get("high")
    if low is not None and high is not None and np.isfinite(low) and np.isfinite(high):
        value += f" [{format_number(low)}, {format_number(high)}]"
    return value


def claims_section(claims: pd.DataFrame | None) -> list[str]:
    """The "Claims and their premises" section (empty without claims)."""
    if claims is None or claims.empty:
        return []
    rows = []
    for _, row in claims.iterrows():
        n = row["n"]
        rows.append([
            row["condition"], row["claim"], row["test"], _statistic(row),
            format_p_cell(float(row["p"])) if np.isfinite(row["p"]) else "n/a",
            "" if n is None or (isinstance(n, float) and np.isnan(n)) else str(int(n)),
            row["verdict"], _text(row.get("reason")),
        ])
    counts = claims["verdict"].value_counts()
    tally = ", ".join(f"{counts[v]} {v}" for v in ("supported", "not supported", "contradicted", "not testable")
                      if v in counts)
    return ["## Claims and their premises", "", CLAIMS_INTRO, "", f"{len(claims)} claims: {tally}.", "",
            markdown_table(["condition", "claim", "test", "statistic [95% CI]", "p", "n", "verdict", "reason"], rows),
            ""]

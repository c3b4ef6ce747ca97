"""Conditions of the report: one model with one activation (and leaky slope) and one training protocol.

Runs are compared only within a condition (`stats.split_by_condition`); the
headline comparison is always against the `alpha = 0` runs of the same
condition. Which runs form a condition and its name (the ``condition``
column of every table): `condition_names`. Also the accessors of a
condition's per-alpha summary table.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

# Reports name conditions as the figures do.
from tf_selectivity.plots.style import condition_label as condition_title


def condition_key(condition: dict) -> tuple[str, str, float, str]:
    """(model, activation, leaky slope, name) of a condition, to match it across tables
    (the name is "" for tables written without a ``condition`` column)."""
    name = condition.get("condition")
    return (
        str(condition.get("model", "")),
        str(condition.get("activation", "relu")).lower(),
        float(condition.get("leaky_slope", 0.0)),
        name if isinstance(name, str) else "",
    )


def condition_from_key(key: tuple) -> dict:
    """The condition of a `condition_key`."""
    model, activation, slope, name = key
    condition = {"model": model, "activation": activation, "leaky_slope": slope}
    return {**condition, "condition": name} if name else condition


def has_baseline(runs: pd.DataFrame) -> bool:
    return bool(np.isclose(runs["alpha"].astype(float), 0.0).any())


def row_at_alpha(summary: pd.DataFrame, alpha: float) -> pd.Series:
    """The row of a per-alpha summary at `alpha` (float-tolerant)."""
    return summary.loc[np.isclose(summary["alpha"], alpha)].iloc[0]


def float_cell(row: pd.Series, column: str) -> float:
    """`row[column]` as a float; NaN when the column is missing or empty."""
    value = row.get(column, math.nan)
    return float(value) if value is not None and pd.notna(value) else math.nan

"""Conditions of the report: one model with one activation (and leaky slope).

Runs are compared only within a condition; the headline comparison is always
against the `alpha = 0` runs of the same condition. Also the accessors of a
condition's per-alpha summary table.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from tf_selectivity.plots.style import display_model_name


def _condition_columns(runs: pd.DataFrame) -> list[str]:
    return [c for c in ("model", "activation", "leaky_slope") if c in runs.columns]


def split_conditions(runs: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    """Runs split by (model, activation, leaky slope); ReLU before leaky."""
    if runs is None or runs.empty:
        return []
    data = runs.copy()
    data["alpha"] = data["alpha"].astype(float)
    columns = _condition_columns(data)
    fill = {"activation": "relu", "leaky_slope": 0.0}
    data = data.fillna({c: fill[c] for c in columns if c in fill})
    conditions = [
        (dict(zip(columns, key if isinstance(key, tuple) else (key,))), rows)
        for key, rows in data.groupby(columns, sort=True)
    ]
    return sorted(conditions, key=lambda item: (
        str(item[0].get("model", "")),
        is_leaky_condition(item[0]),
        float(item[0].get("leaky_slope", 0.0)),
    ))


def is_leaky_condition(condition: dict) -> bool:
    return "leaky" in str(condition.get("activation", "")).lower()


def condition_title(condition: dict) -> str:
    """ "ResNet20" or "ResNet20, leaky ReLU (negative slope 0.5)"."""
    title = display_model_name(condition.get("model", "model"))
    activation = str(condition.get("activation", "relu"))
    if "leaky" in activation.lower():
        return f"{title}, leaky ReLU (negative slope {float(condition.get('leaky_slope', 0)):g})"
    if activation.lower() != "relu":
        return f"{title}, {activation}"
    return title


def has_baseline(runs: pd.DataFrame) -> bool:
    return bool(np.isclose(runs["alpha"].astype(float), 0.0).any())


def row_at_alpha(summary: pd.DataFrame, alpha: float) -> pd.Series:
    """The row of a per-alpha summary at `alpha` (float-tolerant)."""
    return summary.loc[np.isclose(summary["alpha"], alpha)].iloc[0]


def float_cell(row: pd.Series, column: str) -> float:
    """`row[column]` as a float; NaN when the column is missing or empty."""
    value = row.get(column, math.nan)
    return float(value) if value is not None and pd.notna(value) else math.nan

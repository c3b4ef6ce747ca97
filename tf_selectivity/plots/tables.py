"""The rows of the analysis tables that a figure draws, and their summaries.

Selects one model's ReLU (main figures) or leaky-ReLU (Figure A10) runs,
one sign of alpha, and turns them into per-alpha (and per-layer) means with
bootstrapped confidence intervals and error-bar arrays.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tf_selectivity.measures import stats
from tf_selectivity.plots.style import condition_protocol, file_safe


def has_values(df: pd.DataFrame | None, column: str) -> bool:
    """Whether `df` has `column` with at least one finite value."""
    if df is None or column not in df.columns or df.empty:
        return False
    return bool(np.isfinite(pd.to_numeric(df[column], errors="coerce")).any())


def _is_leaky(df: pd.DataFrame) -> pd.Series:
    """Rows trained with leaky ReLU (the Figure A10 control experiment)."""
    if "activation" in df.columns:
        return df["activation"].astype(str).str.lower().str.contains("leaky")
    if "leaky_slope" in df.columns:
        return df["leaky_slope"].fillna(0).astype(float) > 0
    return pd.Series(False, index=df.index)


def split_by_protocol(df: pd.DataFrame | None) -> list[tuple[str, pd.DataFrame]]:
    """The rows of `df` per training protocol: the part of their condition's name beyond model
    and activation (`style.condition_protocol`; "" for conditions that share their protocol).

    The paper's per-model figures draw a model's activations together and compare models;
    runs of different protocols are drawn in figures of their own (`protocol_suffix`). A
    table without a ``condition`` column is one protocol.
    """
    if df is None or df.empty or "condition" not in df.columns:
        return [("", df)]
    keys = df.apply(lambda row: condition_protocol(row.to_dict()), axis=1)
    return [(protocol, df.loc[keys == protocol]) for protocol in sorted(keys.unique())]


def protocol_suffix(protocol: str) -> str:
    """What a figure's file name gets for a protocol of `split_by_protocol` ("" for none)."""
    return f"__{file_safe(protocol)}" if protocol else ""


def select_runs(
    df: pd.DataFrame | None, model: str | None, leaky: bool = False
) -> pd.DataFrame:
    """Rows of `runs` / `layers` for one model and activation family.

    Args:
        df: The `runs` or `layers` table (may be None).
        model: Model name, or None for all models.
        leaky: False selects the ReLU runs (main figures), True the
            leaky-ReLU runs.

    Returns:
        The selected rows (a copy, with a float `alpha` column).
    """
    if df is None or df.empty:
        return pd.DataFrame(columns=[] if df is None else df.columns)
    mask = _is_leaky(df) == leaky
    if model is not None:
        mask &= df["model"].astype(str) == str(model)
    selected = df.loc[mask].copy()
    selected["alpha"] = selected["alpha"].astype(float)
    return selected


def with_sign(df: pd.DataFrame, direction: str) -> pd.DataFrame:
    """Rows with alpha <= 0 ("suppress") or alpha >= 0 ("promote")."""
    if direction == "suppress":
        return df.loc[df["alpha"] <= 0]
    if direction == "promote":
        return df.loc[df["alpha"] >= 0]
    raise ValueError(f'`direction` must be "suppress" or "promote", got {direction!r}.')


def has_direction(df: pd.DataFrame, direction: str) -> bool:
    """Whether any alpha of the requested sign is present."""
    if df.empty:
        return False
    if direction == "suppress":
        return bool((df["alpha"] < 0).any())
    return bool((df["alpha"] > 0).any())


def per_alpha(
    df: pd.DataFrame, column: str, n_resamples: int, group: str = "alpha"
) -> pd.DataFrame:
    """Mean and bootstrapped CI of `column` per alpha, groups without data dropped."""
    summary = stats.summarize_by_group(
        df, column, group=group, n_resamples=n_resamples
    )
    return summary.loc[summary["n"] > 0].reset_index(drop=True)


def per_alpha_and_layer(
    layers: pd.DataFrame, column: str, n_resamples: int
) -> pd.DataFrame:
    """Mean and bootstrapped CI over seeds per alpha and layer."""
    summary = stats.summarize_by_group(
        layers, column, group=["alpha", "layer_index"], n_resamples=n_resamples
    )
    return summary.loc[summary["n"] > 0].reset_index(drop=True)


def accuracy_tests(relu_runs: pd.DataFrame) -> pd.DataFrame:
    """Welch t-tests of test accuracy vs alpha = 0, over all alphas of a model.

    Correcting over every alpha of the model (not only those in one panel)
    keeps the marks of Figures 2, 4 and A9 consistent with the report.
    """
    return stats.ttests_vs_baseline(relu_runs, value="test_accuracy", group="alpha")


def significance_by_alpha(
    tests: pd.DataFrame, key: str = "alpha", direction: str = "difference"
) -> dict[float, tuple[float, float]]:
    """(corrected p-value, direction of the effect) per alpha of a test table.

    Args:
        tests: A table of `stats.ttests_vs_baseline` (direction column
            `difference`, treated minus baseline), `stats.cca_ratio_summary`
            (`mean_difference`, to-baseline minus within) or similar.
        key: Column of the alphas.
        direction: Column whose sign is the direction of the effect.

    Returns:
        Dict from float alpha to `(p_bonferroni, direction)`.
    """
    return {
        float(a): (float(p), float(d))
        for a, p, d in zip(tests[key], tests["p_bonferroni"], tests[direction])
    }


def error_bars(summary: pd.DataFrame, scale: float = 1.0) -> np.ndarray | None:
    """Asymmetric error-bar array (2, n) from CI columns; None where n < 2.

    Single-replicate groups get no bar (NaN), as their "interval" would be
    a misleading zero-width line.
    """
    mean = summary["mean"].to_numpy(dtype=float) * scale
    low = summary["ci_low"].to_numpy(dtype=float) * scale
    high = summary["ci_high"].to_numpy(dtype=float) * scale
    has_interval = summary["n"].to_numpy() >= 2
    lower = np.where(has_interval, mean - low, np.nan)
    upper = np.where(has_interval, high - mean, np.nan)
    return np.vstack([np.clip(lower, 0, None), np.clip(upper, 0, None)])

"""The ablation stage's tables across runs: areas under the ablation curves and the test of selective-first ablation.

`ablation_tables` joins every run's ablation results: the tables
``ablation_curves``, ``ablation_auc`` (per run and layer, `ablation_auc`),
``unit_importance`` (with each unit's chance-corrected SI where the
selectivity stage computed the null) and ``importance_correlations``.
`selective_vs_random` tests, from ``ablation_auc``, whether ablating the
most selective units first hurts more than random orders (read by the
report section).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from tf_selectivity.analysis.runs import CONFIG_COLUMNS

__all__ = ["ablation_auc", "ablation_tables", "selective_vs_random", "sign_flip_test"]

EXACT_SIGN_FLIPS = 16  # up to 2**16 sign patterns enumerated; more: sampled


def sign_flip_test(differences, n_resamples: int = 10_000, seed: int = 0) -> float:
    """Two-sided sign-flip permutation p-value of the mean of paired differences.

    Exact (every sign pattern) for up to 16 differences, else `n_resamples`
    random patterns (p = (1 + #{|mean*| >= |mean|}) / (1 + n_resamples)).
    NaN for no difference.
    """
    d = np.asarray(differences, np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan")
    observed = abs(d.mean())
    tolerance = 1e-12 * max(1.0, observed)
    if d.size <= EXACT_SIGN_FLIPS:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
        return float(np.mean(np.abs(signs @ d / d.size) >= observed - tolerance))
    rng = np.random.default_rng(seed)
    signs = rng.choice((1.0, -1.0), size=(n_resamples, d.size))
    extreme = np.sum(np.abs(signs @ d / d.size) >= observed - tolerance)
    return float((1 + extreme) / (1 + n_resamples))


def _auc(rows: pd.DataFrame) -> float:
    """Area under accuracy vs fraction (trapezoid), divided by the fractions' span."""
    rows = rows.sort_values("fraction")
    x, y = rows["fraction"].to_numpy(float), rows["accuracy"].to_numpy(float)
    if len(x) < 2 or x[-1] == x[0]:
        return float(y.mean())
    return float(np.trapezoid(y, x) / (x[-1] - x[0]))


def ablation_auc(curves: pd.DataFrame) -> pd.DataFrame:
    """Per run and layer: the normalized area under each order's curve.

    Returns:
        One row per (run, layer): the condition columns, ``layer``,
        ``layer_index``, ``auc_selective_first``, ``auc_random`` (mean over
        the random seeds), ``auc_least_selective_first`` and
        ``auc_difference`` (selective first minus random: negative when
        ablating the most selective units first hurts more).
    """
    keys = [c for c in ("run_dir", *CONFIG_COLUMNS, "condition", "layer", "layer_index") if c in curves.columns]
    rows = []
    for key, frame in curves.groupby(keys, sort=False):
        row = dict(zip(keys, key))
        for order in ("selective_first", "random", "least_selective_first"):
            part = frame[frame["order"] == order]
            values = [_auc(seed_rows) for _, seed_rows in part.groupby("order_seed")]
            row[f"auc_{order}"] = float(np.mean(values)) if values else np.nan
        row["auc_difference"] = row["auc_selective_first"] - row["auc_random"]
        rows.append(row)
    return pd.DataFrame(rows)


def selective_vs_random(auc: pd.DataFrame, n_resamples: int = 10_000) -> pd.DataFrame:
    """Does ablating the most selective units first hurt more than random orders?

    Per condition and alpha, the paired difference AUC(selective first) -
    AUC(random) is averaged over each run's layers (the run, an independent
    replicate, is the unit), and its mean is tested against 0 with a
    two-sided sign-flip permutation test (`sign_flip_test`).

    Returns:
        One row per (model, activation, leaky_slope, condition, alpha): ``runs``,
        ``mean_difference``, ``sd_difference``, ``effect_size`` (Cohen's
        d_z: mean / sd, NaN for one run), ``p_value``, ``layer_pairs`` and
        ``layers_hurt_more`` (the fraction of (run, layer) pairs whose
        difference is negative).
    """
    condition = [c for c in ("model", "activation", "leaky_slope", "condition", "alpha") if c in auc.columns]
    rows = []
    for key, frame in auc.groupby(condition, sort=True):
        per_run = frame.groupby("run_dir")["auc_difference"].mean().to_numpy(float)
        sd = float(per_run.std(ddof=1)) if len(per_run) > 1 else np.nan
        mean = float(per_run.mean())
        rows.append({
            **dict(zip(condition, key if isinstance(key, tuple) else (key,))),
            "runs": len(per_run), "mean_difference": mean, "sd_difference": sd,
            "effect_size": mean / sd if sd and np.isfinite(sd) and sd > 0 else np.nan,
            "p_value": sign_flip_test(per_run, n_resamples=n_resamples),
            "layer_pairs": len(frame), "layers_hurt_more": float((frame["auc_difference"] < 0).mean()),
        })
    return pd.DataFrame(rows)


def ablation_tables(curve_frames, importance_frames, units: pd.DataFrame, n_resamples: int) -> dict:
    """The ablation tables across runs (the null's mean of each unit joined where `units` has it)."""
    from tf_selectivity.analysis.stages.ablation.ablate import importance_correlations

    if "si_null_mean" in units.columns:
        joined = []
        for importance in importance_frames:
            run_dir = importance["run_dir"].iloc[0] if len(importance) else None
            null = units.loc[units["run_dir"] == run_dir, ["layer", "unit", "si_null_mean"]]
            importance = importance.merge(null, on=["layer", "unit"], how="left")
            importance["si_chance_corrected"] = importance["selectivity"] - importance["si_null_mean"]
            joined.append(importance)
        importance_frames = joined
    tables = {}
    if curve_frames:
        curves = pd.concat(curve_frames, ignore_index=True)
        tables.update(ablation_curves=curves, ablation_auc=ablation_auc(curves))
    if importance_frames:
        importance = pd.concat(importance_frames, ignore_index=True)
        group = [c for c in ("run_dir", *CONFIG_COLUMNS, "condition", "layer", "layer_index") if c in importance.columns]
        tables.update(unit_importance=importance, importance_correlations=importance_correlations(
            importance, group=group, n_resamples=min(n_resamples, 2000)))
    return tables

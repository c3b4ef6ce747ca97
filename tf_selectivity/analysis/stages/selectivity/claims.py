"""The selectivity stage's tests as claims (`analysis.claims`): per condition, what the report's sentences rest on.

* per alpha != 0: test accuracy and mean SI differ from alpha = 0 (Welch
  t-tests, Bonferroni over the condition's alphas; `effects`), resting on
  trained networks and the alpha = 0 baseline;
* per |alpha|: accuracy differs between alpha < 0 and alpha > 0 (rank sums,
  Bonferroni over |alpha|; `promote_vs_suppress`);
* with the label-permutation null, per alpha: the networks' units are
  selective above chance (q < the FDR), which a test of B permutations can
  show only if 1 / (1 + B) is below the FDR.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tf_selectivity.analysis.claims import (
    BASELINE,
    NOT_SUPPORTED,
    SUPPORTED,
    TRAINED,
    Claim,
    verdict_of,
)
from tf_selectivity.analysis.stages.selectivity.effects import TTEST_NAME
from tf_selectivity.measures import premises as floors
from tf_selectivity.plots.style import format_alpha
from tf_selectivity.report.conditions import condition_title, float_cell, row_at_alpha

__all__ = ["selectivity_claims"]


def _welch_claims(title: str, summary: pd.DataFrame) -> list:
    treated = summary.loc[~np.isclose(summary["alpha"].astype(float), 0.0)]
    has_baseline = bool(np.isclose(summary["alpha"].astype(float), 0.0).any())
    baseline = row_at_alpha(summary, 0.0) if has_baseline else None
    claims = []
    for _, row in treated.iterrows():
        alpha, n = float(row["alpha"]), int(row["n"])
        n_baseline = int(float_cell(baseline, "n")) if baseline is not None else 0
        floor = floors.minimum_p_welch(n, n_baseline)
        sample = f"{n} vs {n_baseline} networks"
        accuracy = float_cell(row, "difference")
        p = float_cell(row, "p_bonferroni")
        claims.append(Claim(
            title, f"Test accuracy at α = {format_alpha(alpha)} differs from α = 0", TTEST_NAME + " vs α = 0",
            statistic=accuracy, p=p, n=n + n_baseline, verdict=verdict_of(p, accuracy), min_p=floor, sample=sample,
            premises=(BASELINE, TRAINED)))
        si = float_cell(row, "test_mean_selectivity_mean") - (
            float_cell(baseline, "test_mean_selectivity_mean") if baseline is not None else np.nan)
        p = float_cell(row, "si_p_bonferroni")
        claims.append(Claim(
            title, f"Mean class selectivity at α = {format_alpha(alpha)} differs from α = 0",
            TTEST_NAME + " vs α = 0", statistic=si, p=p, n=n + n_baseline, verdict=verdict_of(p, si), min_p=floor,
            sample=sample, premises=(BASELINE, TRAINED)))
    return claims


def _ranksum_claims(title: str, ranksums: pd.DataFrame | None) -> list:
    if ranksums is None or ranksums.empty:
        return []
    tests = int(np.isfinite(ranksums["p_value"].to_numpy(float)).sum())
    claims = []
    for _, row in ranksums.iterrows():
        magnitude, n_negative, n_positive = float(row["abs_alpha"]), int(row["n_negative"]), int(row["n_positive"])
        p = float(row["p_bonferroni"])
        claims.append(Claim(
            title, f"Test accuracy differs between α = -{format_alpha(magnitude)} and α = {format_alpha(magnitude)}",
            "two-sided Mann-Whitney U (Wilcoxon rank-sum), Bonferroni over |α|",
            statistic=float(row["difference"]), p=p, n=n_negative + n_positive,
            verdict=verdict_of(p, float(row["difference"])),
            min_p=floors.minimum_p_bonferroni(floors.minimum_p_ranksum(n_negative, n_positive), tests),
            sample=f"{n_negative} vs {n_positive} networks", reason=str(row.get("note", "") or "")))
    return claims


def _null_claims(title: str, runs: pd.DataFrame, options) -> list:
    if "selective_fraction" not in runs.columns:
        return []
    settings = options.selectivity
    permutations = int(runs["selectivity_null"].max()) if "selectivity_null" in runs else settings.null_permutations
    floor = floors.minimum_p_permutation_null(permutations)
    claims = []
    for alpha, rows in runs.groupby(runs["alpha"].astype(float), sort=True):
        fraction = float(rows["selective_fraction"].mean())
        units = int(rows["num_units"].sum()) if "num_units" in rows else 0
        claims.append(Claim(
            title, f"Units of the α = {format_alpha(alpha)} networks are selective above chance",
            f"label-permutation null per unit, q < {settings.fdr:g} ({settings.fdr_method.upper()} over each run's "
            "units); statistic: the share of units selective, mean over runs",
            statistic=fraction, n=units, verdict=SUPPORTED if fraction > 0 else NOT_SUPPORTED, min_p=floor,
            sample=f"B = {permutations} label permutations", level=settings.fdr))
    return claims


def selectivity_claims(conditions, runs: pd.DataFrame, options) -> list:
    """The stage's claims, condition by condition.

    Args:
        conditions: the stage's ``_conditions`` (`section.condition_sections`).
        runs: the ``runs`` table.
        options: the `AnalysisOptions`.

    Returns:
        `analysis.claims.Claim`s.
    """
    from tf_selectivity.measures import stats

    split = {condition_title(condition): rows
             for condition, rows in stats.split_by_condition(runs.assign(alpha=runs["alpha"].astype(float)))}
    claims = []
    for condition, _, _, summary, ranksums in conditions:
        title = condition_title(condition)
        claims += _welch_claims(title, summary)
        claims += _ranksum_claims(title, ranksums)
        claims += _null_claims(title, split.get(title, runs.iloc[0:0]), options)
    return claims

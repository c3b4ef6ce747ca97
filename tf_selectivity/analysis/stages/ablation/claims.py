"""The ablation stage's test as claims (`analysis.claims`): does ablating selective units first hurt more?"""

from __future__ import annotations

from tf_selectivity.analysis.claims import Claim, verdict_of
from tf_selectivity.analysis.stages.ablation.tables import EXACT_SIGN_FLIPS
from tf_selectivity.measures.premises import minimum_p_sign_flip
from tf_selectivity.plots.style import format_alpha
from tf_selectivity.report.conditions import condition_title

__all__ = ["ablation_claims"]

def ablation_claims(tests, options) -> list:
    """One claim per condition and alpha of `tables.selective_vs_random` (None: no claims)."""
    if tests is None or tests.empty:
        return []
    claims = []
    for _, row in tests.iterrows():
        runs = int(row["runs"])
        condition = {c: row[c] for c in ("model", "activation", "leaky_slope", "condition") if c in row.index}
        claims.append(Claim(
            condition_title(condition),
            f"At α = {format_alpha(float(row['alpha']))}, ablating the most selective units first hurts accuracy "
            "more than ablating units in random order",
            "two-sided sign-flip permutation test over networks of the AUC difference (selective first − random)",
            statistic=float(row["mean_difference"]), p=float(row["p_value"]), n=runs,
            verdict=verdict_of(float(row["p_value"]), float(row["mean_difference"]), expected="negative"),
            min_p=minimum_p_sign_flip(runs, EXACT_SIGN_FLIPS, options.n_resamples), sample=f"{runs} networks",
        ))
    return claims

"""The similarity stage's tests as claims (`analysis.claims`): one per condition, measure and alpha of ``cca_tests``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tf_selectivity.analysis.claims import BASELINE, TRAINED, Claim, verdict_of
from tf_selectivity.analysis.stages.similarity.figure3 import MEASURE_NAMES
from tf_selectivity.measures.premises import minimum_p_paired_t
from tf_selectivity.plots.style import format_alpha
from tf_selectivity.report.conditions import condition_title

__all__ = ["similarity_claims"]


def similarity_claims(tests: pd.DataFrame | None) -> list:
    """The claims of `stats.cca_ratio_summary`'s rows (the ``cca_tests`` table; None: none).

    The statistic is the layer-averaged distance ratio with its CI; the
    verdict follows the paired test of the distances (`verdict_of` on the
    mean difference, to-baseline minus within).
    """
    if tests is None or tests.empty:
        return []
    claims = []
    for _, row in tests.iterrows():
        method = str(row.get("method", "pwcca"))
        variant = row.get("pwcca_variant", "")
        measure = MEASURE_NAMES.get(method, method) + (f" ({variant})" if method == "pwcca" and isinstance(
            variant, str) and variant else "")
        condition = {c: row[c] for c in ("model", "activation", "leaky_slope", "condition") if c in row.index}
        layers = int(row["n_layers"])
        p, difference = float(row["p_bonferroni"]), float(row["mean_difference"])
        claims.append(Claim(
            condition_title(condition),
            f"At α = {format_alpha(float(row['alpha']))}, the {measure} distance to α = 0 networks exceeds the "
            "distance between replicates (the representation changed, not only rotated)",
            "paired t-test over layers of the mean distances to α = 0 and within α, Bonferroni over the "
            "condition's α (descriptive: layers are not independent); statistic: the layer-averaged ratio",
            statistic=float(row["mean_ratio"]), low=float(row["ci_low"]), high=float(row["ci_high"]), p=p,
            n=layers, verdict=verdict_of(p, difference if np.isfinite(difference) else np.nan, expected="positive"),
            min_p=minimum_p_paired_t(layers), sample=f"{layers} layers", premises=(BASELINE, TRAINED)))
    return claims

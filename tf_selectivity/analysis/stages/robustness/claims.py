"""The follow-up paper's claims, tested across runs: per-run summary, Spearman correlations, verdicts.

Leavitt & Morcos, "Linking average- and worst-case perturbation robustness
via class selectivity and dimensionality" (arXiv 2010.07693): lower class
selectivity -> more robust to corruptions, higher -> more robust to
white-box attacks, early-layer dimensionality falls as selectivity rises,
and adversarial inputs raise it more than corruptions.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from tf_selectivity.measures import stats

__all__ = ["as_claims", "claims_table", "early_layers", "per_run_summary"]


def early_layers(dimensionality: pd.DataFrame) -> list:
    """The early layers: the first third of the probed layers (at least one)."""
    indices = sorted(set(int(i) for i in dimensionality["layer_index"] if i >= 0))
    return indices[: max(1, len(indices) // 3)]


def per_run_summary(robustness: pd.DataFrame, dimensionality: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run: mean SI, clean accuracy, mean corruption accuracy,
    mean adversarial accuracy over epsilon > 0 per attack, the early layers'
    participation ratio (clean) and its mean change under corruptions and
    under each attack at its largest epsilon."""
    rows = []
    for run_dir, group in robustness.groupby("run_dir", sort=False):
        run = runs.loc[runs["run_dir"] == run_dir].iloc[0]
        row = {"run_dir": run_dir, "model": run["model"], "alpha": float(run["alpha"]), "seed": run["seed"],
               **({"condition": run["condition"]} if "condition" in run.index else {}),
               "mean_selectivity": float(run["test_mean_selectivity"])}
        row["clean_accuracy"] = float(group.loc[group["kind"] == "clean", "accuracy"].iloc[0])
        mean = group[(group["name"] == "mean") & group["severity"].isna()]
        row["mean_corruption_accuracy"] = float(mean["accuracy"].iloc[0]) if len(mean) else math.nan
        for attack in ("fgsm", "pgd"):
            adv = group[(group["kind"] == attack) & (group["epsilon"] > 0)]
            row[f"{attack}_accuracy"] = float(adv["accuracy"].mean()) if len(adv) else math.nan
        dims = dimensionality[dimensionality["run_dir"] == run_dir]
        early = dims[dims["layer_index"].isin(early_layers(dims))] if len(dims) else dims
        row["early_participation_ratio"] = float(early.loc[early["kind"] == "clean", "participation_ratio"].mean())
        row["early_pr_change_corruption"] = float(
            early.loc[early["kind"] == "corruption", "participation_ratio_change"].mean())
        adversarial = []
        for attack in ("fgsm", "pgd"):
            adv = early[early["kind"] == attack]
            if len(adv):
                adversarial.append(adv.loc[adv["epsilon"] == adv["epsilon"].max(), "participation_ratio_change"].mean())
        row["early_pr_change_adversarial"] = float(np.mean(adversarial)) if adversarial else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def claims_table(summary: pd.DataFrame, n_resamples: int = 10_000) -> pd.DataFrame:
    """The follow-up paper's three claims (four tests) across runs.

    Args:
        summary: `per_run_summary`'s table (one model).
        n_resamples: bootstrap resamples of each CI.

    Returns:
        One row per test: claim, test, expected direction, statistic (a
        Spearman rho over runs, or the mean paired difference), its 95% CI,
        p, n and a verdict computed from them: "supported" (CI excludes 0
        on the claimed side and p < 0.05), "contradicted" (both on the
        other side), "not shown" (otherwise) or "not testable" (n < 3 or
        an undefined statistic).
    """
    si = summary["mean_selectivity"]
    tests = [
        ("Lower class selectivity -> more robust to corruptions",
         "Spearman(mean SI, mean corruption accuracy) over runs", "negative", si, summary["mean_corruption_accuracy"]),
        ("Higher class selectivity -> more robust to white-box attacks (FGSM)",
         "Spearman(mean SI, FGSM accuracy averaged over epsilon > 0)", "positive", si, summary["fgsm_accuracy"]),
        ("Higher class selectivity -> more robust to white-box attacks (PGD)",
         "Spearman(mean SI, PGD accuracy averaged over epsilon > 0)", "positive", si, summary["pgd_accuracy"]),
        ("Early-layer dimensionality falls as selectivity rises",
         "Spearman(mean SI, early layers' participation ratio on clean images)", "negative", si,
         summary["early_participation_ratio"]),
    ]
    rows = []
    for claim, test, direction, x, y in tests:
        r = stats.spearman_with_ci(x, y, n_resamples=n_resamples)
        rows.append({"claim": claim, "test": test, "expected": direction, "statistic": r["rho"],
                     "low": r["low"], "high": r["high"], "p": r["p"], "n": r["n"]})
    a = summary["early_pr_change_adversarial"].to_numpy(float)
    b = summary["early_pr_change_corruption"].to_numpy(float)
    paired = stats.paired_ttest(a, b)
    keep = np.isfinite(a) & np.isfinite(b)
    low, high = stats.bootstrap_ci(a[keep] - b[keep], n_resamples=n_resamples) if keep.sum() else (math.nan, math.nan)
    rows.append({"claim": "Adversarial inputs raise early-layer dimensionality more than corruptions",
                 "test": "paired t-test over runs: early PR change under attack (largest epsilon) minus under "
                         "corruptions",
                 "expected": "positive", "statistic": paired.mean_difference, "low": low, "high": high,
                 "p": paired.p_value, "n": paired.n})
    table = pd.DataFrame(rows)
    table["verdict"] = [_verdict(r) for r in table.itertuples()]
    return table


def _verdict(row) -> str:
    if not (np.isfinite(row.low) and np.isfinite(row.high) and np.isfinite(row.p)) or row.n < 3:
        return "not testable"
    if row.p >= 0.05:
        return "not shown"
    if row.low > 0:
        return "supported" if row.expected == "positive" else "contradicted"
    if row.high < 0:
        return "supported" if row.expected == "negative" else "contradicted"
    return "not shown"


def as_claims(table: pd.DataFrame, n_resamples: int = 10_000) -> list:
    """The rows of `claims_table` (every group's, with ``model`` and ``condition``) as
    `analysis.claims.Claim`s: "not shown" is "not supported", and each test's smallest
    attainable p with its n (`measures.premises`) goes with it."""
    from tf_selectivity.analysis.claims import NOT_SUPPORTED, Claim
    from tf_selectivity.measures.premises import minimum_p_paired_t, minimum_p_spearman

    claims = []
    for row in table.itertuples():
        n = int(row.n)
        spearman = str(row.test).startswith("Spearman")
        floor = minimum_p_spearman(n, n_resamples=n_resamples) if spearman else minimum_p_paired_t(n)
        verdict = NOT_SUPPORTED if row.verdict == "not shown" else row.verdict
        condition = getattr(row, "condition", None)
        claims.append(Claim(
            condition if isinstance(condition, str) and condition else str(row.model), row.claim, row.test,
            statistic=float(row.statistic), p=float(row.p), n=n, verdict=verdict, min_p=floor,
            sample=f"{n} networks", low=float(row.low), high=float(row.high),
            reason="the statistic is undefined (a variable without variance)" if verdict == "not testable" else ""))
    return claims

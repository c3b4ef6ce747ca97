"""The robustness stage's report section: the follow-up paper's claims beside what the runs show."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tf_selectivity.measures.stats import format_p_value
from tf_selectivity.report.formatting import format_number as _number

__all__ = ["PAPER", "robustness_section"]

PAPER = ('Leavitt & Morcos, "Linking average- and worst-case perturbation robustness via class selectivity '
         'and dimensionality" (arXiv 2010.07693)')


def robustness_section(robustness: pd.DataFrame, summary: pd.DataFrame, claims: pd.DataFrame, settings,
                       verdicts: dict | None = None) -> list:
    """Markdown lines of the section.

    Args:
        robustness, summary, claims: the stage's tables ``robustness``,
            ``robustness_runs`` and ``robustness_claims``.
        settings: the `RobustnessOptions`.
        verdicts: ``{(condition, claim): verdict}`` as the claims' premises
            allow them (`analysis.claims.gate`); a claim missing there keeps
            the verdict of its numbers.
    """
    verdicts = verdicts or {}
    source = settings.corruption_source
    lines = [
        "## Robustness: corruptions, attacks and dimensionality",
        "",
        f"The claims of {PAPER}, tested on these runs. Inputs: "
        + ", ".join(filter(None, [
            f"corruptions from `{source}` at severities {', '.join(map(str, settings.severities))}" if source else "",
            *(f"{a.upper()} (L-inf) at epsilon {', '.join(f'{e:g}' for e in settings.attack_epsilons)}/255"
              for a in settings.attacks),
        ]))
        + (f"; PGD: {settings.pgd_steps} steps, {'random start' if settings.pgd_random_start else 'no random start'}"
           if "pgd" in settings.attacks else "")
        + f"; {int(robustness['num_samples'].iloc[0]):,} test images per run.",
        "",
        "Tables: `robustness.csv` (accuracy per run and input kind; name `mean`: the mean corruption accuracy), "
        "`dimensionality.csv` (participation ratio and components for 90/95% of the variance per layer and input "
        "kind, with the change from clean), `robustness_runs.csv`, `robustness_claims.csv`.",
        "",
        "| model | claim | test | rho / difference [95% CI] | p | n | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in claims.itertuples():
        p = "n/a" if not np.isfinite(row.p) else format_p_value(row.p)
        condition = getattr(row, "condition", None)
        verdict = verdicts.get((condition if isinstance(condition, str) and condition else str(row.model), row.claim),
                               row.verdict)
        lines.append(f"| {row.model} | {row.claim} | {row.test} | {_number(row.statistic)} "
                     f"[{_number(row.low)}, {_number(row.high)}] | {p} | {row.n} | {verdict} |")
    lines += [
        "",
        "Verdicts follow from the numbers (never edited by hand): *supported* when p < 0.05 and the CI excludes 0 "
        "on the claimed side, *contradicted* on the other, *not shown* otherwise; *not testable* when a premise "
        "fails (see Claims and their premises). rho: Spearman over networks, "
        "permutation p (exact for n <= 8), bootstrapped 95% CI; difference: paired t-test, bootstrapped CI. "
        "Early layers: the first third of the probed layers; dimensionality is that of the spatially averaged "
        "unit responses (one value per channel).",
        "",
        "| model | alpha | networks | clean accuracy | mean corruption accuracy | FGSM accuracy | PGD accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for (model, alpha), group in summary.groupby(["group", "alpha"]):
        lines.append(
            f"| {model} | {alpha:g} | {len(group)} | {_number(group['clean_accuracy'].mean())} | "
            f"{_number(group['mean_corruption_accuracy'].mean())} | {_number(group['fgsm_accuracy'].mean())} | "
            f"{_number(group['pgd_accuracy'].mean())} |")
    lines.append("")
    return lines

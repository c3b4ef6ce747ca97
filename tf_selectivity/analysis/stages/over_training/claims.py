"""The four claims of Ranadive et al. (2023), "On the special role of class-selective neurons in early
training", tested on the kept checkpoints (`claim_tests`) and given as `analysis.claims.Claim`s (`as_claims`).

Claims 1-3 are about networks trained normally: per condition, its alpha = 0
runs with kept checkpoints (once: a window's condition that shares the
whole-run condition's baseline runs has no claims 1-3 of its own). Per run,
a measure is read at three phases: the
initialization (epoch 0), the early phase (the mean over its checkpoints
after 0 up to ``over_training.early_epochs``) and late (its last
checkpoint, after the early phase). Each test is a two-sided paired t-test
over those runs (`stats.paired_ttest`; with 3 seeds it can reach p < 0.05,
where a sign-flip test cannot go below 0.25), its verdict from the sign of
the mean difference:

1. Selective units emerge early, then recede, but not completely: mean SI
   (eq. 3) early > initialization, early > late and late > initialization,
   all three (an intersection-union test: p is the largest of the three).
2. Ablating them hurts more early than late: the correlation of SI with
   single-unit ablation importance (Spearman per layer, mean over layers)
   is higher early than late.
3. The network is close to linear early: the midpoint nonlinearity of the
   logits is lower early than late.
4. Suppressing selectivity early harms final accuracy more than
   suppressing it later: runs that differ only in their window of alpha
   (``alpha_window``, the same alpha < 0), paired by seed: the final test
   accuracy of the window that starts first minus that of the window that
   starts last is negative. Not testable without such runs.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from tf_selectivity.analysis.claims import CONTRADICTED, NOT_SUPPORTED, NOT_TESTABLE, SUPPORTED, Claim, verdict_of
from tf_selectivity.analysis.stages.over_training.tables import WINDOW
from tf_selectivity.measures import stats
from tf_selectivity.measures.premises import minimum_p_paired_t
from tf_selectivity.plots.style import format_alpha
from tf_selectivity.report.condition_names import shared_copies
from tf_selectivity.report.conditions import condition_title

__all__ = ["CLAIMS", "claim_tests", "run_phases", "as_claims"]

LEVEL = 0.05

# (claim number, sentence) of the paper's claims, in its order.
CLAIMS = (
    (1, "Class-selective units emerge early in training, then recede, but not completely"),
    (2, "Ablating class-selective units hurts more early in training than late"),
    (3, "The network is close to linear early in training"),
    (4, "Suppressing class selectivity early in training harms final accuracy more than suppressing it later"),
)
_PAIRED = "two-sided paired t-test over α = 0 networks"


def run_phases(network: pd.DataFrame, early_epochs: float) -> pd.DataFrame:
    """Per run, each measure at the initialization, early and late.

    Args:
        network: the ``over_training_network`` table.
        early_epochs: the end of the early phase (epochs).

    Returns:
        One row per run: ``run_dir``, its condition columns, and
        ``<measure>_init``, ``<measure>_early``, ``<measure>_late`` for
        mean_selectivity, si_importance_spearman and nonlinearity (NaN where
        the run kept no checkpoint in that phase).
    """
    measures = ("mean_selectivity", "si_importance_spearman", "nonlinearity")
    rows = []
    for run_dir, frame in network.groupby("run_dir", sort=False):
        epochs = frame["epoch"].astype(float)
        init = frame[epochs == 0]
        early = frame[(epochs > 0) & (epochs <= early_epochs)]
        last = epochs.max()
        late = frame[epochs == last] if last > early_epochs else frame.iloc[0:0]
        row = {column: frame[column].iloc[0] for column in frame.columns
               if column in ("run_dir", "model", "alpha", "seed", "activation", "leaky_slope", "condition")}
        for measure in measures:
            row[f"{measure}_init"] = float(init[measure].mean()) if len(init) else math.nan
            row[f"{measure}_early"] = float(early[measure].mean()) if len(early) else math.nan
            row[f"{measure}_late"] = float(late[measure].mean()) if len(late) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _row(condition, number, test, statistic, p, n, verdict, sample, alpha=0.0, reason=""):
    # A claim the runs cannot test at all says why (`reason`), rather than the t-test's lack of power.
    return {**condition, "claim_number": number, "claim": dict(CLAIMS)[number], "alpha": alpha, "test": test,
            "statistic": statistic, "p": p, "n": n, "min_p": 0.0 if reason else minimum_p_paired_t(n),
            "verdict": NOT_TESTABLE if reason else verdict, "sample": sample, "reason": reason}


def _paired(a, b, expected):
    result = stats.paired_ttest(a, b)
    return result, verdict_of(result.p_value, result.mean_difference, LEVEL, expected)


def _phase_claims(condition, phases, early_epochs) -> list:
    """Claims 1-3 for one condition's alpha = 0 runs (`run_phases` rows)."""
    phase_words = f"initialization (epoch 0), early (epochs in (0, {early_epochs:g}]) and late (the last checkpoint)"
    rows = []
    si = [phases[f"mean_selectivity_{phase}"].to_numpy(float) for phase in ("init", "early", "late")]
    parts = [_paired(si[1], si[0], "positive"), _paired(si[1], si[2], "positive"), _paired(si[2], si[0], "positive")]
    n = min(part[0].n for part in parts)
    p = float(np.max([part[0].p_value for part in parts]))  # NaN when any part has none
    verdicts = [part[1] for part in parts]
    if NOT_TESTABLE in verdicts:
        verdict = NOT_TESTABLE
    elif all(v == SUPPORTED for v in verdicts):
        verdict = SUPPORTED
    elif CONTRADICTED in verdicts:
        verdict = CONTRADICTED
    else:
        verdict = NOT_SUPPORTED
    rows.append(_row(condition, 1, f"mean SI (eq. 3) early − initialization, early − late and late − "
                                   f"initialization, each > 0 ({_PAIRED}; p: the largest of the three; statistic: early − late)",
                     parts[1][0].mean_difference, p, n, verdict, f"{n} α = 0 networks with checkpoints at the "
                     f"{phase_words}", reason=_reason(n, phase_words)))
    for number, measure, expected, words in (
            (2, "si_importance_spearman", "positive",
             "Spearman correlation of SI with single-unit ablation importance (mean over layers), early − late"),
            (3, "nonlinearity", "negative", "midpoint nonlinearity of the logits (0: linear), early − late")):
        result, verdict = _paired(phases[f"{measure}_early"], phases[f"{measure}_late"], expected)
        rows.append(_row(condition, number, f"{words} ({_PAIRED})", result.mean_difference, result.p_value,
                         result.n, verdict, f"{result.n} α = 0 networks with early and late checkpoints",
                         reason=_reason(result.n, "early and late", measure == "si_importance_spearman")))
    return rows


def _reason(n, phases, ablation=False) -> str:
    if n >= 2:
        return ""
    extra = " and --over_training_ablation on" if ablation else ""
    return (f"needs at least 2 α = 0 networks with kept checkpoints at the {phases} phases{extra}; "
            f"{n} here")


def _window_start(window) -> float:
    try:
        return float(str(window).split(":")[0])
    except ValueError:
        return math.nan


def _window_claims(runs: pd.DataFrame) -> list:
    """Claim 4 per base condition (the condition without its window) and alpha < 0."""
    no_windows = _row({}, 4, "final test accuracy of the window of alpha that starts first − the one that "
                              "starts last, paired by seed (two-sided paired t-test)", math.nan, math.nan, 0,
                      NOT_TESTABLE, "no runs that differ only in their window of alpha",
                      reason="needs runs that differ only in their window of alpha (train --alpha_window=START:END "
                             "at the same alpha < 0, e.g. sweep --alpha_windows=0:1,1:5,5:end)")
    if WINDOW not in runs.columns or runs[WINDOW].isna().all():
        return [no_windows]
    runs = runs[runs[WINDOW].notna() & (runs["alpha"].astype(float) < 0)].copy()
    runs["start"] = runs[WINDOW].map(_window_start)
    runs["base"] = runs["condition"].astype(str).map(lambda name: re.sub(rf", {WINDOW}=[^,]*", "", name)) \
        if "condition" in runs else ""
    rows = []
    for (base, alpha), group in runs.dropna(subset=["start"]).groupby(["base", "alpha"], sort=True):
        starts = sorted(group["start"].unique())
        if len(starts) < 2:
            continue
        first = group[group["start"] == starts[0]].set_index("seed")["test_accuracy"]
        last = group[group["start"] == starts[-1]].set_index("seed")["test_accuracy"]
        seeds = sorted(set(first.index) & set(last.index))
        result, verdict = _paired(first.loc[seeds].to_numpy(float), last.loc[seeds].to_numpy(float), "negative")
        windows = (group.loc[group["start"] == starts[0], WINDOW].iloc[0],
                   group.loc[group["start"] == starts[-1], WINDOW].iloc[0])
        condition = {column: group[column].iloc[0] for column in ("model", "activation", "leaky_slope")
                     if column in group}
        condition["condition"] = base
        rows.append(_row(condition, 4, f"final test accuracy with α in window {windows[0]} − in window "
                                       f"{windows[1]}, paired by seed (two-sided paired t-test)",
                         result.mean_difference, result.p_value, result.n, verdict,
                         f"{result.n} seeds in both windows", alpha=float(alpha),
                         reason="" if result.n >= 2 else "needs at least 2 seeds trained in both windows"))
    return rows or [no_windows]


def claim_tests(tables, options) -> pd.DataFrame:
    """Every claim's test, one row each (the table the report and `as_claims` read)."""
    network = tables["over_training_network"]
    early_epochs = options.over_training.early_epochs
    rows = []
    for condition, frame in stats.split_by_condition(network) or [({}, network)]:
        mine = frame[np.isclose(frame["alpha"].astype(float), 0.0)] if len(frame) else frame
        if len(mine) and shared_copies(mine).all():
            continue  # another condition's baseline, tested there
        phases = run_phases(mine, early_epochs) if len(mine) else pd.DataFrame(
            columns=[f"{m}_{p}" for m in ("mean_selectivity", "si_importance_spearman", "nonlinearity")
                     for p in ("init", "early", "late")])
        rows += _phase_claims(condition, phases, early_epochs)
    rows += _window_claims(tables["over_training_runs"])
    return pd.DataFrame(rows)


def as_claims(tests: pd.DataFrame) -> list:
    """The rows of `claim_tests` as `Claim`s (the engine gates them)."""
    claims = []
    for _, row in tests.iterrows():
        condition = {c: row[c] for c in ("model", "activation", "leaky_slope", "condition")
                     if c in row.index and pd.notna(row[c])}
        sentence = row["claim"]
        if int(row["claim_number"]) == 4 and np.isfinite(row["alpha"]) and row["alpha"] < 0:
            sentence += f" (α = {format_alpha(float(row['alpha']))})"
        claims.append(Claim(
            condition_title(condition) if condition.get("model") else "all runs",
            sentence, row["test"], statistic=float(row["statistic"]), p=float(row["p"]), n=int(row["n"]),
            verdict=row["verdict"], min_p=float(row["min_p"]), sample=row["sample"], level=LEVEL,
            reason=row["reason"] if isinstance(row["reason"], str) else "",
        ))
    return claims

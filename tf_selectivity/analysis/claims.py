"""What the analysis claims, and whether the runs allow the claim at all: ``claims.csv``.

Every test a stage reports is a `Claim` (`Stage.claims`): the sentence it
would support, the test, its statistic, p-value and sample size, a verdict
from those numbers, and the premises it rests on. Stages state facts about
the runs as `Premise`s (`Stage.premises`): the chance stage whether each
condition's networks learned (`TRAINED`), the selectivity stage whether a
condition has alpha = 0 runs (`BASELINE`). `gate` then marks a claim "not
testable", with the reason, when

* a premise it names fails for its condition (networks at chance; no
  alpha = 0 runs), or
* its test cannot reach p below its level with these sample sizes at all
  (``min_p``, the smallest p-value the test can give: e.g. 0.25 for a
  sign-flip test over 3 networks), or is undefined with them (NaN: a t-test
  with one network in a group).

A premise no stage checked (its stage did not run, or a redraw from tables
without it) leaves the claim as it is, its premise marked "not checked".
Each failing gate gives one warning per condition, which opens the report.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "Claim",
    "Premise",
    "CLAIM_COLUMNS",
    "SUPPORTED",
    "NOT_SUPPORTED",
    "CONTRADICTED",
    "NOT_TESTABLE",
    "TRAINED",
    "BASELINE",
    "gate",
    "verdict_of",
]

SUPPORTED, NOT_SUPPORTED, CONTRADICTED, NOT_TESTABLE = "supported", "not supported", "contradicted", "not testable"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, CONTRADICTED, NOT_TESTABLE)

# Premises stages check (`Premise.name`) and what each says.
TRAINED, BASELINE = "trained", "baseline"
PREMISE_TEXT = {
    TRAINED: "the condition's networks learned (its α = 0 networks, or all of them without α = 0, are above "
             "chance)",
    BASELINE: "the condition has α = 0 networks",
}
POWER_TEXT = "the test can reach p < {level:g} with these sample sizes"

CLAIM_COLUMNS = ("stage", "condition", "claim", "test", "statistic", "low", "high", "p", "n", "min_p", "verdict",
                 "premise", "reason")


@dataclasses.dataclass
class Claim:
    """One test a stage reports, as a claim about trained networks.

    Attributes:
        condition: the name of the condition it tests (`report.condition_names`).
        claim: the sentence a significant result supports.
        test: the test, as a reader needs it (with its corrections).
        statistic: the effect (a difference, a correlation, a ratio, ...).
        p: its p-value (corrected where the test says so); NaN if none.
        n: the networks (or layers, units) it counts.
        verdict: from the numbers alone (`verdict_of`); `gate` may make it
            "not testable".
        min_p: the smallest p-value the test can give with its sample sizes
            (corrections included; `measures.premises`); NaN when the test
            is undefined with them.
        sample: the sample sizes in words ("2 vs 2 networks"), for reasons.
        level: the level p is compared with.
        low, high: a confidence interval of the statistic, if any.
        premises: the `Premise` names it rests on besides its own power.
        reason: why the numbers alone make it not testable, if they do.
    """

    condition: str
    claim: str
    test: str
    statistic: float = math.nan
    p: float = math.nan
    n: int = 0
    verdict: str = NOT_SUPPORTED
    min_p: float = 0.0
    sample: str = ""
    level: float = 0.05
    low: float = math.nan
    high: float = math.nan
    premises: tuple = (TRAINED,)
    reason: str = ""


@dataclasses.dataclass
class Premise:
    """A fact about one condition's runs that claims rest on.

    Attributes:
        name: `TRAINED`, `BASELINE` or another stage's premise name.
        condition: the condition's name.
        holds: whether it holds.
        reason: a sentence saying what was found (why it fails).
    """

    name: str
    condition: str
    holds: bool
    reason: str = ""


def verdict_of(p: float, statistic: float, level: float = 0.05, expected: str | None = None) -> str:
    """The verdict a test's numbers give.

    Args:
        p: the p-value (NaN: the test gave none).
        statistic: the effect; its sign decides the direction.
        level: the significance level.
        expected: "positive" or "negative" for a claim of one direction
            (a significant effect the other way contradicts it), None for a
            claim of any difference.

    Returns:
        `SUPPORTED`, `CONTRADICTED`, `NOT_SUPPORTED` or, for a NaN p or
        statistic, `NOT_TESTABLE`.
    """
    if not (np.isfinite(p) and np.isfinite(statistic)):
        return NOT_TESTABLE
    if p >= level:
        return NOT_SUPPORTED
    if expected is None or (statistic > 0) == (expected == "positive"):
        return SUPPORTED
    return CONTRADICTED


def _format_p(p: float) -> str:
    return f"{p:.2g}"


def gate(claims: Iterable[tuple[str, Claim]], premises: Sequence[Premise]) -> tuple:
    """Every claim with the verdict its premises allow, and the warnings of the gates that fail.

    Args:
        claims: ``(stage name, Claim)`` pairs, in report order.
        premises: every stage's `Premise`s.

    Returns:
        (table, warnings): a DataFrame of `CLAIM_COLUMNS`, one row per
        claim; and one sentence per condition and failing gate (premises in
        the order of `PREMISE_TEXT`, then power).
    """
    import pandas as pd

    known = {(p.name, p.condition): p for p in premises}
    rows, failures = [], {}
    for stage, claim in claims:
        reasons, premise_texts = [], []
        for name in claim.premises:
            text = PREMISE_TEXT.get(name, name)
            premise = known.get((name, claim.condition))
            if premise is None:
                premise_texts.append(f"{text} (not checked)")
                continue
            premise_texts.append(text)
            if not premise.holds:
                reasons.append(premise.reason or f"premise failed: {text}")
                failures.setdefault((claim.condition, name), [premise, []])[1].append(claim)
        premise_texts.append(POWER_TEXT.format(level=claim.level))
        underpowered = not np.isfinite(claim.min_p) or claim.min_p >= claim.level
        if underpowered:
            reasons.append(_power_reason(claim))
            failures.setdefault((claim.condition, "power"), [None, []])[1].append(claim)
        verdict = NOT_TESTABLE if reasons else claim.verdict
        if not reasons and claim.verdict == NOT_TESTABLE:
            reasons.append(claim.reason or "the test gave no p-value with these values (e.g. none of them vary)")
        rows.append({
            "stage": stage, "condition": claim.condition, "claim": claim.claim, "test": claim.test,
            "statistic": claim.statistic, "low": claim.low, "high": claim.high, "p": claim.p, "n": claim.n,
            "min_p": claim.min_p, "verdict": verdict, "premise": "; ".join(premise_texts),
            "reason": "; ".join(reasons),
        })
    warnings = []
    order = [*PREMISE_TEXT, "power"]
    for (condition, name), (premise, failed) in sorted(
            failures.items(), key=lambda item: (order.index(item[0][1]) if item[0][1] in order else len(order),)):
        count = f"{len(failed)} claim{'s' if len(failed) > 1 else ''}"
        if name == "power":
            warnings.append(f"{condition}: {count} cannot reach p < {failed[0].level:g} with these runs "
                            f"({_power_reason(failed[0])}), so {'they are' if len(failed) > 1 else 'it is'} "
                            "not testable; only a larger sample lowers that floor.")
        elif name == BASELINE:
            warnings.append(f"{condition}: {premise.reason or 'no α = 0 networks'}, so its {count} against α = 0 "
                            f"{'are' if len(failed) > 1 else 'is'} not testable.")
        elif name == TRAINED:
            warnings.append(f"{condition}: its {count} about trained networks {'are' if len(failed) > 1 else 'is'} "
                            "not testable: its networks did not learn (test accuracy not above chance).")
        else:
            warnings.append(f"{condition}: {premise.reason or PREMISE_TEXT.get(name, name) + ' fails'}, so its "
                            f"{count} resting on it {'are' if len(failed) > 1 else 'is'} not testable.")
    return pd.DataFrame(rows, columns=list(CLAIM_COLUMNS)), warnings


def _power_reason(claim: Claim) -> str:
    sample = f" with {claim.sample}" if claim.sample else ""
    if not np.isfinite(claim.min_p):
        return f"{claim.test} is undefined{sample}"
    return f"the smallest p {claim.test} can give{sample} is {_format_p(claim.min_p)}"

"""The chance stage: each run's test accuracy against chance, and whether a condition's networks learned.

Per run (cached; it needs only the test labels and the selectivity stage's
accuracy): chance is 1 / classes, or the share of the test set's largest
class when that is higher (a network answering that class always reaches
it), and the one-sided exact binomial test of the run's test accuracy
against it (`measures.premises`). Table ``chance``.

A condition's networks *learned* (`claims.TRAINED`, the premise of every
claim about trained networks) when each of its alpha = 0 networks is above
chance at p < 0.05, or each of its networks when it has none at alpha = 0:
the unregularized networks are the ones whose training is in question,
while a regularizer that drives a treated network to chance is a result,
not a failed premise. A condition whose networks did not learn gets a
warning at the top of the report.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tf_selectivity.analysis.stage import RunResult, Stage

__all__ = ["ChanceStage", "LEVEL"]

# The level of the binomial test: above chance when p < LEVEL.
LEVEL = 0.05

COLUMNS = ("test_accuracy", "num_test_samples", "num_classes", "majority_class_rate", "chance_rate",
           "p_above_chance", "above_chance")


class ChanceStage(Stage):
    """See the module docstring."""

    name = "chance"
    requires = ("selectivity",)

    def compute(self, run):
        from tf_selectivity.measures.premises import above_chance, chance_rate

        evaluated = run.result("selectivity").values["run"]
        data = run.test_data
        chance, majority = chance_rate(data.labels, data.num_classes)
        accuracy, samples = float(evaluated["test_accuracy"]), int(evaluated["num_test_samples"])
        p = above_chance(accuracy, samples, chance)
        frame = pd.DataFrame([{
            "test_accuracy": accuracy, "num_test_samples": samples, "num_classes": data.num_classes,
            "majority_class_rate": majority, "chance_rate": chance, "p_above_chance": p,
            "above_chance": bool(p < LEVEL),
        }], columns=list(COLUMNS))
        return RunResult(tables={"chance": run.with_condition(frame)})

    def combine(self, results, context):
        if not results:
            return {}
        frame = pd.concat([r.tables["chance"] for r in results.values()], ignore_index=True)
        return self.restore({"chance": context.with_condition_names(frame)}, context)

    def restore(self, tables, context):
        return None if tables.get("chance") is None else {"chance": tables["chance"]}

    def premises(self, tables, context):
        from tf_selectivity.analysis.claims import TRAINED, Premise

        if "chance" not in tables:
            return []
        return [Premise(TRAINED, title, holds, reason) for title, holds, reason in _learned(tables["chance"])]

    def warnings(self, tables, context):
        if "chance" not in tables:
            return []
        return [f"{title}: {reason}: they learned nothing that claims about trained networks could rest on "
                f"(`chance.csv`)." for title, holds, reason in _learned(tables["chance"]) if not holds]


def _learned(chance: pd.DataFrame):
    """(condition title, its networks learned, what was found) per condition."""
    from tf_selectivity.measures import stats
    from tf_selectivity.report.conditions import condition_title

    chance = chance.assign(alpha=chance["alpha"].astype(float))
    for condition, rows in stats.split_by_condition(chance):
        baseline = rows.loc[np.isclose(rows["alpha"], 0.0)]
        reference = baseline if len(baseline) else rows
        which = "α = 0 network" if len(baseline) else "network"
        failing = reference.loc[~reference["above_chance"].astype(bool)]
        accuracies = reference["test_accuracy"].astype(float)
        found = (f"test accuracy {_percent(accuracies.min())}"
                 + (f"-{_percent(accuracies.max())}" if accuracies.max() > accuracies.min() else "")
                 + f" vs chance {_percent(float(reference['chance_rate'].max()))} on "
                 f"{int(reference['num_test_samples'].min()):,} test images")
        if failing.empty:
            reason = (f"{_count(len(reference), which)} above chance ({found}, one-sided binomial "
                      f"p < {LEVEL:g})")
        else:
            counted = (_count(len(reference), which) if len(failing) == len(reference)
                       else f"{len(failing)} of its {len(reference)} {which}s {'is' if len(failing) == 1 else 'are'}")
            reason = (f"{counted} not above chance ({found}; one-sided binomial p >= "
                      f"{float(failing['p_above_chance'].min()):.2g})")
            if not len(baseline):
                reason += " (no α = 0 networks: all of them are judged)"
        yield condition_title(condition), failing.empty, reason


def _count(number: int, which: str) -> str:
    """"its α = 0 network is", "its 3 α = 0 networks are"."""
    return f"its {which} is" if number == 1 else f"its {number} {which}s are"


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"

"""Which runs Figure 3 can compare, and what it must leave out: said before any pass over the data.

Figure 3 compares, per model and activation, the runs of each treated
alpha with the alpha = 0 runs and with each other (`compare.cca_groups`):
a treated alpha needs >= 2 replicates and its condition needs alpha = 0
runs. `coverage` tells, from the runs' summaries alone, whether anything
can be compared at all (else the stage is refused or skipped, `check`) and
which conditions and alphas are left out and why (the report's warnings).
"""

from __future__ import annotations

import numpy as np

from tf_selectivity.analysis.runs import run_conditions
from tf_selectivity.analysis.stages.similarity.compare import BASELINE_ALPHA, cca_groups, comparison_key

__all__ = ["Coverage", "coverage"]


class Coverage:
    """What Figure 3 can do with a set of runs.

    Attributes:
        comparable: whether one condition at least has alpha = 0 runs and a
            treated alpha with >= 2 replicates.
        left_out: sentences, one per condition or alpha left out, with why.
        runs_by_condition: ``"resnet8 relu: alpha 0 (1 run), alpha -1 (2 runs)"``
            per condition, for a message that says what the runs are.
        unknown_alphas: alphas of ``similarity.alphas`` that no run has.
    """

    def __init__(self, comparable, left_out, runs_by_condition, unknown_alphas):
        self.comparable = comparable
        self.left_out = left_out
        self.runs_by_condition = runs_by_condition
        self.unknown_alphas = unknown_alphas


def _condition_name(model, activation, slope) -> str:
    return f"{model} {activation}" + (f" (slope {slope:g})" if activation == "leaky_relu" else "")


def _runs(count: int) -> str:
    return f"{count} run" + ("" if count == 1 else "s")


def coverage(records, options) -> Coverage:
    """What Figure 3 can compare among `records` (their summaries only) under `options`."""
    requested = options.similarity.alphas
    alphas = sorted({float(r.summary.alpha) for r in records})
    unknown = [a for a in (requested or ()) if not any(np.isclose(a, b) for b in alphas)]
    groups = {}
    for record in records:
        groups.setdefault(comparison_key(record, options), []).append(record)
    compared = {key: treated for key, _, treated in cca_groups(records, options, [])}
    # Where a model and activation were trained under several settings, the report's names tell them apart.
    named = run_conditions(records, options.pool_over).of if len({k[:3] for k in groups}) < len(groups) else None
    left_out, described = [], []
    for key, members in groups.items():
        name = named[members[0].run_dir] if named else _condition_name(*key[:3])
        counts = {}
        for record in members:
            counts[float(record.summary.alpha)] = counts.get(float(record.summary.alpha), 0) + 1
        described.append(f"{name}: " + ", ".join(f"alpha {a:g} ({_runs(n)})" for a, n in sorted(counts.items())))
        treated = {a: n for a, n in counts.items() if a != BASELINE_ALPHA
                   and (requested is None or any(np.isclose(a, b) for b in requested))}
        if not treated:
            continue
        if BASELINE_ALPHA not in counts:
            left_out.append(f"Figure 3 leaves out {name}: it has no run at alpha = {BASELINE_ALPHA:g} to compare "
                            f"alpha {', '.join(f'{a:g}' for a in sorted(treated))} with")
            continue
        single = sorted(a for a, n in treated.items() if n < 2)
        if single:
            left_out.append(
                f"Figure 3 leaves out {name} at alpha {', '.join(f'{a:g}' for a in single)}: one run there, and the "
                "distance between replicates needs >= 2")
        if key not in compared and not single:
            left_out.append(f"Figure 3 leaves out {name}: its runs' layers differ (see the errors)")
    if unknown:
        left_out.append(f"--cca_alphas names alpha {', '.join(f'{a:g}' for a in unknown)}, which no run has")
    return Coverage(bool(compared), left_out, described, unknown)

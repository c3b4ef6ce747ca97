"""How a run ended: ``summary.json``'s ``status``, and divergence.

A finished run's ``summary.json`` has ``"status"``:

* ``"completed"``: trained for every epoch; the summary holds its test
  metrics (``test_accuracy``, ``test_mean_selectivity``, ...). Summaries
  written before this field existed are completed runs.
* ``"diverged"``: training met a non-finite loss (or non-finite weights) and
  stopped. The summary then holds the run's identity (model, alpha, seed,
  activation, leaky_slope, epochs, dataset...) and

  - ``"diverged_epoch"``: the 1-based epoch in which the first non-finite
    loss was seen;
  - ``"reason"``: one sentence, e.g. ``"loss is nan"``;
  - ``"epochs_completed"``: finite epochs before it (``diverged_epoch - 1``);

  and no metric that could pass for a result: no test accuracy, no
  selectivity, no best epoch. Analyses list such runs apart and keep them
  out of every mean, test and figure; sweeps record the trial as diverged
  and go on. No model is exported; ``checkpoint/`` keeps the state after
  the last finite epoch.

Any code that trains replicates (one process per run, or several packed into
one program) writes this same schema for a replicate that diverges, with
`diverged_summary`.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

__all__ = [
    "COMPLETED",
    "DIVERGED",
    "run_status",
    "is_diverged",
    "diverged_summary",
    "non_finite_reason",
]

COMPLETED = "completed"
DIVERGED = "diverged"

# Keys of a completed summary that a diverged one must not carry.
RESULT_KEYS = (
    "best_epoch", "val_accuracy", "test_accuracy", "test_layer_selectivity", "test_mean_selectivity",
    "test_layer_dead_fraction", "saved_model", "keras_model",
)


def run_status(summary: Mapping) -> str:
    """The run's status; summaries without one (older runs) are completed."""
    return str(summary.get("status", COMPLETED))


def is_diverged(summary: Mapping) -> bool:
    return run_status(summary) == DIVERGED


def diverged_summary(identity: Mapping, diverged_epoch: int, reason: str, **extra) -> dict:
    """A diverged run's summary (see the module docstring).

    Args:
        identity: the run's identity fields (model, alpha, seed, activation,
            leaky_slope, epochs, ...) and descriptive extras (dataset sizes,
            backend). Result keys (`RESULT_KEYS`) are dropped.
        diverged_epoch: 1-based epoch in which the first non-finite loss was seen.
        reason: why, in one sentence.
        **extra: further descriptive keys.
    """
    summary = {k: v for k, v in {**identity, **extra}.items() if k not in RESULT_KEYS}
    summary.update(
        status=DIVERGED,
        diverged_epoch=int(diverged_epoch),
        epochs_completed=int(diverged_epoch) - 1,
        reason=str(reason),
    )
    return summary


def non_finite_reason(logs: Mapping, names=("loss",)) -> Optional[str]:
    """"loss is nan" if a named value of `logs` is not finite, else None."""
    for name in names:
        if name in logs:
            value = float(logs[name])
            if not math.isfinite(value):
                return f"{name} is {value}"
    return None

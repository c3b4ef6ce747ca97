"""Divergence: when a run's training is stopped as *diverged*.

`RunCheckpoint` checks, at the end of each epoch, the epoch's loss (and the
weights) with `non_finite_reason`; a run whose loss is not finite stops and
is finished with a diverged `RunSummary` (`RunSummary.as_diverged`: the
epoch, the reason, no results). Any code that trains replicates (one
process per run, or several packed into one program) finishes a replicate
that diverges the same way (`loop.finish_run`).
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

__all__ = ["non_finite_reason"]


def non_finite_reason(logs: Mapping, names=("loss",)) -> Optional[str]:
    """"loss is nan" if a named value of `logs` is not finite, else None."""
    for name in names:
        if name in logs:
            value = float(logs[name])
            if not math.isfinite(value):
                return f"{name} is {value}"
    return None

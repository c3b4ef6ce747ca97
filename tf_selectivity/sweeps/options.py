"""The sweep's own settings, each defined once (`core.settings.setting`).

* `PlanOptions`: which points a sweep trains, as the command line states
  them (lists and ranges as text; ``python -m tf_selectivity.sweep`` turns
  them into a `plans.GridPlan` or `plans.MarginSearchPlan`).
* `SweepOptions`: how the trials are run: retries, the failure stop and the
  timeouts of distributed mode. `SweepSpec` carries them; the `Scheduler`,
  which alone decides retries and when to stop, reads its limits here.

The sweep command defines its flags from these fields (next to the training
flags of `TrainConfig`); a bad value raises a `ParameterError` naming the
field, which the command reports as its flag. Imports nothing of Keras or
keras-tuner.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

from tf_selectivity.core.settings import check_settings, setting

__all__ = ["PlanOptions", "SweepOptions", "MODES"]

# grid: every (slope, alpha, seed); search: `plans.MarginSearchPlan`.
MODES = ("grid", "search")


def _at_least(low: int):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            return f"must be >= {low}; got {value}"
        return None

    return check


def _seconds(value):
    if not value > 0 or math.isinf(value):  # NaN fails `value > 0`
        return f"must be a positive number of seconds; got {value}"
    return None


@dataclasses.dataclass
class PlanOptions:
    """Which (leaky slope, alpha, seed) points a sweep trains.

    Lists are the flags' text (``"0,-0.1,-1"``, seeds ``"0-19"``): the
    command parses them, refusing repeats and non-numbers. The search's
    bounds and margin are checked by `plans.MarginSearchPlan`.
    """

    alphas: Optional[str] = setting(
        None, "Grid of regularization scales, comma-separated (e.g. 0,-0.1,-1,-10); include 0 as the baseline.")
    seeds: str = setting("0", "Replicate seeds: comma-separated and/or ranges (e.g. 0-19).")
    leaky_slopes: Optional[str] = setting(
        None, "Several leaky-ReLU negative slopes as one more grid axis (with --activation=leaky_relu).")
    alpha_windows: Optional[str] = setting(
        None,
        "Windows of training the regularizer is applied in, comma-separated START:END epochs (e.g. "
        "0:1,1:5,5:end; see --alpha_window), as one more grid axis: each non-zero alpha x each window x each "
        "seed (alpha = 0 runs once, the baseline of every window).")
    mode: str = setting(
        "grid", "grid: every alpha x seed; search: strongest alpha within --search_margin of alpha = 0.",
        choices=MODES)
    search_bounds: str = setting(
        "-0.1,-100",
        "Search mode: weakest,strongest alpha searched (same sign; negative suppresses selectivity).")
    search_margin: float = setting(
        0.01, "Search mode: allowed drop of mean validation accuracy from alpha = 0 (0.01 = 1 point).")
    search_resolution: float = setting(
        2.0, "Search mode: stop when the failing and the passing |alpha| are at most this factor apart.")


@dataclasses.dataclass
class SweepOptions:
    """How a sweep runs its trials.

    Attributes:
        max_retries: further attempts of a trial that failed (or whose
            worker stopped responding) in one session; a trial failing with
            an error retrying cannot fix is not retried.
        max_consecutive_failures: stop handing out trials after this many
            trials failed in a row in one session.
        worker_timeout: (chief) seconds without a heartbeat after which a
            worker's trial goes to another worker.
        chief_timeout: (worker) seconds to wait for an absent chief.
    """

    max_retries: int = setting(2, "Further attempts of a trial that fails or loses its worker.",
                               check=_at_least(0))
    max_consecutive_failures: int = setting(3, "Stop the sweep after this many failed trials in a row.",
                                            check=_at_least(1))
    worker_timeout: float = setting(
        300.0, "Chief: seconds without a heartbeat after which a worker's trial goes to another worker.",
        check=_seconds)
    chief_timeout: float = setting(600.0, "Worker: seconds to wait for an unreachable chief before giving up.",
                                   check=_seconds)

    def validate(self) -> "SweepOptions":
        """Checks every option; returns self.

        Raises:
            ParameterError: (a ValueError) naming the first bad option.
        """
        check_settings(self)
        return self

"""What a sweep trains: a full grid, or a log-scale search for a margin.

A plan only decides *which* points (leaky slope, alpha, seed) are needed,
given the outcomes so far; `SweepOracle` turns that into keras-tuner trials.
Because a plan's answer is a pure function of the finished trials, a sweep
that is stopped and restarted (or served to many workers) needs no extra
state: the next step is recomputed from the trial records.

* `GridPlan`: every (slope, alpha, seed) once, the paper's design.
* `MarginSearchPlan`: the most extreme alpha (of one sign) whose mean
  validation accuracy over the seeds stays within a margin of alpha = 0 --
  "how far can selectivity fall for free?" -- by bisection on log |alpha|.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, NamedTuple, Optional, Sequence

__all__ = ["Point", "Outcome", "PlanStep", "GridPlan", "MarginSearchPlan"]

COMPLETED = "completed"
FAILED = "failed"
# Trained to the end of the epoch whose loss became non-finite
# (`training.status`): a result, with no accuracy.
DIVERGED = "diverged"


def _clean(value: float) -> float:
    # -0.0 and 0.0 are the same alpha (and the same run name).
    return float(value) + 0.0


class Point(NamedTuple):
    """One training run of a sweep, besides the sweep's shared settings.

    ``alpha_window`` is the run's `TrainConfig.alpha_window` (None: the
    whole run).
    """

    leaky_slope: float
    alpha: float
    seed: int
    alpha_window: Optional[str] = None

    @classmethod
    def make(cls, leaky_slope, alpha, seed, alpha_window=None) -> "Point":
        return cls(_clean(leaky_slope), _clean(alpha), int(seed), alpha_window or None)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A finished point: `status` is "completed" (with metrics), "diverged"
    (a result without accuracy) or "failed"."""

    status: str
    metrics: Mapping[str, float] = dataclasses.field(default_factory=dict)

    @property
    def completed(self) -> bool:
        return self.status == COMPLETED

    @property
    def finished(self) -> bool:
        """Trained to its end: completed or diverged (not retried)."""
        return self.status in (COMPLETED, DIVERGED)


@dataclasses.dataclass(frozen=True)
class PlanStep:
    """The plan's answer for the current outcomes.

    Attributes:
        needed: points whose outcome the plan needs now and does not have,
            in the order they should run.
        finished: no more points are needed.
        total: the number of points of the whole plan, if known in advance.
        result: JSON-compatible description of the answer (search plans).
    """

    needed: tuple = ()
    finished: bool = False
    total: Optional[int] = None
    result: Optional[dict] = None


class GridPlan:
    """Every (leaky slope, alpha, seed) of the grid, each once.

    Order: seed-major -- the first seed of every alpha runs before the second
    seed of any -- so a sweep stopped half-way already shows the whole curve
    with fewer replicates, instead of all replicates of a few alphas.

    Args:
        alphas: regularization scales, in the order given.
        seeds: replicate seeds.
        leaky_slopes: negative slopes (``(0.0,)`` for ReLU networks).
    """

    mode = "grid"

    def __init__(self, alphas: Sequence[float], seeds: Sequence[int], leaky_slopes: Sequence[float] = (0.0,),
                 alpha_windows: Sequence[Optional[str]] = (None,)):
        self.alphas = tuple(_clean(a) for a in alphas)
        self.seeds = tuple(int(s) for s in seeds)
        self.leaky_slopes = tuple(_clean(s) for s in leaky_slopes)
        self.alpha_windows = tuple(w or None for w in alpha_windows)
        # alpha = 0 has no regularizer to switch: its one run (the whole
        # run's) is the baseline of every window.
        crossed = []
        for seed in self.seeds:
            for slope in self.leaky_slopes:
                for window in self.alpha_windows:
                    for alpha in self.alphas:
                        point = Point(slope, alpha, seed, None if alpha == 0.0 else window)
                        if not (alpha == 0.0 and point in crossed):
                            crossed.append(point)
        self.points = tuple(crossed)
        if len(set(self.points)) != len(self.points):
            raise ValueError("the grid has repeated points")

    def step(self, outcomes: Mapping[Point, Outcome]) -> PlanStep:
        needed = tuple(p for p in self.points if p not in outcomes)
        return PlanStep(needed=needed, finished=not needed, total=len(self.points))

    def alpha_range(self) -> tuple:
        return min(self.alphas), max(self.alphas)

    def describe(self) -> dict:
        return {
            "mode": self.mode,
            "alphas": list(self.alphas),
            "seeds": list(self.seeds),
            "leaky_slopes": list(self.leaky_slopes),
            **({"alpha_windows": list(self.alpha_windows)} if self.alpha_windows != (None,) else {}),
            "trials": len(self.points),
        }


class MarginSearchPlan:
    """The most extreme alpha whose validation accuracy stays within a margin.

    Each evaluated alpha is trained with every seed; its mean best-epoch
    validation accuracy is compared with that of alpha = 0 (same seeds). An
    alpha is *within* the margin when ``mean(alpha) >= mean(0) - margin``.

    Search, on a log scale of |alpha| between `weakest` and `strongest`
    (same sign; negative suppresses selectivity):

    1. alpha = 0 and `strongest` (in parallel). If `strongest` is within the
       margin, it is the answer: the whole range is free.
    2. `weakest`. If it is already outside, no alpha of the range is free.
    3. Bisect between the strongest alpha known within and the weakest known
       outside at their geometric mean (rounded to 3 significant digits, so
       run names stay readable), until their ratio is at most `resolution`.

    This assumes accuracy falls monotonically with |alpha| (as in the paper's
    Figures 2 and 4); the table of every evaluated alpha is part of the
    result, so a non-monotonic curve is visible. An alpha at which a seed
    diverged is outside the margin (its row gives the number of diverged
    seeds and no mean accuracy); a diverged baseline ends the search.

    Args:
        seeds: replicate seeds of every evaluated alpha.
        weakest: the smallest |alpha| considered, e.g. -0.1.
        strongest: the largest |alpha| considered, e.g. -100.
        margin: allowed drop of mean validation accuracy (0.01 = 1 point).
        resolution: stop when strongest-outside / strongest-within <= this.
        leaky_slope: negative slope of the networks (0 for ReLU).
    """

    mode = "search"

    def __init__(
        self,
        seeds: Sequence[int],
        weakest: float,
        strongest: float,
        margin: float,
        resolution: float,
        leaky_slope: float = 0.0,
    ):
        if weakest == 0 or strongest == 0 or (weakest > 0) != (strongest > 0):
            raise ValueError("search bounds must be two non-zero alphas of the same sign")
        if abs(weakest) >= abs(strongest):
            raise ValueError("the first search bound must be the weaker (smaller |alpha|)")
        if not resolution > 1.0:
            raise ValueError("the search resolution must be a ratio above 1")
        if not margin >= 0.0:
            raise ValueError("the search margin must be non-negative")
        self.seeds = tuple(int(s) for s in seeds)
        self.weakest = _clean(weakest)
        self.strongest = _clean(strongest)
        self.margin = float(margin)
        self.resolution = float(resolution)
        self.leaky_slope = _clean(leaky_slope)

    @property
    def leaky_slopes(self) -> tuple:
        return (self.leaky_slope,)

    def alpha_range(self) -> tuple:
        return min(0.0, self.strongest), max(0.0, self.strongest)

    def describe(self) -> dict:
        return {
            "mode": self.mode,
            "seeds": list(self.seeds),
            "bounds": [self.weakest, self.strongest],
            "margin": self.margin,
            "resolution": self.resolution,
            "leaky_slope": self.leaky_slope,
        }

    def _points(self, alpha: float) -> tuple:
        return tuple(Point.make(self.leaky_slope, alpha, seed) for seed in self.seeds)

    def _mean_val_accuracy(self, alpha, outcomes):
        """(missing points, mean validation accuracy or None, diverged seeds).

        The mean is None when every seed failed or any diverged.
        """
        points = self._points(alpha)
        missing = tuple(p for p in points if p not in outcomes)
        if missing:
            return missing, None, 0
        diverged = sum(1 for p in points if outcomes[p].status == DIVERGED)
        values = [outcomes[p].metrics["val_accuracy"] for p in points if outcomes[p].completed]
        if diverged or not values:
            return (), None, diverged
        return (), float(sum(values) / len(values)), 0

    def _midpoint(self, within: float, outside: float) -> float:
        magnitude = math.sqrt(abs(within) * abs(outside))
        return math.copysign(float(f"{magnitude:.3g}"), self.strongest)

    def step(self, outcomes: Mapping[Point, Outcome]) -> PlanStep:
        missing_base, baseline, baseline_diverged = self._mean_val_accuracy(0.0, outcomes)
        missing_strong, strong, strong_diverged = self._mean_val_accuracy(self.strongest, outcomes)
        if missing_base or missing_strong:
            return PlanStep(needed=missing_base + missing_strong)
        evaluated = []
        result = {
            **self.describe(),
            "baseline_val_accuracy": baseline,
            "evaluated": evaluated,
            "strongest_alpha_within_margin": None,
            "weakest_alpha_outside_margin": None,
            "message": "",
        }

        def finish(message, within=None, outside=None):
            evaluated.sort(key=lambda row: abs(row["alpha"]))
            result.update(
                strongest_alpha_within_margin=within,
                weakest_alpha_outside_margin=outside,
                message=message,
            )
            return PlanStep(finished=True, result=result)

        if baseline_diverged:
            return finish(
                f"alpha = 0 diverged for {baseline_diverged} of {len(self.seeds)} seeds: no baseline to compare "
                "with (lower the learning rate)"
            )
        if baseline is None:
            return finish("every alpha = 0 trial failed: no baseline to compare with")

        def record(alpha, mean, diverged):
            within = not diverged and mean is not None and mean >= baseline - self.margin
            row = {"alpha": alpha, "mean_val_accuracy": mean, "within_margin": within}
            if diverged:
                row["diverged_seeds"] = diverged
            evaluated.append(row)
            return within

        def unusable(mean, diverged):  # every seed failed (not diverged): no answer
            return mean is None and not diverged

        if unusable(strong, strong_diverged):
            return finish(f"every trial at alpha = {self.strongest} failed")
        if record(self.strongest, strong, strong_diverged):
            return finish(
                f"alpha = {self.strongest} (the strongest searched) stays within the margin",
                within=self.strongest,
            )
        missing, weak, weak_diverged = self._mean_val_accuracy(self.weakest, outcomes)
        if missing:
            return PlanStep(needed=missing)
        if unusable(weak, weak_diverged):
            return finish(f"every trial at alpha = {self.weakest} failed", outside=self.strongest)
        if not record(self.weakest, weak, weak_diverged):
            return finish(
                f"even alpha = {self.weakest} (the weakest searched) falls outside the margin",
                outside=self.weakest,
            )
        within, outside = self.weakest, self.strongest
        while abs(outside) / abs(within) > self.resolution:
            alpha = self._midpoint(within, outside)
            if alpha in (within, outside):
                break  # 3 significant digits cannot split the interval further
            missing, mean, diverged = self._mean_val_accuracy(alpha, outcomes)
            if missing:
                return PlanStep(needed=missing)
            if unusable(mean, diverged):
                return finish(f"every trial at alpha = {alpha} failed", within=within, outside=outside)
            if record(alpha, mean, diverged):
                within = alpha
            else:
                outside = alpha
        return finish(
            f"alpha = {within} is the strongest within the margin; {outside} falls outside",
            within=within,
            outside=outside,
        )

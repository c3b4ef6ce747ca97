"""`Scheduler`: who trains which point of a sweep, and when to give up.

The one owner of a sweep's trials: which worker trains which point, which
failed attempt runs again and when the sweep gives up. A plain class (no
keras-tuner, no files, a clock that tests can replace); `SweepOracle` asks
it and records its answers in keras-tuner's trials, with keras-tuner's own
retries and failure stop switched off:

* **Leases.** A worker holds the point it was given while it shows signs
  of life (`assign`, `renew`, `end`); one silent for `worker_timeout`
  seconds loses it (`expire`) and is forgotten, and the point goes to the
  next worker that asks. Such a reclaim counts as a failed attempt, so a
  point that kills every worker it runs on ends failed instead of looping.
  Without a `worker_timeout` (one local process) nothing expires.
* **Packs.** With `pack_size` > 1 a worker given a point also gets up to
  ``pack_size - 1`` other needed seeds of the same (leaky slope, alpha)
  reserved for it; it trains them together and then asks for each one in
  turn. Reservations are renewed with the worker's own lease and expire
  with it, without counting an attempt (they never started); a pack whose
  first point fails releases them, and a reservation of a point the plan
  no longer needs is dropped.
* **Idle instead of stop.** While every needed point is leased, a worker
  that asks is told to wait (`IDLE`): it may still have to take over the
  point of a worker that dies. `STOP` only when nothing is needed, or after
  `SweepOptions.max_consecutive_failures` points failed in a row this
  session.
* **Retries.** A failed attempt (`INVALID`) is retried up to
  `SweepOptions.max_retries` times in this session; then, or at once for
  `FAILED` (an error retrying cannot fix), the point fails for this
  session. A later session (the command run again) tries it afresh. A
  point already reported complete stays complete: a second report (a
  worker that was thought dead) is a duplicate.

Points are `plans.Point`s; which points are needed, and in which order, is
the plan's answer (`plans.PlanStep.needed`), passed to `assign`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, NamedTuple, Optional

from tf_selectivity.sweeps.options import SweepOptions

__all__ = [
    "Scheduler", "Assignment", "Reclaim", "Stop", "RUN", "HELD", "IDLE", "STOP",
    "COMPLETED", "INVALID", "FAILED", "DUPLICATE",
]

# What `assign` answers.
RUN = "run"  # train `point` (with `mates` reserved for the same pack)
HELD = "held"  # the worker asks again while holding `point`: it restarted
IDLE = "idle"  # every needed point is leased: ask again later
STOP = "stop"  # nothing more for this worker

# How attempts end (`end`), spelled as keras-tuner's `TrialStatus`.
COMPLETED = "COMPLETED"
INVALID = "INVALID"  # failed; retried
FAILED = "FAILED"  # failed for this session
DUPLICATE = "DUPLICATE"  # a further report of a point already complete


class Assignment(NamedTuple):
    """`Scheduler.assign`'s answer: `kind` (RUN, HELD, IDLE or STOP), the
    point to train and, for RUN, the points reserved for its pack."""

    kind: str
    point: Optional[object] = None
    mates: tuple = ()


class Reclaim(NamedTuple):
    """A point taken from a silent worker by `Scheduler.expire`.

    Attributes:
        point: the point.
        tuner_id: the worker that held it.
        status: INVALID (retried) or FAILED (out of retries).
        message: why, for the trial's record.
    """

    point: object
    tuner_id: Optional[str]
    status: str
    message: str


class Stop(NamedTuple):
    """Why the scheduler stopped: `count` points failed in a row, the last
    one `point`, with `message`."""

    count: int
    point: object
    message: Optional[str]


@dataclasses.dataclass
class _Lease:
    tuner_id: Optional[str]
    last_seen: float
    # Reserved for the worker that trains this point in its pack, not yet
    # handed to it.
    reserved: bool = False


def _pack_key(point):
    return (point.leaky_slope, point.alpha, point.alpha_window)


class Scheduler:
    """Leases, packs, retries and the failure stop of one sweep session.

    Args:
        options: a `SweepOptions`: its `max_retries` and
            `max_consecutive_failures` (default: their defaults).
        pack_size: the most points of one (leaky slope, alpha) given to a
            worker together; 1: one at a time.
        worker_timeout: seconds without a sign of life after which a
            worker's lease expires; None: never (one local process).
        clock: monotonic seconds (tests pass a fake one).
    """

    def __init__(
        self,
        options: Optional[SweepOptions] = None,
        *,
        pack_size: int = 1,
        worker_timeout: Optional[float] = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if int(pack_size) < 1:
            raise ValueError(f"pack_size must be at least 1; got {pack_size}")
        self.options = (options or SweepOptions()).validate()
        self.pack_size = int(pack_size)
        self.worker_timeout = worker_timeout
        self.clock = clock
        self._leases = {}  # point -> _Lease
        self._workers = set()  # workers that may still ask (keras-tuner's tuner_ids)
        self._last_seen = {}  # tuner_id -> clock time
        self._attempts = {}  # point -> failed attempts this session
        self._complete = set()  # points whose success is recorded
        self._failed = set()  # points that failed this session
        self._ends = []  # points in the order they ended this session
        self._stop = None

    # ---------------------------------------------------------------- queries

    @property
    def workers(self) -> frozenset:
        """Workers that asked and were not told to stop or forgotten."""
        return frozenset(self._workers)

    @property
    def stop(self) -> Optional[Stop]:
        """Why no more points are handed out, or None."""
        return self._stop

    def running(self) -> dict:
        """{tuner_id: point} of the points being trained (not reservations)."""
        return {lease.tuner_id: point for point, lease in self._leases.items() if not lease.reserved}

    def holder(self, point) -> Optional[str]:
        """The worker running `point`, or holding it reserved."""
        lease = self._leases.get(point)
        return lease.tuner_id if lease else None

    def is_leased(self, point) -> bool:
        return point in self._leases

    def is_complete(self, point) -> bool:
        return point in self._complete

    def failed_this_session(self, point) -> bool:
        return point in self._failed

    def busy(self) -> bool:
        """Whether a lease or a worker is left (the sweep cannot end yet)."""
        return bool(self._leases or self._workers)

    # ---------------------------------------------------------------- restore

    def mark_complete(self, points) -> None:
        """Records `points` as complete (found so on reload)."""
        self._complete.update(points)

    def resume(self, point, tuner_id: str) -> None:
        """Gives `point` to `tuner_id` as if it had just asked (a restarted
        chief: its workers may still be training)."""
        now = self.clock()
        self._leases[point] = _Lease(tuner_id, now)
        self._workers.add(tuner_id)
        self._last_seen[tuner_id] = now

    # ------------------------------------------------------------ trial flow

    def assign(self, tuner_id: str, needed) -> Assignment:
        """What `tuner_id`, asking for work, should do.

        Call `expire` first: a silent worker's point goes to the next one
        that asks.

        Args:
            tuner_id: the asking worker.
            needed: the points the plan needs now, in order
                (`PlanStep.needed`); None when the plan is finished.

        Returns:
            An `Assignment`. For RUN, `point` and `mates` are leased to
            `tuner_id` (the mates reserved).
        """
        now = self.clock()
        self._last_seen[tuner_id] = now
        for point, lease in self._leases.items():
            if lease.tuner_id == tuner_id and not lease.reserved:
                # Asking again while holding a point: the worker's process
                # was restarted (same tuner id). It gets the point back.
                self._leases[point] = _Lease(tuner_id, now)
                return Assignment(HELD, point)
        self._workers.add(tuner_id)
        if self._stop is None and needed is not None:
            needed = list(needed)
            self._drop_stale_reservations(needed)
            # The points this worker trained in its last pack first: their
            # runs are complete, their trials only report them.
            for point in needed:
                lease = self._leases.get(point)
                if lease is not None and lease.reserved and lease.tuner_id == tuner_id:
                    self._leases[point] = _Lease(tuner_id, now)
                    return Assignment(RUN, point)
            for point in needed:
                if point in self._leases:
                    continue  # running on (or reserved for) another worker
                mates = self._pack_mates(point, needed)
                self._leases[point] = _Lease(tuner_id, now)
                for mate in mates:
                    self._leases[mate] = _Lease(tuner_id, now, reserved=True)
                return Assignment(RUN, point, tuple(mates))
            return Assignment(IDLE)
        self._release_reservations(tuner_id)
        self._workers.discard(tuner_id)
        return Assignment(STOP)

    def renew(self, point) -> None:
        """A sign of life from the worker running `point` (its heartbeat):
        renews its lease and its pack's reservations."""
        lease = self._leases.get(point)
        if lease is None:
            return
        lease.last_seen = self.clock()
        if lease.tuner_id is not None:
            self._last_seen[lease.tuner_id] = lease.last_seen
            for other in self._leases.values():
                if other.reserved and other.tuner_id == lease.tuner_id:
                    other.last_seen = lease.last_seen

    def end(self, point, status: str, message: Optional[str] = None) -> str:
        """Records the end of an attempt at `point`.

        Args:
            point: the point.
            status: COMPLETED, INVALID (may be retried) or FAILED.
            message: why it failed (for the stop reason).

        Returns:
            COMPLETED, DUPLICATE (it was complete already: nothing to
            record), INVALID (to be retried) or FAILED.
        """
        holder = self._release(point)
        if point in self._complete:
            return DUPLICATE
        if status == COMPLETED:
            self._complete.add(point)
            self._ends.append(point)
            return COMPLETED
        if holder is not None:
            # The pack failed with its first point: its other points go back
            # to the queue (each may be complete; whoever takes it will see).
            self._release_reservations(holder)
        return self._fail(point, status, message)

    def expire(self) -> tuple:
        """Takes the points of workers silent for longer than `worker_timeout`.

        Returns:
            (reclaims, silent idle workers): a `Reclaim` per running point
            taken back (its attempt counted as failed), and the ids of the
            workers forgotten while they held nothing.
        """
        if self.worker_timeout is None:
            return [], []
        now = self.clock()
        reclaims = []
        for point, lease in list(self._leases.items()):
            silent = now - lease.last_seen
            if silent <= self.worker_timeout:
                continue
            if lease.reserved:
                # Never started: back to the queue without counting an attempt.
                self._leases.pop(point, None)
                continue
            self._release(point)
            if lease.tuner_id is not None:
                self._workers.discard(lease.tuner_id)
                self._last_seen.pop(lease.tuner_id, None)
            who = f"worker {lease.tuner_id}" if lease.tuner_id else "its worker"
            message = (
                f"{who} sent no heartbeat for {silent:.0f} s (--worker_timeout="
                f"{self.worker_timeout:g}) while running this trial"
            )
            reclaims.append(Reclaim(point, lease.tuner_id, self._fail(point, INVALID, message), message))
        silent_workers = []
        running = self.running()
        for tuner_id, last_seen in list(self._last_seen.items()):
            if tuner_id not in running and now - last_seen > self.worker_timeout and tuner_id in self._workers:
                # A worker that died while waiting for work: without this the
                # sweep would wait for it forever before finishing.
                self._workers.discard(tuner_id)
                self._last_seen.pop(tuner_id)
                silent_workers.append(tuner_id)
        return reclaims, silent_workers

    # -------------------------------------------------------------- internals

    def _release(self, point) -> Optional[str]:
        """Removes `point`'s lease; returns its holder's id."""
        lease = self._leases.pop(point, None)
        if lease is not None and lease.tuner_id is not None:
            self._last_seen[lease.tuner_id] = self.clock()
            return lease.tuner_id
        return None

    def _fail(self, point, status, message) -> str:
        self._attempts[point] = self._attempts.get(point, 0) + 1
        if status == INVALID and self._attempts[point] <= self.options.max_retries:
            return INVALID
        self._failed.add(point)
        self._ends.append(point)
        # Counted over this session only: failures recorded by an earlier
        # run are being retried now and say nothing about this one.
        consecutive = 0
        for ended in self._ends:
            consecutive = 0 if ended in self._complete else consecutive + 1
        if consecutive >= self.options.max_consecutive_failures and self._stop is None:
            self._stop = Stop(consecutive, point, message)
        return FAILED

    def _pack_mates(self, point, needed) -> list:
        """Other needed points of `point`'s (slope, alpha), free to reserve."""
        mates = []
        for other in needed:
            if len(mates) >= self.pack_size - 1:
                break
            if other != point and _pack_key(other) == _pack_key(point) and other not in self._leases:
                mates.append(other)
        return mates

    def _release_reservations(self, tuner_id) -> None:
        for point, lease in list(self._leases.items()):
            if lease.reserved and lease.tuner_id == tuner_id:
                self._leases.pop(point)

    def _drop_stale_reservations(self, needed) -> None:
        """Releases reservations of points the plan no longer needs (e.g.
        finished by another worker), so that the sweep can end."""
        needed = set(needed)
        for point, lease in list(self._leases.items()):
            if lease.reserved and point not in needed:
                self._leases.pop(point)

"""`SweepOracle`: keras-tuner's oracle for a sweep's plan, leases included.

keras-tuner's oracles search a space; a sweep instead has to train a fixed
set of points (or a search decided by earlier results), each exactly once,
over restarts and over many workers. This oracle hands out the points of a
`GridPlan` or `MarginSearchPlan` as trials and keeps keras-tuner's
machinery: trial records (``tuner/trial_*/trial.json``), ``oracle.json``,
the gRPC chief/worker protocol and `Display`.

Differences from keras-tuner's `Oracle` (1.4.8), and why:

* **One trial per point**, found again on reload: a restarted sweep runs
  the points not finished and none that finished (`GridSearch` has a resume
  `KeyError`, keras-tuner #1055). A grid changed between runs adds its new
  points and keeps the old trials.
* **Trials whose process died are run again**, by the same trial id:
  `RUNNING` trials found on reload, and trials that failed in an earlier
  session. The run directory's checkpoints make the new attempt resume.
* **Leases** (distributed mode, `worker_timeout`): a worker holds its trial
  while it reports (heartbeat: any `get_trial`/`update_trial` call naming
  the trial, see `SweepTuner`). A worker silent for `worker_timeout` seconds
  loses the trial to the next worker that asks -- keras-tuner's chief would
  otherwise wait forever for a SIGKILLed worker -- and is forgotten, so the
  chief can finish. Such a reclaim counts as a failed attempt, so a trial
  that kills every worker it runs on ends FAILED instead of looping.
* **Idle instead of stop**: while the remaining points are all running
  elsewhere, a worker that asks gets `IDLE` and asks again later, so it can
  still take over a trial whose worker dies. `STOPPED` only comes when the
  plan is finished.
* **Failures stop, they do not crash**: after `max_consecutive_failed_trials`
  failed trials in a row the oracle stops handing out trials and records
  why, instead of raising inside `end_trial` (which, on a chief, raises in
  the gRPC handler and leaves the oracle half-updated).
* A result reported for a trial that was meanwhile given to another worker
  is accepted if it is a success; both workers train in the same run
  directory, whose lock and ``summary.json`` make the second one wait and
  then reuse the first one's result instead of training again.
* **Packs** (``pack_replicates`` > 1): a worker that gets a point also gets
  up to ``pack_replicates - 1`` other needed seeds of the same (leaky
  slope, alpha), reserved for it: the trial's ``packed_seeds`` value lists
  them, the worker trains them together (`SweepTuner`, on JAX as one
  program) and then asks for each reserved trial in turn, whose run
  directory it finds complete. Each (alpha, seed) stays one trial, with its
  own record and row in trials.csv. Reservations are leases like the
  running trial's (renewed by the same heartbeat, reclaimed with it, but a
  reserved trial that never started does not count as a failed attempt);
  a failed pack releases its reservations. A chief restarted while a pack
  trains forgets the reservations: another worker may then be given one
  of those seeds, finds its run locked and waits for it, as for any trial
  given twice.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import time
import warnings
from typing import Optional

import keras_tuner
from keras_tuner.engine.trial import Trial, TrialStatus
from keras_tuner.src.engine.oracle import Display

from tf_selectivity.sweep import plans
from tf_selectivity.sweep.layout import format_float, run_name
from tf_selectivity.files import write_json_atomic

__all__ = ["SweepOracle", "trial_point", "trial_diverged", "trial_pack_seeds", "PACK_VALUE"]

RUNNING = TrialStatus.RUNNING
COMPLETED = TrialStatus.COMPLETED
FAILED = TrialStatus.FAILED
INVALID = TrialStatus.INVALID
IDLE = TrialStatus.IDLE
STOPPED = TrialStatus.STOPPED


def trial_diverged(trial) -> bool:
    """Whether a completed trial's run diverged (it reports `diverged_epoch`)."""
    return trial.metrics.exists("diverged_epoch")


def trial_point(trial) -> plans.Point:
    """The (leaky slope, alpha, seed) of a trial."""
    values = trial.hyperparameters.values
    return plans.Point.make(values["leaky_slope"], values["alpha"], values["seed"])


# The trial value that lists the seeds its worker trains together (its own
# first), e.g. "0,1,2"; a trial without it trains its own seed alone.
PACK_VALUE = "packed_seeds"


def trial_pack_seeds(values) -> list:
    """The seeds a trial's worker trains together, its own first."""
    own = int(values["seed"])
    listed = [int(s) for s in str(values.get(PACK_VALUE) or "").split(",") if s.strip()]
    return [own] + [seed for seed in listed if seed != own]


@dataclasses.dataclass
class _Lease:
    tuner_id: Optional[str]
    last_seen: float
    # A trial reserved for the worker that trains its seed in a pack, not
    # yet handed to it.
    reserved: bool = False


class SweepDisplay(Display):
    """One line per trial start and end, with the sweep's progress.

    keras-tuner's `Display` prints a table of every hyperparameter per trial;
    here the settings are the same for every trial, so only the point and
    the results are shown.
    """

    def on_trial_begin(self, trial):
        if self.verbose < 1:
            return
        holder = self.oracle.trial_holder(trial.trial_id)
        where = f" on {holder}" if holder and self.oracle.distributed else ""
        mates = trial_pack_seeds(trial.hyperparameters.values)[1:]
        packed = f", packed with seed{'s' if len(mates) > 1 else ''} {', '.join(map(str, mates))}" if mates else ""
        print(
            f"[sweep] trial {trial.trial_id} starts{where}: {self.oracle.describe_trial(trial)}{packed}", flush=True
        )

    def on_trial_end(self, trial):
        if self.verbose < 1:
            return
        done, total = self.oracle.progress()
        count = f"{done}/{total}" if total is not None else f"{done} done"
        description = self.oracle.describe_trial(trial)
        if trial.status == COMPLETED and trial_diverged(trial):
            epoch = int(trial.metrics.get_last_value("diverged_epoch"))
            print(
                f"[sweep {count}] trial {trial.trial_id} diverged in epoch {epoch}: {description}: "
                "recorded as diverged (no metrics)",
                flush=True,
            )
            return
        if trial.status == COMPLETED:
            metrics = {name: trial.metrics.get_last_value(name) for name in trial.metrics.metrics}
            print(
                f"[sweep {count}] trial {trial.trial_id} done: {description}: "
                f"val_accuracy {_fmt(metrics.get('val_accuracy'))}, "
                f"test_accuracy {_fmt(metrics.get('test_accuracy'))}, "
                f"test mean SI {_fmt(metrics.get('test_mean_selectivity'))}",
                flush=True,
            )
            return
        retry = "will be retried" if trial.status == INVALID else "FAILED"
        reason = _last_line(trial.message)
        print(f"[sweep {count}] trial {trial.trial_id} {retry}: {description}: {reason}", flush=True)


def _fmt(value) -> str:
    return "?" if value is None else f"{value:.4f}"


def _last_line(message: Optional[str]) -> str:
    lines = [line.strip() for line in (message or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


class SweepOracle(keras_tuner.Oracle):
    """Hands out the points of a sweep plan as keras-tuner trials.

    Args:
        plan: a `GridPlan` or `MarginSearchPlan`.
        settings_values: the sweep's shared settings as keras-tuner values
            (`settings.settings_to_values`); every trial carries them.
        max_retries_per_trial: further attempts after a trial fails (or
            its worker stops responding) in one session.
        max_consecutive_failed_trials: stop handing out trials after this
            many failed trials in a row.
        worker_timeout: seconds without a sign of life after which a
            worker's trial goes back to the queue; None (local mode): never.
        error_file: function trial_id -> path of the file where tuners write
            why a trial failed (gRPC's `Trial` does not carry the message).
        pack_replicates: the most seeds of one (leaky slope, alpha) handed
            to one worker together (see the module docstring); 1: one.
    """

    def __init__(
        self,
        plan,
        settings_values: dict,
        *,
        max_retries_per_trial: int = 2,
        max_consecutive_failed_trials: int = 3,
        worker_timeout: Optional[float] = None,
        error_file=None,
        pack_replicates: int = 1,
    ):
        space = keras_tuner.HyperParameters()
        for name, value in settings_values.items():
            space.Fixed(name, value)
        # The point is declared for the record (trial.json, the space); the
        # plan, not keras-tuner's sampling, chooses its values.
        space.Choice("leaky_slope", list(plan.leaky_slopes), ordered=True)
        if plan.mode == "grid":
            space.Choice("alpha", list(plan.alphas), ordered=True)
        else:
            low, high = plan.alpha_range()
            space.Float("alpha", min_value=low, max_value=high)
        space.Choice("seed", list(plan.seeds), ordered=True)
        super().__init__(
            objective=keras_tuner.Objective("val_accuracy", direction="max"),
            hyperparameters=space,
            max_retries_per_trial=max_retries_per_trial,
            max_consecutive_failed_trials=max_consecutive_failed_trials,
        )
        self.plan = plan
        self.settings_values = dict(settings_values)
        self.worker_timeout = worker_timeout
        self.error_file = error_file
        if int(pack_replicates) < 1:
            raise ValueError(f"pack_replicates must be at least 1; got {pack_replicates}")
        self.pack_replicates = int(pack_replicates)
        self._space = space
        self._display = SweepDisplay(oracle=self)
        self._leases = {}  # trial_id -> _Lease
        self._tuner_last_seen = {}  # tuner_id -> monotonic time
        self._attempts = collections.Counter()  # failed attempts this session
        self._failed_this_session = set()
        self._session_ends = []  # trial ids in the order they ended, this session
        # Trials whose success is recorded. Not read from `status`: in local
        # mode the tuner holds the oracle's own Trial object and sets its
        # status before calling `end_trial`.
        self._recorded_complete = set()
        self._stop_reason = None
        self._saved_ongoing = {}
        self.reloaded = False

    # ---------------------------------------------------------------- queries

    @property
    def distributed(self) -> bool:
        return self.worker_timeout is not None

    @property
    def stop_reason(self) -> Optional[str]:
        return self._stop_reason

    def describe_trial(self, trial) -> str:
        point = trial_point(trial)
        values = trial.hyperparameters.values
        slope = f"leaky_slope={format_float(point.leaky_slope)} " if values.get("activation") == "leaky_relu" else ""
        return f"{slope}alpha={format_float(point.alpha)} seed={point.seed} ({self.run_name(trial)})"

    def run_name(self, trial) -> str:
        values = trial.hyperparameters.values
        point = trial_point(trial)
        return run_name(values["model"], values["activation"], point.leaky_slope, point.alpha, point.seed)

    def trial_holder(self, trial_id) -> Optional[str]:
        lease = self._leases.get(trial_id)
        return lease.tuner_id if lease else None

    def trials_by_point(self) -> dict:
        by_point = {}
        for trial_id in sorted(self.trials):
            trial = self.trials[trial_id]
            point = trial_point(trial)
            # One trial per point; should a directory hold two (e.g. copied
            # projects), a completed one wins.
            if point not in by_point or trial.status == COMPLETED:
                by_point[point] = trial
        return by_point

    def outcomes(self) -> dict:
        """{Point: Outcome} of the trials that ended (this session's failures)."""
        result = {}
        for point, trial in self.trials_by_point().items():
            if trial.status == COMPLETED:
                metrics = {name: trial.metrics.get_last_value(name) for name in trial.metrics.metrics}
                status = plans.DIVERGED if trial_diverged(trial) else plans.COMPLETED
                result[point] = plans.Outcome(status, metrics)
            elif trial.status == FAILED and trial.trial_id in self._failed_this_session:
                result[point] = plans.Outcome(plans.FAILED)
        return result

    def plan_step(self) -> plans.PlanStep:
        return self.plan.step(self.outcomes())

    def progress(self) -> tuple:
        """(finished trials of the plan, total or None) for progress lines.

        Finished: completed or diverged (both are results; neither is retried).
        """
        step = self.plan_step()
        outcomes = self.outcomes()
        if step.total is None:
            return sum(1 for o in outcomes.values() if o.finished), None
        points = set(self.plan.points)
        done = sum(1 for p, o in outcomes.items() if p in points and o.finished)
        return done, step.total

    @keras_tuner.synchronized
    def finished(self) -> bool:
        """True when the plan is done (or stopped) and no worker is left."""
        if self._leases or self.ongoing_trials or self.tuner_ids:
            return False
        return self._stop_reason is not None or self.plan_step().finished

    @keras_tuner.synchronized
    def trials_waiting_for_a_worker(self) -> int:
        """Trials that remain while no worker is connected (0 otherwise)."""
        if self._leases or self.tuner_ids or self._stop_reason is not None:
            return 0
        return len(self.plan_step().needed)

    # ------------------------------------------------------------ trial flow

    @keras_tuner.synchronized
    def create_trial(self, tuner_id):
        now = time.monotonic()
        self._tuner_last_seen[tuner_id] = now
        self._expire_leases(now)
        if tuner_id in self.ongoing_trials:
            # This tuner asks again while holding a trial: its process was
            # restarted (same KERASTUNER_TUNER_ID). Give the trial back; the
            # run resumes from its checkpoints.
            trial = self.ongoing_trials[tuner_id]
            self._leases[trial.trial_id] = _Lease(tuner_id, now)
            self._display.on_trial_begin(trial)
            return trial
        self.tuner_ids.add(tuner_id)
        if self._stop_reason is None:
            step = self.plan_step()
            by_point = self.trials_by_point()
            self._drop_stale_reservations(step, by_point)
            if not step.finished:
                # The seeds this worker trained in its last pack first: their
                # runs are complete, the trials only report them.
                for point in step.needed:
                    trial = by_point.get(point)
                    if trial is not None and self._reserved_for(trial.trial_id, tuner_id):
                        return self._assign(trial, tuner_id, now)
                for point in step.needed:
                    trial = by_point.get(point)
                    if trial is None:
                        trial = self._new_trial(point)
                    elif trial.trial_id in self._leases:
                        continue  # running on (or reserved for) another worker
                    mates = self._pack_mates(point, step.needed, by_point)
                    return self._assign(trial, tuner_id, now, mates)
                return Trial(self.get_space(), status=IDLE)
        self._release_reservations(tuner_id)
        self.tuner_ids.discard(tuner_id)
        return Trial(self.get_space(), status=STOPPED)

    def _reserved_for(self, trial_id, tuner_id) -> bool:
        lease = self._leases.get(trial_id)
        return lease is not None and lease.reserved and lease.tuner_id == tuner_id

    def _pack_mates(self, point, needed, by_point) -> list:
        """Trials of other needed seeds of `point`'s (slope, alpha), free to reserve."""
        mates = []
        for other in needed:
            if len(mates) >= self.pack_replicates - 1:
                break
            if other == point or (other.leaky_slope, other.alpha) != (point.leaky_slope, point.alpha):
                continue
            trial = by_point.get(other)
            if trial is None:
                trial = self._new_trial(other)
                by_point[other] = trial
            elif trial.trial_id in self._leases:
                continue
            mates.append(trial)
        return mates

    def _release_reservations(self, tuner_id) -> None:
        for trial_id, lease in list(self._leases.items()):
            if lease.reserved and lease.tuner_id == tuner_id:
                self._leases.pop(trial_id)

    def _drop_stale_reservations(self, step, by_point) -> None:
        """Releases reservations of points the plan no longer needs (e.g.
        finished by another worker), so that the sweep can end."""
        needed = {by_point[p].trial_id for p in step.needed if p in by_point}
        for trial_id, lease in list(self._leases.items()):
            if lease.reserved and trial_id not in needed:
                self._leases.pop(trial_id)

    def _new_trial(self, point) -> Trial:
        hyperparameters = self._space.copy()
        hyperparameters.values = {
            **self.settings_values,
            "leaky_slope": point.leaky_slope,
            "alpha": point.alpha,
            "seed": point.seed,
        }
        trial_id = f"{len(self.trials):04d}"
        trial = Trial(hyperparameters=hyperparameters, trial_id=trial_id, status=RUNNING)
        self.trials[trial_id] = trial
        self.start_order.append(trial_id)
        return trial

    def _assign(self, trial, tuner_id, now, mates=()):
        """Hands `trial` to `tuner_id`, with `mates` reserved for its pack."""
        trial.status = RUNNING
        point = trial_point(trial)
        trial.hyperparameters.values[PACK_VALUE] = ",".join(
            str(seed) for seed in [point.seed] + [trial_point(mate).seed for mate in mates]
        )
        self.ongoing_trials[tuner_id] = trial
        self._leases[trial.trial_id] = _Lease(tuner_id, now)
        for mate in mates:
            self._leases[mate.trial_id] = _Lease(tuner_id, now, reserved=True)
            self._save_trial(mate)
        self._save_trial(trial)
        self.save()
        self._display.on_trial_begin(trial)
        return trial

    def _renew(self, trial_id):
        lease = self._leases.get(trial_id)
        if lease is not None:
            lease.last_seen = time.monotonic()
            if lease.tuner_id is not None:
                self._tuner_last_seen[lease.tuner_id] = lease.last_seen
                # The worker is training its pack: its reservations live on.
                for other in self._leases.values():
                    if other.reserved and other.tuner_id == lease.tuner_id:
                        other.last_seen = lease.last_seen

    @keras_tuner.synchronized
    def get_trial(self, trial_id):
        # Workers call this periodically while training: the heartbeat.
        self._renew(trial_id)
        return self.trials[trial_id]

    @keras_tuner.synchronized
    def update_trial(self, trial_id, metrics, step=0):
        self._renew(trial_id)
        with warnings.catch_warnings():
            # A diverged run reports a NaN objective; keras-tuner's running
            # best (np.nanmax) would warn "All-NaN axis encountered".
            warnings.simplefilter("ignore", RuntimeWarning)
            return super().update_trial(trial_id, metrics, step=step)

    def _release(self, trial_id) -> Optional[str]:
        """Removes the trial from its holder; returns the holder's id."""
        lease = self._leases.pop(trial_id, None)
        for tuner_id, ongoing in list(self.ongoing_trials.items()):
            if ongoing.trial_id == trial_id:
                self.ongoing_trials.pop(tuner_id)
        if lease is not None and lease.tuner_id is not None:
            self._tuner_last_seen[lease.tuner_id] = time.monotonic()
            return lease.tuner_id
        return None

    @keras_tuner.synchronized
    def end_trial(self, trial):
        stored = self.trials.get(trial.trial_id)
        if stored is None:
            return
        holder = self._release(trial.trial_id)
        if trial.status != COMPLETED and holder is not None and trial.trial_id not in self._recorded_complete:
            # The pack failed with its first trial: its other seeds go back
            # to the queue (each may be complete; whoever takes it will see).
            self._release_reservations(holder)
        if trial.trial_id in self._recorded_complete:
            stored.status = COMPLETED
            return  # a second report of a finished trial (see module doc)
        if trial.status == COMPLETED:
            self._recorded_complete.add(trial.trial_id)
            stored.status = COMPLETED
            stored.message = None
            self.score_trial(stored)
            self.end_order.append(stored.trial_id)
            self._session_ends.append(stored.trial_id)
        else:
            message = trial.message or self._read_error_file(trial.trial_id)
            self._record_failure(stored, trial.status, message)
        self._save_trial(stored)
        self.save()
        self._display.on_trial_end(stored)

    def _record_failure(self, trial, status, message):
        self._attempts[trial.trial_id] += 1
        trial.message = message
        if status == INVALID and self._attempts[trial.trial_id] <= self.max_retries_per_trial:
            trial.status = INVALID  # the next tuner that asks retries it
            return
        trial.status = FAILED
        self._failed_this_session.add(trial.trial_id)
        self.end_order.append(trial.trial_id)
        self._session_ends.append(trial.trial_id)
        self._check_consecutive_failures()

    def _check_consecutive_failures(self):
        # Counted over this session only: failures recorded by an earlier
        # run are being retried now and say nothing about this one.
        consecutive = 0
        for trial_id in self._session_ends:
            if self.trials[trial_id].status == FAILED:
                consecutive += 1
            else:
                consecutive = 0
        if consecutive >= self.max_consecutive_failed_trials and self._stop_reason is None:
            last = self.trials[self._session_ends[-1]]
            self._stop_reason = (
                f"{consecutive} trials failed in a row; the last one "
                f"({self.describe_trial(last)}): {_last_line(last.message)}"
            )
            print(f"[sweep] stopping: {self._stop_reason}", flush=True)

    def _read_error_file(self, trial_id) -> Optional[str]:
        if self.error_file is None:
            return None
        try:
            with open(self.error_file(trial_id)) as f:
                return f.read()
        except OSError:
            return None

    def score_trial(self, trial):
        # A diverged run reports NaN accuracy; keras-tuner's nanmax over it
        # would only warn. It has no score.
        if trial_diverged(trial):
            trial.score = float("nan")
            trial.best_step = None
            return
        super().score_trial(trial)

    # ---------------------------------------------------------------- leases

    @keras_tuner.synchronized
    def expire_leases(self):
        """Reclaims the trials of silent workers; the chief calls this often."""
        self._expire_leases(time.monotonic())

    def _expire_leases(self, now):
        if self.worker_timeout is None:
            return
        for trial_id, lease in list(self._leases.items()):
            silent = now - lease.last_seen
            if silent <= self.worker_timeout:
                continue
            if lease.reserved:
                # Never started: back to the queue without counting an attempt.
                self._leases.pop(trial_id, None)
                continue
            self._release(trial_id)
            if lease.tuner_id is not None:
                self.tuner_ids.discard(lease.tuner_id)
                self._tuner_last_seen.pop(lease.tuner_id, None)
            trial = self.trials[trial_id]
            who = f"worker {lease.tuner_id}" if lease.tuner_id else "its worker"
            message = (
                f"{who} sent no heartbeat for {silent:.0f} s (--worker_timeout="
                f"{self.worker_timeout:g}) while running this trial"
            )
            print(f"[sweep] trial {trial_id} ({self.describe_trial(trial)}): {message}; reclaimed", flush=True)
            self._record_failure(trial, INVALID, message)
            self._save_trial(trial)
            self.save()
            self._display.on_trial_end(trial)
        for tuner_id, last_seen in list(self._tuner_last_seen.items()):
            idle = tuner_id not in self.ongoing_trials
            if idle and now - last_seen > self.worker_timeout and tuner_id in self.tuner_ids:
                # A worker that died while waiting for work: without this the
                # chief would wait for it forever before finishing.
                self.tuner_ids.discard(tuner_id)
                self._tuner_last_seen.pop(tuner_id)
                print(f"[sweep] worker {tuner_id} went silent while idle; no longer waiting for it", flush=True)

    # ----------------------------------------------------------- persistence

    # keras-tuner writes its JSON files in place: a process killed mid-write
    # would leave a truncated oracle.json or trial.json that no later run can
    # reload. These writes replace the file atomically instead.
    def save(self):
        write_json_atomic(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        write_json_atomic(os.path.join(self._get_trial_dir(trial.trial_id), "trial.json"), trial.get_state())

    def set_state(self, state):
        self._saved_ongoing = dict(state.get("ongoing_trials", {}))
        super().set_state(state)
        # The current command's space (its grid) describes new trials; old
        # trials keep theirs in their own trial.json.
        self.hyperparameters = self._space.copy()

    def reload(self):
        super().reload()
        self.reloaded = True
        self._recorded_complete = {i for i, t in self.trials.items() if t.status == COMPLETED}
        # keras-tuner's reload queues the trials left RUNNING for a retry;
        # this oracle finds them by status instead (and must not run one
        # twice through the queue).
        self._retry_queue = []
        if self.distributed:
            # A restarted chief: workers may still be training their trials.
            # Each keeps its trial (by tuner id) until it is silent for
            # worker_timeout; a worker restarted with the same id gets its
            # trial back at once.
            now = time.monotonic()
            for tuner_id, trial_id in self._saved_ongoing.items():
                trial = self.trials.get(trial_id)
                if trial is not None and trial.status == RUNNING:
                    self.ongoing_trials[tuner_id] = trial
                    self._leases[trial_id] = _Lease(tuner_id, now)
                    self.tuner_ids.add(tuner_id)
                    self._tuner_last_seen[tuner_id] = now
        self._saved_ongoing = {}

"""`SweepOracle`: keras-tuner's oracle for a sweep's plan, as transport.

The sweep's `scheduler.Scheduler` is the one owner of its trials: who
trains which point (leases, packs, idle-vs-stop), which failed attempt runs
again, and when the sweep gives up. keras-tuner carries its answers: trial
records (``tuner/trial_*/trial.json``), ``oracle.json``, the gRPC
chief/worker protocol and the `Tuner`'s search loop. keras-tuner's own
retries and failure stop are switched off by its public parameters
(``max_retries_per_trial=0``, ``max_consecutive_failed_trials=None``), and
the two methods where they live are replaced:

* `create_trial` asks the scheduler, whose answer depends on the asking
  worker (its lease, the seeds reserved for its pack). keras-tuner's would
  first hand out its retry queue, then ask `populate_space(trial_id)`,
  which is not told which worker asks.
* `end_trial` records the scheduler's verdict. keras-tuner's raises once
  trials fail in a row (on a chief: inside the gRPC handler, leaving the
  oracle half-updated), marks a diverged run's NaN score INVALID and queues
  retries.

What the sweep needs beyond keras-tuner's oracles, and why:

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
* **Failures stop, they do not crash**: after
  `SweepOptions.max_consecutive_failures` failed trials in a row the oracle
  stops handing out trials and records why.
* **Its own files**, written atomically (`write_trial`, `save`, `reload`;
  keras-tuner writes them in place), in keras-tuner's formats.
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

import glob
import os
import warnings
from typing import Optional

import keras_tuner
from keras_tuner.engine.trial import Trial, TrialStatus

from tf_selectivity.core import compat
from tf_selectivity.core.files import read_json, write_json_atomic
from tf_selectivity.core.progress import Progress
from tf_selectivity.sweeps import plans
from tf_selectivity.sweeps import scheduler as scheduling
from tf_selectivity.sweeps.layout import format_float, run_name
from tf_selectivity.sweeps.options import SweepOptions

__all__ = ["SweepOracle", "trial_point", "trial_diverged", "trial_pack_seeds", "PACK_VALUE"]

RUNNING = TrialStatus.RUNNING
COMPLETED = TrialStatus.COMPLETED
FAILED = TrialStatus.FAILED
INVALID = TrialStatus.INVALID
IDLE = TrialStatus.IDLE
STOPPED = TrialStatus.STOPPED

# keras-tuner's trial ids: the number of trials so far, zero-padded to the
# width of `str(max_trials)`, "None" (4) for an oracle without a limit.
_TRIAL_ID_DIGITS = 4


def trial_diverged(trial) -> bool:
    """Whether a completed trial's run diverged (it reports `diverged_epoch`)."""
    return trial.metrics.exists("diverged_epoch")


def trial_point(trial) -> plans.Point:
    """The (leaky slope, alpha, seed, window) of a trial."""
    values = trial.hyperparameters.values
    return plans.Point.make(values["leaky_slope"], values["alpha"], values["seed"], values.get("alpha_window"))


# The trial value that lists the seeds its worker trains together (its own
# first), e.g. "0,1,2"; a trial without it trains its own seed alone.
PACK_VALUE = "packed_seeds"


def trial_pack_seeds(values) -> list:
    """The seeds a trial's worker trains together, its own first."""
    own = int(values["seed"])
    listed = [int(s) for s in str(values.get(PACK_VALUE) or "").split(",") if s.strip()]
    return [own] + [seed for seed in listed if seed != own]


class SweepDisplay:
    """One line per trial start and end, with the sweep's progress.

    keras-tuner's display prints a table of every hyperparameter per trial;
    here the settings are the same for every trial, so only the point and
    the results are shown. (keras-tuner's own is muted: `oracle.verbose = 0`.)

    Args:
        oracle: the `SweepOracle` shown.
        verbose: 0: silent.
    """

    def __init__(self, oracle, verbose: int = 1):
        self.oracle = oracle
        self.verbose = verbose
        self._trials = None  # the sweep's `Progress`, from the first trial on

    def _progress(self, done: int, total) -> Progress:
        """The sweep's trials done (of the plan's total) since its first trial started here, those done
        before skipped: the time left is this session's rate times the trials left."""
        if self._trials is None:
            # Lines only (`nested`): each trial's training shows its own progress.
            self._trials = Progress("Sweep", total, unit="trial", nested=True)
            self._trials.skip(done)
        self._trials.update_to(done, total)
        return self._trials

    def on_trial_begin(self, trial):
        if self.verbose < 1:
            return
        if self._trials is None:
            self._progress(*self.oracle.progress())
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
        timing = f" ({self._progress(done, total).timing()})"
        description = self.oracle.describe_trial(trial)
        if trial.status == COMPLETED and trial_diverged(trial):
            epoch = int(trial.metrics.get_last_value("diverged_epoch"))
            print(
                f"[sweep {count}] trial {trial.trial_id} diverged in epoch {epoch}: {description}: "
                f"recorded as diverged (no metrics){timing}",
                flush=True,
            )
            return
        if trial.status == COMPLETED:
            metrics = {name: trial.metrics.get_last_value(name) for name in trial.metrics.metrics}
            print(
                f"[sweep {count}] trial {trial.trial_id} done: {description}: "
                f"val_accuracy {_fmt(metrics.get('val_accuracy'))}, "
                f"test_accuracy {_fmt(metrics.get('test_accuracy'))}, "
                f"test mean SI {_fmt(metrics.get('test_mean_selectivity'))}{timing}",
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


class SweepOracle(compat.OracleTrialWrites, keras_tuner.Oracle):
    """Hands out the points of a sweep plan as keras-tuner trials.

    Its files live where `use_paths` says (`SweepTuner` calls it before
    keras-tuner may reload the oracle).

    Args:
        plan: a `GridPlan` or `MarginSearchPlan`.
        settings_values: the sweep's shared settings as keras-tuner values
            (`settings.settings_to_values`); every trial carries them.
        options: a `SweepOptions`: the retry limits, for the scheduler
            (default: their defaults).
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
        options: Optional[SweepOptions] = None,
        worker_timeout: Optional[float] = None,
        error_file=None,
        pack_replicates: int = 1,
    ):
        if int(pack_replicates) < 1:
            raise ValueError(f"pack_replicates must be at least 1; got {pack_replicates}")
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
        windows = [w for w in getattr(plan, "alpha_windows", (None,)) if w is not None]
        if windows:  # declared only where there are windows: older sweeps' spaces stay as they were
            space.Choice("alpha_window", windows, ordered=False)
        super().__init__(
            objective=keras_tuner.Objective("val_accuracy", direction="max"),
            hyperparameters=space,
            # The scheduler owns retries and the failure stop: keras-tuner's
            # own are off.
            max_retries_per_trial=0,
            max_consecutive_failed_trials=None,
        )
        self.plan = plan
        self.settings_values = dict(settings_values)
        self.worker_timeout = worker_timeout
        self.error_file = error_file
        self.pack_replicates = int(pack_replicates)
        self.scheduler = scheduling.Scheduler(
            options, pack_size=self.pack_replicates, worker_timeout=worker_timeout
        )
        self.paths = None
        self.verbose = 0  # keras-tuner's table per trial; `display` prints instead
        self.display = SweepDisplay(self)
        self.reloaded = False
        self._space = space
        self._stop_told = False

    def use_paths(self, paths) -> None:
        """Where the oracle's files are (a `layout.SweepPaths`)."""
        self.paths = paths

    # ---------------------------------------------------------------- queries

    @property
    def distributed(self) -> bool:
        return self.worker_timeout is not None

    @property
    def stop_reason(self) -> Optional[str]:
        """Why the oracle stopped handing out trials this session, or None."""
        stop = self.scheduler.stop
        if stop is None:
            return None
        last = self.trials_by_point()[stop.point]
        return (
            f"{stop.count} trials failed in a row; the last one "
            f"({self.describe_trial(last)}): {_last_line(stop.message)}"
        )

    def describe_trial(self, trial) -> str:
        point = trial_point(trial)
        values = trial.hyperparameters.values
        slope = f"leaky_slope={format_float(point.leaky_slope)} " if values.get("activation") == "leaky_relu" else ""
        window = f" alpha_window={point.alpha_window}" if point.alpha_window else ""
        return f"{slope}alpha={format_float(point.alpha)}{window} seed={point.seed} ({self.run_name(trial)})"

    def run_name(self, trial) -> str:
        values = trial.hyperparameters.values
        point = trial_point(trial)
        return run_name(values["model"], values["activation"], point.leaky_slope, point.alpha, point.seed,
                        point.alpha_window)

    def trial_holder(self, trial_id) -> Optional[str]:
        trial = self.trials.get(trial_id)
        return self.scheduler.holder(trial_point(trial)) if trial is not None else None

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
            elif trial.status == FAILED and self.scheduler.failed_this_session(point):
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
        if self.scheduler.busy() or self.ongoing_trials:
            return False
        return self.scheduler.stop is not None or self.plan_step().finished

    @keras_tuner.synchronized
    def trials_waiting_for_a_worker(self) -> int:
        """Trials that remain while no worker is connected (0 otherwise)."""
        if self.scheduler.busy() or self.scheduler.stop is not None:
            return 0
        return len(self.plan_step().needed)

    # ------------------------------------------------------------ trial flow

    @keras_tuner.synchronized
    def create_trial(self, tuner_id):
        """The scheduler's answer for `tuner_id`, as a trial.

        A point that has a trial (a retry, a reserved pack seed, the trial
        of a restarted worker, a trial cut short in an earlier session) is
        run again under its id; a new point gets a new trial, numbered as
        keras-tuner numbers them. IDLE and STOPPED are trials of that
        status that are not recorded.
        """
        self._expire()
        step = self.plan_step()
        assignment = self.scheduler.assign(tuner_id, None if step.finished else step.needed)
        if assignment.kind in (scheduling.IDLE, scheduling.STOP):
            self._sync()
            status = IDLE if assignment.kind == scheduling.IDLE else STOPPED
            hyperparameters = self._space.copy()
            hyperparameters.values = {}
            return Trial(hyperparameters=hyperparameters, trial_id=self._next_trial_id(), status=status)
        by_point = self.trials_by_point()
        if assignment.kind == scheduling.HELD:
            trial = by_point[assignment.point]
            self._sync()
            self.display.on_trial_begin(trial)
            return trial
        trials = [by_point.get(point) or self._new_trial(point) for point in (assignment.point, *assignment.mates)]
        return self._hand_out(trials[0], trials[1:])

    def _next_trial_id(self) -> str:
        return str(len(self.trials)).zfill(_TRIAL_ID_DIGITS)

    def _new_trial(self, point) -> Trial:
        """A new trial of `point`, recorded under the next id."""
        hyperparameters = self._space.copy()
        hyperparameters.values = {
            **self.settings_values,
            "leaky_slope": point.leaky_slope,
            "alpha": point.alpha,
            "seed": point.seed,
            **({"alpha_window": point.alpha_window} if point.alpha_window else {}),
        }
        trial = Trial(hyperparameters=hyperparameters, trial_id=self._next_trial_id(), status=RUNNING)
        self.trials[trial.trial_id] = trial
        return trial

    def _hand_out(self, trial, mates):
        """Runs `trial` on the worker the scheduler chose, with `mates` (the
        trials of its pack's reserved seeds) recorded for that worker."""
        trial.status = RUNNING
        trial.hyperparameters.values[PACK_VALUE] = _pack_value(trial_point(trial), mates)
        for started in (trial, *mates):
            if started.trial_id not in self.start_order:
                self.start_order.append(started.trial_id)
            self.write_trial(started)
        self._sync()
        self.save()
        self.display.on_trial_begin(trial)
        return trial

    def _sync(self) -> None:
        """keras-tuner's view of who runs what (``ongoing_trials``,
        ``tuner_ids``: oracle.json, the chief's exit) from the scheduler's."""
        by_point = self.trials_by_point()
        self.ongoing_trials = {
            tuner_id: by_point[point] for tuner_id, point in self.scheduler.running().items() if point in by_point
        }
        self.tuner_ids = set(self.scheduler.workers)

    def _renew(self, trial_id):
        trial = self.trials.get(trial_id)
        if trial is not None:
            self.scheduler.renew(trial_point(trial))

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

    @keras_tuner.synchronized
    def end_trial(self, trial):
        """Records how `trial` ended, as the scheduler decides.

        keras-tuner's `end_trial` is not called: it raises once trials fail
        in a row (on a chief, inside the gRPC handler), marks a diverged
        trial's NaN score INVALID, and queues retries in its own queue.
        """
        stored = self.trials.get(trial.trial_id)
        if stored is None:
            return
        message = None if trial.status == COMPLETED else trial.message or self._read_error_file(trial.trial_id)
        result = self.scheduler.end(trial_point(stored), trial.status, message)
        self._sync()
        if result == scheduling.DUPLICATE:
            stored.status = COMPLETED
            return  # a second report of a finished trial (see module doc)
        if result == scheduling.COMPLETED:
            stored.status = COMPLETED
            stored.message = None
            self.score_trial(stored)
        else:
            stored.status = result
            stored.message = message
        if result != INVALID:
            self.end_order.append(stored.trial_id)
        self._say_if_stopped()
        self.write_trial(stored)
        self.save()
        self.display.on_trial_end(stored)

    def _say_if_stopped(self) -> None:
        if self.scheduler.stop is not None and not self._stop_told:
            self._stop_told = True
            print(f"[sweep] stopping: {self.stop_reason}", flush=True)

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
        self._expire()

    def _expire(self):
        reclaims, silent_workers = self.scheduler.expire()
        by_point = self.trials_by_point() if reclaims else {}
        for reclaim in reclaims:
            trial = by_point[reclaim.point]
            print(f"[sweep] trial {trial.trial_id} ({self.describe_trial(trial)}): {reclaim.message}; reclaimed", flush=True)
            trial.status = reclaim.status
            trial.message = reclaim.message
            if reclaim.status == FAILED:
                self.end_order.append(trial.trial_id)
            self._say_if_stopped()
            self._sync()
            self.write_trial(trial)
            self.save()
            self.display.on_trial_end(trial)
        for tuner_id in silent_workers:
            print(f"[sweep] worker {tuner_id} went silent while idle; no longer waiting for it", flush=True)
        self._sync()

    # ----------------------------------------------------------- persistence

    # keras-tuner writes its JSON files in place: a process killed mid-write
    # would leave a truncated oracle.json or trial.json that no later run can
    # reload. These writes replace the file atomically instead; the formats
    # are keras-tuner's.
    def write_trial(self, trial) -> None:
        """Writes ``trial_<id>/trial.json`` (also for keras-tuner's own writes)."""
        directory = self._require_paths().trial_dir(trial.trial_id)
        os.makedirs(directory, exist_ok=True)
        write_json_atomic(os.path.join(directory, "trial.json"), trial.get_state())

    def save(self):
        paths = self._require_paths()
        os.makedirs(paths.project, exist_ok=True)
        write_json_atomic(paths.oracle_state, self.get_state())

    def set_state(self, state):
        super().set_state(state)
        # The current command's space (its grid) describes new trials; old
        # trials keep theirs in their own trial.json.
        self.hyperparameters = self._space.copy()

    def reload(self):
        """Reads the trials and oracle.json back, as keras-tuner's `reload` does.

        Trials found RUNNING run again (by status, in plan order). A
        restarted chief (distributed mode) lets each worker keep its trial
        until it is silent for `worker_timeout`; a worker restarted with the
        same id gets it back at once.
        """
        paths = self._require_paths()
        for path in sorted(glob.glob(os.path.join(paths.project, "trial_*", "trial.json"))):
            trial = Trial.load(path)
            self.trials[trial.trial_id] = trial
        state = read_json(paths.oracle_state)
        self.set_state(state)
        self.reloaded = True
        self.scheduler.mark_complete(trial_point(t) for t in self.trials.values() if t.status == COMPLETED)
        if self.distributed:
            for tuner_id, trial_id in state["ongoing_trials"].items():
                trial = self.trials.get(trial_id)
                if trial is not None and trial.status == RUNNING:
                    self.scheduler.resume(trial_point(trial), tuner_id)
        # Who runs what is the scheduler's: a local sweep's cut trial is
        # handed out again when the plan needs it.
        self._sync()

    def _require_paths(self):
        if self.paths is None:
            raise RuntimeError("SweepOracle.use_paths was not called: the oracle does not know its directory")
        return self.paths


def _pack_value(point, mates) -> str:
    return ",".join(str(seed) for seed in [point.seed] + [trial_point(mate).seed for mate in mates])

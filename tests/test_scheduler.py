"""The sweep's `Scheduler` (leases, packs, retries, the failure stop) on a
fake clock, `SweepOracle`'s reload of finished and running trials, and the
scheduler as the one owner of retries inside keras-tuner's own search loop."""

import copy

import pytest

from tf_selectivity.sweeps import plans
from tf_selectivity.sweeps import scheduler as s
from tf_selectivity.sweeps.options import SweepOptions

# keras-tuner 1.4.8's `synchronized` uses threading's deprecated camelCase names.
pytestmark = pytest.mark.filterwarnings(
    "ignore:currentThread:DeprecationWarning", "ignore:getName:DeprecationWarning"
)


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


def P(alpha, seed, slope=0.0):
    return plans.Point.make(slope, alpha, seed)


def make(clock=None, max_retries=None, max_consecutive_failures=None, **kwargs):
    """A scheduler on a fake clock; retry limits given here, others left at their defaults."""
    limits = {"max_retries": max_retries, "max_consecutive_failures": max_consecutive_failures}
    options = SweepOptions(**{name: value for name, value in limits.items() if value is not None})
    return s.Scheduler(options, clock=clock or FakeClock(), **kwargs)


def test_statuses_are_keras_tuners():
    from keras_tuner.engine.trial import TrialStatus

    assert (s.COMPLETED, s.INVALID, s.FAILED) == (TrialStatus.COMPLETED, TrialStatus.INVALID, TrialStatus.FAILED)


def test_each_needed_point_goes_to_one_worker_then_idle_then_stop():
    sched = make()
    needed = [P(0, 0), P(-1, 0)]
    assert sched.assign("a", needed) == s.Assignment(s.RUN, P(0, 0))
    assert sched.assign("b", needed) == s.Assignment(s.RUN, P(-1, 0))
    assert sched.assign("c", needed).kind == s.IDLE  # both leased: c may still have to take one over
    assert sched.running() == {"a": P(0, 0), "b": P(-1, 0)} and sched.workers == {"a", "b", "c"}
    assert sched.assign("a", needed) == s.Assignment(s.HELD, P(0, 0))  # a restarted: its point back
    assert sched.end(P(0, 0), s.COMPLETED) == s.COMPLETED
    assert sched.end(P(0, 0), s.COMPLETED) == s.DUPLICATE
    assert sched.assign("a", None).kind == s.STOP and "a" not in sched.workers
    assert sched.busy()  # b's lease, c
    sched.end(P(-1, 0), s.COMPLETED)
    for tuner_id in "bc":
        assert sched.assign(tuner_id, None).kind == s.STOP
    assert not sched.busy()


def test_a_lease_expires_after_worker_timeout_of_silence_and_counts_an_attempt():
    clock = FakeClock()
    sched = make(clock, worker_timeout=10.0, max_retries=1)
    needed = [P(0, 0), P(0, 1)]
    sched.assign("alive", needed)
    sched.assign("dies", needed)
    clock.advance(6)
    sched.renew(P(0, 0))  # alive's heartbeat
    clock.advance(4.5)  # dies: 10.5 s silent; alive: 4.5 s
    reclaims, silent = sched.expire()
    assert reclaims == [
        s.Reclaim(P(0, 1), "dies", s.INVALID,
                  "worker dies sent no heartbeat for 10 s (--worker_timeout=10) while running this trial")
    ]
    assert silent == [] and sched.workers == {"alive"} and sched.running() == {"alive": P(0, 0)}
    assert sched.assign("other", needed) == s.Assignment(s.RUN, P(0, 1))  # taken over
    clock.advance(11)
    sched.renew(P(0, 0))
    reclaims, _ = sched.expire()
    assert [(r.point, r.status) for r in reclaims] == [(P(0, 1), s.FAILED)]  # second attempt: no retries left
    # "dies" was alive after all and reports first: its success counts.
    assert sched.end(P(0, 1), s.COMPLETED) == s.COMPLETED
    assert sched.is_complete(P(0, 1)) and sched.end(P(0, 1), s.COMPLETED) == s.DUPLICATE


def test_an_idle_worker_that_goes_silent_is_forgotten_and_no_timeout_means_no_expiry():
    clock = FakeClock()
    sched = make(clock, worker_timeout=5.0)
    sched.assign("busy", [P(0, 0)])
    assert sched.assign("idle", [P(0, 0)]).kind == s.IDLE
    clock.advance(3)
    sched.renew(P(0, 0))
    clock.advance(3)
    assert sched.expire() == ([], ["idle"])
    assert sched.workers == {"busy"}
    local = make(clock)  # worker_timeout None
    local.assign("tuner0", [P(0, 0)])
    clock.advance(1e9)
    assert local.expire() == ([], []) and local.running() == {"tuner0": P(0, 0)}


def test_packs_reserve_seeds_of_one_alpha_for_the_worker_and_release_them_on_failure():
    clock = FakeClock()
    sched = make(clock, pack_size=3, worker_timeout=10.0)
    needed = [P(0, 0), P(-1, 0), P(0, 1), P(-1, 1), P(0, 2), P(0.5, 0, slope=0.1)]
    a = sched.assign("a", needed)
    assert a == s.Assignment(s.RUN, P(0, 0), (P(0, 1), P(0, 2)))
    b = sched.assign("b", needed)
    assert b == s.Assignment(s.RUN, P(-1, 0), (P(-1, 1),))
    assert sched.holder(P(0, 2)) == "a" and sched.running() == {"a": P(0, 0), "b": P(-1, 0)}
    # Another leaky slope is another pack.
    assert sched.assign("c", needed) == s.Assignment(s.RUN, P(0.5, 0, slope=0.1))
    assert sched.assign("d", needed).kind == s.IDLE
    # a's heartbeat (naming its lead point only) keeps its reservations.
    for _ in range(3):
        clock.advance(6)
        sched.renew(P(0, 0))
        sched.renew(P(-1, 0))
        sched.renew(P(0.5, 0, slope=0.1))
    assert sched.expire() == ([], ["d"])
    assert sched.end(P(0, 0), s.COMPLETED) == s.COMPLETED
    needed.remove(P(0, 0))
    # a gets its reserved seeds first, one at a time.
    assert sched.assign("a", needed) == s.Assignment(s.RUN, P(0, 1))
    # b's pack fails: its reserved seed goes back to the queue.
    assert sched.end(P(-1, 0), s.INVALID, "boom") == s.INVALID
    assert not sched.is_leased(P(-1, 1))
    assert sched.assign("e", needed) == s.Assignment(s.RUN, P(-1, 0), (P(-1, 1),))


def test_a_reservation_that_expires_or_is_no_longer_needed_counts_no_attempt():
    clock = FakeClock()
    sched = make(clock, pack_size=2, worker_timeout=10.0, max_retries=1)
    needed = [P(0, 0), P(0, 1)]
    sched.assign("w", needed)
    clock.advance(11)  # w dies
    reclaims, _ = sched.expire()
    assert [r.point for r in reclaims] == [P(0, 0)] and not sched.is_leased(P(0, 1))
    # P(0, 1) never started: its first real failure is its first attempt (retried).
    assert sched.assign("x", [P(0, 1)]) == s.Assignment(s.RUN, P(0, 1))
    assert sched.end(P(0, 1), s.INVALID) == s.INVALID
    # A reservation of a point the plan no longer needs (a search that moved
    # on) is dropped at the next request, so that the sweep can end.
    other = make(clock, pack_size=2)
    other.assign("w", needed)
    assert other.assign("v", [P(0, 0)]).kind == s.IDLE and not other.is_leased(P(0, 1))
    other.end(P(0, 0), s.COMPLETED)
    assert other.assign("w", None).kind == s.STOP and other.assign("v", None).kind == s.STOP
    assert not other.busy()


def test_retries_then_failure_and_stop_after_consecutive_failures_of_this_session():
    sched = make(max_retries=1, max_consecutive_failures=2)
    points = [P(0, 0), P(-1, 0), P(-2, 0), P(-3, 0)]
    sched.assign("w", points)
    assert sched.end(P(0, 0), s.INVALID, "first") == s.INVALID  # retried once
    sched.assign("w", points)
    assert sched.end(P(0, 0), s.INVALID, "second") == s.FAILED
    assert sched.failed_this_session(P(0, 0)) and sched.stop is None
    sched.assign("w", points[1:])
    assert sched.end(P(-1, 0), s.COMPLETED) == s.COMPLETED  # breaks the run of failures
    sched.assign("w", points[2:])
    assert sched.end(P(-2, 0), s.FAILED, "Traceback\nValueError: bad") == s.FAILED  # no retry
    assert sched.stop is None
    sched.assign("w", points[3:])
    assert sched.end(P(-3, 0), s.FAILED, "last") == s.FAILED
    assert sched.stop == s.Stop(2, P(-3, 0), "last")
    assert sched.assign("w", points[3:]).kind == s.STOP and not sched.busy()


def test_restored_state_complete_points_and_leases_of_a_restarted_chief():
    clock = FakeClock()
    sched = make(clock, worker_timeout=10.0)
    sched.mark_complete([P(0, 0)])
    sched.resume(P(-1, 0), "w1")
    assert sched.end(P(0, 0), s.COMPLETED) == s.DUPLICATE
    assert sched.assign("w1", [P(-1, 0)]) == s.Assignment(s.HELD, P(-1, 0))
    sched.resume(P(-2, 0), "w2")
    clock.advance(11)
    sched.renew(P(-1, 0))
    reclaims, _ = sched.expire()
    assert [(r.point, r.tuner_id) for r in reclaims] == [(P(-2, 0), "w2")] and sched.workers == {"w1"}


# ------------------------------------------------------- the oracle's reload


def _oracle(directory, plan, tuner_class=None, **kwargs):
    from tf_selectivity.sweeps.oracle import SweepOracle
    from tf_selectivity.sweeps.settings import settings_to_values, sweep_settings
    from tf_selectivity.sweeps.tuner import SweepTuner
    from tf_selectivity.training import TrainConfig

    settings = sweep_settings(TrainConfig(model="resnet8", epochs=1, output_dir="unused"))
    return (tuner_class or SweepTuner)(SweepOracle(plan, settings_to_values(settings), **kwargs), str(directory))


def test_a_restarted_chief_reloads_finished_trials_and_lets_workers_keep_running_ones(tmp_path):
    import json
    import os

    plan = plans.GridPlan([0, -1, -2], [0])
    tuner = _oracle(tmp_path, plan, worker_timeout=300)
    oracle = tuner.oracle
    done = oracle.create_trial("w0")
    oracle.update_trial(done.trial_id, {"val_accuracy": 0.5})
    report = copy.deepcopy(done)
    report.status = "COMPLETED"
    oracle.end_trial(report)
    running = oracle.create_trial("w1")
    tuner.save()  # the chief dies here; w1 keeps training
    with open(os.path.join(tuner.paths.oracle_state)) as f:
        assert json.load(f)["ongoing_trials"] == {"w1": running.trial_id}

    again = _oracle(tmp_path, plan, worker_timeout=300).oracle
    assert again.reloaded and again.trials[done.trial_id].status == "COMPLETED"
    assert again.ongoing_trials["w1"].trial_id == running.trial_id and again.tuner_ids == {"w1"}
    assert again.trial_holder(running.trial_id) == "w1"
    # A new worker gets the next point, not w1's; w1 asking again gets its own.
    assert again.create_trial("w2").trial_id == "0002"
    assert again.create_trial("w1").trial_id == running.trial_id
    # The finished trial's late duplicate report changes nothing.
    again.end_trial(report)
    assert again.trials[done.trial_id].status == "COMPLETED" and again.progress() == (1, 3)
    # keras-tuner's retry queue stays out of it: nothing is re-run through it.
    assert again.get_state()["retry_queue"] == []


# ------------------------------------------- retries in keras-tuner's loop


class Killed(BaseException):
    """Ends a search the way a kill does: no `end_trial`, nothing saved after."""


def _scripted_tuner(failures):
    """A `SweepTuner` class whose trials train nothing and follow a script.

    Args:
        failures: {alpha: [exception or None, ...]}: attempt i of that
            alpha's trial raises ``failures[alpha][i]`` (None or past the
            end: it succeeds). Attempts are counted in ``attempts``.
    """
    from tf_selectivity.sweeps.tuner import SweepTuner

    class Scripted(SweepTuner):
        attempts = []  # alpha of each attempt, in order, over every session

        def run_trial(self, trial, *args, **kwargs):
            alpha = trial.hyperparameters.values["alpha"]
            script = failures.get(alpha, [])
            attempt = self.attempts.count(alpha)
            self.attempts.append(alpha)
            if attempt < len(script) and script[attempt] is not None:
                raise script[attempt]
            return {"val_accuracy": 0.5}

    return Scripted


def test_a_failed_trial_is_retried_under_its_id_up_to_max_retries_by_the_scheduler_alone(tmp_path):
    """keras-tuner's `search` marks an attempt that raises INVALID; the
    scheduler runs the trial again (same id) until `max_retries` more
    attempts failed, then FAILED; keras-tuner's own retry machinery is off."""
    import keras_tuner

    Scripted = _scripted_tuner({
        0.0: [RuntimeError("flaky")],  # fails once, then succeeds
        -1.0: [RuntimeError("broken")] * 5,  # never succeeds
        -2.0: [keras_tuner.errors.FailedTrialError("bad input")],  # not worth retrying
    })
    plan = plans.GridPlan([0, -1, -2, -3], [0])
    tuner = _oracle(tmp_path, plan, Scripted, options=SweepOptions(max_retries=2, max_consecutive_failures=3))
    oracle = tuner.oracle
    assert (oracle.max_retries_per_trial, oracle.max_consecutive_failed_trials) == (0, None)
    tuner.search()
    assert Scripted.attempts == [0.0, 0.0, -1.0, -1.0, -1.0, -2.0, -3.0]
    assert [trial_id for trial_id, _ in tuner.trials_run] == ["0000", "0000", "0001", "0001", "0001", "0002", "0003"]
    assert {t.trial_id: t.status for t in oracle.trials.values()} == {
        "0000": "COMPLETED", "0001": "FAILED", "0002": "FAILED", "0003": "COMPLETED",
    }
    assert oracle.get_state()["retry_queue"] == [] and oracle.stop_reason is None


def test_failures_in_a_row_end_keras_tuners_search_loop_with_a_reason(tmp_path):
    Scripted = _scripted_tuner({alpha: [RuntimeError(f"alpha {alpha} failed")] * 9 for alpha in (0.0, -1.0)})
    plan = plans.GridPlan([0, -1, -2], [0])
    tuner = _oracle(tmp_path, plan, Scripted, options=SweepOptions(max_retries=1, max_consecutive_failures=2))
    tuner.search()  # returns: the oracle answered STOPPED instead of raising
    assert Scripted.attempts == [0.0, 0.0, -1.0, -1.0]  # alpha -2 never ran
    assert "2 trials failed in a row" in tuner.oracle.stop_reason
    assert "RuntimeError: alpha -1.0 failed" in tuner.oracle.stop_reason
    assert tuner.oracle.finished()


def test_a_search_killed_mid_trial_resumes_only_unfinished_trials_under_their_ids(tmp_path):
    """Session 1: alpha 0 completes, alpha -1 fails for the session (retries
    spent), the process dies while training alpha -2. Session 2 (the command
    run again) reruns alpha -2 and gives alpha -1 fresh retries; alpha 0 is
    not run again and no trial is duplicated."""
    Scripted = _scripted_tuner({-1.0: [RuntimeError("first session")] * 2, -2.0: [Killed()]})
    plan = plans.GridPlan([0, -1, -2, -3], [0])
    options = SweepOptions(max_retries=1, max_consecutive_failures=3)
    first = _oracle(tmp_path, plan, Scripted, options=options)
    with pytest.raises(Killed):
        first.search()
    assert Scripted.attempts == [0.0, -1.0, -1.0, -2.0]

    again = _oracle(tmp_path, plan, Scripted, options=options)
    oracle = again.oracle
    assert oracle.reloaded and oracle.progress() == (1, 4)
    again.search()
    assert Scripted.attempts[4:] == [-1.0, -2.0, -3.0]
    assert [trial_id for trial_id, _ in again.trials_run] == ["0001", "0002", "0003"]
    assert sorted(oracle.trials) == ["0000", "0001", "0002", "0003"]  # one trial per point
    assert {t.status for t in oracle.trials.values()} == {"COMPLETED"} and oracle.progress() == (4, 4)

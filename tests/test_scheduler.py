"""The sweep's `Scheduler` (leases, packs, retries, the failure stop) on a
fake clock, and `SweepOracle`'s reload of finished and running trials."""

import copy

import pytest

from tf_selectivity.sweeps import plans
from tf_selectivity.sweeps import scheduler as s

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


def make(clock=None, **kwargs):
    return s.Scheduler(clock=clock or FakeClock(), **kwargs)


@pytest.mark.core
def test_statuses_are_keras_tuners():
    from keras_tuner.engine.trial import TrialStatus

    assert (s.COMPLETED, s.INVALID, s.FAILED) == (TrialStatus.COMPLETED, TrialStatus.INVALID, TrialStatus.FAILED)


@pytest.mark.core
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


@pytest.mark.core
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


@pytest.mark.core
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


@pytest.mark.core
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


@pytest.mark.core
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


@pytest.mark.core
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


@pytest.mark.core
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


def _oracle(directory, plan, **kwargs):
    from tf_selectivity.sweeps.oracle import SweepOracle
    from tf_selectivity.sweeps.settings import settings_to_values, sweep_settings
    from tf_selectivity.sweeps.tuner import SweepTuner
    from tf_selectivity.training import TrainConfig

    settings = sweep_settings(TrainConfig(model="resnet8", epochs=1, output_dir="unused"))
    return SweepTuner(SweepOracle(plan, settings_to_values(settings), **kwargs), str(directory))


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

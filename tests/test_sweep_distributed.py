"""keras-tuner's distributed mode, for real: a chief and workers on 127.0.0.1.

Every process is a `python -m tf_selectivity.sweep` subprocess with
keras-tuner's environment variables; every test kills what it started.
"""

import contextlib
import glob
import json
import os
import re
import signal
import socket
import subprocess

import pandas as pd
import pytest

from conftest import REPO, error_lines
from test_sweep import run_sweep_cli, sweep_command, train_sessions, trial_records, wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """Starts sweep processes with keras-tuner's variables; kills them all on exit."""

    def __init__(self, tmp_path, args):
        self.tmp_path = tmp_path
        self.args = args
        self.port = free_port()
        self.processes = {}

    def start(self, tuner_id):
        env = {
            **os.environ,
            "KERASTUNER_TUNER_ID": tuner_id,
            "KERASTUNER_ORACLE_IP": "127.0.0.1",
            "KERASTUNER_ORACLE_PORT": str(self.port),
        }
        log = open(self.log_path(tuner_id), "w")
        self.processes[tuner_id] = subprocess.Popen(
            sweep_command(*self.args), stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env
        )
        log.close()
        return self.processes[tuner_id]

    def log_path(self, tuner_id):
        return self.tmp_path / f"{tuner_id}.log"

    def log(self, tuner_id) -> str:
        return self.log_path(tuner_id).read_text()

    def wait(self, tuner_id, timeout):
        return self.processes[tuner_id].wait(timeout=timeout)

    def kill_all(self):
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)


@contextlib.contextmanager
def cluster(tmp_path, args):
    running = Cluster(tmp_path, args)
    try:
        yield running
    finally:
        running.kill_all()


def _started_trials(chief_log: str) -> list:
    """(trial id, tuner id, run name) of every trial start the chief logged."""
    return re.findall(r"trial (\d+) starts on (\S+): .*\((\S+)\)", chief_log)


def test_chief_and_two_workers_run_every_trial_exactly_once(tmp_path):
    out = tmp_path / "sweep"
    args = [f"--output_dir={out}", "--alphas=0,-1", "--seeds=0,1", "--epochs=1", "--verbose=0", "--chief_timeout=120"]
    with cluster(tmp_path, args) as processes:
        processes.start("chief")
        processes.start("tuner0")
        processes.start("tuner1")
        codes = {name: processes.wait(name, timeout=300) for name in ("tuner0", "tuner1", "chief")}
    assert codes == {"chief": 0, "tuner0": 0, "tuner1": 0}, processes.log("chief")[-3000:]
    records = trial_records(out)
    assert [r["status"] for r in records] == ["COMPLETED"] * 4
    points = {(r["hyperparameters"]["values"]["alpha"], r["hyperparameters"]["values"]["seed"]) for r in records}
    assert points == {(0.0, 0), (-1.0, 0), (0.0, 1), (-1.0, 1)}
    # Each trial was handed out once, to one worker, and trained once.
    started = _started_trials(processes.log("chief"))
    assert sorted(trial_id for trial_id, _, _ in started) == ["0000", "0001", "0002", "0003"]
    assert {tuner for _, tuner, _ in started} <= {"tuner0", "tuner1"}
    ran = [re.findall(r"\[worker \S+\] trial (\d+) .*: COMPLETED", processes.log(w)) for w in ("tuner0", "tuner1")]
    assert sorted(ran[0] + ran[1]) == ["0000", "0001", "0002", "0003"]
    for run in glob.glob(str(out / "runs" / "*")):
        assert os.path.exists(os.path.join(run, "summary.json"))
        assert train_sessions(run) == 1
    assert len(glob.glob(str(out / "runs" / "*"))) == 4
    table = pd.read_csv(out / "trials.csv")  # aggregated by the chief
    assert len(table) == 4 and (table.status == "COMPLETED").all()
    assert "4/4 trials complete" in processes.log("chief")


@pytest.mark.backends
@pytest.mark.jax_only  # seeds are packed in one program on JAX only
def test_workers_train_the_seeds_of_an_alpha_as_one_pack_over_grpc(tmp_path):
    """The chief reserves both seeds of an alpha for the worker that gets it:
    each worker trains one pack, every trial is reported once and every run
    was trained once, packed."""
    out = tmp_path / "sweep"
    args = [
        f"--output_dir={out}", "--alphas=0,-1", "--seeds=0,1", "--epochs=1", "--verbose=0",
        "--pack_replicates=2", "--chief_timeout=120",
    ]
    with cluster(tmp_path, args) as processes:
        processes.start("chief")
        processes.start("tuner0")
        processes.start("tuner1")
        codes = {name: processes.wait(name, timeout=300) for name in ("tuner0", "tuner1", "chief")}
    chief_log = processes.log("chief")
    assert codes == {"chief": 0, "tuner0": 0, "tuner1": 0}, chief_log[-3000:]
    assert [r["status"] for r in trial_records(out)] == ["COMPLETED"] * 4
    started = _started_trials(chief_log)
    assert sorted(trial_id for trial_id, _, _ in started) == ["0000", "0001", "0002", "0003"]
    # Both seeds of an alpha went to the worker that trained them together.
    by_run = {run: tuner for _, tuner, run in started}
    for alpha in ("alpha0", "alpha-1"):
        assert by_run[f"resnet8_relu_{alpha}_seed0"] == by_run[f"resnet8_relu_{alpha}_seed1"], chief_log[-3000:]
    assert chief_log.count("packed with seed 1") == 2
    for run in glob.glob(str(out / "runs" / "*")):
        with open(os.path.join(run, "summary.json")) as f:
            assert json.load(f)["packed_replicates"] == 2
        assert train_sessions(run) == 1
    assert len(pd.read_csv(out / "trials.csv")) == 4


def test_a_killed_worker_loses_its_trial_to_another_worker(tmp_path):
    out = tmp_path / "sweep"
    args = [
        f"--output_dir={out}", "--alphas=0", "--seeds=0,1", "--epochs=1", "--verbose=0",
        "--worker_timeout=6", "--chief_timeout=120",
    ]
    with cluster(tmp_path, args) as processes:
        chief = processes.start("chief")
        doomed = processes.start("doomed")
        wait_until(lambda: "starts on doomed" in processes.log("chief"), 120, chief, "doomed's first trial")
        (_, _, doomed_run), = [s for s in _started_trials(processes.log("chief")) if s[1] == "doomed"]
        processes.start("survivor")
        wait_until(
            lambda: glob.glob(str(out / "runs" / doomed_run / "logs" / "train" / "events.*")),
            120, doomed, "doomed to start training",
        )
        doomed.send_signal(signal.SIGKILL)  # no goodbye: no end_trial, no more heartbeats
        doomed.wait(timeout=30)
        codes = {name: processes.wait(name, timeout=240) for name in ("survivor", "chief")}
    chief_log = processes.log("chief")
    assert codes == {"survivor": 0, "chief": 0}, chief_log[-3000:]
    assert "worker doomed sent no heartbeat" in chief_log and "reclaimed" in chief_log
    records = trial_records(out)
    assert [r["status"] for r in records] == ["COMPLETED"] * 2
    starts = _started_trials(chief_log)
    assert [(tuner, run) for _, tuner, run in starts].count(("survivor", doomed_run)) == 1
    # The cut attempt and the survivor's: two training sessions for that run, one for the other.
    for run in glob.glob(str(out / "runs" / "*")):
        assert os.path.exists(os.path.join(run, "summary.json"))
        assert train_sessions(run) == (2 if os.path.basename(run) == doomed_run else 1)


def test_a_worker_reports_an_unreachable_chief_and_writes_nothing(tmp_path):
    out = tmp_path / "sweep"
    port = free_port()  # nobody listens there
    completed = run_sweep_cli(
        f"--output_dir={out}", "--alphas=0", "--seeds=0", "--epochs=1", "--chief_timeout=3", timeout=120,
        env={"KERASTUNER_TUNER_ID": "tuner0", "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port)},
    )
    assert completed.returncode == 1
    lines = error_lines(completed.stderr)
    assert lines[-1].startswith("python -m tf_selectivity.sweep: error: cannot reach the chief at 127.0.0.1:")
    assert "within 3 s" in lines[-1]
    assert not out.exists()

"""Training over several processes, as over several machines, on this one.

JAX: two processes joined by ``KERAS_DISTRIBUTION_*`` on 127.0.0.1 (one CPU
device each, ``--devices=all`` = 2), each writing its own run directory, as
the docs tell users to start them: both end with the same records, and the
run equals one device's on the same global batches (each process placed its
own rows of every batch). TensorFlow: a ``TF_CONFIG`` cluster is refused in
one line (Keras 3's trainer fails under MultiWorkerMirroredStrategy).
"""

import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import REPO, error_lines, run_cli

ARGS = [
    "--model=user_model_zoo:small_cnn", "--dataset=synthetic:train=64,test=24,size=8,classes=3", "--epochs=1",
    "--batch_size=8", "--eval_batch_size=12", "--lr_milestones=", "--learning_rate=0.05", "--verbose=0",
    "--data_on_device=false", "--validation_fraction=0.25",
]


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _env(**extra):
    return {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.path.join(REPO, "tests")]),
            "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def _record(run_dir):
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(run_dir, "history.csv")) as f:
        history = f.read()
    return summary, history


@pytest.mark.jax_only
def test_two_processes_train_one_run_as_one_device_does(tmp_path):
    addresses = ",".join(f"127.0.0.1:{port}" for port in _free_ports(2))
    processes = []
    for index in range(2):
        env = _env(KERAS_BACKEND="jax", KERAS_DISTRIBUTION_JOB_ADDRESSES=addresses,
                   KERAS_DISTRIBUTION_NUM_PROCESSES="2", KERAS_DISTRIBUTION_PROCESS_ID=str(index))
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "tf_selectivity.train", *ARGS, "--devices=all", "--alpha=-1",
             f"--output_dir={tmp_path / f'host{index}'}"],
            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    try:
        one = run_cli("tf_selectivity.train", *ARGS, "--alpha=-1", f"--output_dir={tmp_path / 'one'}",
                      env=_env(KERAS_BACKEND="jax"), cwd=REPO, timeout=300)
        for process in processes:
            _, stderr = process.communicate(timeout=300)
            assert process.returncode == 0, stderr[-3000:]
    finally:  # a process waiting for a peer that failed would wait on
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert one.returncode == 0, one.stderr[-3000:]
    (first, first_history), (second, second_history) = (_record(tmp_path / f"host{i}") for i in range(2))
    alone, _ = _record(tmp_path / "one")
    assert first["devices"] == second["devices"] == 2 and first["per_device_batch_size"] == 4
    assert first_history == second_history  # one run, written by each process
    for key in ("test_accuracy", "test_mean_selectivity", "val_accuracy"):
        assert first[key] == second[key], key
        assert first[key] == pytest.approx(alone[key], rel=1e-4, abs=1e-5), key


def test_a_tensorflow_cluster_is_refused_in_one_line(tmp_path):
    config = {"cluster": {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]},
              "task": {"type": "worker", "index": 0}}
    completed = run_cli("tf_selectivity.train", *ARGS, "--devices=all", f"--output_dir={tmp_path / 'run'}",
                        env=_env(KERAS_BACKEND="tensorflow", TF_CONFIG=json.dumps(config)), cwd=REPO, timeout=300)
    lines = error_lines(completed.stderr)
    assert completed.returncode == 2, completed.stderr[-3000:]
    assert len(lines) == 1 and "cannot train over the machines TF_CONFIG names" in lines[0], lines
    assert "KERAS_BACKEND=jax" in lines[0]
    assert not (tmp_path / "run").exists()

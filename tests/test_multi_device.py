"""Data-parallel training on simulated CPU devices, both backends.

Each backend runs `multi_device_check.py` in a process of its own (the
simulated devices must exist before the backend starts: JAX's
``--xla_force_host_platform_device_count``, TensorFlow's logical CPUs), so
these tests are not marked `backends`: each runs its backend once.

Proved here: one step over two devices equals one device's on the same
global batch (loss, selectivity term, the probes' SI, the updated weights)
at alpha = 0 and alpha != 0, while each device saw half of the batch and
the mean of the halves' SIs is not the global SI (so a per-replica index
would fail); a 2-epoch run over two devices with the split selectivity on,
stopped after epoch 1 and resumed, ends as the run trained straight.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

DEVICES = 2
SCRIPT = os.path.join(REPO, "tests", "multi_device_check.py")


@pytest.fixture(scope="module", params=["tensorflow", "jax"])
def checks(request, tmp_path_factory):
    backend = request.param
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "tests")]))
    if backend == "jax":
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={DEVICES}".strip()
    result = subprocess.run(
        [sys.executable, SCRIPT, str(DEVICES), str(tmp_path_factory.mktemp(backend))],
        capture_output=True, text=True, env=env, timeout=600, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("alpha", ["0.0", "-2.0"])
def test_one_step_over_devices_equals_one_device(checks, alpha):
    one, many = checks["step"][alpha]["one"], checks["step"][alpha]["many"]
    assert one["local_batches"] == [16] and many["local_batches"] == [8] * DEVICES
    for name in ("loss", "cross_entropy", "selectivity_term", "batch_selectivity", "accuracy"):
        assert many["logs"][name] == pytest.approx(one["logs"][name], rel=1e-5, abs=1e-6), name
    np.testing.assert_allclose(many["probe_si"], one["probe_si"], rtol=1e-5)
    for before, after in zip(one["weights"], many["weights"]):
        np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)
    if alpha != "0.0":
        assert one["logs"]["selectivity_term"] != 0.0
    # The index of the global batch, not the mean of the devices' indices.
    assert np.abs(np.subtract(checks["step"]["parts_mean_si"], one["probe_si"])).max() > 1e-3


def test_run_over_devices_resumes_as_trained_straight(checks):
    run = checks["run"]
    assert run["stopped_after"] == 1
    straight, resumed = run["straight"], run["resumed"]
    assert resumed["summary"]["devices"] == DEVICES and resumed["summary"]["per_device_batch_size"] == 4
    for key in ("test_accuracy", "test_mean_selectivity"):
        assert resumed["summary"][key] == pytest.approx(straight["summary"][key], rel=1e-5, abs=1e-6), key
    assert [sorted(row) for row in resumed["history"]] == [sorted(row) for row in straight["history"]]
    for row_straight, row_resumed in zip(straight["history"], resumed["history"]):
        assert "val_split_mean_selectivity" in row_resumed and "split_mean_selectivity" not in row_resumed
        for name, value in row_straight.items():
            assert row_resumed[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name

"""Data-parallel training on simulated CPU devices, both backends.

The pass of each backend runs `multi_device_check.py` in a process of its
own, under that backend (the simulated devices must exist before the
backend starts: JAX's ``--xla_force_host_platform_device_count``,
TensorFlow's logical CPUs).

Proved here: one step over four devices equals one device's on the same
global batch (loss, selectivity term, the probes' SI, the updated weights)
at alpha = 0 and alpha != 0, while each device saw half of the batch and
the mean of the halves' SIs is not the global SI (so a per-replica index
would fail); batch normalization's statistics are each replica's on
TensorFlow and the global batch's on JAX (as the docs say); a 2-epoch run
over two of the devices with the split selectivity on, stopped after epoch 1 and
resumed, ends as the run trained straight.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from conftest import backend as current_backend

DEVICES = 4  # simulated; the step checks use all four, the run checks two
RUN_DEVICES = 2
SCRIPT = os.path.join(REPO, "tests", "multi_device_check.py")


pytestmark = pytest.mark.backends


@pytest.fixture(scope="module")
def checks(tmp_path_factory):
    backend = current_backend()
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "tests")]))
    if backend == "jax":
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={DEVICES}".strip()
    result = subprocess.run(
        [sys.executable, SCRIPT, str(DEVICES), str(tmp_path_factory.mktemp(backend))],
        capture_output=True, text=True, env=env, timeout=600, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(result.stdout.strip().splitlines()[-1]), backend=backend)


@pytest.mark.parametrize("alpha", ["0.0", "-2.0"])
def test_one_step_over_devices_equals_one_device(checks, alpha):
    one, many = checks["step"][alpha]["one"], checks["step"][alpha]["many"]
    assert one["local_batches"] == [16] and many["local_batches"] == [4] * DEVICES
    for name in ("loss", "cross_entropy", "selectivity_term", "batch_selectivity", "accuracy"):
        assert many["logs"][name] == pytest.approx(one["logs"][name], rel=1e-5, abs=1e-6), name
    np.testing.assert_allclose(many["probe_si"], one["probe_si"], rtol=1e-5)
    for before, after in zip(one["weights"], many["weights"]):
        np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)
    if alpha != "0.0":
        assert one["logs"]["selectivity_term"] != 0.0
    # The index of the global batch, not the mean of the devices' indices.
    assert np.abs(np.subtract(checks["step"]["parts_mean_si"], one["probe_si"])).max() > 1e-3


def test_batch_norm_statistics_are_per_replica_on_tensorflow_global_on_jax(checks):
    one, many = checks["step"]["batch_norm"]["one"], checks["step"]["batch_norm"]["many"]
    if checks["backend"] == "tensorflow":  # MirroredStrategy: each replica normalizes its half
        assert abs(many["logs"]["loss"] - one["logs"]["loss"]) > 1e-4
    else:  # one program over the sharded global batch
        assert many["logs"]["loss"] == pytest.approx(one["logs"]["loss"], rel=1e-5)
        for before, after in zip(one["weights"], many["weights"]):
            np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-5)


def test_xla_is_off_for_tensorflow_over_devices(checks):
    jit = checks["step"]["jit_compile"]
    if checks["backend"] == "tensorflow":
        assert jit == {"auto": False, "true": "--jit_compile cannot be true for TensorFlow over several devices "
                                                "(--devices); use auto or false"}
    else:
        assert jit == {"auto": True, "true": None}


def test_data_on_the_device_is_for_one_device(tmp_path):
    from tf_selectivity.training.config import ConfigError
    from tf_selectivity.training.placement import choose_input_pipeline
    from tf_selectivity.training.run_dir import RunPaths

    paths = RunPaths(str(tmp_path / "run"))
    assert choose_input_pipeline("auto", None, paths, "jax", verbose=0, devices=2) == "host"
    with pytest.raises(ConfigError, match="cannot train over 2"):
        choose_input_pipeline("true", None, paths, "jax", verbose=0, devices=2)


def test_run_over_devices_resumes_as_trained_straight(checks):
    run = checks["run"]
    assert run["stopped_after"] == 1
    straight, resumed = run["straight"], run["resumed"]
    assert resumed["summary"]["devices"] == RUN_DEVICES and resumed["summary"]["per_device_batch_size"] == 4
    assert resumed["summary"]["learning_rate"] == pytest.approx(0.1)  # 0.05 x batch 8 / reference 4
    for key in ("test_accuracy", "test_mean_selectivity"):
        assert resumed["summary"][key] == pytest.approx(straight["summary"][key], rel=1e-5, abs=1e-6), key
    assert [sorted(row) for row in resumed["history"]] == [sorted(row) for row in straight["history"]]
    for row_straight, row_resumed in zip(straight["history"], resumed["history"]):
        assert "val_split_mean_selectivity" in row_resumed and "split_mean_selectivity" not in row_resumed
        for name, value in row_straight.items():
            assert row_resumed[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name


def test_the_global_batch_splits_over_the_devices_and_the_learning_rate_rule():
    from tf_selectivity.training.config import ConfigValueError, TrainConfig

    config = TrainConfig(batch_size=256, devices="4", output_dir="run")
    assert config.check_device_batch() == 64 and config.scaled_learning_rate == 0.1
    assert config.check_device_batch(device_count=8) == 32  # devices="all", resolved
    with pytest.raises(ConfigValueError, match="batch_size is the global batch"):
        TrainConfig(batch_size=250, devices="4", output_dir="run").validate()
    with pytest.raises(ConfigValueError, match="per_device_batch_size must be"):
        TrainConfig(batch_size=256, devices="4", per_device_batch_size=32, output_dir="run").validate()
    linear = TrainConfig(batch_size=1024, lr_scaling="linear", output_dir="run")
    assert linear.scaled_learning_rate == pytest.approx(0.4)  # 0.1 x 1024 / 256
    assert "lr_scaling" in linear.identity() and "devices" not in linear.identity()
    # A run recorded before the rule existed is the same run as --lr_scaling=none.
    old = {k: v for k, v in TrainConfig(output_dir="run").identity().items() if not k.startswith("lr_")}
    old["lr_milestones"], old["lr_decay"] = [100, 150], 0.1
    assert TrainConfig(output_dir="run").differences(old) == []


def test_first_epoch_over_devices_logs_what_one_device_logs(checks):
    """The epoch's logs, the split selectivity of the validation pass
    (every replica's class sums) included, on one device and over two."""
    one, many = checks["run"]["one_device_epoch"], checks["run"]["straight"]["history"][0]
    assert sorted(one) == sorted(many) and "val_split_mean_selectivity" in one
    for name, value in one.items():
        assert many[name] == pytest.approx(value, rel=1e-4, abs=1e-5), name

"""The regularizer in a window of training (`--alpha_window`): config, the switch in the step, runs."""

import csv
import math
import os

import keras
import numpy as np
import pytest
from keras import ops

from training_callbacks import Interrupt
from tf_selectivity.models import build_model
from tf_selectivity.training import ConfigError, TorchSGD, TrainConfig, train

TINY = "synthetic:train=200,test=60,size=16"


def tiny_config(tmp_path, name, **overrides):
    # 200 images in batches of 64: 4 steps per epoch, the last one smaller.
    values = dict(
        model="resnet8", dataset=TINY, epochs=2, batch_size=64, lr_milestones=(), learning_rate=1e-3,
        output_dir=str(tmp_path / name),
    )
    values.update(overrides)
    return TrainConfig(**values)


def checkpoint_arrays(run_dir):
    """Every array of the run's last state (weights and optimizer state), by path."""
    import h5py

    arrays = {}
    with h5py.File(os.path.join(run_dir, "checkpoint", "state.weights.h5"), "r") as f:
        f.visititems(lambda path, item: arrays.__setitem__(path, item[()]) if isinstance(item, h5py.Dataset) else None)
    return arrays


def assert_same_state(run_a, run_b):
    a, b = checkpoint_arrays(run_a), checkpoint_arrays(run_b)
    assert a.keys() == b.keys()
    for path in a:
        np.testing.assert_array_equal(a[path], b[path], err_msg=path)


def history(run_dir):
    with open(os.path.join(run_dir, "history.csv")) as f:
        return list(csv.DictReader(f))


def test_window_is_normalized_and_counted_in_steps(tmp_path):
    config = lambda window, **kw: TrainConfig(alpha=-1.0, epochs=4, alpha_window=window,
                                              output_dir=str(tmp_path), **kw)
    # The whole run is no window: the same condition (identity) as the default.
    for whole in ("0:end", "0:4", "0.0:4.0", None):
        assert config(whole).alpha_window is None
        assert config(whole).identity() == config(None).identity()
    assert config("1:4").alpha_window == "1:end"
    assert config("0.50:2").alpha_window == "0.5:2"
    assert config("1:1").alpha_window == "1:1"  # empty, not the whole run
    # Epoch boundaries to steps (the optimizer's counter): a fraction switches mid-epoch.
    assert config("0.5:2").alpha_window_steps(8) == (4, 16)
    assert config("1:end").alpha_window_steps(8) == (8, None)
    assert config(None).alpha_window_steps(8) is None
    # Runs recorded before the field existed were trained over the whole run.
    recorded = {k: v for k, v in config(None).identity().items() if k != "alpha_window"}
    assert config(None).differences(recorded) == []
    assert config("0:1").differences(recorded) == ["alpha_window: None there, '0:1' now"]


@pytest.mark.parametrize("window, alpha, message", [
    ("2:1", -1.0, "alpha_window START must not be after END"),
    ("-1:1", -1.0, "alpha_window must be non-negative epochs"),
    ("0:5", -1.0, "alpha_window 0:5 lies outside the run's 4 epochs"),
    ("5:end", -1.0, "alpha_window 5:end lies outside the run's 4 epochs"),
    ("1", -1.0, "alpha_window must be START:END"),
    ("a:b", -1.0, "alpha_window must be START:END"),
    ("0:1", 0.0, "alpha_window needs a non-zero alpha"),
])
def test_bad_windows_are_refused(tmp_path, window, alpha, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(alpha=alpha, epochs=4, alpha_window=window, output_dir=str(tmp_path)).validate()


def _train_batches(alpha, window, steps=4):
    """A model trained `steps` times on one batch; returns (arrays, logged terms per step)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (32, 16, 16, 3)).astype("float32")
    y = rng.permutation(np.arange(32) % 10)
    keras.utils.set_random_seed(0)
    model = build_model("resnet8", alpha=alpha, input_shape=(16, 16, 3))
    if window is not None:
        model.set_selectivity_window(*window)
    model.compile(optimizer=TorchSGD(0.1, momentum=0.9))
    terms = []
    for _ in range(steps):
        terms.append(float(model.train_on_batch(x, y, return_dict=True)["selectivity_term"]))
        model.reset_metrics()
    arrays = [ops.convert_to_numpy(v) for v in model.weights + model.optimizer.variables]
    return arrays, terms


@pytest.mark.backends
def test_the_switch_happens_inside_the_compiled_step():
    constant, constant_terms = _train_batches(-5.0, None)
    # A window open at every step (gated by the step counter): the constant-alpha run, bit for bit.
    whole, whole_terms = _train_batches(-5.0, (0, 10**6))
    for a, b in zip(constant, whole):
        np.testing.assert_array_equal(a, b)
    assert whole_terms == constant_terms
    # Open for steps 1 and 2 of one traced step: no term before, the term in, none after.
    _, terms = _train_batches(-5.0, (1, 3))
    assert terms[0] == 0.0 and min(terms[1:3]) > 0.1 and terms[3] == 0.0
    # Logged as 0, not -0 (a history row reading "-0.0" looks like a sign).
    assert math.copysign(1.0, terms[0]) == 1.0 and math.copysign(1.0, terms[3]) == 1.0


# Whole runs on the default backend; JAX's train step (the same gate in its
# stateless step) runs in the device-loop and packed-replicate test below.
def test_an_empty_window_trains_as_alpha_zero(tmp_path):
    zero = train(tiny_config(tmp_path, "zero", alpha=0.0), verbose=0)
    empty = train(tiny_config(tmp_path, "empty", alpha=-1.0, alpha_window="1:1"), verbose=0)
    assert_same_state(str(tmp_path / "zero"), str(tmp_path / "empty"))
    assert empty.test_accuracy == zero.test_accuracy
    assert [float(row["selectivity_term"]) for row in history(str(tmp_path / "empty"))] == [0.0, 0.0]


def test_a_run_stopped_inside_its_window_resumes_identically(tmp_path):
    # Three epochs of 4 steps, the regularizer on for steps 2 to 9 (mid-epoch at both ends).
    window = dict(alpha=-1.0, epochs=3, alpha_window="0.5:2.25")
    train(tiny_config(tmp_path, "straight", **window), verbose=0)
    config = tiny_config(tmp_path, "resumed", **window)
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[Interrupt(2)], verbose=0)
    train(config, verbose=0)
    straight, resumed = history(str(tmp_path / "straight")), history(str(tmp_path / "resumed"))
    terms = [float(row["selectivity_term"]) for row in straight]
    # Epoch 1: steps 2, 3 of 4 on; epoch 2: all on; epoch 3: step 8 only.
    assert 0 < terms[0] < terms[1] and 0 < terms[2] < terms[1]
    assert straight == resumed  # every logged value, to the last digit
    assert_same_state(str(tmp_path / "straight"), str(tmp_path / "resumed"))


# The device loop and packed replicates are JAX's (tests/conftest.py: jax_only).
jax_only = pytest.mark.jax_only


@pytest.mark.backends
@jax_only
def test_windows_in_the_device_loop_of_packed_replicates():
    """The gate reads each replicate's step counter inside the vmapped
    `fori_loop` of the device loop (what packed replicates run)."""
    import jax
    import jax.numpy as jnp

    from test_device_loop import tiny_data, tiny_model
    from tf_selectivity.data import device_pipeline as dp
    from tf_selectivity.training.device_loop import DeviceTrainer, model_state

    data = tiny_data(train=64)  # 4 steps of 16

    def packed_epoch(alpha, window):
        models = []
        for seed in (0, 1):
            model = tiny_model(seed=seed)
            model.set_alpha(alpha)
            if window is not None:
                model.set_selectivity_window(*window)
            model.optimizer.build(model.trainable_variables)
            models.append(model)
        fn = DeviceTrainer(models[0], *data, batch_size=16, eval_batch_size=10, seed=0).functions
        states = [fn.reset_metrics(model_state(model)) for model in models]

        def epoch(state, key):
            return fn.train_steps(state, jax.tree.map(jnp.asarray, data), fn.plan(key, 0), 0, fn.full_steps)

        keys = jnp.stack([dp.run_key(0), dp.run_key(1)])
        state, logs = jax.jit(jax.vmap(epoch))(jax.tree.map(lambda *a: jnp.stack(a), *states), keys)
        return jax.tree.leaves(state[:3]), logs  # weights and optimizer state

    def assert_same(a, b):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))

    constant, constant_logs = packed_epoch(-1.0, None)
    open_window, open_logs = packed_epoch(-1.0, (0, 100))  # open at every step of the epoch
    assert_same(constant, open_window)
    # The logged term comes from the gated tracker: the same sums, fused by XLA as it likes.
    np.testing.assert_allclose(open_logs["selectivity_term"], constant_logs["selectivity_term"], rtol=1e-6)
    assert np.all(np.asarray(constant_logs["selectivity_term"]) > 0)
    zero, _ = packed_epoch(0.0, None)
    empty, empty_logs = packed_epoch(-1.0, (2, 2))
    assert_same(zero, empty)
    assert np.all(np.asarray(empty_logs["selectivity_term"]) == 0.0)

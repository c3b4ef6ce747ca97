"""Data on the device (JAX): same augmentation, same validation, exact resume."""

import os

import keras
import numpy as np
import pytest

from tf_selectivity.data import make_synthetic
from tf_selectivity.data.sources import DatasetSplits
from tf_selectivity.training import ConfigError, TrainConfig, train
from tf_selectivity.training.placement import choose_input_pipeline
from tf_selectivity.core.files import read_json, write_json_atomic
from tf_selectivity.training.run_dir import RunPaths

# The on-device data path is JAX's; TensorFlow trains from tf.data (tests/conftest.py: jax_only).
jax_only = pytest.mark.jax_only

TINY = "synthetic:train=500,test=200,size=16"


def numpy_crop_and_flip(images, offsets, flips, padding):
    """Reference: np.pad, then slice each image at its offset, then mirror."""
    height, width = images.shape[1:3]
    padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    out = np.empty_like(images)
    for i, ((row, col), flip) in enumerate(zip(offsets, flips)):
        crop = padded[i, row : row + height, col : col + width]
        out[i] = crop[:, ::-1] if flip else crop
    return out


def tiny_model(seed=0, num_classes=4, size=8):
    from tf_selectivity.models.probe import SelectivityProbe
    from tf_selectivity.models import SelectivityModel
    from tf_selectivity.training import TorchSGD

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(x)
    x = SelectivityProbe(num_classes=num_classes, alpha=-1.0, name="probe")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = SelectivityModel(inputs, keras.layers.Dense(num_classes)(x))
    model.compile(optimizer=TorchSGD(0.1, momentum=0.9, weight_decay_l2=1e-4))
    return model


def tiny_data(train=70, validation=23, size=8, num_classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (train, size, size, 3), dtype=np.uint8),
        rng.integers(0, num_classes, train),
        rng.integers(0, 256, (validation, size, size, 3), dtype=np.uint8),
        rng.integers(0, num_classes, validation),
    )


# ------------------------------------------------------------ augmentation
@pytest.mark.backends
@jax_only
@pytest.mark.parametrize("padding", [4, 2])
def test_crop_and_flip_equals_numpy_pixel_for_pixel(rng, padding):
    from tf_selectivity.data.device_pipeline import crop_and_flip

    images = rng.integers(0, 256, (40, 10, 12, 2), dtype=np.uint8)  # H != W: catches swapped axes
    offsets = rng.integers(0, 2 * padding + 1, (40, 2)).astype(np.int32)
    offsets[:4] = [[0, 0], [2 * padding, 2 * padding], [0, 2 * padding], [2 * padding, 0]]
    flips = rng.random(40) < 0.5
    flips[:4] = [False, True, True, False]
    ours = np.asarray(crop_and_flip(images, offsets, flips, padding))
    np.testing.assert_array_equal(ours, numpy_crop_and_flip(images, offsets, flips, padding))


@pytest.mark.backends
@jax_only
def test_training_batch_cuts_the_epoch_order_and_applies_the_step_draws(rng):
    import jax

    from tf_selectivity.data import device_pipeline as dp

    images = rng.integers(0, 256, (23, 6, 6, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 23).astype(np.int32)
    key = dp.run_key(5)
    plan = dp.epoch_plan(key, 3, 23)
    order = np.asarray(plan.order)
    assert sorted(order) == list(range(23))
    batch_size, last = 8, 23 - 2 * 8
    for step, size in ((0, batch_size), (1, batch_size), (2, last)):
        x, y = dp.training_batch(images, labels, plan, step, size, stride=batch_size)
        taken = order[step * batch_size : step * batch_size + size]
        offsets, flips = dp.draw_augmentation(dp.step_key(key, 3, step), size)
        expected = numpy_crop_and_flip(images[taken], np.asarray(offsets), np.asarray(flips), dp.PADDING)
        assert x.dtype == jax.numpy.float32 and x.shape == (size, 6, 6, 3)
        np.testing.assert_array_equal(np.asarray(x), expected.astype(np.float32))
        np.testing.assert_array_equal(np.asarray(y), labels[taken])
    x, _ = dp.training_batch(images, labels, plan, 1, batch_size, augment=False)
    np.testing.assert_array_equal(np.asarray(x), images[order[8:16]].astype(np.float32))


def _chi_square(counts):
    counts = np.asarray(counts, dtype=np.float64)
    expected = counts.sum() / counts.size
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.backends
@jax_only
def test_offsets_flips_and_order_have_the_augment_images_distribution():
    """Crop offsets uniform on 0..2p per axis (and jointly), flips 1/2, order uniform.

    The keys are fixed, so the statistics are the same on every run; the
    bounds are chi-square quantiles at p = 1e-6 (8, 80 and 9 degrees of
    freedom), which a correct sampler passes and any error in the range (0..2p
    off by one), the axes' independence or the flip probability misses by
    orders of magnitude.
    """
    import jax

    from tf_selectivity.data import device_pipeline as dp

    key = dp.run_key(0)
    draw = jax.jit(jax.vmap(lambda step: dp.draw_augmentation(dp.step_key(key, 7, step), 256)))
    offsets, flips = draw(np.arange(400, dtype=np.int32))
    offsets = np.asarray(offsets).reshape(-1, 2)
    flips = np.asarray(flips).reshape(-1)
    assert offsets.min() == 0 and offsets.max() == 2 * dp.PADDING
    cells = 2 * dp.PADDING + 1
    assert _chi_square(np.bincount(offsets[:, 0], minlength=cells)) < 45
    assert _chi_square(np.bincount(offsets[:, 1], minlength=cells)) < 45
    assert _chi_square(np.bincount(offsets[:, 0] * cells + offsets[:, 1], minlength=cells**2)) < 160
    assert abs(flips.mean() - 0.5) < 6 * 0.5 / np.sqrt(flips.size)
    # Flips independent of offsets: both halves of the flips see the same offsets.
    for flipped in (True, False):
        part = offsets[flips == flipped, 1]
        assert _chi_square(np.bincount(part, minlength=cells)) < 45

    first = jax.jit(jax.vmap(lambda epoch: dp.epoch_order(key, epoch, 10)[0]))
    firsts = np.asarray(first(np.arange(2000, dtype=np.int32)))
    assert _chi_square(np.bincount(firsts, minlength=10)) < 50


@pytest.mark.backends
@jax_only
def test_draws_are_pure_functions_of_seed_epoch_and_step():
    from tf_selectivity.data import device_pipeline as dp

    def draws(seed, epoch, step):
        offsets, flips = dp.draw_augmentation(dp.step_key(dp.run_key(seed), epoch, step), 64)
        order = dp.epoch_order(dp.run_key(seed), epoch, 50)
        return np.asarray(offsets), np.asarray(flips), np.asarray(order)

    reference = draws(1, 2, 3)
    for got, want in zip(draws(1, 2, 3), reference):
        np.testing.assert_array_equal(got, want)
    for other in (draws(0, 2, 3), draws(1, 1, 3), draws(1, 2, 4)):
        assert not np.array_equal(other[0], reference[0])
    assert not np.array_equal(draws(1, 1, 3)[2], reference[2])
    np.testing.assert_array_equal(draws(1, 2, 4)[2], reference[2])  # one order per epoch


# ------------------------------------------------------------ epoch loop
@pytest.mark.backends
@jax_only
def test_steps_per_call_do_not_change_a_run():
    """Steps per call (1, 2 or a whole epoch): the same weights and logs, bit for bit.

    For both kinds of program: one step per call (the CPU default) and the
    compiled loop (the GPU/TPU default).
    """
    from tf_selectivity.training.device_loop import DeviceTrainer

    data = tiny_data()
    results = {}
    for loop, steps in ((False, 1), (False, 100), (True, 2), (True, 100)):
        model = tiny_model()
        trainer = DeviceTrainer(
            model, *data, batch_size=16, eval_batch_size=10, seed=3, compiled_loop=loop,
            steps_per_call=steps,
        )
        history = trainer.fit(epochs=2, verbose=1).history
        results[(loop, steps)] = (history, [np.asarray(v.value) for v in model.weights])
    for first, second in (((False, 1), (False, 100)), ((True, 2), (True, 100))):
        assert results[first][0] == results[second][0]
        for a, b in zip(results[first][1], results[second][1]):
            np.testing.assert_array_equal(a, b)
    # The loop and the per-step programs compute the same steps (XLA may
    # round differently inside a loop body).
    np.testing.assert_allclose(
        results[(True, 2)][0]["loss"], results[(False, 1)][0]["loss"], rtol=1e-4
    )


@pytest.mark.backends
@jax_only
def test_epoch_functions_vmap_over_replicates():
    """The epoch is pure: `jax.vmap` over stacked states and run keys (packed
    replicates) gives each replicate what it gets alone."""
    import jax
    import jax.numpy as jnp

    from tf_selectivity.data import device_pipeline as dp
    from tf_selectivity.training.device_loop import DeviceTrainer, model_state

    data = tiny_data()
    trainer = DeviceTrainer(tiny_model(seed=0), *data, batch_size=16, eval_batch_size=10, seed=0)
    fn = trainer.functions
    states = []
    for seed in (0, 1):
        model = tiny_model(seed=seed)
        model.optimizer.build(model.trainable_variables)
        states.append(fn.reset_metrics(model_state(model)))

    def epoch(state, key):
        plan = fn.plan(key, 0)
        state, _ = fn.train_steps(state, trainer.data, plan, 0, fn.full_steps)
        state, logs = fn.train_last(state, trainer.data, plan)
        return fn.evaluate(fn.reset_metrics(state), trainer.data)[1], logs, state

    keys = jnp.stack([dp.run_key(0), dp.run_key(1)])
    packed = jax.jit(jax.vmap(epoch))(jax.tree.map(lambda *a: jnp.stack(a), *states), keys)
    alone = jax.jit(epoch)
    for replicate, state in enumerate(states):
        single = alone(state, keys[replicate])
        for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(packed)):
            np.testing.assert_allclose(np.asarray(b[replicate]), np.asarray(a), rtol=1e-4, atol=1e-5)
    assert float(packed[1]["loss"][0]) != float(packed[1]["loss"][1])


@pytest.mark.backends
@jax_only
def test_validation_on_the_device_equals_host_evaluate():
    from tf_selectivity.data import ImageBatches
    from tf_selectivity.training.device_loop import DeviceTrainer

    data = tiny_data()
    model = tiny_model()
    history = DeviceTrainer(model, *data, batch_size=16, eval_batch_size=10, seed=0).fit(
        epochs=1, verbose=0
    ).history
    host = model.evaluate(ImageBatches(data[2], data[3], 10), return_dict=True, verbose=0)
    assert set(host) <= {name[4:] for name in history if name.startswith("val_")}
    for name, value in host.items():
        assert history[f"val_{name}"][-1] == pytest.approx(value, rel=1e-5, abs=1e-6), name


@pytest.mark.backends
@jax_only
def test_resumed_run_on_the_device_equals_uninterrupted(tmp_path):
    from training_callbacks import Interrupt

    def config(name, **overrides):
        values = dict(
            model="resnet8", dataset=TINY, epochs=3, batch_size=64, lr_milestones=(2,),
            alpha=-1.0, data_on_device="true", output_dir=str(tmp_path / name),
        )
        values.update(overrides)
        return TrainConfig(**values)

    straight = train(config("straight"), verbose=0)
    assert straight.input_pipeline == "device"
    resumed_config = config("resumed")
    with pytest.raises(KeyboardInterrupt):
        train(resumed_config, callbacks=[Interrupt(2)], verbose=0)
    state = read_json(os.path.join(resumed_config.output_dir, "checkpoint", "state.json"))
    assert (state["epochs_done"], state["input_pipeline"]) == (2, "device")
    with pytest.raises(ConfigError, match="keeps its input pipeline"):
        train(config("resumed", data_on_device="false"), verbose=0)
    resumed = train(config("resumed", data_on_device="auto"), verbose=0)
    for key in ("best_epoch", "val_accuracy", "test_accuracy", "test_layer_selectivity", "test_mean_selectivity"):
        assert getattr(resumed, key) == pytest.approx(getattr(straight, key), rel=1e-6, abs=1e-7), key
    history = lambda run: read_json(os.path.join(str(tmp_path / run), "checkpoint", "state.json"))["history"]
    assert history("resumed") == history("straight")


# --------------------------------------------------------- input pipeline
def _splits(train=40):
    images, labels, test_images, test_labels, names = make_synthetic(train=train, test=10, size=8)
    return DatasetSplits("synthetic", names, images, labels, test_images[:5], test_labels[:5], test_images, test_labels)


def _record(paths, pipeline, epochs_done=1):
    os.makedirs(paths.checkpoint_dir, exist_ok=True)
    write_json_atomic(paths.state, {"epochs_done": epochs_done, "input_pipeline": pipeline})


def test_data_on_device_true_is_refused_on_tensorflow(tmp_path):
    """On TensorFlow, auto and false mean tf.data, true is a usage error."""
    paths = RunPaths(str(tmp_path / "run"))
    data = _splits()
    with pytest.raises(ConfigError, match="needs the JAX backend"):
        choose_input_pipeline("true", data, paths, "tensorflow")
    assert choose_input_pipeline("auto", data, paths, "tensorflow") == "tf.data"
    assert choose_input_pipeline("false", data, paths, "tensorflow") == "tf.data"


@pytest.mark.backends
@jax_only
def test_input_pipeline_choice_on_jax(tmp_path, monkeypatch, capsys):
    from tf_selectivity.training import device_loop

    paths = RunPaths(str(tmp_path / "run"))
    data = _splits()
    assert choose_input_pipeline("auto", data, paths, "jax") == "device"
    assert choose_input_pipeline("true", data, paths, "jax") == "device"
    assert choose_input_pipeline("false", data, paths, "jax") == "host"

    # A resumed run keeps the pipeline of its finished epochs.
    _record(paths, "host")
    assert choose_input_pipeline("auto", data, paths, "jax") == "host"
    with pytest.raises(ConfigError, match="use `data_on_device='false'` or 'auto'"):
        choose_input_pipeline("true", data, paths, "jax")
    _record(paths, "device")
    assert choose_input_pipeline("true", data, paths, "jax") == "device"
    with pytest.raises(ConfigError, match="use `data_on_device='true'` or 'auto'"):
        choose_input_pipeline("false", data, paths, "jax")
    _record(paths, "device", epochs_done=0)  # nothing finished: free to choose
    assert choose_input_pipeline("false", data, paths, "jax") == "host"
    os.remove(paths.state)

    # A device too small for the splits (simulated: 1 kB free).
    monkeypatch.setattr(device_loop, "free_device_memory", lambda device=None: 1000)
    assert choose_input_pipeline("auto", data, paths, "jax") == "host"
    assert "Data on the device: no" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="do not fit on the device"):
        choose_input_pipeline("true", data, paths, "jax")
    _record(paths, "device")
    with pytest.raises(ConfigError, match="finished epochs trained with the data on the device"):
        choose_input_pipeline("auto", data, paths, "jax")


def test_data_on_device_values_are_validated(tmp_path):
    with pytest.raises(ConfigError, match="data_on_device must be one of auto, true, false"):
        TrainConfig(data_on_device="yes", output_dir=str(tmp_path)).validate()
    assert "data_on_device" not in TrainConfig.IDENTITY_FIELDS

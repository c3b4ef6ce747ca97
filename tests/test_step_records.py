"""Records along training: checkpoints kept at chosen epochs, selectivity every N steps."""

import csv
import os
import shutil

import keras
import numpy as np
import pytest

from conftest import backend
from training_callbacks import Interrupt
from tf_selectivity.analysis.run import load_run
from tf_selectivity.analysis.runs import RunLoadError
from tf_selectivity.training import TrainConfig, train
from tf_selectivity.training.kept_checkpoints import kept_checkpoint_path, kept_checkpoint_paths
from tf_selectivity.training.loop import build_compiled_model, load_run_data

TINY = "synthetic:train=200,test=60,size=16"
# 180 training images in batches of 32: 6 steps per epoch, the last one smaller.
STEPS_PER_EPOCH = 6
# Steps 0, 3 (0.5), 5 (0.84: after the full batches, before the smaller last
# one), 6 (an epoch's end) and 12 (the run's).
KEEP = (0.0, 0.5, 0.84, 1.0, 2.0)
EVERY = 3  # steps 0, 3, 6 (an epoch's end: its validation pass), 9, 12

PIPELINES = ["device", "host"] if backend() == "jax" else ["tf.data"]


def config(root, pipeline, seed=0, **overrides):
    values = dict(
        model="resnet8", dataset=TINY, epochs=2, batch_size=32, lr_milestones=(), alpha=0.0,
        learning_rate=1e-3, seed=seed, keep_checkpoints=KEEP, selectivity_every_steps=EVERY,
        output_dir=str(root / f"seed{seed}"),
    )
    if backend() == "jax":
        values["data_on_device"] = "true" if pipeline == "device" else "false"
    values.update(overrides)
    return TrainConfig(**values)


def h5_arrays(path):
    """Every array of a weights file (weights and optimizer state), by path."""
    import h5py

    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return arrays


def read_rows(run_dir):
    with open(os.path.join(run_dir, "selectivity_steps.csv"), newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module", params=PIPELINES)
def recorded_run(request, tmp_path_factory):
    """A run that keeps checkpoints and measures selectivity every `EVERY` steps, per input pipeline."""
    root = tmp_path_factory.mktemp(f"steps_{request.param.replace('.', '_')}")
    keras.backend.clear_session()
    run_config = config(root, request.param)
    summary = train(run_config, verbose=0)
    assert summary.input_pipeline == request.param
    return run_config, summary


@pytest.mark.backends
def test_kept_checkpoints_hold_the_weights_at_their_steps(recorded_run):
    run_config, summary = recorded_run
    run_dir = run_config.output_dir
    assert summary.kept_checkpoints == KEEP
    assert list(kept_checkpoint_paths(run_dir)) == list(KEEP)
    assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == sorted(
        f"epoch-{label}.weights.h5" for label in ("0", "0.5", "0.84", "1", "2")
    )
    # The last epoch's: the run's own final checkpoint, array for array.
    final = h5_arrays(os.path.join(run_dir, "checkpoint", "state.weights.h5"))
    kept = h5_arrays(kept_checkpoint_path(run_dir, 2))
    assert kept.keys() == final.keys() and any(name.startswith("optimizer") for name in kept)
    for name in final:
        np.testing.assert_array_equal(kept[name], final[name], err_msg=name)
    # Epoch 0: the initial weights; 0.5: those after 3 steps, trained here
    # from them by the runner's own step.
    data = load_run_data(run_config)
    keras.backend.clear_session()
    model, _ = build_compiled_model(run_config, data)
    run = load_run(run_dir)
    for ours, initial in zip(run.at(0).model.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(ours, initial)
    after = _weights_after_steps(model, run_config, data, 3, pipeline=summary.input_pipeline)
    for ours, expected in zip(run.at(0.5).model.trainable_weights, after):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(ours), expected, rtol=1e-5, atol=1e-6)
    assert run.at(0.5).epoch == 0.5 and run.checkpoint_epochs == list(KEEP)
    with pytest.raises(RunLoadError, match=r"no checkpoint of epoch 0\.25 was kept; kept epochs: 0, 0\.5, 0\.84, 1, 2"):
        run.at(0.25)


def _weights_after_steps(model, run_config, data, steps, pipeline):
    """The trainable weights after the first `steps` steps of epoch 0, from `model`'s initial state."""
    if pipeline == "tf.data":
        from tf_selectivity.data.tf_pipeline import training_dataset

        batches = training_dataset(
            data.train_images, data.train_labels, run_config.batch_size, seed=run_config.seed,
            first_epoch=0, epochs=1, augment=run_config.augment,
        )
        model.make_train_function()
        iterator = iter(batches)
        for _ in range(steps):
            model.train_function(iterator)
        return [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    if pipeline == "device":
        from tf_selectivity.training.device_loop import DeviceTrainer

        trainer = DeviceTrainer(
            model, data.train_images, data.train_labels, data.validation_images, data.validation_labels,
            batch_size=run_config.batch_size, eval_batch_size=run_config.eval_batch_size, seed=run_config.seed,
            progress=False,
        )
        state = trainer.reset_metrics(trainer.state())
        state, _ = trainer.run_steps(state, trainer.epoch_plan(0), 0, steps)
        return [np.asarray(w) for w in state[0]]
    import jax

    from tf_selectivity.data import ImageBatches
    from tf_selectivity.training.device_loop import build_metrics, model_state

    model.optimizer.build(model.trainable_variables)
    build_metrics(model, data.validation_images, data.validation_labels)
    batches = ImageBatches(data.train_images, data.train_labels, run_config.batch_size, shuffle=True,
                           augment=run_config.augment, seed=run_config.seed)
    batches.set_epoch(0)
    state, step = model_state(model), jax.jit(model.train_step)
    for index in range(steps):
        _, state = step(state, batches[index])
    return [np.asarray(w) for w in state[0]]


@pytest.mark.backends
def test_selectivity_steps_equal_the_analysis_index_of_the_weights_then(recorded_run):
    from tf_selectivity.data import ImageBatches
    from tf_selectivity.measures.unit_statistics import evaluate_responses

    run_config, _ = recorded_run
    rows = read_rows(run_config.output_dir)
    run = load_run(run_config.output_dir)
    probes = run.summary.probe_names
    assert [(int(r["step"]), r["layer"]) for r in rows] == [(s, p) for s in (0, 3, 6, 9, 12) for p in probes]
    assert [float(r["epoch"]) for r in rows[:: len(probes)]] == [0.0, 0.5, 1.0, 1.5, 2.0]
    # The analysis' own streaming statistics (NumPy) of the validation split,
    # with the weights kept at those steps.
    data = load_run_data(run_config)
    for step, epoch in ((0, 0.0), (3, 0.5), (6, 1.0), (12, 2.0)):
        model = run.at(epoch).model
        expected = evaluate_responses(
            model.unit_response_model().predict_on_batch,
            ImageBatches(data.validation_images, data.validation_labels, run_config.eval_batch_size),
            num_classes=data.num_classes, layer_names=probes, selectivity_index=run_config.selectivity_index,
        ).layer_selectivity()
        measured = [float(r["selectivity"]) for r in rows if int(r["step"]) == step]
        np.testing.assert_allclose(measured, expected, rtol=1e-4, atol=1e-6, err_msg=f"step {step}")
        means = {float(r["mean"]) for r in rows if int(r["step"]) == step}
        assert len(means) == 1 and means.pop() == pytest.approx(np.mean(expected), rel=1e-4)
    # Measured for these records only: not in the epoch logs.
    assert not [c for c in run.history.columns if "split" in c]
    if backend() == "tensorflow" or os.path.isdir(os.path.join(run_config.output_dir, "logs", "validation_steps")):
        assert os.listdir(os.path.join(run_config.output_dir, "logs", "validation_steps"))


def write_scalar_events(directory, tag, values):
    """`values` (step -> value) of `tag` in an event file of their own, as a process would write them."""
    import time

    import tensorflow as tf

    time.sleep(1.1)  # event files are read in name order, which starts with the second of their creation
    writer = tf.summary.create_file_writer(directory)
    with writer.as_default():
        for step, value in values.items():
            tf.summary.scalar(tag, value, step=step)
    writer.close()
    time.sleep(1.1)


def scalar_events(directory, tag):
    """(step, value) of `tag` as TensorBoard shows them (its reader, restarts applied)."""
    import tensorflow as tf
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator

    events = EventAccumulator(directory)
    events.Reload()
    return [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in events.Tensors(tag)]


# Resuming is the epoch loop's, the same for every runner: on JAX it is
# tested on the device path only (the host path's records are tested above).
@pytest.mark.backends
@pytest.mark.parametrize("recorded_run", [p for p in PIPELINES if p != "host"], indirect=True)
def test_a_killed_run_resumes_to_the_same_records(recorded_run, tmp_path):
    run_config, summary = recorded_run
    pipeline = summary.input_pipeline
    resumed_config = config(tmp_path, pipeline)
    keras.backend.clear_session()
    with pytest.raises(KeyboardInterrupt):
        train(resumed_config, callbacks=[Interrupt(1)], verbose=0)
    run_dir = resumed_config.output_dir
    assert list(kept_checkpoint_paths(run_dir)) == [0.0, 0.5, 0.84, 1.0]
    # What a process killed inside epoch 2 leaves: rows of its steps (one
    # torn), their TensorBoard events, a checkpoint of its step 3
    # half-written under a temporary name.
    with open(os.path.join(run_dir, "selectivity_steps.csv"), "a") as f:
        f.write("9,1.5,probe_stem,0.5,0.5\n12,2")
    board = os.path.join(run_dir, "logs", "validation_steps")
    write_scalar_events(board, "split_mean_selectivity", {9: 0.5})
    shutil.copy(kept_checkpoint_path(run_dir, 1), os.path.join(run_dir, "checkpoints", "epoch-2.123.tmp.weights.h5"))
    keras.backend.clear_session()
    summary = train(resumed_config, verbose=0)
    # TensorBoard shows each step once, with the resumed process' value.
    rows = read_rows(run_dir)
    means = {int(r["step"]): float(r["mean"]) for r in rows}
    shown = scalar_events(board, "split_mean_selectivity")
    assert [step for step, _ in shown] == sorted(means)
    assert [value for _, value in shown] == pytest.approx([means[step] for step in sorted(means)], rel=1e-6)
    assert summary.kept_checkpoints == KEEP
    with open(os.path.join(run_dir, "selectivity_steps.csv")) as ours, \
            open(os.path.join(run_config.output_dir, "selectivity_steps.csv")) as theirs:
        assert ours.read() == theirs.read()
    assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == sorted(
        os.listdir(os.path.join(run_config.output_dir, "checkpoints"))
    )
    for epoch in KEEP:
        ours, theirs = h5_arrays(kept_checkpoint_path(run_dir, epoch)), h5_arrays(
            kept_checkpoint_path(run_config.output_dir, epoch))
        assert ours.keys() == theirs.keys()
        for name in theirs:
            np.testing.assert_array_equal(ours[name], theirs[name], err_msg=f"epoch {epoch}: {name}")

"""The training command: SavedModel, TensorBoard logs, bad input (exit 2)."""

import glob
import json
import os

import numpy as np
import pytest

from conftest import TINY_DATASET, error_lines, run_cli

pytestmark = pytest.mark.tensorflow_only


def test_saved_model_round_trip(tiny_runs):
    import keras
    import tensorflow as tf

    import tf_selectivity.models  # noqa: F401

    run = tiny_runs / "runs" / "a-10_s0"
    loaded = tf.saved_model.load(str(run / "saved_model"))
    model = keras.saving.load_model(str(run / "model.keras"))
    images = np.random.default_rng(0).uniform(0, 255, (9, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(loaded.serve(images).numpy(), model.predict(images, verbose=0), rtol=1e-5, atol=1e-5)
    responses = {k: v.numpy() for k, v in loaded.unit_responses(images).items()}
    expected = model.unit_response_model().predict(images, verbose=0)
    assert set(responses) == set(expected) == {"logits", *model.probe_names}
    for name in model.probe_names:
        np.testing.assert_allclose(responses[name], expected[name], rtol=1e-5, atol=1e-6)
    maps = loaded.activations(images)
    assert maps["probe_stem"].shape == (9, 16, 16, 16)
    np.testing.assert_allclose(maps["probe_stem"].numpy().mean(axis=(1, 2)), responses["probe_stem"], rtol=1e-5, atol=1e-6)


def _scalar_tags(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(log_dir, size_guidance={"tensors": 0})
    accumulator.Reload()
    return accumulator, set(accumulator.Tags()["tensors"])


def test_tensorboard_logs_hold_the_loss_parts_and_layer_selectivity(tiny_runs):
    run = tiny_runs / "runs" / "a-10_s0"
    accumulator, train_tags = _scalar_tags(str(run / "logs" / "train"))
    for tag in ("epoch_loss", "epoch_cross_entropy", "epoch_selectivity_term", "epoch_batch_selectivity",
                "epoch_accuracy", "epoch_learning_rate", "epoch_selectivity/probe_stem", "epoch_selectivity/probe_s3b1_out"):
        assert tag in train_tags, tag
    values = [e.tensor_proto.float_val[0] if e.tensor_proto.float_val else float(np.frombuffer(e.tensor_proto.tensor_content, np.float32)[0])
              for e in accumulator.Tensors("epoch_selectivity_term")]
    history = json.load(open(run / "checkpoint" / "state.json"))["history"]
    np.testing.assert_allclose(values, [row["selectivity_term"] for row in history], rtol=1e-5)
    _, validation_tags = _scalar_tags(str(run / "logs" / "validation"))
    assert "epoch_accuracy" in validation_tags


def test_history_csv_and_summary(tiny_runs):
    import pandas as pd

    run = tiny_runs / "runs" / "a0_s1"
    history = pd.read_csv(run / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    assert {"loss", "cross_entropy", "selectivity_term", "val_accuracy", "selectivity/probe_stem"} <= set(history.columns)
    summary = json.load(open(run / "summary.json"))
    for key in ("model", "alpha", "seed", "activation", "leaky_slope", "epochs", "best_epoch", "val_accuracy",
                "test_accuracy", "test_layer_selectivity", "test_mean_selectivity"):
        assert key in summary
    assert len(summary["test_layer_selectivity"]) == 7
    assert summary["test_mean_selectivity"] == pytest.approx(np.mean(summary["test_layer_selectivity"]))
    assert summary["val_accuracy"] == pytest.approx(history["val_accuracy"].max())
    assert summary["best_epoch"] == int(history["val_accuracy"].idxmax()) + 1


BASE = ["--model=resnet8", f"--dataset={TINY_DATASET}", "--epochs=1", "--batch_size=64", "--lr_milestones="]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model=resnet21"], "--model must be one of resnet8, resnet20"),
        (["--alpha=nan"], "alpha must be a finite number"),
        (["--alpha=abc"], "--alpha"),
        (["--dataset=imagefolder:/no/such/folder"], "/no/such/folder"),
        (["--activation=relu", "--leaky_slope=0.2"], "leaky_slope only applies"),
        (["--data_on_device=true"], "needs the JAX backend"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "run"
    completed = run_cli("tf_selectivity.train", *BASE, f"--output_dir={out}", *args)
    assert completed.returncode == 2, completed.stderr
    lines = error_lines(completed.stderr)
    assert len(lines) == 1, lines
    assert lines[0].startswith("python -m tf_selectivity.train: error:") and message in lines[0]
    assert not os.path.exists(out / "config.json") and not os.path.exists(out / "checkpoint")


def test_output_dir_with_another_run_is_not_overwritten(tiny_runs, tmp_path):
    run = tiny_runs / "runs" / "a0_s0"
    before = {p: os.path.getmtime(p) for p in glob.glob(f"{run}/**", recursive=True)}
    completed = run_cli("tf_selectivity.train", *BASE, "--alpha=-1", f"--output_dir={run}")
    assert completed.returncode == 2
    lines = error_lines(completed.stderr)
    assert len(lines) == 1 and "holds a run of another configuration" in lines[0] and "alpha" in lines[0]
    after = {p: os.path.getmtime(p) for p in glob.glob(f"{run}/**", recursive=True)}
    assert before == after


def test_cli_trains_and_rerun_is_a_no_op(tmp_path):
    out = tmp_path / "run"
    # The default progress display, with stdout a pipe as in a log file.
    first = run_cli("tf_selectivity.train", *BASE, "--alpha=-1", f"--output_dir={out}")
    assert first.returncode == 0, first.stderr
    assert "test mean selectivity" in first.stdout
    # A clean first minute: no TensorFlow/CUDA start-up lines, no warnings;
    # plain lines (no carriage returns or ANSI colours) off a terminal.
    assert first.stderr == "", first.stderr
    assert "\r" not in first.stdout and "\x1b" not in first.stdout
    assert "Data synthetic:train=500,test=200,size=16: 10 classes (class_0, class_1" in first.stdout
    summary = json.load(open(out / "summary.json"))
    assert summary["alpha"] == -1.0 and summary["epochs"] == 1
    second = run_cli("tf_selectivity.train", *BASE, "--alpha=-1", f"--output_dir={out}")
    assert second.returncode == 0 and "already complete" in second.stdout

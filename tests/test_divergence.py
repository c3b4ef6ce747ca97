"""Divergence is a result: a non-finite loss stops training and finishes the run as diverged."""

import csv
import glob
import math
import os

import keras
import pytest

from conftest import REPO
from training_callbacks import PoisonAWeight
from tf_selectivity.training import TrainConfig, train
from tf_selectivity.core.files import read_json
from tf_selectivity.training.summary import RESULT_FIELDS, RunSummary

# The divergence tests also run on JAX (`backends`); the bookkeeping ones, which
# do not depend on the backend, on TensorFlow only.
TINY = "synthetic:train=200,test=60,size=16"


def tiny_config(tmp_path, name, **overrides):
    values = dict(model="resnet8", dataset=TINY, epochs=3, batch_size=64, lr_milestones=(),
                  output_dir=str(tmp_path / name))
    values.update(overrides)
    return TrainConfig(**values)


def _history(run_dir):
    with open(os.path.join(run_dir, "history.csv")) as f:
        return list(csv.DictReader(f))


@pytest.mark.backends
def test_an_alpha_that_overflows_diverges_in_the_first_epoch(tmp_path):
    # alpha * SI overflows float32: the loss is not finite from the first batch on.
    config = tiny_config(tmp_path, "run", alpha=1e300)
    summary = train(config, verbose=0)
    recorded = read_json(os.path.join(config.output_dir, "summary.json"))
    assert summary == RunSummary.read(os.path.join(config.output_dir, "summary.json"))
    assert summary.status == recorded["status"] == "diverged" and summary.diverged
    assert summary.diverged_epoch == 1 and summary.epochs_completed == 0
    assert summary.reason in ("loss is nan", "loss is inf", "loss is -inf")
    assert (summary.model, summary.alpha, summary.seed, summary.epochs) == ("resnet8", 1e300, 0, 3)
    assert not set(RESULT_FIELDS) & set(recorded)  # no metric that could pass for a result
    for exported in ("saved_model", "model.keras"):
        assert not os.path.exists(os.path.join(config.output_dir, exported))
    rows = _history(config.output_dir)
    assert [row["epoch"] for row in rows] == ["1"] and not math.isfinite(float(rows[0]["loss"]))
    # A finished run: the same call does not train again.
    mtime = os.stat(os.path.join(config.output_dir, "summary.json")).st_mtime_ns
    assert train(config, verbose=0) == summary
    assert os.stat(os.path.join(config.output_dir, "summary.json")).st_mtime_ns == mtime


@pytest.mark.backends
def test_divergence_in_a_later_epoch_keeps_the_last_finite_state(tmp_path):
    config = tiny_config(tmp_path, "run")
    summary = train(config, callbacks=[PoisonAWeight(2)], verbose=0)
    assert summary.status == "diverged" and summary.diverged_epoch == 2
    # TensorFlow's CPU ReLU maps NaN to 0, so the loss may stay finite: the
    # weights are checked too.
    assert summary.epochs_completed == 1
    assert summary.reason in ("loss is nan", "weight stem_conv/kernel is not finite"), summary.reason
    state = read_json(os.path.join(config.output_dir, "checkpoint", "state.json"))
    assert state["epochs_done"] == 1 and [row["epoch"] for row in state["history"]] == [1]
    rows = _history(config.output_dir)
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert math.isfinite(float(rows[0]["loss"]))


def test_a_completed_run_says_so_once_and_lists_probe_columns_in_network_order(tmp_path):
    config = tiny_config(tmp_path, "run", epochs=1, alpha=-1.0)
    summary = train(config, verbose=0)
    recorded = read_json(os.path.join(config.output_dir, "summary.json"))
    assert summary.status == recorded["status"] == "completed"
    assert "num_test_samples" not in recorded and recorded["num_test"] == 60  # one key for one number
    # The keys of the committed runs, recorded before the schema version existed, that version, and
    # what a run records since: the devices it trained on, the batch of one, the learning rate used.
    committed = glob.glob(os.path.join(REPO, "results", "reduced", "trained", "*", "summary.json"))
    if committed:
        assert set(recorded) == set(read_json(committed[0])) | {
            "schema_version", "devices", "per_device_batch_size", "learning_rate"}
    assert recorded["devices"] == 1 and recorded["per_device_batch_size"] == config.batch_size
    with open(os.path.join(config.output_dir, "history.csv")) as f:
        header = f.readline().strip().split(",")
    probes = summary.probe_names
    assert [c.split("/", 1)[1] for c in header if c.startswith("selectivity/")] == probes
    assert [c.split("/", 1)[1] for c in header if c.startswith("val_selectivity/")] == probes
    assert header.index("loss") < header.index(f"selectivity/{probes[0]}")


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt


def test_resume_removes_what_a_killed_process_left_half_written(tmp_path):
    config = tiny_config(tmp_path, "run", epochs=2)
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[_Interrupt()], verbose=0)
    root = config.output_dir
    leftovers = [
        os.path.join(root, "model.4242.partial.keras"),
        os.path.join(root, "summary.json.4242.tmp"),
        os.path.join(root, "history.csv.4242.tmp"),
        os.path.join(root, "checkpoint", "state.4242.tmp.weights.h5"),
        os.path.join(root, "saved_model.4242.partial", "saved_model.pb"),
    ]
    for path in leftovers:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("half")
    summary = train(config, verbose=0)
    assert summary.status == "completed"
    for path in leftovers:
        assert not os.path.exists(path), path
    assert not os.path.exists(os.path.join(root, "saved_model.4242.partial"))

"""`RunSummary`: the one reader and writer of a run's ``summary.json``."""

import glob
import json
import os

import pytest

from conftest import REPO
from tf_selectivity.core.files import DamagedFileError, read_json
from tf_selectivity.training.summary import RESULT_FIELDS, SCHEMA_VERSION, RunSummary

COMMITTED = sorted(glob.glob(os.path.join(REPO, "results", "reduced", "trained", "*", "summary.json")))


def _completed(**overrides):
    values = dict(
        model="resnet20", alpha=-1.0, seed=3, activation="relu", leaky_slope=0.0, epochs=12,
        selectivity_index="eq1", dataset="synthetic:train=10", num_classes=10, image_shape=[32, 32, 3],
        num_train=10, num_validation=5, num_test=20, backend="tensorflow", keras_version="3.15.1",
        train_seconds_this_session=12.5, best_epoch=11, val_accuracy=0.5, test_accuracy=0.25,
        test_layer_selectivity=[0.1, 0.3], test_mean_selectivity=0.2, test_layer_dead_fraction=[0.0, 0.5],
        probe_names=["probe_stem", "probe_out"], jit_compile=False, input_pipeline="tf.data",
        saved_model="saved_model", keras_model="model.keras",
    )
    values.update(overrides)
    return RunSummary(**values)


def test_a_summary_round_trips_through_its_file(tmp_path):
    summary = _completed(packed_replicates=4)
    path = str(tmp_path / "summary.json")
    summary.write(path)
    recorded = read_json(path)
    assert recorded["schema_version"] == SCHEMA_VERSION and recorded["status"] == "completed"
    assert RunSummary.read(path) == summary
    # Only what the run recorded is written: no key for a value it lacks.
    assert "diverged_epoch" not in recorded and "imported" not in recorded and "source" not in recorded
    # A summary made without the optional fields reads back the same.
    minimal = RunSummary(model="m", alpha=0.0, seed=0, activation="relu", leaky_slope=0.0, probe_names=[])
    minimal.write(path)
    assert RunSummary.read(path) == minimal and minimal.selectivity_index == "bounded"


@pytest.mark.skipif(not COMMITTED, reason="no committed runs in results/reduced/trained")
def test_the_committed_runs_load_with_their_recorded_values():
    """Runs recorded before the schema version existed (version 1) read as
    written: the same values, hence the same analysis cache keys."""
    for path in COMMITTED:
        summary = RunSummary.read(path)
        raw = read_json(path)
        assert summary.schema_version == 1 and summary.completed and not summary.diverged, path
        assert summary.to_dict(schema_version=False) == raw, path
        assert summary.to_dict() == {**raw, "schema_version": SCHEMA_VERSION}, path
        assert (summary.model, summary.seed, summary.alpha) == (raw["model"], raw["seed"], raw["alpha"])
        assert len(summary.probe_names) == len(summary.test_layer_selectivity) and summary.extra == {}


def test_a_legacy_summary_gets_the_documented_defaults(tmp_path):
    """A summary written before `status`, `selectivity_index` and
    `schema_version` existed: a completed run of the bounded index."""
    legacy = _completed().to_dict(schema_version=False)
    for name in ("status", "selectivity_index"):
        del legacy[name]
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(legacy))
    summary = RunSummary.read(str(path))
    assert summary.schema_version == 1
    assert (summary.status, summary.selectivity_index) == ("completed", "bounded")
    assert summary.completed and summary.test_accuracy == 0.25


def test_a_diverged_summary_is_the_same_class_without_results(tmp_path):
    summary = _completed(packed_replicates=2).as_diverged(3, "loss is nan")
    assert summary.diverged and not summary.completed and summary.status == "diverged"
    assert (summary.diverged_epoch, summary.epochs_completed, summary.reason) == (3, 2, "loss is nan")
    path = str(tmp_path / "summary.json")
    summary.write(path)
    recorded = read_json(path)
    assert not set(RESULT_FIELDS) & set(recorded)  # no metric that could pass for a result
    assert recorded["selectivity_index"] == "eq1" and recorded["packed_replicates"] == 2
    assert RunSummary.read(path) == summary
    # A diverged run needs no probes (it exported no model).
    del recorded["probe_names"]
    assert RunSummary.from_dict(recorded).diverged


def test_unknown_keys_are_kept_and_written_back(tmp_path):
    values = {**_completed().to_dict(), "note": "rerun on the new cluster"}
    summary = RunSummary.from_dict(values)
    assert summary.extra == {"note": "rerun on the new cluster"}
    path = str(tmp_path / "summary.json")
    summary.write(path)
    assert read_json(path) == values


@pytest.mark.parametrize("content, reason", [
    ('{"model": "resnet8", "alp', "not valid JSON"),
    ("", "it is empty"),
    ("[1, 2]", "it does not hold a JSON object"),
    ('{"model": "resnet8", "alpha": 0.0, "probe_names": []}', "it lacks seed, activation, leaky_slope"),
    ('{"model": "m", "alpha": "a lot", "seed": 0, "activation": "relu", "leaky_slope": 0, "probe_names": []}',
     "its alpha, leaky_slope or seed is not a number"),
    ('{"model": "m", "alpha": 0, "seed": 0, "activation": "relu", "leaky_slope": 0}', "it lacks probe_names"),
    ('{"model": "m", "alpha": 0, "seed": 0, "activation": "relu", "leaky_slope": 0, "status": "paused"}',
     "its status 'paused' is neither 'completed' nor 'diverged'"),
    ('{"model": "m", "alpha": 0, "seed": 0, "activation": "relu", "leaky_slope": 0, "probe_names": [], '
     f'"schema_version": {SCHEMA_VERSION + 1}}}', "is newer than this version of tf_selectivity reads"),
])
def test_a_damaged_summary_raises_the_damaged_file_error(tmp_path, content, reason):
    path = tmp_path / "summary.json"
    path.write_text(content)
    with pytest.raises(DamagedFileError, match="is damaged") as caught:
        RunSummary.read(str(path))
    assert caught.value.path == str(path) and reason in caught.value.reason


def test_a_missing_summary_is_not_a_damaged_one(tmp_path):
    with pytest.raises(FileNotFoundError):
        RunSummary.read(str(tmp_path / "summary.json"))

"""`tf_selectivity.load_run`: a finished run in Python, read as the analysis reads it."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import tf_selectivity
from conftest import REPO, TINY_DATASET
from tf_selectivity import RunLoadError, load_run
from tf_selectivity.training.kept_checkpoints import kept_checkpoint_path

pytestmark = pytest.mark.backends

PREDICT_ON_OTHER_BACKEND = """
import sys
import numpy as np
import tf_selectivity
run = tf_selectivity.load_run(sys.argv[1])
images = np.load(sys.argv[2])
np.save(sys.argv[3], np.asarray(run.model.predict(images, verbose=0)))
import keras
print(keras.backend.backend(), type(run.model).__name__)
"""


@pytest.fixture(scope="module")
def run_dir(tiny_runs):
    return str(tiny_runs / "runs" / "a-10_s1")


def test_exported_from_the_package_top_level():
    from tf_selectivity.analysis import run, runs

    assert tf_selectivity.load_run is run.load_run and tf_selectivity.Run is run.Run
    assert tf_selectivity.RunLoadError is runs.RunLoadError
    assert {"load_run", "Run", "RunLoadError"} <= set(tf_selectivity.__all__)


def test_records_summary_configuration_and_history(run_dir):
    run = load_run(run_dir)
    assert run.path == os.path.abspath(run_dir)
    assert (run.summary.model, run.summary.alpha, run.summary.seed) == ("resnet8", -10.0, 1)
    config = run.config
    assert isinstance(config, tf_selectivity.TrainConfig)
    assert (config.model, config.alpha, config.epochs, config.dataset) == ("resnet8", -10.0, 2, TINY_DATASET)
    assert config.output_dir == run.path
    assert config.identity() == json.load(open(os.path.join(run_dir, "config.json")))["identity"]
    assert list(run.history["epoch"]) == [1, 2]
    assert 1 <= run.epoch <= 2
    assert not run.diverged
    assert repr(run).startswith(f"Run({run.path!r}: resnet8, alpha=-10, seed=1, relu, test accuracy ")
    # Its summary.json names the same run.
    assert load_run(os.path.join(run_dir, "summary.json")).path == run.path


def test_model_and_test_data_reproduce_the_runs_test_accuracy(run_dir):
    run = load_run(run_dir)
    data = run.test_data
    assert data.images.shape == (200, 16, 16, 3) and data.images.dtype == np.uint8
    assert data.num_classes == 10 and len(data.labels) == 200
    model = run.model
    assert isinstance(model, tf_selectivity.SelectivityModel)
    assert model.probe_names == run.summary.probe_names
    assert model is run.model  # loaded once
    predictions = np.argmax(model.predict(data.images.astype("float32"), verbose=0), axis=-1)
    assert np.mean(predictions == data.labels) == pytest.approx(run.summary.test_accuracy, abs=1e-6)


def test_subsets_are_the_analysis_class_balanced_subsets(run_dir):
    from tf_selectivity.data.subsets import balanced_subset

    run = load_run(run_dir)
    subset = run.subset(50)
    expected = balanced_subset(run.test_data.labels, 50)
    np.testing.assert_array_equal(subset.chosen, expected)
    np.testing.assert_array_equal(subset.images, run.test_data.images[expected])
    assert np.bincount(subset.labels).tolist() == [5] * 10
    assert run.subset(50) is subset and run.subset(None) is run.test_data
    # max_test_samples: the analysis' test set is that subset of the whole test split.
    limited = load_run(run_dir, max_test_samples=50)
    np.testing.assert_array_equal(limited.test_data.labels, subset.labels)


def test_the_model_loads_on_the_other_backend_with_the_same_outputs(run_dir, tmp_path):
    import keras

    run = load_run(run_dir)
    images = run.subset(20).images.astype("float32")
    here = np.asarray(run.model.predict(images, verbose=0))
    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    np.save(tmp_path / "images.npy", images)
    env = {**os.environ, "KERAS_BACKEND": other, "PYTHONPATH": REPO}
    result = subprocess.run(
        [sys.executable, "-c", PREDICT_ON_OTHER_BACKEND, run_dir, str(tmp_path / "images.npy"),
         str(tmp_path / "logits.npy")], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-2:] == [other, "SelectivityModel"]
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), here, rtol=1e-4, atol=1e-4)


def _message(path, **kwargs) -> str:
    with pytest.raises(RunLoadError) as caught:
        load_run(path, **kwargs)
    return str(caught.value)


def test_a_path_that_is_not_one_finished_run_is_one_clear_error(tiny_runs, run_dir, tmp_path):
    missing = str(tmp_path / "nowhere")
    assert _message(missing) == f"{missing}: no such file or directory"
    sweep = str(tiny_runs / "runs")
    message = _message(sweep)
    assert message.startswith(f"{sweep} is not a run directory: it holds 4 runs (")
    assert "load one of them" in message
    assert _message(os.path.join(run_dir, "model.keras")).startswith(
        f"{os.path.join(run_dir, 'model.keras')} is a file, not a run: load_run takes the run's directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _message(str(empty)) == f"{empty}: holds no completed run (no summary.json found)"
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    shutil.copy(os.path.join(run_dir, "config.json"), unfinished)
    assert _message(str(unfinished)) == (
        f"{unfinished}: the run is not complete (no summary.json): finish training it first")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "summary.json").write_text('{"model": "resnet8", "alp')
    assert _message(str(damaged)).startswith(f"{damaged}: summary.json is damaged")


def test_a_diverged_run_has_records_but_no_model(run_dir, tmp_path):
    from tf_selectivity.training import RunSummary

    diverged = tmp_path / "diverged"
    shutil.copytree(run_dir, diverged, ignore=shutil.ignore_patterns("model.keras", "saved_model"))
    summary = RunSummary.read(str(diverged / "summary.json")).as_diverged(2, "loss is nan")
    summary.write(str(diverged / "summary.json"))
    run = load_run(str(diverged))
    assert run.diverged and run.config.epochs == 2 and run.epoch is None
    assert "diverged in epoch 2" in repr(run)
    with pytest.raises(RunLoadError, match=r"the run diverged in epoch 2 \(loss is nan\) and exported no model"):
        run.model
    # Weights kept along training load into the network built again from its configuration.
    trained = load_run(run_dir).model
    os.makedirs(diverged / "checkpoints")
    trained.save_weights(kept_checkpoint_path(str(diverged), 1))
    images = run.test_data.images[:8]
    np.testing.assert_array_equal(run.at(1).model.predict(images, verbose=0), trained.predict(images, verbose=0))


def test_a_run_saved_with_save_as_run_has_no_configuration(tmp_path):
    from tf_selectivity import build_model, save_as_run

    path = save_as_run(build_model("resnet8", input_shape=(16, 16, 3), alpha=0.0), str(tmp_path / "imported"),
                       dataset=TINY_DATASET)
    run = load_run(path)
    assert run.config is None and run.history is None and run.summary.imported
    assert run.test_data.images.shape[1:] == (16, 16, 3)

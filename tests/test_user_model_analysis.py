"""The commands on a user's model: `train --model=module:function`, then
`analyze` (per-layer SI, precision, dead units, CCA) with the user's layer
names, from the SavedModel and from model.keras."""

import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from conftest import REPO, error_lines, run_cli
from tf_selectivity.analysis.options import AnalysisOptions
from tf_selectivity.analysis.pipeline import analyze
from tf_selectivity.training import TrainConfig, train

pytestmark = pytest.mark.tensorflow_only

TESTS = os.path.dirname(os.path.abspath(__file__))
SPEC = "user_model_zoo:small_cnn"
TINY = "synthetic:train=300,test=100,size=16,classes=4"
# Subprocesses find the package and the user's module through PYTHONPATH.
ENV = {"PYTHONPATH": os.pathsep.join([REPO, TESTS])}


@pytest.fixture(scope="module")
def user_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("user_runs")
    for alpha in (0.0, -10.0):
        for seed in (0, 1):
            config = TrainConfig(
                model=SPEC, alpha=alpha, seed=seed, dataset=TINY, epochs=2, batch_size=50,
                lr_milestones=(), learning_rate=0.05, output_dir=str(root / f"a{alpha:g}_s{seed}"),
            )
            train(config, verbose=0)
    return root


def test_analysis_uses_the_users_layer_names(user_runs, tmp_path):
    options = AnalysisOptions(n_resamples=200)
    result = analyze([str(user_runs)], str(tmp_path / "analysis"), options, verbose=0)
    assert not result.errors
    assert set(result.runs["model"]) == {SPEC}
    layers = result.layers
    assert list(layers.loc[layers["run_dir"] == layers["run_dir"].iloc[0], "layer"]) == ["probe_conv1", "probe_conv2"]
    assert {"mean_selectivity", "mean_precision", "dead_fraction"} <= set(layers.columns)
    units = result.units
    assert len(units) == 4 * (8 + 16)
    # Precision's N is capped at the test images per class (100 / 4).
    assert set(result.runs["precision_top_n"]) == {25}
    # CCA of the same user model across runs: both layers, by name.
    assert result.cca is not None and set(result.cca["layer"]) == {"probe_conv1", "probe_conv2"}
    assert result.figures
    assert os.path.exists(result.report)
    runs_csv = pd.read_csv(tmp_path / "analysis" / "runs.csv")
    assert set(runs_csv["model"]) == {SPEC}
    # Figures name the (few) layers on their layer axes.
    from tf_selectivity.analysis.stages.selectivity.figures import plot_selectivity

    figure = plot_selectivity(result.runs, result.layers, SPEC, n_resamples=200)
    layer_axis = figure.axes[0]
    assert [t.get_text() for t in layer_axis.get_xticklabels()] == ["conv1", "conv2"]


def test_keras_file_fallback_imports_the_users_module(user_runs, tmp_path):
    """Without the SavedModel, analysis loads model.keras, whose custom layer
    (user_model_zoo.ScalePixels) is found by importing the spec's module."""
    run = tmp_path / "run"
    shutil.copytree(user_runs / "a0_s0", run)
    shutil.rmtree(run / "saved_model")
    code = (
        "from tf_selectivity.analysis.runs import discover_runs, load_response_function\n"
        "import numpy as np\n"
        f"records, errors = discover_runs([{str(run)!r}])\n"
        "respond = load_response_function(records[0])\n"
        "out = respond(np.zeros((2, 16, 16, 3), np.float32))\n"
        "print(sorted(out), out['probe_conv2'].shape)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
        env={**os.environ, **ENV}, cwd=str(tmp_path),
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "['logits', 'probe_conv1', 'probe_conv2'] (2, 16)" in completed.stdout


def test_train_cli_takes_a_model_spec(tmp_path):
    out = tmp_path / "cli_run"
    result = run_cli(
        "tf_selectivity.train", f"--model={SPEC}", "--alpha=-1", f"--dataset={TINY}", "--epochs=1",
        "--batch_size=50", "--lr_milestones=", "--verbose=0", f"--output_dir={out}",
        env=ENV, cwd=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "summary.json").exists() and (out / "saved_model").is_dir()
    bad = run_cli(
        "tf_selectivity.train", "--model=no_such_module_xyz:build", f"--dataset={TINY}",
        f"--output_dir={tmp_path / 'bad'}", env=ENV, cwd=str(tmp_path),
    )
    assert bad.returncode == 2
    lines = error_lines(bad.stderr)
    assert len(lines) == 1 and "cannot import module 'no_such_module_xyz'" in lines[0]
    assert not (tmp_path / "bad").exists()


def test_sweep_takes_a_model_spec(tmp_path):
    result = run_cli(
        "tf_selectivity.sweep", f"--model={SPEC}", "--alphas=0,-1", "--seeds=0,1", f"--dataset={TINY}",
        "--dry_run", f"--output_dir={tmp_path / 'sweep'}", env=ENV, cwd=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f'"model": "{SPEC}"' in result.stdout
    bad = run_cli(
        "tf_selectivity.sweep", "--model=user_model_zoo:missing", "--alphas=0", "--dry_run",
        f"--output_dir={tmp_path / 'bad'}", env=ENV, cwd=str(tmp_path),
    )
    assert bad.returncode == 2 and "has no function 'missing'" in bad.stderr

"""`selectivity_every`: the class selectivity index on the validation split
while training, in history.csv, equal to the analysis' index of the same
weights, and the same curve after a kill and a resume."""

import csv
import os

import numpy as np
import pandas as pd
import pytest

from conftest import assert_redraw_matches
from training_callbacks import Interrupt
from tf_selectivity.data import ImageBatches
from tf_selectivity.data.sources import load_config_dataset
from tf_selectivity.models import build_model
from tf_selectivity.training import TrainConfig, train
from tf_selectivity.measures.unit_statistics import evaluate_responses

pytestmark = pytest.mark.backends

TINY = "synthetic:train=400,test=100,size=16"


def config(tmp_path, name, **overrides):
    values = dict(model="resnet8", dataset=TINY, epochs=3, batch_size=64, lr_milestones=(), alpha=-1.0,
                  selectivity_every=2, output_dir=str(tmp_path / name))
    values.update(overrides)
    return TrainConfig(**values)


def history(run_dir):
    with open(os.path.join(run_dir, "history.csv")) as f:
        return list(csv.DictReader(f))


def test_recorded_every_n_epochs_and_equal_to_the_analysis_of_the_final_weights(tmp_path):
    run = config(tmp_path, "run")
    summary = train(run, verbose=0)
    rows = history(run.output_dir)
    probes = summary.probe_names
    columns = [f"val_split_selectivity/{name}" for name in probes] + ["val_split_mean_selectivity"]
    # Epochs 2 (every 2) and 3 (the last); nothing at epoch 1.
    assert [bool(rows[i][columns[-1]]) for i in range(3)] == [False, True, True]
    assert all(rows[0][c] == "" for c in columns)

    # The analysis' index (unit_statistics, float64 in NumPy) of the final
    # weights (the state after epoch 3) on the same validation split.
    data = load_config_dataset(run)
    pixel_mean, pixel_std = data.pixel_statistics()
    model = build_model("resnet8", alpha=-1.0, input_shape=data.image_shape, pixel_mean=pixel_mean,
                        pixel_std=pixel_std)
    model.compile(optimizer="sgd")  # the state file holds optimizer variables too
    model.optimizer.build(model.trainable_variables)
    model.load_weights(os.path.join(run.output_dir, "checkpoint", "state.weights.h5"))
    reference = evaluate_responses(
        model.unit_response_model().predict_on_batch,
        ImageBatches(data.validation_images, data.validation_labels, 500),
        num_classes=data.num_classes, layer_names=probes,
    )
    logged = [float(rows[2][c]) for c in columns[:-1]]
    # float32 class sums on the device against float64 sums in NumPy.
    np.testing.assert_allclose(logged, reference.layer_selectivity(), rtol=1e-4, atol=1e-6)
    assert float(rows[2][columns[-1]]) == pytest.approx(reference.mean_selectivity(), rel=1e-4, abs=1e-6)


    # The analysis draws the curve and reports the half-rise epochs: its table
    # is `half_rise_epochs` of the history, per layer.
    from tf_selectivity.analysis.options import AnalysisOptions, SimilarityOptions
    from tf_selectivity.analysis.pipeline import analyze
    from tf_selectivity.analysis.stages.training_curves.curves import half_rise_epochs, read_training_curves

    out = tmp_path / "analysis"
    # With figures (the training curves are figures like the others: --nofigures leaves them out too).
    options = AnalysisOptions(n_resamples=100, similarity=SimilarityOptions(enabled="false"))
    result = analyze([run.output_dir], str(out), options, verbose=0)
    table = pd.read_csv(out / "half_rise_epochs.csv")
    expected = half_rise_epochs(read_training_curves([run.output_dir]))
    assert list(table["layer"]) == probes + ["mean"] and set(table["model"]) == {"resnet8"}
    assert set(table["alpha"]) == {-1.0}
    np.testing.assert_array_equal(table["half_rise_epoch"], expected["half_rise_epoch"])
    np.testing.assert_allclose(table["final_selectivity"], [float(rows[2][c]) for c in columns], rtol=1e-12)
    for layer in probes + ["mean"]:
        assert (out / "figures" / f"figS_training_curves_resnet8_{layer}.png").stat().st_size > 0
    report = (out / "report.md").read_text()
    section = report[report.index("## Selectivity while training"):]
    epoch = expected.set_index("layer").loc["mean", "half_rise_epoch"]
    assert f"| eq. 3 mean | {epoch:.1f} (n = 1) |" in section
    # The saved tables give the same figures and report again.
    assert_redraw_matches(out, result.figures, options, tmp_path / "redrawn")


def test_resume_after_a_kill_gives_the_same_curve(tmp_path):
    straight = config(tmp_path, "straight", selectivity_every=1)
    train(straight, verbose=0)
    resumed = config(tmp_path, "resumed", selectivity_every=1)
    with pytest.raises(KeyboardInterrupt):
        train(resumed, callbacks=[Interrupt(2)], verbose=0)
    train(resumed, verbose=0)
    column = "val_split_mean_selectivity"
    curve = lambda run: [float(row[column]) for row in history(run.output_dir)]
    assert len(curve(straight)) == 3
    np.testing.assert_allclose(curve(resumed), curve(straight), rtol=1e-5, atol=1e-7)


def test_off_by_default_and_refused_when_negative(tmp_path):
    from tf_selectivity.training import ConfigError

    run = config(tmp_path, "off", selectivity_every=0, epochs=1)
    train(run, verbose=0)
    assert not any(name.startswith("val_split") for name in history(run.output_dir)[0])
    with pytest.raises(ConfigError, match="selectivity_every must be a non-negative integer"):
        config(tmp_path, "bad", selectivity_every=-1).validate()

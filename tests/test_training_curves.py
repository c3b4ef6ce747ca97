"""Selectivity while training from run directories (hand-made history.csv):
tidy curves, means over seeds, the half-rise epoch, and the figure."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from tf_selectivity.analysis.stages.training_curves.curves import (
    MEAN_LAYER,
    half_rise_epochs,
    read_training_curves,
    summarize_half_rise,
    summarize_training_curves,
)
from tf_selectivity.core.settings import ParameterError
from tf_selectivity.plots.style import save_figure
from tf_selectivity.analysis.stages.training_curves.figures import plot_training_curves

# alpha -> seed -> per-epoch (layer a, layer b) SI; epoch 1 not recorded (selectivity_every=2 style).
CURVES = {
    0.0: {0: [None, (0.10, 0.20), (0.30, 0.40), (0.40, 0.50)], 1: [None, (0.20, 0.10), (0.20, 0.30), (0.30, 0.60)]},
    -1.0: {0: [None, (0.05, 0.02), (0.02, 0.01), (0.01, 0.00)], 1: [None, (0.04, 0.03), (0.03, 0.02), (0.02, 0.0)]},
}
ACCURACY = {0.0: [0.3, 0.5, 0.6, 0.7], -1.0: [0.2, 0.4, 0.5, 0.55]}


def _write_runs(root):
    run_dirs = []
    for alpha, seeds in CURVES.items():
        for seed, epochs in seeds.items():
            run_dir = os.path.join(root, f"a{alpha}_s{seed}")
            os.makedirs(run_dir)
            with open(os.path.join(run_dir, "config.json"), "w") as f:
                json.dump({"model": "resnet20", "alpha": alpha, "seed": seed}, f)
            lines = ["epoch,loss,val_accuracy,val_split_mean_selectivity,val_split_selectivity/probe_a,"
                     "val_split_selectivity/probe_b"]
            for epoch, values in enumerate(epochs, start=1):
                accuracy = ACCURACY[alpha][epoch - 1] + 0.01 * seed
                if values is None:
                    lines.append(f"{epoch},1.0,{accuracy},,,")
                else:
                    lines.append(f"{epoch},1.0,{accuracy},{np.mean(values)},{values[0]},{values[1]}")
            with open(os.path.join(run_dir, "history.csv"), "w") as f:
                f.write("\n".join(lines) + "\n")
            run_dirs.append(run_dir)
    return run_dirs


def test_curves_are_read_tidy(tmp_path):
    curves = read_training_curves(_write_runs(tmp_path))
    assert len(curves) == 4 * 4 * 3  # runs x epochs x (2 layers + mean)
    assert set(curves["layer"]) == {"probe_a", "probe_b", MEAN_LAYER}
    row = curves[(curves["alpha"] == 0.0) & (curves["seed"] == 1) & (curves["epoch"] == 3)].set_index("layer")
    assert row.loc["probe_b", "selectivity"] == pytest.approx(0.30)
    assert row.loc[MEAN_LAYER, "selectivity"] == pytest.approx(0.25)
    assert row.loc["probe_a", "val_accuracy"] == pytest.approx(0.61)
    assert curves[curves["epoch"] == 1]["selectivity"].isna().all()
    assert curves[curves["epoch"] == 1]["val_accuracy"].notna().all()


def test_mean_over_seeds_per_alpha_and_epoch(tmp_path):
    curves = read_training_curves(_write_runs(tmp_path))
    summary = summarize_training_curves(curves, n_resamples=200)
    row = summary[(summary["alpha"] == 0.0) & (summary["layer"] == "probe_a") & (summary["epoch"] == 4)].iloc[0]
    assert row["n"] == 2
    assert row["selectivity_mean"] == pytest.approx((0.40 + 0.30) / 2)
    assert row["accuracy_mean"] == pytest.approx((0.70 + 0.71) / 2)
    assert 0.30 <= row["selectivity_ci_low"] <= row["selectivity_mean"] <= row["selectivity_ci_high"] <= 0.40
    # Grouped by hand: the same means as pandas.
    expected = curves.groupby(["alpha", "layer", "epoch"])["selectivity"].mean()
    got = summary.set_index(["alpha", "layer", "epoch"])["selectivity_mean"]
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False)


def test_half_rise_epoch(tmp_path):
    curves = read_training_curves(_write_runs(tmp_path))
    rise = half_rise_epochs(curves).set_index(["alpha", "seed", "layer"])["half_rise_epoch"]
    # alpha 0, seed 0, probe_a: 0.10, 0.30, 0.40 -> half of 0.40 = 0.20 first reached at epoch 3.
    assert rise.loc[(0.0, 0, "probe_a")] == 3
    # seed 1, probe_a: 0.20, 0.20, 0.30 -> 0.15 reached at epoch 2; probe_b: 0.10, 0.30, 0.60 -> 0.30 at epoch 3.
    assert rise.loc[(0.0, 1, "probe_a")] == 2
    assert rise.loc[(0.0, 1, "probe_b")] == 3
    # Final SI 0 (suppressed to nothing): no rise.
    assert np.isnan(rise.loc[(-1.0, 0, "probe_b")])
    assert half_rise_epochs(curves, fraction=1.0).set_index(["alpha", "seed", "layer"]).loc[
        (0.0, 1, "probe_a"), "half_rise_epoch"] == 4
    summary = summarize_half_rise(half_rise_epochs(curves), n_resamples=200).set_index(["alpha", "layer"])
    assert summary.loc[(0.0, "probe_a"), "mean"] == pytest.approx(2.5)  # epochs 3 and 2
    assert summary.loc[(0.0, "probe_a"), "n"] == 2
    assert summary.loc[(-1.0, "probe_b"), "n"] == 0  # suppressed: no rise in either seed
    assert list(summary.loc[0.0].index) == ["probe_a", "probe_b", MEAN_LAYER]
    with pytest.raises(ParameterError) as error:
        half_rise_epochs(curves, fraction=0)
    assert error.value.parameter == "fraction"


def test_figure_draws_every_alpha_and_is_saved(tmp_path):
    curves = read_training_curves(_write_runs(tmp_path / "runs"))
    summary = summarize_training_curves(curves, n_resamples=200)
    figure = plot_training_curves(summary, half_rise=half_rise_epochs(curves))
    gids = {line.get_gid() for ax in figure.axes for line in ax.get_lines()}
    assert {"si-0", "si--1", "accuracy-0", "accuracy--1", "half-rise-0"} <= gids
    si_line = next(line for line in figure.axes[0].get_lines() if line.get_gid() == "si-0")
    np.testing.assert_allclose(si_line.get_xdata(), [2, 3, 4])
    np.testing.assert_allclose(si_line.get_ydata(), [0.15, 0.3, 0.45])  # mean over seeds of eq. 3's mean
    paths = save_figure(figure, tmp_path / "training_curves", ("png",), 100)
    with open(paths[0], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert plot_training_curves(summary, layer="nope") is None


def test_bad_run_directories(tmp_path):
    with pytest.raises(ParameterError) as error:
        read_training_curves([])
    assert error.value.parameter == "run_dirs"
    with pytest.raises(ParameterError, match="no history.csv"):
        read_training_curves([str(tmp_path)])
    (tmp_path / "history.csv").write_text("epoch,loss,val_accuracy\n1,1.0,0.5\n")
    with pytest.raises(ParameterError, match="selectivity_every"):
        read_training_curves([str(tmp_path)])

"""Selectivity while training from run directories (hand-made history.csv and
selectivity_steps.csv, and a tiny real run): tidy curves, means over seeds,
the half-rise epoch, and the figure."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from tf_selectivity.analysis.stages.training_curves.curves import (
    MEAN_LAYER,
    half_rise_epochs,
    has_training_curves,
    read_run_curves,
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


# ---------------------------------------------------------------- selectivity every N steps
# A run of 4 steps per epoch that recorded the SI at every step of its first 2
# epochs (steps 0 .. 7; step 4 is epoch 1's end) and every epoch in history.csv.
STEPS_PER_EPOCH = 4
STEP_SI = {"probe_a": [0.05, 0.10, 0.30, 0.35, 0.40, 0.42, 0.45, 0.48], "probe_b": [0.40, 0.30, 0.30, 0.35, 0.40,
                                                                                    0.45, 0.50, 0.55]}
EPOCH_SI = {"probe_a": [0.40, 0.50, 0.60], "probe_b": [0.40, 0.55, 0.60]}  # epochs 1 .. 3


def _write_steps_run(run_dir, history_selectivity=True, history=True, alpha=0.0, seed=0):
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump({"model": "resnet8", "alpha": alpha, "seed": seed}, f)
    lines = ["step,epoch,layer,selectivity,mean"]
    for step in range(2 * STEPS_PER_EPOCH):
        values = {layer: si[step] for layer, si in STEP_SI.items()}
        # Epoch 1's end: a hair off history.csv's value, to tell whose row is kept.
        shift = 1e-9 if step == STEPS_PER_EPOCH else 0.0
        for layer, value in values.items():
            lines.append(f"{step},{step / STEPS_PER_EPOCH!r},{layer},{value + shift!r},"
                         f"{float(np.mean(list(values.values()))) + shift!r}")
    with open(os.path.join(run_dir, "selectivity_steps.csv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    if history:
        header = "epoch,loss,val_accuracy"
        if history_selectivity:
            header += ",val_split_mean_selectivity,val_split_selectivity/probe_a,val_split_selectivity/probe_b"
        rows = [header]
        for epoch in range(1, 4):
            a, b = EPOCH_SI["probe_a"][epoch - 1], EPOCH_SI["probe_b"][epoch - 1]
            row = f"{epoch},1.0,{0.3 + 0.1 * epoch}"
            rows.append(row + (f",{(a + b) / 2!r},{a!r},{b!r}" if history_selectivity else ""))
        with open(os.path.join(run_dir, "history.csv"), "w") as f:
            f.write("\n".join(rows) + "\n")
    return str(run_dir)


def test_step_rows_join_the_epochs_of_history(tmp_path):
    run_dir = _write_steps_run(tmp_path / "run")
    assert has_training_curves(run_dir)
    curves = read_run_curves(run_dir)
    assert list(curves["layer"].unique()) == ["probe_a", "probe_b", MEAN_LAYER]
    probe_a = curves[curves["layer"] == "probe_a"]
    # Steps 0 .. 7 at their fractional epochs, then history's epochs 2 and 3; epoch 1 once.
    np.testing.assert_allclose(probe_a["epoch"], [0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2, 3])
    assert not curves.duplicated(["epoch", "layer"]).any()
    np.testing.assert_allclose(probe_a["selectivity"], STEP_SI["probe_a"][:4] + [0.40]
                               + STEP_SI["probe_a"][5:] + [0.50, 0.60])
    at_one = curves[curves["epoch"] == 1].set_index("layer")
    assert at_one.loc["probe_a", "selectivity"] == 0.40  # history's row, not the step's
    assert at_one.loc[MEAN_LAYER, "selectivity"] == pytest.approx(0.40, abs=0)
    assert at_one["val_accuracy"].tolist() == pytest.approx([0.4] * 3)
    assert curves[curves["epoch"] % 1 != 0]["val_accuracy"].isna().all()
    mean = curves[(curves["layer"] == MEAN_LAYER) & (curves["epoch"] == 0.5)]["selectivity"]
    assert mean.tolist() == pytest.approx([0.30])

    # SI only every N steps (selectivity_every=0): history.csv gives the accuracy, the steps the SI.
    only_steps = read_run_curves(_write_steps_run(tmp_path / "steps_only", history_selectivity=False))
    assert has_training_curves(str(tmp_path / "steps_only"))
    at_one = only_steps[only_steps["epoch"] == 1].set_index("layer")
    assert at_one.loc["probe_a", "selectivity"] == pytest.approx(0.40 + 1e-9, abs=0)
    assert at_one.loc["probe_a", "val_accuracy"] == pytest.approx(0.4)
    assert only_steps[only_steps["epoch"] == 3]["selectivity"].isna().all()
    # No history.csv at all: the steps alone.
    bare = read_run_curves(_write_steps_run(tmp_path / "bare", history=False))
    assert len(bare) == 8 * 3 and bare["val_accuracy"].isna().all()


def test_half_rise_is_resolved_inside_the_first_epoch(tmp_path):
    runs = [_write_steps_run(tmp_path / f"s{seed}", seed=seed) for seed in (0, 1)]
    rise = half_rise_epochs(read_training_curves(runs)).set_index(["seed", "layer"])
    # probe_a: final 0.60, half 0.30 first reached at step 2 = epoch 0.5.
    assert rise.loc[(0, "probe_a"), "half_rise_epoch"] == 0.5
    assert rise.loc[(0, "probe_a"), "final_epoch"] == 3.0
    # probe_b: 0.40 at initialization already is half of 0.60.
    assert rise.loc[(0, "probe_b"), "half_rise_epoch"] == 0.0
    # mean: (0.05 + 0.40) / 2, (0.10 + 0.30) / 2, (0.30 + 0.30) / 2 = 0.30 = half of 0.60 at epoch 0.5.
    assert rise.loc[(0, MEAN_LAYER), "half_rise_epoch"] == 0.5
    assert rise.loc[(0, "probe_a"), "half_rise_epoch"] == pytest.approx(
        half_rise_epochs(read_training_curves(runs), fraction=0.5).iloc[0]["half_rise_epoch"])
    summary = summarize_half_rise(half_rise_epochs(read_training_curves(runs)), n_resamples=50)
    assert summary.set_index("layer").loc["probe_a", "mean"] == 0.5


def _stage_tables(curves, names=None):
    """The training-curves stage's tables of `curves`, conditions named by `names` (run directory -> name)."""
    from types import SimpleNamespace

    from tf_selectivity.analysis.context import insert_condition
    from tf_selectivity.analysis.stages.training_curves.stage import TrainingCurvesStage

    stage = TrainingCurvesStage()
    context = SimpleNamespace(options=SimpleNamespace(n_resamples=50),
                              with_condition_names=lambda frame, **_: insert_condition(frame, names or {}))
    frames = {run_dir: rows for run_dir, rows in curves.groupby("run_dir")}
    results = {run_dir: SimpleNamespace(tables={"curves": rows}) for run_dir, rows in frames.items()}
    return stage, stage.combine(results, context), context


def test_windows_of_alpha_are_separate_figures(tmp_path):
    runs = {window: _write_steps_run(tmp_path / window.replace(":", "_"), alpha=-1.0) for window in ("0:1", "1:end")}
    names = {os.path.abspath(run_dir): f"resnet8, alpha_window={window}" for window, run_dir in runs.items()}
    stage, tables, context = _stage_tables(read_training_curves(runs.values()), names)
    figures = dict(stage.figures(tables, context))
    assert {"figS_training_curves_resnet8_mean__alpha_window_0_1",
            "figS_training_curves_resnet8_mean__alpha_window_1_end"} <= set(figures)
    section = "\n".join(stage.section(tables, context))
    assert "### resnet8, alpha_window=0:1: half-rise epoch" in section
    assert "| probe_a | 0.50 (n = 1) |" in section and "--selectivity_every_steps" in section


@pytest.fixture(scope="module")
def stepped_run(tmp_path_factory):
    """A tiny real run that recorded the SI every epoch and at every step of its 2 epochs (3 steps each)."""
    import keras

    from tf_selectivity.training import TrainConfig, train

    keras.backend.clear_session()
    config = TrainConfig(model="resnet8", dataset="synthetic:train=100,test=20,size=16", epochs=2, batch_size=32,
                         lr_milestones=(), alpha=0.0, selectivity_every=1, selectivity_every_steps=1,
                         selectivity_steps_until=2, output_dir=str(tmp_path_factory.mktemp("stepped") / "run"))
    train(config, verbose=0)
    return config.output_dir


def test_real_run_steps_agree_with_history_and_are_drawn(stepped_run, tmp_path):
    history = pd.read_csv(os.path.join(stepped_run, "history.csv")).set_index("epoch")
    steps = pd.read_csv(os.path.join(stepped_run, "selectivity_steps.csv"))
    # 90 training images in batches of 32: 3 steps per epoch; steps 0 .. 5 (6 is not below 2 epochs).
    assert sorted(steps["step"].unique()) == [0, 1, 2, 3, 4, 5]
    at_end = steps[steps["step"] == 3].set_index("layer")
    assert (at_end["epoch"] == 1.0).all()
    # Epoch 1's end: the step row and history.csv come from the same validation pass.
    for layer, row in at_end.iterrows():
        assert row["selectivity"] == pytest.approx(history.loc[1, f"val_split_selectivity/{layer}"], rel=1e-6)
    assert at_end["mean"].iloc[0] == pytest.approx(history.loc[1, "val_split_mean_selectivity"], rel=1e-6)

    curves = read_training_curves([stepped_run])
    np.testing.assert_allclose(sorted(curves["epoch"].unique()), [0, 1 / 3, 2 / 3, 1, 4 / 3, 5 / 3, 2])
    assert not curves.duplicated(["epoch", "layer"]).any()
    assert curves[curves["epoch"] == 2]["selectivity"].notna().all()
    fractional = curves["epoch"] % 1 != 0
    assert curves[fractional]["val_accuracy"].isna().all() and curves[~fractional & (curves["epoch"] > 0)][
        "val_accuracy"].notna().all()
    mean = curves[(curves["layer"] == MEAN_LAYER) & (curves["epoch"] == 1)]["selectivity"].iloc[0]
    assert mean == history.loc[1, "val_split_mean_selectivity"]

    stage, tables, context = _stage_tables(curves)
    figures = dict(stage.figures(tables, context))
    figure = figures["figS_training_curves_resnet8_mean"]
    assert figure.axes[0].get_xscale() == "symlog" and "symmetric log" in figure.texts[-1].get_text()
    si_line = next(line for line in figure.axes[0].get_lines() if line.get_gid() == "si-0")
    np.testing.assert_allclose(si_line.get_xdata(), [0, 1 / 3, 2 / 3, 1, 4 / 3, 5 / 3, 2])
    paths = save_figure(figure, tmp_path / "steps", ("png",), 100)
    assert os.path.getsize(paths[0]) > 0
    section = "\n".join(stage.section(tables, context))
    assert "## Selectivity while training" in section and "| eq. 3 mean |" in section

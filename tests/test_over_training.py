"""`analyze --over_training` on tiny runs with kept checkpoints, and its claims on hand-made tables."""

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_DATASET, assert_redraw_matches
from tf_selectivity.analysis.claims import NOT_TESTABLE, SUPPORTED
from tf_selectivity.analysis.options import (
    AnalysisOptions,
    InitializationOptions,
    OverTrainingOptions,
    SelectivityOptions,
    SimilarityOptions,
)
from tf_selectivity.analysis.pipeline import analyze

pytestmark = pytest.mark.tensorflow_only

# Two of resnet8's probes (16 and 64 units): the stem and the last block's output.
LAYERS = ("probe_stem", "probe_s3b1_out")
KEPT = (0.0, 0.25, 0.5, 1.0)
SAMPLES = 60
OPTIONS = AnalysisOptions(
    n_resamples=50, similarity=SimilarityOptions(enabled="false"), selectivity=SelectivityOptions(null_permutations=0),
    initialization=InitializationOptions(enabled=False),
    over_training=OverTrainingOptions(enabled=True, layers=LAYERS, max_samples=SAMPLES, null_permutations=20,
                                      linearity_pairs=20, early_epochs=0.5),
)


@pytest.fixture(scope="module")
def kept_runs(tmp_path_factory):
    """Two resnet8 runs (alpha 0, seeds 0 and 1) on the tiny synthetic set, keeping checkpoints at `KEPT`."""
    from tf_selectivity.training import TrainConfig, train

    root = tmp_path_factory.mktemp("kept")
    for seed in (0, 1):
        train(TrainConfig(model="resnet8", alpha=0.0, seed=seed, dataset=TINY_DATASET, epochs=1, batch_size=64,
                          lr_milestones=(), keep_checkpoints=KEPT, output_dir=str(root / "runs" / f"s{seed}")),
              verbose=0)
    return root / "runs"


@pytest.fixture(scope="module")
def analysed(kept_runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("over_training")
    return analyze([str(kept_runs)], str(out), OPTIONS), out


def _subset():
    from tf_selectivity.data import load_test_split
    from tf_selectivity.data.subsets import balanced_subset

    images, labels, _ = load_test_split(TINY_DATASET)
    chosen = balanced_subset(labels, SAMPLES)
    return images[chosen], labels[chosen]


def _model_at(run_dir, epoch):
    """The run's network at a kept checkpoint, loaded by the library's own `load_run(...).at(epoch)`."""
    from tf_selectivity.analysis.run import load_run

    return load_run(str(run_dir)).at(epoch).model


def test_the_tables_hold_every_run_checkpoint_and_layer(analysed):
    _, out = analysed
    layers = pd.read_csv(out / "over_training.csv")
    network = pd.read_csv(out / "over_training_network.csv")
    assert {"run_dir", "model", "alpha", "seed", "condition", "epoch", "layer", "mean_selectivity",
            "selective_fraction", "mean_importance", "si_importance_spearman", "nonlinearity"} <= set(layers.columns)
    assert "alpha_window" not in layers.columns  # no run was trained in a window of alpha
    assert len(layers) == 2 * len(KEPT) * len(LAYERS) and len(network) == 2 * len(KEPT)
    assert sorted(network["epoch"].unique()) == list(KEPT)
    assert network[["mean_selectivity", "selective_fraction", "nonlinearity", "accuracy"]].notna().all().all()
    assert (network["nonlinearity"] > 0).all()  # ReLU networks are not linear
    figures = sorted(path.name for path in (out / "figures").glob("over_training_*.png"))
    assert figures == ["over_training_resnet8_relu.png"]
    assert len(list((out / "cache" / "over_training").iterdir())) == 2


def test_a_checkpoints_si_equals_numpy_on_its_weights(analysed, kept_runs):
    _, out = analysed
    layers = pd.read_csv(out / "over_training.csv")
    run_dir = str(kept_runs / "s1")
    model = _model_at(run_dir, 0.5)
    images, labels = _subset()
    responses = model.unit_response_model().predict(images.astype(np.float32), verbose=0)
    for name in LAYERS:
        values = np.asarray(responses[name], np.float64)
        means = np.stack([values[labels == c].mean(axis=0) for c in range(10)])
        top = means.max(axis=0)
        rest = (means.sum(axis=0) - top) / 9
        with np.errstate(invalid="ignore", divide="ignore"):
            si = np.where(top + rest > 0, (top - rest) / (top + rest), 0.0)
        row = layers[(layers["run_dir"].str.endswith("s1")) & (layers["epoch"] == 0.5) & (layers["layer"] == name)]
        assert float(row["mean_selectivity"].iloc[0]) == pytest.approx(si.mean(), rel=1e-6, abs=1e-9)


def test_ablation_importance_equals_the_ablation_stages_on_the_checkpoint(analysed, kept_runs):
    from tf_selectivity.analysis.stages.ablation.ablate import unit_importance

    _, out = analysed
    layers = pd.read_csv(out / "over_training.csv")
    model = _model_at(str(kept_runs / "s0"), 1.0)
    images, labels = _subset()
    direct = unit_importance(model, images, labels, layers=["probe_stem"])
    row = layers[(layers["run_dir"].str.endswith("s0")) & (layers["epoch"] == 1.0) & (layers["layer"] == "probe_stem")]
    assert float(row["mean_importance"].iloc[0]) == pytest.approx(direct["importance"].mean(), abs=1e-9)


def test_the_report_states_the_four_claims(analysed):
    _, out = analysed
    report = (out / "report.md").read_text()
    assert "## Selectivity, ablation and linearity over training" in report
    claims = pd.read_csv(out / "claims.csv")
    own = claims[claims["stage"] == "over_training"]
    assert len(own) == 4
    window = own[own["claim"].str.startswith("Suppressing class selectivity early")].iloc[0]
    assert window["verdict"] == NOT_TESTABLE and "alpha_window" in window["reason"]
    for claim in own["claim"]:
        assert claim in report


def _network(values):
    """An over_training_network table: 3 alpha = 0 runs, epochs 0, 0.5, 1, 4 with `values`[measure][epoch]."""
    rows = []
    for seed, noise in enumerate((0.0, 0.01, -0.02)):
        for epoch in (0.0, 0.5, 1.0, 4.0):
            rows.append({"run_dir": f"r{seed}", "model": "resnet8", "alpha": 0.0, "seed": seed,
                         "activation": "relu", "leaky_slope": 0.0, "condition": "ResNet8", "epoch": epoch,
                         **{measure: by_epoch[epoch] + noise * (1 + epoch) for measure, by_epoch in values.items()},
                         "accuracy": 0.5, "selective_fraction": 0.5, "mean_importance": 0.01})
    return pd.DataFrame(rows)


def _runs(windows):
    rows = []
    for window, accuracies in windows.items():
        for seed, accuracy in enumerate(accuracies):
            rows.append({"run_dir": f"{window}-{seed}", "model": "resnet8", "alpha": -1.0, "seed": seed,
                         "activation": "relu", "leaky_slope": 0.0,
                         "condition": f"ResNet8, alpha_window={window}", "alpha_window": window,
                         "test_accuracy": accuracy, "kept_checkpoints": 0})
    return pd.DataFrame(rows)


def test_the_claims_follow_the_numbers():
    from tf_selectivity.analysis.stages.over_training.claims import claim_tests

    network = _network({
        "mean_selectivity": {0.0: 0.1, 0.5: 0.6, 1.0: 0.5, 4.0: 0.3},  # rises, recedes, stays above 0.1
        "si_importance_spearman": {0.0: 0.0, 0.5: 0.5, 1.0: 0.4, 4.0: 0.1},
        "nonlinearity": {0.0: 0.5, 0.5: 0.05, 1.0: 0.06, 4.0: 0.4},
    })
    windowed = _runs({"0:1": (0.60, 0.62, 0.61), "5:end": (0.80, 0.79, 0.83)})
    tests = claim_tests({"over_training_network": network, "over_training_runs": windowed},
                        AnalysisOptions(over_training=OverTrainingOptions(enabled=True, early_epochs=1.0)))
    assert list(tests["claim_number"]) == [1, 2, 3, 4]
    assert list(tests["verdict"]) == [SUPPORTED] * 4
    assert tests["n"].tolist() == [3, 3, 3, 3]
    # The same alpha = 0 runs shared as a window's baseline are tested once, in their own condition.
    for own in ("", np.nan):  # as written, and as a CSV reads "" back
        shared = pd.concat([network.assign(baseline_shared_from=own),
                            network.assign(condition="ResNet8, alpha_window=0:1", baseline_shared_from="ResNet8")])
        again = claim_tests({"over_training_network": shared, "over_training_runs": windowed},
                            AnalysisOptions(over_training=OverTrainingOptions(enabled=True, early_epochs=1.0)))
        assert again.equals(tests)
    # SI that keeps rising is not the paper's rise and recession.
    rising = _network({"mean_selectivity": {0.0: 0.1, 0.5: 0.2, 1.0: 0.3, 4.0: 0.6},
                       "si_importance_spearman": {0.0: 0.0, 0.5: 0.5, 1.0: 0.4, 4.0: 0.1},
                       "nonlinearity": {0.0: 0.5, 0.5: 0.05, 1.0: 0.06, 4.0: 0.4}})
    tests = claim_tests({"over_training_network": rising, "over_training_runs": windowed.drop(columns="alpha_window")},
                        AnalysisOptions(over_training=OverTrainingOptions(enabled=True)))
    assert tests["verdict"].tolist()[0] != SUPPORTED
    assert tests["verdict"].tolist()[3] == NOT_TESTABLE and "alpha_window" in tests["reason"].iloc[3]


def test_the_run_model_holds_its_trained_weights_again_after_the_checkpoints(kept_runs, tmp_path):
    from tf_selectivity.analysis.context import AnalysisContext, RunContext, TestDataLoader
    from tf_selectivity.analysis.pipeline import find_runs
    from tf_selectivity.analysis.runs import load_run_model
    from tf_selectivity.analysis.stages.over_training.stage import OverTrainingStage

    options = AnalysisOptions(over_training=OverTrainingOptions(
        enabled=True, layers=("probe_stem",), max_samples=20, null_permutations=0, unit_ablation=False,
        linearity_pairs=5)).validate()
    records, _, _ = find_runs([str(kept_runs / "s0")])
    run = RunContext(records[0], AnalysisContext(options, records, TestDataLoader(options)))
    run._use_directory(lambda: str(tmp_path))
    result = OverTrainingStage().compute(run)
    assert result.values["checkpoints"] == list(KEPT)
    assert result.tables["network"]["selective_fraction"].isna().all()  # no null asked for
    for kept, trained in zip(run.model.get_weights(), load_run_model(records[0]).get_weights()):
        np.testing.assert_array_equal(kept, trained)


def test_runs_without_checkpoints_are_named_in_one_warning():
    from tf_selectivity.analysis.stages.over_training.stage import OverTrainingStage

    runs = pd.DataFrame({"run_dir": ["a", "b", "c"], "kept_checkpoints": [4, 0, 0]})
    warnings = OverTrainingStage().warnings({"over_training_runs": runs}, None)
    assert warnings == ["2 of 3 analysed run(s) kept no checkpoints (train --keep_checkpoints): they are left out "
                        "of the over-training measures"]
    assert OverTrainingStage().warnings({"over_training_runs": runs.assign(kept_checkpoints=1)}, None) == []


def test_a_redraw_from_the_tables_gives_the_same_report_and_figures(analysed, tmp_path):
    result, out = analysed
    assert_redraw_matches(out, result.figures, OPTIONS, tmp_path)

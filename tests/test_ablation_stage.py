"""`analyze --ablation --unit_ablation` on tiny trained runs."""

import contextlib
import io
import os

import numpy as np
import pandas as pd
import pytest

from conftest import assert_redraw_matches, log_lines
from tf_selectivity.analysis.stages.ablation.tables import ablation_auc, selective_vs_random, sign_flip_test
from tf_selectivity.analysis.options import AblationOptions, AnalysisOptions, SelectivityOptions, SimilarityOptions
from tf_selectivity.analysis.pipeline import analyze

pytestmark = pytest.mark.tensorflow_only

# Three of resnet8's 7 probes (16, 16 and 64 units): the stem, a block's
# first ReLU (a skip around it) and the last block's output.
LAYERS = ("probe_stem", "probe_s2b1_relu1", "probe_s3b1_out")
NO_CCA = SimilarityOptions(enabled="false")


OPTIONS = AnalysisOptions(
    n_resamples=200, similarity=NO_CCA, selectivity=SelectivityOptions(null_permutations=20),
    ablation=AblationOptions(curves=True, unit_importance=True, max_samples=48, random_orders=2,
                             fractions=(0.0, 0.5, 1.0), layers=LAYERS),
)


@pytest.fixture(scope="module")
def ablated_log():
    """What `ablated` printed (not on a terminal: a log file's lines)."""
    return io.StringIO()


@pytest.fixture(scope="module")
def ablated(tiny_runs, tmp_path_factory, ablated_log):
    out = tmp_path_factory.mktemp("ablation")
    with contextlib.redirect_stdout(ablated_log):
        return analyze([str(tiny_runs)], str(out), OPTIONS, verbose=1), out


def test_each_run_shows_one_line_per_ablation_pass(ablated, ablated_log):
    lines = log_lines(ablated_log.getvalue())
    # Per run, every mask is an item: 3 probes x (2 selectivity orders + 2 random) x 3 fractions; each unit
    # of the 3 probes (16 + 32 + 64) and each probe intact.
    assert sum(line.startswith("Ablation curves: 36/36 ablations, ") for line in lines) == 4
    assert sum(line.startswith("Unit importance: 115/115 ablations, ") for line in lines) == 4
    assert sum(line.startswith("Selectivity null: 20/20 permutations, ") for line in lines) == 4


def test_the_stage_writes_its_tables_figures_and_section(ablated):
    result, out = ablated
    curves = pd.read_parquet(out / "ablation_curves.parquet")
    runs = result.runs
    assert set(curves["run_dir"]) == set(runs["run_dir"]) and len(runs) == 4
    assert {"model", "alpha", "seed", "activation", "leaky_slope", "layer", "order", "order_seed", "fraction",
            "units_ablated", "accuracy"} <= set(curves.columns)
    # 4 runs x 3 probes x (2 selectivity orders + 2 random) x 3 fractions.
    assert len(curves) == 4 * 3 * 4 * 3 and tuple(curves["layer"].unique()) == LAYERS
    importance = pd.read_parquet(out / "unit_importance.parquet")
    assert len(importance) == 4 * (16 + 32 + 64)
    assert np.allclose(importance["si_chance_corrected"], importance["selectivity"] - importance["si_null_mean"])
    # The clean accuracy (fraction 0) is the same in both tables, on the same 48 images.
    clean = curves[curves["fraction"] == 0].groupby("run_dir")["accuracy"].agg(["min", "max"])
    assert (clean["min"] == clean["max"]).all()
    assert np.allclose(importance.groupby("run_dir")["clean_accuracy"].first().sort_index(), clean["min"].sort_index())
    correlations = pd.read_csv(out / "importance_correlations.csv")
    assert set(correlations["si_column"]) == {"selectivity", "si_chance_corrected"}
    assert len(correlations) == 4 * 3 * 2
    for name in ("ablation_curves_resnet8_relu", "si_vs_importance_resnet8_relu"):
        assert all(os.path.exists(p) for p in result.figures[name])
    report = open(result.report).read()
    assert "## Ablation: do selective units matter?" in report and "on 48 test images, the classes in turn" in report
    assert "Units selective above chance" in report and "AUC selective-first" in report
    assert "ρ(SI, importance)" in report


def test_the_saved_tables_redraw_the_same_section_and_figures(ablated, tmp_path):
    result, out = ablated
    report = assert_redraw_matches(out, result.figures, OPTIONS, tmp_path)
    assert "## Ablation: do selective units matter?" in report and "AUC selective-first" in report


def test_auc_and_the_sign_flip_test_have_known_answers():
    rows = []
    for run, drop in (("r0", 0.2), ("r1", 0.1)):
        for order, seeds, scale in (("selective_first", (-1,), 1.0), ("random", (0, 1), 0.5),
                                    ("least_selective_first", (-1,), 0.0)):
            for seed in seeds:
                for fraction in (0.0, 0.5, 1.0):
                    rows.append({"run_dir": run, "model": "m", "alpha": 0.0, "layer": "l", "layer_index": 0,
                                 "order": order, "order_seed": seed, "fraction": fraction,
                                 "accuracy": 0.9 - scale * drop * fraction})
    auc = ablation_auc(pd.DataFrame(rows)).set_index("run_dir")
    # Linear curves: normalized AUC = accuracy at the middle fraction.
    assert auc.loc["r0", "auc_selective_first"] == pytest.approx(0.8)
    assert auc.loc["r0", "auc_random"] == pytest.approx(0.85)
    assert auc.loc["r1", "auc_difference"] == pytest.approx(-0.025)
    test = selective_vs_random(auc.reset_index()).iloc[0]
    assert test["runs"] == 2 and test["mean_difference"] == pytest.approx(-0.0375)
    assert test["layers_hurt_more"] == 1.0
    # Two runs: 4 sign patterns, 2 as extreme as observed -> p = 0.5.
    assert test["p_value"] == pytest.approx(0.5)
    assert sign_flip_test([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(2 / 32)


def test_a_layer_no_run_has_is_one_error_naming_the_probes_and_nothing_is_written(tiny_runs, tmp_path):
    from tf_selectivity.core.settings import ParameterError

    out = tmp_path / "analysis"
    options = AnalysisOptions(similarity=NO_CCA, figures=False, max_test_samples=20,
                              ablation=AblationOptions(curves=True, layers=("probe_stem", "conv9")))
    with pytest.raises(ParameterError, match=r"^ablation.layers must name probes of the analysed runs "
                                             r"\(probe_stem, probe_s1b1_relu1, .*\); no run has conv9$"):
        analyze([str(tiny_runs / "runs" / "a0_s0")], str(out), options, verbose=0)
    assert not out.exists()


def test_a_run_whose_model_cannot_be_loaded_gets_an_error_row_and_the_others_go_on(tiny_runs, tmp_path):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(tiny_runs / "runs" / "a0_s0", runs / "good")
    shutil.copytree(tiny_runs / "runs" / "a0_s1", runs / "damaged")
    (runs / "damaged" / "model.keras").write_text("PK but not really a zip archive")
    options = AnalysisOptions(similarity=NO_CCA, figures=False, max_test_samples=24, ablation=AblationOptions(
        curves=True, layers=("probe_s3b1_out",), fractions=(0.0, 1.0), random_orders=1))
    result = analyze([str(runs)], str(tmp_path / "analysis"), options, verbose=0)
    curves = pd.read_csv(tmp_path / "analysis" / "ablation_curves.csv")
    assert set(curves["run_dir"]) == {str(runs / "good")} and len(curves) == 3 * 2
    errors = dict(result.errors)
    assert list(errors) == [str(runs / "damaged")]
    assert errors[str(runs / "damaged")].startswith("ablation: RunLoadError: ") and "model.keras" in errors[str(runs / "damaged")]
    assert "ablation" in open(result.report).read()

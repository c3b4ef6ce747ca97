"""Robustness analysis: `stages.robustness` (evaluation, claims) and the stage through `analyze`.

Every number of `evaluate_robustness` against an independent computation on
the same model (predictions of the corrupted / attacked images, the
dimensionality of the unit responses); Spearman's rho against SciPy, its
permutation p-value against the exact count; claim verdicts on summaries
whose answer is known; and the stage through `analyze` on the tiny sweep.
"""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from conftest import assert_redraw_matches, log_lines
from tf_selectivity.analysis.stages.robustness.claims import claims_table
from tf_selectivity.analysis.stages.robustness.evaluate import evaluate_robustness
from tf_selectivity.measures.stats import spearman_with_ci
from tf_selectivity.measures.dimensionality import dimensionality


@pytest.fixture(scope="module")
def model_and_data():
    import keras

    from tf_selectivity.models import build_model

    keras.utils.set_random_seed(3)
    model = build_model("resnet8", num_classes=4, input_shape=(16, 16, 3))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (24, 16, 16, 3), dtype=np.uint8)
    labels = np.argmax(model.predict(images.astype(np.float32), verbose=0), axis=-1)
    labels[::3] = (labels[::3] + 1) % 4  # clean accuracy 2/3, known
    return model, images, labels


def _accuracy(model, images, labels):
    return float(np.mean(np.argmax(model.predict(np.asarray(images, np.float32), verbose=0), -1) == labels))


def test_every_row_equals_an_independent_computation(model_and_data):
    from tf_selectivity.analysis.stages.robustness.attacks import perturb
    from tf_selectivity.data.corruptions import corrupt

    model, images, labels = model_and_data
    robustness, dims = evaluate_robustness(
        model, images, labels, corruption_source="generated", corruptions=("gaussian_noise", "contrast"),
        severities=(2, 5), attacks=("fgsm", "pgd"), epsilons=(0.0, 4.0), pgd_steps=2, seed=5, batch_size=10,
    )
    rows = {(r.kind, r.name, r.severity, r.epsilon): r.accuracy for r in robustness.fillna(-1).itertuples()}
    assert rows[("clean", "clean", -1, -1)] == pytest.approx(2 / 3)
    for name in ("gaussian_noise", "contrast"):
        for severity in (2, 5):
            expected = _accuracy(model, corrupt(images, name, severity, seed=5), labels)
            assert rows[("corruption", name, severity, -1)] == pytest.approx(expected)
    for severity in (2, 5):
        expected = np.mean([rows[("corruption", n, severity, -1)] for n in ("gaussian_noise", "contrast")])
        assert rows[("corruption", "mean", severity, -1)] == pytest.approx(expected)
    assert rows[("corruption", "mean", -1, -1)] == pytest.approx(
        np.mean([v for k, v in rows.items() if k[0] == "corruption" and k[1] != "mean"]))
    for attack in ("fgsm", "pgd"):
        assert rows[(attack, attack, -1, 0.0)] == pytest.approx(2 / 3)  # epsilon 0: the clean accuracy
        adversarial = perturb(model, images, labels, 4.0, attack=attack, steps=2, random_start=True, seed=5,
                              batch_size=10)
        assert rows[(attack, attack, -1, 4.0)] == pytest.approx(_accuracy(model, adversarial, labels))
    assert rows[("pgd", "pgd", -1, 4.0)] <= rows[("clean", "clean", -1, -1)]
    # Dimensionality: one row per layer and input kind; clean's equals the
    # unit responses' own, and its change is 0.
    assert len(dims) == len(model.probe_names) * len(robustness[robustness["name"] != "mean"])
    responses = model.unit_response_model().predict(images.astype(np.float32), verbose=0)
    clean = dims[dims["kind"] == "clean"].set_index("layer")
    for layer in model.probe_names:
        expected = dimensionality(responses[layer])
        assert clean.loc[layer, "participation_ratio"] == pytest.approx(expected["participation_ratio"], rel=1e-5)
        assert clean.loc[layer, "components_95"] == expected["components_95"]
        assert clean.loc[layer, "participation_ratio_change"] == 0
    noisy = dims[(dims["name"] == "contrast") & (dims["severity"] == 5)].set_index("layer")
    contrast = model.unit_response_model().predict(corrupt(images, "contrast", 5, seed=5).astype(np.float32), verbose=0)
    layer = model.probe_names[0]
    assert noisy.loc[layer, "participation_ratio_change"] == pytest.approx(
        dimensionality(contrast[layer])["participation_ratio"] - clean.loc[layer, "participation_ratio"], rel=1e-5)


def test_progress_over_the_input_kinds_when_verbose(model_and_data, capsys):
    model, images, labels = model_and_data
    settings = dict(corruption_source="generated", corruptions=("contrast",), severities=(1, 5), attacks=("fgsm",),
                    epsilons=(0.0, 4.0), batch_size=12)
    quiet = evaluate_robustness(model, images, labels, **settings)
    assert capsys.readouterr().out == ""
    shown = evaluate_robustness(model, images, labels, verbose=1, **settings)
    # Clean, 1 corruption x 2 severities, 1 attack x 2 epsilons: one line (the attacks' own bars stay quiet).
    assert [line.split(", ")[0] for line in log_lines(capsys.readouterr().out)] == [
        "Robustness on 24 images: 5/5 input sets"]
    for table, again in zip(quiet, shown):
        pd.testing.assert_frame_equal(table, again)


def test_a_published_set_that_does_not_fit_the_model_is_refused(model_and_data, tmp_path):
    from tf_selectivity.data.corruptions import CorruptedSetError

    model, images, labels = model_and_data
    np.save(tmp_path / "fog.npy", np.zeros((10, 32, 32, 3), np.uint8))
    np.save(tmp_path / "labels.npy", np.zeros(10, np.uint8))
    with pytest.raises(CorruptedSetError, match=r"shape \(32, 32, 3\) but the runs take \(16, 16, 3\)"):
        evaluate_robustness(model, images, labels, corruption_source=f"cifar10c:{tmp_path}")


def test_spearman_matches_scipy_and_its_permutation_p_is_exact():
    from scipy import stats

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=30), rng.normal(size=30)
    y = y + x
    r = spearman_with_ci(x, y, n_resamples=2000)
    assert r["rho"] == pytest.approx(stats.spearmanr(x, y)[0])
    assert r["low"] < r["rho"] < r["high"] and r["n"] == 30 and r["p"] < 0.01
    # n = 4 in perfect order: 2 of the 24 orders reach |rho| = 1 -> p = 1/12.
    r = spearman_with_ci([1, 2, 3, 4], [10, 20, 30, 45])
    assert r["rho"] == 1 and r["p"] == pytest.approx(2 / 24)
    # n = 5, rho = 0.9: orders with |rho| >= 0.9 are 2 * 5 of 120 (rho = 1 once, 0.9 four times per sign).
    r = spearman_with_ci([1, 2, 3, 4, 5], [1, 2, 3, 5, 4])
    assert r["rho"] == pytest.approx(0.9) and r["p"] == pytest.approx(10 / 120)
    assert math.isnan(spearman_with_ci([1, 2, 3], [5, 5, 5])["rho"])
    assert math.isnan(spearman_with_ci([1, 2, np.nan], [1, 2, 3])["rho"])  # 2 pairs left


def test_claim_verdicts_follow_the_numbers():
    n = 12
    si = np.linspace(0.1, 0.6, n)
    summary = pd.DataFrame({
        "mean_selectivity": si,
        "mean_corruption_accuracy": 0.8 - si,          # lower SI, more robust: supported
        "fgsm_accuracy": 0.8 - si,                      # claimed positive: contradicted
        "pgd_accuracy": np.random.default_rng(0).permutation(np.linspace(0.1, 0.2, n)),  # unrelated
        "early_participation_ratio": np.full(n, 3.0),   # constant: not testable
        "early_pr_change_adversarial": np.full(n, 1.0) + np.linspace(0, 0.1, n),
        "early_pr_change_corruption": np.full(n, 0.2),
    })
    table = claims_table(summary, n_resamples=2000).set_index("test")
    verdicts = list(table["verdict"])
    assert verdicts[0] == "supported" and verdicts[1] == "contradicted"
    assert verdicts[2] in ("not shown",) and verdicts[3] == "not testable"
    assert verdicts[4] == "supported"
    assert table["statistic"].iloc[0] == pytest.approx(-1.0)
    assert table["statistic"].iloc[4] == pytest.approx(0.85)


def test_analyze_robustness_writes_tables_figures_and_the_claims_section(tiny_runs, tmp_path, tmp_path_factory,
                                                                       monkeypatch, capsys):
    from tf_selectivity.analysis.options import AnalysisOptions, RobustnessOptions, SimilarityOptions
    from tf_selectivity.analysis.pipeline import analyze

    options = AnalysisOptions(
        n_resamples=200, similarity=SimilarityOptions(enabled="false", measures=("pwcca",)),
        robustness=RobustnessOptions(
            perturbations=("corruptions:generated", "fgsm", "pgd"), corruptions=("gaussian_noise", "pixelate"),
            severities=(1, 5), attack_epsilons=(0.0, 8.0), pgd_steps=2, max_samples=20),
    )
    result = analyze([str(tiny_runs)], str(tmp_path), options)
    # Progress on by default (verbose=1); off a terminal, one line per run's robustness pass: clean,
    # 2 corruptions x 2 severities, 2 attacks x 2 epsilons.
    lines = log_lines(capsys.readouterr().out)
    assert sum(line.startswith("Robustness on 20 images: 9/9 input sets, ") for line in lines) == 4
    robustness = pd.read_csv(tmp_path / "robustness.csv")
    runs = pd.read_csv(tmp_path / "runs.csv")
    # Per run: clean, 2 corruptions x 2 severities, 3 means, 2 attacks x 2 epsilons.
    assert len(robustness) == len(runs) * (1 + 4 + 3 + 4)
    assert set(robustness["run_dir"]) == set(runs["run_dir"])
    assert {"model", "alpha", "seed", "test_mean_selectivity", "kind", "severity", "epsilon"} <= set(robustness)
    assert (robustness["num_samples"][robustness["name"] != "mean"] == 20).all()
    dims = pd.read_csv(tmp_path / "dimensionality.csv")
    assert {"participation_ratio", "components_90", "components_95", "participation_ratio_change"} <= set(dims)
    claims = pd.read_csv(tmp_path / "robustness_claims.csv")
    assert len(claims) == 5 and set(claims["verdict"]) <= {"supported", "contradicted", "not shown", "not testable"}
    for name in ("figR_robustness_vs_alpha_resnet8", "figR_robustness_vs_selectivity_resnet8",
                 "figR_dimensionality_vs_alpha_resnet8"):
        assert (tmp_path / "figures" / f"{name}.png").exists() and name in result.figures
    report = (tmp_path / "report.md").read_text()
    assert "## Robustness: corruptions, attacks and dimensionality" in report
    assert "Early-layer dimensionality falls as selectivity rises" in report
    # The saved tables give the same figures and report again.
    assert_redraw_matches(tmp_path, result.figures, options, tmp_path_factory.mktemp("redrawn"))
    # Each run's perturbations are cached: analysing again perturbs nothing and gives the same tables.
    assert len(list((tmp_path / "cache" / "robustness").iterdir())) == len(runs)
    before = (tmp_path / "robustness.csv").read_bytes()

    def not_again(*args, **kwargs):
        raise AssertionError("robustness computed again")

    monkeypatch.setattr("tf_selectivity.analysis.stages.robustness.evaluate.evaluate_robustness", not_again)
    analyze([str(tiny_runs)], str(tmp_path), dataclasses.replace(options, figures=False), verbose=0)
    assert (tmp_path / "robustness.csv").read_bytes() == before

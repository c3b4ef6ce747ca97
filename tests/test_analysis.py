"""The analysis command on real saved runs: tables, CCA, figures, report, bad input."""

import contextlib
import io
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import assert_redraw_matches, error_lines, log_lines, run_cli
from tf_selectivity.measures import stats
from tf_selectivity.analysis.options import AnalysisOptions, SimilarityOptions
from tf_selectivity.analysis.pipeline import analyze
from tf_selectivity.analysis.runs import discover_runs

pytestmark = pytest.mark.tensorflow_only


@pytest.fixture(scope="module")
def analysis_log():
    """What `analysis` printed (its standard output, not a terminal: a log file's lines)."""
    return io.StringIO()


@pytest.fixture(scope="module")
def analysis(tiny_runs, tmp_path_factory, analysis_log):
    out = tmp_path_factory.mktemp("analysis")
    options = AnalysisOptions(n_resamples=500, similarity=SimilarityOptions(
        measures=("pwcca", "svcca", "debiased_cka", "procrustes"), pwcca_variant="both", maps=True))
    with contextlib.redirect_stdout(analysis_log):
        return analyze([str(tiny_runs)], str(out), options, verbose=1), out


def test_progress_off_a_terminal_is_one_line_per_run_and_per_pass(analysis, analysis_log):
    lines = log_lines(analysis_log.getvalue())
    runs = [line for line in lines if line.startswith("[")]
    assert [line.split()[0] for line in runs] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    assert runs[0].endswith("a-10_s0") and runs[1].endswith(" left)")  # the time left from the second run on
    assert sum(line.startswith("Selectivity: 200/200 images, ") for line in lines) == 4
    assert sum(line.startswith("Per-run analysis: 4/4 runs, ") for line in lines) == 1
    comparisons = [line for line in lines if line.startswith("Similarity (pwcca, svcca, debiased_cka, procrustes) ")]
    assert len(comparisons) == 1 and "alpha=-10 (2 runs) vs alpha=0 (2 runs): 21/21 comparisons, " in comparisons[0]
    maps = "Similarity maps (debiased_cka) resnet8: alpha=-10: 2/2 pairs, "
    assert sum(line.startswith(maps) for line in lines) == 1


def test_tables_have_the_documented_columns(analysis):
    result, out = analysis
    runs = pd.read_csv(out / "runs.csv")
    for column in ("run_dir", "model", "alpha", "seed", "activation", "leaky_slope", "test_accuracy",
                   "test_mean_selectivity", "mean_precision", "dead_unit_fraction"):
        assert column in runs.columns
    assert len(runs) == 4
    layers = pd.read_parquet(out / "layers.parquet")
    assert len(layers) == 4 * 7 and set(layers["layer_index"]) == set(range(7))
    units = pd.read_parquet(out / "units.parquet")
    assert len(units) == 4 * 240
    assert {"selectivity", "precision", "dead", "preferred_class", "unit", "eq1_guarded"} <= set(units.columns)
    # The paper's index is reported, and the runs were trained with it; ReLU
    # responses never need eq. 1's guard.
    assert set(runs["selectivity_index"]) == {"eq1"} and set(runs["trained_selectivity_index"]) == {"eq1"}
    assert (layers["eq1_guarded_fraction"] == 0).all() and not units["eq1_guarded"].any()


def test_test_metrics_agree_with_training_summary(analysis):
    result, _ = analysis
    for row in result.runs.itertuples():
        summary = json.load(open(os.path.join(row.run_dir, "summary.json")))
        assert row.test_accuracy == pytest.approx(summary["test_accuracy"], abs=1e-9)
        assert row.test_mean_selectivity == pytest.approx(summary["test_mean_selectivity"], rel=1e-5)


def test_layer_and_run_aggregates_follow_eq3(analysis):
    result, _ = analysis
    units = result.units
    for run_dir, group in units.groupby("run_dir"):
        per_layer = group.groupby("layer_index")["selectivity"].mean()
        row = result.runs.set_index("run_dir").loc[run_dir]
        assert row["test_mean_selectivity"] == pytest.approx(per_layer.mean())
        assert row["mean_precision"] == pytest.approx(group.groupby("layer_index")["precision"].mean().mean())
        # Precision is bounded by [1/C, 1].
        assert group["precision"].between(0.1, 1.0).all()


def test_cca_tables_count_pairs(analysis):
    result, out = analysis
    cca = pd.read_csv(out / "cca_distances.csv", keep_default_na=False)
    measures = {("pwcca", "svcca"), ("pwcca", "textbook"), ("svcca", ""), ("debiased_cka", ""), ("procrustes", "")}
    assert set(zip(cca["method"], cca["pwcca_variant"])) == measures
    for method, variant in sorted(measures):
        rows = cca[(cca["method"] == method) & (cca["pwcca_variant"] == variant)]
        assert (rows["comparison"] == "within").sum() == 7 * 1  # C(2, 2) pairs x 7 layers
        # 2 x 2 treated/baseline pairs, less the 2 that share a seed (same
        # initial weights and batch order: not independent replicates).
        to_baseline = rows[rows["comparison"] == "to_baseline"]
        assert len(to_baseline) == 7 * 2
        seeds = result.runs.set_index("run_dir")["seed"]
        assert (to_baseline["run_a"].map(seeds) != to_baseline["run_b"].map(seeds)).all()
        assert rows["distance"].between(0, 2 if method == "debiased_cka" else np.pi / 2).all()
    # Both PWCCA variants come from the same factors: same pairs, different numbers.
    pwcca = cca[cca["method"] == "pwcca"].pivot_table(
        index=["layer", "run_a", "run_b"], columns="pwcca_variant", values="distance")
    assert len(pwcca) == 7 * 3 and (pwcca["svcca"] != pwcca["textbook"]).any()
    ratios = pd.read_csv(out / "cca_ratios.csv", keep_default_na=False)
    assert set(ratios["alpha"]) == {-10.0}
    assert ratios.groupby(["method", "pwcca_variant"]).size().to_dict() == {measure: 7 for measure in measures}
    # One t-test implementation: cca_tests is stats' summary of cca_ratios,
    # one row per condition, method, PWCCA variant and alpha, and the report
    # shows its numbers (for the paper's variant).
    tests = pd.read_csv(out / "cca_tests.csv", keep_default_na=False)
    expected = stats.cca_ratio_summary(ratios, n_resamples=500)
    pd.testing.assert_frame_equal(tests, expected, check_dtype=False)
    assert sorted(zip(tests["method"], tests["pwcca_variant"])) == sorted(measures)
    pwcca = tests[(tests["method"] == "pwcca") & (tests["pwcca_variant"] == "svcca")].iloc[0]
    report = (out / "report.md").read_text()
    assert f"| -10 | 7 | {pwcca['mean_ratio']:.3f} [" in report
    # Every measure side by side, with the same numbers as cca_tests.
    assert "The distance ratio under each measure" in report
    assert "| α | PWCCA (svcca) | PWCCA (textbook) | SVCCA | debiased CKA | Procrustes |" in report
    cka = tests[tests["method"] == "debiased_cka"].iloc[0]
    assert f"{cka['mean_ratio']:.3f} [" in report


def test_figures_and_report(analysis):
    result, out = analysis
    report = (out / "report.md").read_text()
    assert "fig1_selectivity_resnet8.png" in report
    # Figures and report show the paper's PWCCA, and the report says so.
    assert "as google/svcca's `compute_pwcca` computes them" in report
    for paths in result.figures.values():
        for path in paths:
            assert os.path.getsize(path) > 1000
    assert os.path.exists(out / "figures" / "fig3_cca_resnet8.pdf")
    # Layer-by-layer maps: a within and a to-baseline pair, 7 x 7 layers each,
    # equal to the library's map of the cached responses.
    maps = pd.read_csv(out / "similarity_maps.csv")
    assert maps.groupby("comparison").size().to_dict() == {"within": 49, "to_baseline": 49}
    assert set(maps["measure"]) == {"debiased_cka"} and maps["similarity"].between(-1, 1).all()
    assert os.path.getsize(out / "figures" / "figS_similarity_maps_resnet8.png") > 1000
    # Figure 3 under each other measure.
    for measure in ("svcca", "debiased_cka", "procrustes"):
        assert os.path.getsize(out / "figures" / f"fig3_{measure}_resnet8.png") > 1000


def test_the_saved_tables_redraw_the_same_figures_and_report(analysis, tmp_path):
    # Before the next test, which analyses into the same folder again.
    result, out = analysis
    options = AnalysisOptions(n_resamples=500, similarity=SimilarityOptions(
        measures=("pwcca", "svcca", "debiased_cka", "procrustes"), pwcca_variant="both", maps=True))
    assert_redraw_matches(out, result.figures, options, tmp_path)


def _cache_entries(out):
    return sorted(str(path.relative_to(out)) for path in (out / "cache").glob("*/*"))


def test_second_analysis_reuses_cached_runs(analysis, tiny_runs):
    result, out = analysis
    cached = _cache_entries(out)
    # One entry per run of each stage with per-run work: selectivity (with its responses), chance and
    # the network at initialization.
    assert [entry for entry in cached if entry.startswith("cache/selectivity/")] == cached[-4:]
    assert len(cached) == 12 and {entry.split("/")[1] for entry in cached} == {"selectivity", "chance",
                                                                               "initialization"}
    options = AnalysisOptions(n_resamples=200, figures=False, similarity=SimilarityOptions(
        measures=("pwcca", "svcca", "debiased_cka", "procrustes")))
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        again = analyze([str(tiny_runs)], str(out), options, verbose=1)
    assert _cache_entries(out) == cached
    pd.testing.assert_frame_equal(again.runs, result.runs)
    # Nothing computed per run: no run announced, no pass but the comparisons (made anew each time).
    assert [line.split(":")[0] for line in log_lines(log.getvalue())] == [
        "Similarity (pwcca, svcca, debiased_cka, procrustes) resnet8"]


def test_positions_as_datapoints(tiny_runs, tmp_path, capsys):
    options = AnalysisOptions(figures=False, n_resamples=100, similarity=SimilarityOptions(
        spatial="positions", max_datapoints=1500, same_seed_pairs=True))
    result = analyze([str(tiny_runs)], str(tmp_path / "out"), options, verbose=0)
    assert capsys.readouterr().out == ""  # verbose 0: no progress at all
    # All pairs, same seeds included (the paper's count), under each default
    # measure (PWCCA and debiased CKA).
    assert result.cca.groupby("method").size().to_dict() == {"pwcca": 7 * (1 + 4), "debiased_cka": 7 * (1 + 4)}
    responses = [
        np.load(os.path.join(root, name))
        for root, _, files in os.walk(tmp_path / "out" / "cache") for name in files if name.endswith(".npy")
    ]
    assert {r.shape[1] for r in responses} == {1500}


def test_bad_runs_are_reported_and_the_rest_analysed(tiny_runs, tmp_path):
    broken = tmp_path / "broken_run"
    shutil.copytree(tiny_runs / "runs" / "a0_s0", broken)
    shutil.rmtree(broken / "saved_model")
    os.remove(broken / "model.keras")
    other = tmp_path / "other_architecture"
    shutil.copytree(tiny_runs / "runs" / "a-10_s1", other)
    summary = json.load(open(other / "summary.json"))
    summary["probe_names"] = summary["probe_names"][:-1]
    json.dump(summary, open(other / "summary.json", "w"))
    out = tmp_path / "out"
    completed = run_cli(
        "tf_selectivity.analyze",
        f"--runs={tiny_runs},{broken},{other},{tmp_path}/nothing_*",
        f"--output_dir={out}", "--bootstrap_resamples=100", "--figures=false",
    )
    assert completed.returncode == 0, completed.stderr
    assert f"could not analyse {broken}: it holds no model" in completed.stdout
    assert f"{tmp_path}/nothing_*: the pattern matched nothing" in completed.stdout
    assert "left out of the CCA of resnet8: its layers differ" in completed.stdout
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 5 and str(broken) not in set(runs["run_dir"])
    errors = pd.read_csv(out / "errors.csv")
    assert len(errors) == 3


def test_nothing_to_analyse_exits_2(tmp_path):
    completed = run_cli("tf_selectivity.analyze", f"--runs={tmp_path}/none_*", f"--output_dir={tmp_path}/out")
    assert completed.returncode == 2
    lines = error_lines(completed.stderr)
    assert len(lines) == 1 and "no run to analyse" in lines[0] and "none_*" in lines[0]
    assert not os.path.exists(tmp_path / "out")


def test_foreign_output_dir_is_refused(tiny_runs, tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    completed = run_cli("tf_selectivity.analyze", f"--runs={tiny_runs}", f"--output_dir={tmp_path}")
    assert completed.returncode == 2
    assert "not empty" in error_lines(completed.stderr)[0]
    assert sorted(os.listdir(tmp_path)) == ["precious.txt"]


def test_discover_runs_handles_globs_and_duplicates(tiny_runs):
    records, errors = discover_runs([str(tiny_runs), str(tiny_runs / "runs" / "a0_*")])
    assert len(records) == 4 and errors == []
    assert [r.summary.alpha for r in records] == [-10.0, -10.0, 0.0, 0.0]


def test_cca_pwcca_variant_option_is_checked():
    assert AnalysisOptions().similarity.pwcca_variant == "svcca"  # The paper's.
    for variant in ("svcca", "textbook", "both"):
        AnalysisOptions(similarity=SimilarityOptions(pwcca_variant=variant)).validate()
    with pytest.raises(ValueError, match="^similarity.pwcca_variant must be one of svcca, textbook, both"):
        AnalysisOptions(similarity=SimilarityOptions(pwcca_variant="google")).validate()


def test_diverged_runs_are_listed_apart_and_left_out_of_every_table(tiny_runs, tmp_path):
    from tf_selectivity.training.summary import RunSummary

    diverged = tmp_path / "diverged_run"
    shutil.copytree(tiny_runs / "runs" / "a0_s0", diverged)
    summary = json.load(open(diverged / "summary.json"))
    RunSummary.from_dict({**summary, "alpha": -100.0}).as_diverged(3, "loss is nan").write(str(diverged / "summary.json"))
    options = AnalysisOptions(n_resamples=100, figures=False, similarity=SimilarityOptions(enabled="false"))
    result = analyze([str(tiny_runs), str(diverged)], str(tmp_path / "out"), options, verbose=0)
    assert len(result.runs) == 4 and str(diverged) not in set(result.runs["run_dir"])
    assert -100.0 not in set(result.layers["alpha"]) and -100.0 not in set(result.units["alpha"])
    table = pd.read_csv(tmp_path / "out" / "diverged.csv")
    assert list(table["run_dir"]) == [str(diverged)] and list(table["diverged_epoch"]) == [3]
    assert list(table["reason"]) == ["loss is nan"] and result.errors == []
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Runs that diverged" in report and "1 run(s) diverged and are listed apart" in report
    assert "| resnet8 | relu | 0.0 | -100.0 | 0 | 3 |" in report


def _outputs(out):
    return {p: open(os.path.join(out, p), "rb").read() for p in sorted(os.listdir(out)) if os.path.isfile(os.path.join(out, p))}


def test_reanalysis_replaces_every_output_and_a_failed_one_changes_nothing(tiny_runs, tmp_path):
    out = tmp_path / "out"
    first = analyze([str(tiny_runs)], str(out), AnalysisOptions(n_resamples=100, figures=False), verbose=0)
    assert first.cca is not None and (out / "cca_ratios.csv").exists()
    # Again without CCA: its tables of the first analysis must not survive.
    analyze([str(tiny_runs)], str(out), AnalysisOptions(n_resamples=100, figures=False,
                                                         similarity=SimilarityOptions(enabled="false")), verbose=0)
    manifest = json.load(open(out / "analysis.json"))["outputs"]
    present = sorted(n for n in os.listdir(out) if n not in ("analysis.json", "cache", ".lock"))
    assert present == sorted(manifest) and not any(n.startswith("cca_") for n in present)
    assert "runs.csv" in present and "report.md" in present
    # A failing analysis (its only run has no model) leaves the last one as it was.
    before = _outputs(out)
    broken = tmp_path / "broken_run"
    shutil.copytree(tiny_runs / "runs" / "a0_s0", broken)
    shutil.rmtree(broken / "saved_model")
    (broken / "model.keras").write_text("not a zip archive")
    with pytest.raises(ValueError, match="not a Keras model file"):
        analyze([str(broken)], str(out), AnalysisOptions(n_resamples=100, figures=False), verbose=0)
    assert _outputs(out) == before
    assert sorted(n for n in os.listdir(out) if n not in ("analysis.json", "cache", ".lock")) == present

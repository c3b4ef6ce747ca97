"""The report (`tf_selectivity.report`, the selectivity and similarity stages' parts) on tables with known means.

Written by `analysis.from_tables.redraw`, as from an analysis' saved tables.
"""

import re
import urllib.parse
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from tf_selectivity.analysis import AnalysisOptions, redraw
from tf_selectivity.measures import stats

N_RESAMPLES = 200

# Known per-alpha values (two replicate networks each) for ResNet20 / ReLU.
SELECTIVITY = {0.0: (0.20, 0.24), -1.0: (0.06, 0.08), -10.0: (0.01, 0.03), 2.0: (0.38, 0.42)}
ACCURACY = {0.0: (0.910, 0.914), -1.0: (0.905, 0.907), -10.0: (0.860, 0.864), 2.0: (0.600, 0.640)}
DEAD = {0.0: 0.01, -1.0: 0.01, -10.0: 0.02, 2.0: 0.25}


def make_runs(selectivity=SELECTIVITY, accuracy=ACCURACY, model="resnet20",
              activation="relu", leaky_slope=0.0):
    rows = []
    for alpha in selectivity:
        for seed in range(len(selectivity[alpha])):
            rows.append({
                "run_dir": f"runs/{model}/{activation}/alpha{alpha:g}/seed{seed}",
                "model": model, "alpha": alpha, "seed": seed,
                "activation": activation, "leaky_slope": leaky_slope,
                "epochs": 200, "best_epoch": 150 + seed,
                "val_accuracy": accuracy[alpha][seed] + 0.001,
                "test_accuracy": accuracy[alpha][seed],
                "test_mean_selectivity": selectivity[alpha][seed],
                "test_mean_selectivity_alive": selectivity[alpha][seed] + 0.01,
                "mean_precision": 0.1 + selectivity[alpha][seed] / 2,
                "dead_unit_fraction": DEAD.get(alpha, 0.0),
                "num_units": 1000,
            })
    # Shuffle, so that the report has to sort.
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0).reset_index(drop=True)


def make_layers(runs):
    rows = []
    for _, run in runs.iterrows():
        for index in range(2):
            rows.append({
                "run_dir": run["run_dir"], "model": run["model"], "alpha": run["alpha"],
                "seed": run["seed"], "activation": run["activation"],
                "leaky_slope": run["leaky_slope"], "layer": f"conv{index}",
                "layer_index": index, "num_units": 500,
                "mean_selectivity": run["test_mean_selectivity"],
                "mean_selectivity_alive": run["test_mean_selectivity_alive"],
                "mean_precision": run["mean_precision"],
                "dead_fraction": run["dead_unit_fraction"],
            })
    return pd.DataFrame(rows)


def write(tmp_path, runs, cca_ratio=None, errors=(), figures=False):
    """report.md of these tables (and the figures with `figures`)."""
    tables = {"runs": runs, "layers": make_layers(runs)}
    if cca_ratio is not None:
        tables["cca_ratios"] = cca_ratio
    if errors:
        tables["errors"] = pd.DataFrame(errors, columns=["path", "error"])
    drawn = redraw(tables, tmp_path, AnalysisOptions(n_resamples=N_RESAMPLES, figures=figures))
    assert Path(drawn.report) == tmp_path / "report.md"
    return Path(drawn.report).read_text(encoding="utf-8")


def expected_effect(alpha):
    """The headline numbers for `alpha`, computed directly from the inputs."""
    base_si, treated_si = np.mean(SELECTIVITY[0.0]), np.mean(SELECTIVITY[alpha])
    difference = 100 * (np.mean(ACCURACY[alpha]) - np.mean(ACCURACY[0.0]))
    raw_p = scipy_stats.ttest_ind(ACCURACY[alpha], ACCURACY[0.0], equal_var=False).pvalue
    corrected = min(1.0, raw_p * 3)  # Three non-baseline alphas.
    return base_si, treated_si, difference, corrected


def test_headline_sentence_for_suppression_has_the_right_numbers(tmp_path):
    text = write(tmp_path, make_runs())
    base_si, treated_si, difference, p = expected_effect(-1.0)
    assert base_si == pytest.approx(0.22) and treated_si == pytest.approx(0.07)
    factor = base_si / treated_si
    sentence = (
        f"ResNet20: mean class selectivity fell from {base_si:.3f} at α = 0 to "
        f"{treated_si:.3f} at α = -1 ({factor:.1f}x lower); test accuracy changed by "
        f"{difference:+.2f} points"
    )
    assert sentence in text
    assert "0.220 at α = 0 to 0.070 at α = -1 (3.1x lower)" in text
    assert (
        f"{difference:+.2f} points ({100 * np.mean(ACCURACY[0.0]):.2f}% → "
        f"{100 * np.mean(ACCURACY[-1.0]):.2f}%; {stats.format_p_value(p)}, "
        "Bonferroni-corrected Welch t-test, n = 2 vs 2)."
    ) in text


def test_headline_sentence_for_strongest_promotion(tmp_path):
    text = write(tmp_path, make_runs())
    base_si, treated_si, difference, p = expected_effect(2.0)
    line = next(l for l in text.splitlines() if "Strongest promotion tested (α = 2)" in l)
    assert (
        f"rose from {base_si:.3f} at α = 0 to {treated_si:.3f} at α = 2 "
        f"({treated_si / base_si:.1f}x higher)"
    ) in line
    assert f"test accuracy changed by {difference:+.2f} points" in line
    assert stats.format_p_value(p) in line
    assert "Dead units: 25.0% of units at α = 2 vs 1.0% at α = 0." in line


def test_baseline_and_strongest_suppression_sentences(tmp_path):
    text = write(tmp_path, make_runs())
    assert "ResNet20 without regularization (α = 0, n = 2)" in text
    low, high = stats.bootstrap_ci(np.array(ACCURACY[0.0]), n_resamples=N_RESAMPLES)
    assert f"test accuracy 91.20 [{100 * low:.2f}, {100 * high:.2f}]%" in text
    _, treated_si, difference, _ = expected_effect(-10.0)
    line = next(l for l in text.splitlines() if "(α = -10)" in l or "at α = -10." in l)
    assert f"to {treated_si:.3f} at α = -10" in line
    assert f"{difference:+.2f} points" in line


def test_per_alpha_summary_table(tmp_path):
    text = write(tmp_path, make_runs())
    rows = [l for l in text.splitlines() if l.startswith("| -1 | 2 |")]
    assert len(rows) == 1
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert cells[2].startswith(f"{100 * np.mean(ACCURACY[-1.0]):.2f} [")
    assert cells[3] == f"{100 * (np.mean(ACCURACY[-1.0]) - np.mean(ACCURACY[0.0])):+.2f}"
    assert cells[5].startswith(f"{np.mean(SELECTIVITY[-1.0]):.3f} [")
    baseline_rows = [l for l in text.splitlines() if l.startswith("| 0 | 2 |")]
    assert "baseline" in baseline_rows[0]
    # The tables say how each column treats dead units.
    header = next(l for l in text.splitlines() if l.startswith("| α | n |"))
    assert "Mean SI, dead units = 0" in header and "Mean precision, live units" in header
    assert cells[7].startswith(f"{0.1 + np.mean(SELECTIVITY[-1.0]) / 2:.3f}")
    assert "`mean_precision` is over live units only" in text.split("## All runs", 1)[1]


def test_runs_table_is_sorted_by_model_alpha_seed(tmp_path):
    runs = make_runs()
    text = write(tmp_path, runs)
    section = text.split("## All runs", 1)[1]
    listed = re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE)
    expected = runs.sort_values(["model", "alpha", "seed"])["run_dir"].tolist()
    assert listed == expected


def test_figures_are_linked_with_existing_relative_paths(tmp_path):
    text = write(tmp_path, make_runs(), figures=True)

    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(images) >= 2
    links = re.findall(r"(?<!!)\[(?:PNG|PDF)\]\(([^)]+)\)", text)
    assert len(links) == 2 * len(images)
    for link in images + links:
        relative = urllib.parse.unquote(link)
        assert not Path(relative).is_absolute()
        assert (tmp_path / relative).is_file()
    for image in images:
        assert matplotlib.image.imread(tmp_path / urllib.parse.unquote(image)).ndim == 3
    assert "figures/fig1_selectivity_resnet20.png" in images
    # Each figure is captioned by its stage (`Stage.captions`).
    assert "### fig1_selectivity_resnet20\n\nFigure 1. Mean class selectivity index per layer" in text


def test_missing_baseline_is_reported_not_invented(tmp_path):
    runs = make_runs()
    text = write(tmp_path, runs.loc[runs["alpha"] != 0.0])
    assert "no α = 0 (unregularized) runs" in text
    assert "fell from" not in text and "rose from" not in text
    assert "changed by" not in text
    # The table still shows the absolute numbers.
    assert f"| -1 | 2 | {100 * np.mean(ACCURACY[-1.0]):.2f} [" in text


def test_unanalysed_runs_are_listed(tmp_path):
    errors = [("runs/broken/seed3", "ValueError: no metrics.json\n  in line 2"),
              ("runs/other", "NaN loss")]
    text = write(tmp_path, make_runs(), errors=errors)
    section = text.split("## Runs that could not be analysed", 1)[1].split("##", 1)[0]
    assert "- `runs/broken/seed3`: ValueError: no metrics.json in line 2" in section
    assert "- `runs/other`: NaN loss" in section
    assert "2 run(s) could not be analysed" in text

    clean = write(tmp_path, make_runs())
    assert "None: every run found was analysed." in clean


def test_promote_vs_suppress_sentence_uses_ranksum(tmp_path):
    rng = np.random.default_rng(1)
    selectivity = {alpha: tuple(rng.uniform(0.1, 0.3, 6)) for alpha in (0.0, -1.0, 1.0)}
    accuracy = {0.0: tuple(0.91 + rng.normal(0, 0.001, 6)),
                -1.0: tuple(0.90 + rng.normal(0, 0.001, 6)),
                1.0: tuple(0.70 + rng.normal(0, 0.001, 6))}
    text = write(tmp_path, make_runs(selectivity, accuracy))
    # Perfect separation, 6 vs 6: exact p = 2 / C(12, 6), one |alpha| tested.
    p = 2 / 924
    assert (
        f"promoting selectivity gave lower test accuracy than suppressing it from |α| = 1 "
        f"({100 * np.mean(accuracy[1.0]):.2f}% vs {100 * np.mean(accuracy[-1.0]):.2f}%; "
        f"{stats.format_p_value(p)}, Bonferroni-corrected Wilcoxon rank-sum test, n = 6 vs 6)"
    ) in text


def test_cca_sentence_and_table(tmp_path):
    cca_ratio = pd.DataFrame({
        "model": ["resnet20"] * 4,
        "alpha": [-10.0, -10.0, -1.0, -1.0],
        "layer": ["conv0", "conv1"] * 2,
        "layer_index": [0, 1] * 2,
        "within_mean": [0.2, 0.4, 0.2, 0.4],
        "to_baseline_mean": [0.24, 0.56, 0.23, 0.42],
    })
    cca_ratio["ratio"] = cca_ratio["to_baseline_mean"] / cca_ratio["within_mean"]
    text = write(tmp_path, make_runs(), cca_ratio=cca_ratio)
    expected = np.mean([1.2, 1.4])
    assert f"at α = -10 the CCA distance to α = 0 networks was {expected:.2f} [" in text
    assert f"ranged from {np.mean([1.15, 1.05]):.2f} (α = -1) to {expected:.2f} (α = -10)" in text
    assert "## Representational similarity (CCA)" in text

    one_alpha = write(tmp_path / "one", make_runs(), cca_ratio=cca_ratio[cca_ratio["alpha"] == -10.0])
    assert f"at α = -10 the CCA distance to α = 0 networks was {expected:.2f} [" in one_alpha
    assert "ranged from" not in one_alpha  # No range to state with one alpha.


def test_leaky_runs_get_their_own_section(tmp_path):
    runs = pd.concat([make_runs(), make_runs(activation="leaky_relu", leaky_slope=0.5)],
                     ignore_index=True)
    text = write(tmp_path, runs)
    assert "### ResNet20, leaky ReLU (negative slope 0.5)" in text
    # The ReLU section comes first and its numbers are not mixed with leaky runs.
    assert text.index("### ResNet20\n") < text.index("### ResNet20, leaky ReLU")
    assert "0.220 at α = 0 to 0.070 at α = -1 (3.1x lower)" in text


def test_cca_is_reported_per_condition(tmp_path):
    # ReLU ratio 1.5, leaky-ReLU ratio 1.0 at the same model and alpha: two
    # sentences and two tables, not one ratio of 1.25.
    rows = []
    for activation, slope, factor in (("relu", 0.0, 1.5), ("leaky_relu", 0.5, 1.0)):
        for index, within in enumerate((0.2, 0.4)):
            rows.append({"model": "resnet20", "activation": activation, "leaky_slope": slope,
                         "alpha": -10.0, "layer": f"conv{index}", "layer_index": index,
                         "within_mean": within, "to_baseline_mean": within * factor,
                         "method": "pwcca"})
    cca_ratio = pd.DataFrame(rows)
    cca_ratio["ratio"] = cca_ratio["to_baseline_mean"] / cca_ratio["within_mean"]
    runs = pd.concat([make_runs(), make_runs(activation="leaky_relu", leaky_slope=0.5)],
                     ignore_index=True)
    text = write(tmp_path, runs, cca_ratio=cca_ratio)
    relu_block = text.split("### ResNet20\n", 1)[1].split("###", 1)[0]
    leaky_block = text.split("### ResNet20, leaky ReLU (negative slope 0.5)\n", 1)[1].split("###", 1)[0]
    assert "CCA distance to α = 0 networks was 1.50 [" in relu_block
    assert "CCA distance to α = 0 networks was 1.00 [" in leaky_block
    assert "no α could be tested" in leaky_block  # Equal distances in every layer.
    assert "1.25" not in text.split("## Representational similarity (CCA)", 1)[1].split("## Figures")[0]
    assert "### ResNet20: CCA distance ratio" in text
    assert "### ResNet20, leaky ReLU (negative slope 0.5): CCA distance ratio" in text
    assert "| -10 | 2 | 1.500 [" in text and "| -10 | 2 | 1.000 [" in text


def test_statistics_section_says_what_the_figure_marks_mean(tmp_path):
    text = write(tmp_path, make_runs())
    statistics = text.split("## Statistics used", 1)[1]
    line = next(l for l in statistics.splitlines() if l.startswith("- Marks in figures"))
    assert "▲" in line and "▼" in line and "higher" in line and "lower" in line
    assert stats.stars_legend() in line

"""Answers that cannot mislead: conditions that never mix training protocols, claims gated by their
premises (networks that learned, a baseline, a test that can reach significance), selectivity beside
the same network at initialization, and errors that name the fix."""

import itertools
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from tf_selectivity.analysis.claims import BASELINE, NOT_TESTABLE, TRAINED, Claim, Premise, gate, verdict_of
from tf_selectivity.analysis.options import AnalysisOptions, SimilarityOptions
from tf_selectivity.core.settings import ParameterError
from tf_selectivity.measures import premises, stats
from tf_selectivity.report.condition_names import POOLABLE_FIELDS, name_conditions

REPO = Path(__file__).resolve().parent.parent

OPTIONS = AnalysisOptions(n_resamples=50, figures=False, max_test_samples=60,
                          similarity=SimilarityOptions(enabled="false"))


# ------------------------------------------------------------- minimum p-values, chance
def test_minimum_p_is_the_exact_floor_of_each_test():
    # Sign flips over n paired differences of one sign: the most extreme data the test can see.
    for n in (1, 2, 3, 5):
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        differences = np.arange(1.0, n + 1)
        exact = np.mean(np.abs(signs @ differences) >= abs(differences.sum()) - 1e-12)
        assert premises.minimum_p_sign_flip(n) == pytest.approx(exact)
    assert premises.minimum_p_sign_flip(3) == 0.25  # 3 networks can never show p < 0.05
    from tf_selectivity.analysis.stages.ablation.tables import sign_flip_test

    assert sign_flip_test([0.1, 0.2, 0.3]) == premises.minimum_p_sign_flip(3)
    # Mann-Whitney U with completely separated samples: SciPy's exact p is the floor.
    for n1, n2 in ((2, 2), (3, 3), (4, 5)):
        exact = scipy_stats.mannwhitneyu(np.arange(n1), np.arange(n1, n1 + n2), method="exact").pvalue
        assert premises.minimum_p_ranksum(n1, n2) == pytest.approx(exact)
    assert premises.minimum_p_ranksum(2, 2) == pytest.approx(1 / 3)
    # Spearman's permutation p of a perfect order (exact for n <= 8).
    for n in (3, 4, 6):
        p = stats.spearman_with_ci(np.arange(n), np.arange(n), n_resamples=20)["p"]
        assert premises.minimum_p_spearman(n) == pytest.approx(p)
    assert math.isnan(premises.minimum_p_spearman(2))
    # t-tests: undefined with one value in a group, no floor from two on.
    assert math.isnan(premises.minimum_p_welch(1, 5)) and premises.minimum_p_welch(2, 2) == 0.0
    assert math.isnan(premises.minimum_p_paired_t(1)) and premises.minimum_p_paired_t(2) == 0.0
    assert premises.minimum_p_permutation_null(9) == 0.1
    assert premises.minimum_p_bonferroni(0.1, 3) == pytest.approx(0.3)
    assert premises.minimum_p_bonferroni(0.5, 3) == 1.0


def test_chance_and_the_binomial_gate_against_scipy():
    labels = np.array([0] * 60 + [1] * 20 + [2] * 20)
    assert premises.chance_rate(labels, 3) == (0.6, 0.6)  # the majority class beats 1/3
    assert premises.chance_rate(np.arange(100) % 10, 10) == (0.1, 0.1)
    for accuracy, n, chance in ((0.1, 200, 0.1), (0.14, 200, 0.1), (0.855, 200, 0.1), (0.61, 100, 0.6)):
        expected = scipy_stats.binomtest(round(accuracy * n), n, chance, alternative="greater").pvalue
        assert premises.above_chance(accuracy, n, chance) == pytest.approx(expected, rel=1e-12)
    assert premises.above_chance(0.1, 200, 0.1) > 0.05 and premises.above_chance(0.855, 200, 0.1) < 1e-6


# ------------------------------------------------------------------ conditions
def _identity(**changes):
    identity = {"model": "resnet20", "activation": "relu", "leaky_slope": 0.0, "dataset": "cifar10_sample",
                "epochs": 5, "batch_size": 256, "selectivity_index": "eq1"}
    return {**identity, **changes}


def test_conditions_are_named_by_the_fields_that_differ():
    same = name_conditions({"a": (_identity(seed=0), 0.0), "b": (_identity(seed=1), -1.0)})
    assert set(same.of.values()) == {"ResNet20"}  # as the report has always named it
    assert same.separating == () and len(same.rows) == 1
    mixed = name_conditions({
        "quick": (_identity(), -1.0),
        "folder": (_identity(dataset="imagefolder:/data/cifar", epochs=2), -1.0),
        "vgg": (_identity(model="vgg16", epochs=2), 0.0),
    })
    assert mixed.of["quick"] == "ResNet20, dataset=cifar10_sample, epochs=5"
    assert mixed.of["folder"] == "ResNet20, dataset=imagefolder:/data/cifar, epochs=2"
    assert mixed.of["vgg"] == "VGG16"  # its only condition: named as today
    assert mixed.separating == ("model", "dataset", "epochs")
    # Recorded before the field existed: the legacy value, the one those runs were trained with.
    legacy = name_conditions({"old": ({**_identity(), "selectivity_index": None}, 0.0),
                              "new": (_identity(), 0.0)})
    assert legacy.of["old"] == "ResNet20, selectivity_index=bounded"
    pooled = name_conditions({"quick": (_identity(), 0.0), "long": (_identity(epochs=200), 0.0)},
                             pool_over=("epochs",))
    assert set(pooled.of.values()) == {"ResNet20"} and pooled.rows[0]["epochs"] == "200 | 5"


def test_windows_of_training_are_conditions_named_by_their_window():
    windows = name_conditions({
        "early": (_identity(alpha_window="0:2"), -1.0),
        "late": (_identity(alpha_window="2:end"), -1.0),
        "whole": (_identity(), -1.0),
        "old": ({k: v for k, v in _identity().items() if k != "alpha_window"}, 0.0),  # before windows existed
    })
    assert windows.of["early"] == "ResNet20, alpha_window=0:2"
    assert windows.of["late"] == "ResNet20, alpha_window=2:end"
    assert windows.of["whole"] == windows.of["old"] == "ResNet20, alpha_window=0:end"
    assert windows.separating == ("alpha_window",) and len(windows.rows) == 3
    assert windows.table()["alpha_window"].tolist() == ["0:2", "0:end", "2:end"]
    # The whole run's alpha = 0 run is the baseline of each window, which has none of its own.
    assert windows.shared == {"old": ("ResNet20, alpha_window=0:2", "ResNet20, alpha_window=2:end")}
    assert windows.table()["baseline_from"].tolist() == ["ResNet20, alpha_window=0:end", "",
                                                         "ResNet20, alpha_window=0:end"]
    # Without windows, conditions are named as before, and nothing is shared.
    plain = name_conditions({"a": (_identity(), 0.0), "b": (_identity(), -1.0)})
    assert set(plain.of.values()) == {"ResNet20"} and plain.shared == {}
    # A window's own alpha = 0 runs (or no whole-run baseline) share nothing; nor does another protocol's.
    assert name_conditions({"early": (_identity(alpha_window="0:2"), -1.0),
                            "early0": (_identity(alpha_window="0:2"), 0.0),
                            "whole0": (_identity(), 0.0)}).shared == {}
    assert name_conditions({"early": (_identity(alpha_window="0:2"), -1.0),
                            "whole0": (_identity(epochs=9), 0.0)}).shared == {}


def test_a_shared_baseline_run_has_rows_in_each_condition_it_is_the_baseline_of():
    from tf_selectivity.analysis.context import insert_condition

    frame = pd.DataFrame({"run_dir": ["w", "b", "b"], "alpha": [-1.0, 0.0, 0.0], "layer": [0, 0, 1]})
    names = {"w": "R, window=0:2", "b": "R, window=0:end"}
    out = insert_condition(frame, names, {"b": ("R, window=0:2",)})
    assert out[["run_dir", "condition", "baseline_shared_from", "layer"]].values.tolist() == [
        ["w", "R, window=0:2", "", 0], ["b", "R, window=0:2", "R, window=0:end", 0],
        ["b", "R, window=0:2", "R, window=0:end", 1], ["b", "R, window=0:end", "", 0],
        ["b", "R, window=0:end", "", 1]]
    # The copies are told apart from the own rows, also as a CSV reads the table back ("" as NaN).
    from tf_selectivity.report.condition_names import run_count

    assert run_count(out) == 3 and run_count(out.replace({"baseline_shared_from": {"": np.nan}})) == 3
    # Nothing shared: the rows, their order and columns as before.
    plain = insert_condition(frame, names, {})
    assert plain["condition"].tolist() == ["R, window=0:2", "R, window=0:end", "R, window=0:end"]
    assert "baseline_shared_from" not in plain


def test_pool_over_names_only_identity_fields():
    assert AnalysisOptions(pool_over=("epochs", "dataset")).validate().pool_over == ("epochs", "dataset")
    for bad in (("epoch",), ("seed",), ("model",)):
        with pytest.raises(ParameterError) as raised:
            AnalysisOptions(pool_over=bad).validate()
        assert raised.value.parameter == "pool_over"
        assert ", ".join(POOLABLE_FIELDS) in str(raised.value)
    assert "max_train_samples" in POOLABLE_FIELDS and "learning_rate" in POOLABLE_FIELDS


def _copy_run(source, target, **changes):
    """A copy of a run directory whose recorded configuration differs in `changes`."""
    shutil.copytree(source, target)
    for name in ("summary.json", "config.json"):
        path = os.path.join(target, name)
        record = json.load(open(path))
        for holder in ([record] if name == "summary.json" else [record["config"], record["identity"]]):
            holder.update(changes)
        json.dump(record, open(path, "w"))
    return str(target)


@pytest.fixture(scope="module")
def other_protocols(tiny_runs, tmp_path_factory):
    """tiny_runs' alpha = 0 runs again, recorded as trained on other data, and with other epochs."""
    root = tmp_path_factory.mktemp("protocols")
    runs = tiny_runs / "runs"
    for seed in (0, 1):
        _copy_run(runs / f"a0_s{seed}", root / "other_data" / f"a0_s{seed}",
                  dataset="synthetic:train=500,test=200,size=16,seed=3")
        _copy_run(runs / f"a0_s{seed}", root / "other_epochs" / f"a0_s{seed}", epochs=1)
    return root


def test_runs_differing_only_in_dataset_or_epochs_are_separate_conditions(tiny_runs, other_protocols, tmp_path):
    from tf_selectivity.analysis.pipeline import analyze

    for folder, field in (("other_data", "dataset"), ("other_epochs", "epochs")):
        out = tmp_path / folder
        result = analyze([str(tiny_runs / "runs" / "a0_s*"), str(other_protocols / folder)], str(out), OPTIONS,
                         verbose=0)
        runs = result.tables["runs"]
        names = sorted(runs["condition"].unique())
        assert len(names) == 2 and all(f", {field}=" in name for name in names), names
        assert runs.groupby("condition")["run_dir"].nunique().tolist() == [2, 2]
        assert list(pd.read_csv(out / "conditions.csv")["condition"]) == names
        for table in ("layers", "units", "chance", "initialization"):
            assert set(result.tables[table]["condition"]) == set(names), table
        report = (out / "report.md").read_text()
        head = report.split("## Headline results", 1)[0]
        assert f"2 conditions, separated by {field}" in head and all(f"**{name}**" in head for name in names)
        for name in names:  # each its own headline block: its baseline, never pooled
            assert f"### {name}\n" in report
        # Pooled on request: one condition as before.
        pooled = analyze([str(tiny_runs / "runs" / "a0_s*"), str(other_protocols / folder)], str(out),
                         AnalysisOptions(**{**OPTIONS.__dict__, "pool_over": (field,)}), verbose=0)
        assert pooled.tables["runs"]["condition"].nunique() == 1
        assert "as asked (`--pool_over`)" in (out / "report.md").read_text()


def test_figures_and_similarity_never_mix_conditions(tiny_runs, other_protocols, tmp_path):
    from tf_selectivity.analysis.pipeline import analyze

    options = AnalysisOptions(n_resamples=50, max_test_samples=100, similarity=SimilarityOptions(
        enabled="true", measures=("pwcca",)))
    copies = tmp_path / "copies"
    for alpha_dir in ("a-10_s0", "a-10_s1"):  # the treated runs of a second protocol
        _copy_run(tiny_runs / "runs" / alpha_dir, copies / alpha_dir, epochs=1)
    result = analyze([str(tiny_runs), str(other_protocols / "other_epochs"), str(copies)], str(tmp_path / "out"),
                     options, verbose=0)
    names = set(result.tables["runs"]["condition"])
    assert len(names) == 2
    assert set(result.tables["cca_tests"]["condition"]) == names  # one CCA test per condition
    assert len(result.tables["cca_tests"]) == 2
    drawn = set(result.figures)
    assert {name for name in drawn if name.startswith("fig1_selectivity_resnet8__")} == {
        "fig1_selectivity_resnet8__epochs_1", "fig1_selectivity_resnet8__epochs_2"}, drawn
    assert "fig3_cca_resnet8" in drawn  # Figure 3: one series per condition
    # Both conditions compared, so the report leaves nothing of Figure 3 out; a condition whose
    # treated alpha has one run is named as the report names it.
    warnings = list(pd.read_csv(tmp_path / "out" / "warnings.csv")["warning"])
    assert not [w for w in warnings if w.startswith("Figure 3 leaves out")], warnings
    shutil.rmtree(copies / "a-10_s1")
    again = analyze([str(tiny_runs), str(other_protocols / "other_epochs"), str(copies)], str(tmp_path / "out"),
                    options, verbose=0)
    (single,) = [name for name in set(again.tables["runs"]["condition"]) if "epochs=1" in name]
    warnings = list(pd.read_csv(tmp_path / "out" / "warnings.csv")["warning"])
    assert [w for w in warnings if w.startswith("Figure 3 leaves out")] == [
        f"Figure 3 leaves out {single} at alpha -10: one run there, and the distance between replicates needs >= 2"]


# ------------------------------------------------------------------ claims and their gates
def test_gate_marks_claims_whose_premises_fail():
    claims = [
        ("selectivity", Claim("A", "effect", "Welch", statistic=0.1, p=0.01, n=6, verdict="supported")),
        ("selectivity", Claim("B", "effect", "Welch", statistic=0.1, p=0.01, n=6, verdict="supported")),
        ("selectivity", Claim("C", "effect", "Welch", statistic=0.1, p=0.01, n=6, verdict="supported",
                              premises=(BASELINE, TRAINED))),
        ("ablation", Claim("A", "hurts", "sign flip", statistic=-0.1, p=0.25, n=3, verdict="not supported",
                           min_p=0.25, sample="3 networks")),
        ("selectivity", Claim("D", "effect", "Welch", statistic=0.1, p=0.01, n=6, verdict="supported")),
    ]
    premises_found = [Premise(TRAINED, "A", True), Premise(TRAINED, "B", False, "its networks are at chance"),
                      Premise(TRAINED, "C", True), Premise(BASELINE, "C", False, "no α = 0 networks")]
    table, warnings = gate(claims, premises_found)
    assert list(table["verdict"]) == ["supported", NOT_TESTABLE, NOT_TESTABLE, NOT_TESTABLE, "supported"]
    assert table.loc[1, "reason"] == "its networks are at chance"
    assert table.loc[2, "reason"] == "no α = 0 networks"
    assert "smallest p sign flip can give with 3 networks is 0.25" in table.loc[3, "reason"]
    assert "(not checked)" in table.loc[4, "premise"]  # no stage vouched for D's networks
    assert [w.split(":")[0] for w in warnings] == ["B", "C", "A"]  # networks first, then baselines, then power
    assert "not testable: its networks did not learn" in warnings[0] and warnings[1].startswith("C: no α = 0 networks")
    assert verdict_of(0.01, -1.0, expected="positive") == "contradicted"
    assert verdict_of(float("nan"), 1.0) == NOT_TESTABLE


def test_networks_at_chance_make_every_claim_not_testable_and_open_the_report(tiny_runs, tmp_path):
    """The quick start's case: networks that learned nothing (tiny_runs: 10% on 10 classes)."""
    from tf_selectivity.analysis.pipeline import analyze

    out = tmp_path / "out"
    result = analyze([str(tiny_runs)], str(out), OPTIONS, verbose=0)
    chance = result.tables["chance"]
    assert not chance["above_chance"].any() and (chance["chance_rate"] == 0.1).all()
    expected = [scipy_stats.binomtest(round(a * n), n, 0.1, alternative="greater").pvalue
                for a, n in zip(chance["test_accuracy"], chance["num_test_samples"])]
    assert np.allclose(chance["p_above_chance"], expected)
    claims = pd.read_csv(out / "claims.csv")
    assert len(claims) >= 2 and (claims["verdict"] == "not testable").all()
    assert claims["reason"].str.contains("not above chance").all()
    report = (out / "report.md").read_text()
    assert report.index("## Warnings") < report.index("## Headline results")
    warnings = report.split("## Warnings", 1)[1].split("## Headline results", 1)[0]
    assert "not above chance" in warnings and "not testable" in warnings
    assert "**Not testable as claims about trained networks" in report.split("## Headline results", 1)[1]
    assert "## Claims and their premises" in report


def test_trained_networks_pass_the_gate(trained_runs, tmp_path):
    from tf_selectivity.analysis.pipeline import analyze

    out = tmp_path / "out"
    result = analyze([str(trained_runs)], str(out), OPTIONS, verbose=0)
    chance = result.tables["chance"]
    baseline = chance[chance["alpha"] == 0]
    assert baseline["above_chance"].all() and (baseline["test_accuracy"] > 0.3).all(), chance
    claims = result.tables["claims"]
    assert len(claims) and (claims["verdict"] != "not testable").all(), claims[["claim", "verdict", "reason"]]
    assert "## Warnings" not in (out / "report.md").read_text()
    assert pd.read_csv(out / "warnings.csv").empty


def test_too_few_networks_say_the_smallest_p(trained_runs, tmp_path):
    """Ablation's sign-flip test over 2 networks cannot go below p = 0.5."""
    from tf_selectivity.analysis.options import AblationOptions
    from tf_selectivity.analysis.pipeline import analyze

    options = AnalysisOptions(n_resamples=50, figures=False, max_test_samples=60,
                              similarity=SimilarityOptions(enabled="false"),
                              ablation=AblationOptions(curves=True, layers=("probe_stem",), fractions=(0.0, 1.0),
                                                       random_orders=1))
    out = tmp_path / "out"
    result = analyze([str(trained_runs)], str(out), options, verbose=0)
    ablation = result.tables["claims"].query("stage == 'ablation'")
    assert len(ablation) == 2 and (ablation["verdict"] == "not testable").all()
    assert (ablation["min_p"] == 0.5).all()
    assert ablation["reason"].str.contains("with 2 networks is 0.5").all()
    warnings = pd.read_csv(out / "warnings.csv")
    assert warnings["warning"].str.contains("cannot reach p < 0.05 with these runs").any()


def test_a_condition_without_its_baseline(trained_runs, tmp_path):
    from tf_selectivity.analysis.pipeline import analyze

    out = tmp_path / "out"
    result = analyze([str(trained_runs / "runs" / "a-1_s*")], str(out), OPTIONS, verbose=0)
    claims = result.tables["claims"].query("stage == 'selectivity'")
    assert len(claims) == 2 and (claims["verdict"] == "not testable").all()
    assert claims["reason"].str.contains("no α = 0 networks").all()
    assert "no α = 0 networks, so its 2 claims against α = 0 are not testable" in (out / "report.md").read_text()


# ------------------------------------------------------------------ selectivity at initialization
@pytest.mark.backends
def test_initialization_is_the_network_training_started_from(tiny_runs):
    import keras

    from tf_selectivity.analysis.runs import discover_runs
    from tf_selectivity.analysis.stages.initialization.network import initial_model
    from tf_selectivity.data import load_dataset
    from tf_selectivity.training.config import TrainConfig
    from tf_selectivity.training.loop import build_compiled_model

    records, _ = discover_runs([str(tiny_runs / "runs" / "a-10_s1")])
    record = records[0]
    config = TrainConfig(**{k: v for k, v in record.config.items() if k in TrainConfig.IDENTITY_FIELDS},
                         output_dir="unused")
    data = load_dataset(config.dataset, validation_fraction=config.validation_fraction,
                        split_seed=config.split_seed, cache_dir=None)
    started, _ = build_compiled_model(config, data)
    rebuilt = initial_model(record)
    assert len(started.weights) == len(rebuilt.weights)
    for a, b in zip(started.weights, rebuilt.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), err_msg=a.path)


def test_selectivity_at_initialization_beside_the_trained(trained_runs, tmp_path):
    from tf_selectivity.analysis.pipeline import analyze

    out = tmp_path / "out"
    result = analyze([str(trained_runs)], str(out), OPTIONS, verbose=0)
    table = result.tables["initialization"]
    layers = result.tables["layers"]
    assert len(table) == len(layers)  # per run and layer
    assert (table["num_test_samples"] == 60).all()
    assert np.allclose(table["selectivity_from_training"],
                       table["trained_mean_selectivity"] - table["initial_mean_selectivity"])
    assert (table["initial_accuracy"] < 0.2).all() and (table["trained_accuracy"] > 0.3).all()
    report = (out / "report.md").read_text()
    assert "## Selectivity that training made" in report
    assert "for the same networks at initialization" in report.split("## Headline results", 1)[1]
    # Cached per run like every result: a second analysis computes nothing again.
    entries = sorted(os.listdir(out / "cache" / "initialization"))
    assert len(entries) == 4
    again = analyze([str(trained_runs)], str(out), OPTIONS, verbose=0)
    pd.testing.assert_frame_equal(again.tables["initialization"], table)
    assert sorted(os.listdir(out / "cache" / "initialization")) == entries
    off = analyze([str(trained_runs)], str(tmp_path / "off"), AnalysisOptions(
        **{**OPTIONS.__dict__, "initialization": type(OPTIONS.initialization)(enabled=False)}), verbose=0)
    assert "initialization" not in off.tables


# ------------------------------------------------------------------ errors that name the fix
def test_a_moved_dataset_suggests_the_dataset_flag(tiny_runs, tmp_path):
    from tf_selectivity.analysis.pipeline import analyze

    moved = _copy_run(tiny_runs / "runs" / "a0_s0", tmp_path / "moved" / "a0_s0",
                      dataset="imagefolder:/nonexistent/old/cifar10-jpeg")
    result = analyze([str(tiny_runs / "runs" / "a0_s1"), moved], str(tmp_path / "out"), OPTIONS, verbose=0)
    (path, message), = [(p, m) for p, m in result.errors if p == moved]
    assert "/nonexistent/old/cifar10-jpeg" in message and "--dataset=imagefolder:NEW_PATH" in message, message
    with pytest.raises(ValueError, match=r"--dataset=imagefolder:NEW_PATH"):
        analyze([moved], str(tmp_path / "out2"), OPTIONS, verbose=0)

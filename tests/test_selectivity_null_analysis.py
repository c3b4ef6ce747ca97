"""Selectivity above chance in the analysis: `selectivity_null(model, data)`
for built-in, ImageNet and instrument()ed models (both backends), and
``analyze --selectivity_null=B --fdr --fdr_method`` on saved runs."""

import contextlib
import io
import os

import keras
import numpy as np
import pandas as pd
import pytest
from keras import ops
from scipy import stats as scipy_stats

from conftest import error_lines, log_lines, run_cli
from tf_selectivity import instrument
from tf_selectivity.analysis.stages.selectivity.null import NULL_LAYER_COLUMNS, NULL_RUN_COLUMNS, selectivity_null
from tf_selectivity.models import build_model
from tf_selectivity.core.settings import ParameterError
from tf_selectivity.measures.unit_null import permutation_null


def _data(rng, count=60, size=16, classes=4):
    return rng.uniform(0, 255, (count, size, size, 3)).astype("float32"), np.repeat(np.arange(classes), count // classes)


def _user_model(classes=4):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv1")(x)
    x = keras.layers.Conv2D(5, 3, activation="relu", name="conv2")(x)
    logits = keras.layers.Dense(classes, name="logits")(keras.layers.GlobalAveragePooling2D()(x))
    return instrument(keras.Model(inputs, logits), alpha=0.0)


def _reference(model, images, labels, num_permutations, seed, fdr, method="bh"):
    """The null of every probed unit from the model's responses, by hand."""
    outputs = model.unit_response_model().predict_on_batch(images)
    rows = []
    for index, name in enumerate(model.probe_names):
        responses = ops.convert_to_numpy(outputs[name]).astype(np.float64)
        null = permutation_null(responses, labels, model.probes[0].num_classes,
                                num_permutations=num_permutations, seed=seed)
        rows.append(pd.DataFrame({"layer": name, "layer_index": index, "observed": null.observed,
                                  "si_null_mean": null.null_mean, "si_p": null.p_values}))
    frame = pd.concat(rows, ignore_index=True)
    frame["si_q"] = scipy_stats.false_discovery_control(frame["si_p"], method=method)
    frame["selective"] = frame["si_q"] < fdr
    return frame


@pytest.mark.backends
@pytest.mark.parametrize("kind", ["resnet8", "user", "resnet18"])
def test_selectivity_null_of_a_model_in_memory(kind, rng):
    keras.utils.set_random_seed(0)
    if kind == "user":
        model = _user_model()
    elif kind == "resnet18":
        model = build_model("resnet18", num_classes=4, width=16, input_shape=(16, 16, 3))
    else:
        model = build_model("resnet8", num_classes=4, input_shape=(16, 16, 3))
    images, labels = _data(rng)
    units = selectivity_null(model, images, labels, num_permutations=49, seed=3, fdr=0.2, batch_size=25)
    reference = _reference(model, images, labels, 49, 3, 0.2)
    assert list(units["layer"].unique()) == model.probe_names
    assert len(units) == len(reference)
    np.testing.assert_allclose(units["selectivity"], reference["observed"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(units["si_null_mean"], reference["si_null_mean"], rtol=1e-4, atol=1e-6)
    # p-values are multiples of 1/(B+1) in [1/(B+1), 1]; at most a rare tie flips with float noise.
    assert np.all(np.isclose(units["si_p"] * 50, np.round(units["si_p"] * 50)))
    assert np.mean(np.abs(units["si_p"] - reference["si_p"]) > 1e-12) < 0.02
    np.testing.assert_allclose(units["si_q"], scipy_stats.false_discovery_control(units["si_p"]), rtol=1e-12)
    np.testing.assert_array_equal(units["selective"], units["si_q"] < 0.2)
    np.testing.assert_allclose(units["si_chance_corrected"], units["selectivity"] - units["si_null_mean"])


@pytest.mark.backends
def test_selectivity_null_of_chosen_layers_and_bad_arguments(rng):
    model = _user_model()
    images, labels = _data(rng, count=40)
    name = model.probe_names[-1]
    units = selectivity_null(model, images, labels, num_permutations=9, layers=[name], fdr_method="by")
    assert set(units["layer"]) == {name} and set(units["layer_index"]) == {len(model.probe_names) - 1}
    np.testing.assert_allclose(units["si_q"], scipy_stats.false_discovery_control(units["si_p"], method="by"))
    for kwargs, message in (
        ({"num_permutations": 0}, "^num_permutations must be a positive integer"),
        ({"fdr": 1.0}, r"^fdr must be a false discovery rate in \(0, 1\)"),
        ({"fdr": 0}, r"^fdr must be a false discovery rate in \(0, 1\)"),
        ({"fdr_method": "holm"}, "^fdr_method must be one of bh, by"),
        ({"layers": ["nope"]}, "^layers must name probes of the model .*got nope"),
        ({"index": "eq3"}, "^index must be one of"),
    ):
        with pytest.raises(ParameterError, match=message):
            selectivity_null(model, images, labels, **kwargs)
    with pytest.raises(ParameterError, match="^labels must hold one label per image"):
        selectivity_null(model, images, labels[:-1])
    plain = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(), keras.layers.Dense(4)])
    with pytest.raises(ParameterError, match="^model has no selectivity probes"):
        selectivity_null(plain, images, labels)


def test_selectivity_null_shows_its_two_passes_when_verbose(rng, capsys):
    model = _user_model()
    images, labels = _data(rng, count=40)
    quiet = selectivity_null(model, images, labels, num_permutations=9)
    assert capsys.readouterr().out == ""
    shown = selectivity_null(model, images, labels, num_permutations=9, batch_size=16, verbose=1)
    assert [line.split(", ")[0] for line in log_lines(capsys.readouterr().out)] == [
        "Selectivity: 40/40 images", "Selectivity null: 9/9 permutations"]
    pd.testing.assert_frame_equal(shown, quiet)


# ------------------------------------------------------------ analyze
@pytest.fixture(scope="module")
def null_analysis(tiny_runs, tmp_path_factory, null_analysis_log):
    from tf_selectivity.analysis.options import AnalysisOptions, SelectivityOptions, SimilarityOptions
    from tf_selectivity.analysis.pipeline import analyze

    out = tmp_path_factory.mktemp("null_analysis")
    options = AnalysisOptions(selectivity=SelectivityOptions(null_permutations=99),
                              similarity=SimilarityOptions(enabled="false"), figures=False, n_resamples=100)
    with contextlib.redirect_stdout(null_analysis_log):
        return analyze([str(tiny_runs)], str(out), options, verbose=1), out


@pytest.fixture(scope="module")
def null_analysis_log():
    """What `null_analysis` printed (not on a terminal: a log file's lines)."""
    return io.StringIO()


@pytest.mark.tensorflow_only
def test_analyze_shows_each_run_s_null_on_one_line(null_analysis, null_analysis_log):
    lines = log_lines(null_analysis_log.getvalue())
    assert sum(line.startswith("Selectivity null: 99/99 permutations, ") for line in lines) == 4


@pytest.mark.tensorflow_only
def test_analyze_tables_gain_the_null_columns(null_analysis):
    result, out = null_analysis
    units = pd.read_parquet(out / "units.parquet")
    assert {"si_null_mean", "si_p", "si_q", "selective", "si_chance_corrected"} <= set(units.columns)
    assert units["si_p"].between(1 / 100, 1).all()
    layers, runs = pd.read_csv(out / "layers.csv"), pd.read_csv(out / "runs.csv")
    assert set(NULL_LAYER_COLUMNS) <= set(layers.columns) and set(NULL_RUN_COLUMNS) <= set(runs.columns)
    assert set(runs["selectivity_null"]) == {99} and set(runs["fdr"]) == {0.05} and set(runs["fdr_method"]) == {"bh"}
    for run_dir, group in units.groupby("run_dir"):
        # q-values over every unit of the run (all its layers).
        np.testing.assert_allclose(group["si_q"], scipy_stats.false_discovery_control(group["si_p"]), rtol=1e-12)
        np.testing.assert_array_equal(group["selective"], group["si_q"] < 0.05)
        np.testing.assert_allclose(group["si_chance_corrected"], group["selectivity"] - group["si_null_mean"])
        per_layer = group.groupby("layer_index")
        mine = layers[layers["run_dir"] == run_dir].set_index("layer_index").sort_index()
        np.testing.assert_allclose(mine["selective_fraction"], per_layer["selective"].mean())
        np.testing.assert_allclose(mine["mean_chance_corrected_selectivity"], per_layer["si_chance_corrected"].mean())
        row = runs.set_index("run_dir").loc[run_dir]
        assert row["selective_fraction"] == pytest.approx(group["selective"].mean())
        assert row["mean_chance_corrected_selectivity"] == pytest.approx(per_layer["si_chance_corrected"].mean().mean())
        # Dead units: SI 0 under every labelling, p = 1.
        assert (group.loc[group["dead"], "si_p"] == 1).all()


@pytest.mark.tensorflow_only
def test_analyze_null_equals_the_null_of_the_runs_responses(null_analysis):
    from tf_selectivity.analysis.runs import discover_runs, load_response_function
    from tf_selectivity.data import load_test_split

    result, _ = null_analysis
    record = discover_runs([result.runs["run_dir"].iloc[0]])[0][0]
    images, labels, names = load_test_split(record.summary.dataset)
    outputs = load_response_function(record)(images.astype(np.float32))
    units = result.units[result.units["run_dir"] == record.run_dir]
    for name in record.probe_names:
        null = permutation_null(outputs[name], labels, len(names), num_permutations=99, seed=0)
        layer = units[units["layer"] == name]
        np.testing.assert_allclose(layer["si_null_mean"], null.null_mean, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(layer["si_p"], null.p_values, atol=0.0201)


@pytest.mark.tensorflow_only
def test_fdr_changes_reuse_the_cached_null(null_analysis, tiny_runs):
    from tf_selectivity.analysis.options import AnalysisOptions, SelectivityOptions, SimilarityOptions
    from tf_selectivity.analysis.pipeline import analyze

    result, out = null_analysis
    cached = sorted(os.listdir(out / "cache" / "selectivity"))
    options = AnalysisOptions(selectivity=SelectivityOptions(null_permutations=99, fdr=0.3, fdr_method="by"),
                              similarity=SimilarityOptions(enabled="false"), figures=False, n_resamples=100)
    again = analyze([str(tiny_runs)], str(out), options, verbose=0)
    assert sorted(os.listdir(out / "cache" / "selectivity")) == cached  # no run evaluated again
    np.testing.assert_array_equal(again.units["si_p"], result.units["si_p"])
    for _, group in again.units.groupby("run_dir"):
        np.testing.assert_allclose(
            group["si_q"], scipy_stats.false_discovery_control(group["si_p"], method="by"), rtol=1e-12
        )
        np.testing.assert_array_equal(group["selective"], group["si_q"] < 0.3)
    assert set(again.runs["fdr_method"]) == {"by"}


@pytest.mark.tensorflow_only
def test_bad_null_flags_exit_2_and_write_nothing(tiny_runs, tmp_path):
    for flag, message in (
        ("--selectivity_null=-1", "--selectivity_null must be a number of permutations B >= 1 (0: off); got -1"),
        ("--fdr=0", "--fdr must be in (0, 1); got 0.0"),
        ("--fdr=1.5", "--fdr must be in (0, 1); got 1.5"),
    ):
        completed = run_cli("tf_selectivity.analyze", f"--runs={tiny_runs}", f"--output_dir={tmp_path}/out", flag)
        assert completed.returncode == 2
        lines = error_lines(completed.stderr)
        assert len(lines) == 1 and message in lines[0], lines
        assert not os.path.exists(tmp_path / "out")
    completed = run_cli("tf_selectivity.analyze", f"--runs={tiny_runs}", f"--output_dir={tmp_path}/out",
                        "--fdr_method=holm")
    assert completed.returncode == 2 and not os.path.exists(tmp_path / "out")

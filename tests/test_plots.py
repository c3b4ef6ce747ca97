"""Tests of `tf_selectivity.plots` on small synthetic analysis tables."""

import sys
import warnings

import matplotlib
import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from tf_selectivity import plots, stats

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MODEL = "resnet20"
N_RESAMPLES = 200  # Enough for drawing; keeps the tests fast.
DPI = 40


def make_tables(
    alphas=(-10.0, -1.0, 0.0, 1.0),
    seeds=2,
    n_layers=3,
    leaky_slopes=(),
    models=(MODEL,),
    with_cca=False,
):
    """Synthetic `runs`, `layers` and `cca` tables.

    Selectivity falls with negative alpha and rises with positive alpha;
    accuracy drops sharply for alpha > 0. Leaky-ReLU runs get deliberately
    different values so that mixing them into the ReLU figures is caught.
    """
    rng = np.random.default_rng(0)
    runs, layers, cca = [], [], []
    conditions = [("relu", 0.0)] + [("leaky_relu", slope) for slope in leaky_slopes]
    for model in models:
        for activation, slope in conditions:
            offset = 0.1 if activation == "leaky_relu" else 0.0
            for alpha in alphas:
                for seed in range(seeds):
                    scale = np.exp(0.3 * alpha) if alpha < 0 else 1 + 0.3 * alpha
                    layer_si = 0.2 * scale * (1 + np.arange(n_layers) / n_layers) + offset
                    layer_si = layer_si + rng.normal(0, 0.005, n_layers)
                    dead = np.clip(0.02 * max(alpha, 0) + rng.uniform(0, 0.01, n_layers), 0, 1)
                    accuracy = 0.91 - (0.2 * alpha if alpha > 0 else 0.001 * -alpha)
                    accuracy += rng.normal(0, 0.002) - offset / 10
                    run_dir = f"runs/{model}/{activation}{slope:g}/alpha{alpha:g}/seed{seed}"
                    common = dict(run_dir=run_dir, model=model, alpha=alpha, seed=seed,
                                  activation=activation, leaky_slope=slope)
                    for index in range(n_layers):
                        layers.append(dict(
                            common, layer=f"conv{index}", layer_index=index, num_units=16,
                            mean_selectivity=layer_si[index],
                            mean_selectivity_alive=layer_si[index] * 1.1,
                            mean_precision=0.1 + layer_si[index] / 2,
                            dead_fraction=dead[index],
                        ))
                    runs.append(dict(
                        common, epochs=3, best_epoch=2, val_accuracy=accuracy + 0.001,
                        test_accuracy=accuracy, test_mean_selectivity=layer_si.mean(),
                        test_mean_selectivity_alive=layer_si.mean() * 1.1,
                        mean_precision=0.1 + layer_si.mean() / 2,
                        dead_unit_fraction=dead.mean(), num_units=16 * n_layers,
                    ))
        if with_cca:
            for alpha in alphas:
                if alpha == 0:
                    continue
                for index in range(n_layers):
                    for pair in range(3):
                        for comparison, distance in (("within", 0.2), ("to_baseline", 0.2 + 0.02 * abs(alpha))):
                            cca.append(dict(
                                model=model, alpha=alpha, layer=f"conv{index}", layer_index=index,
                                comparison=comparison, run_a=f"a{pair}", run_b=f"b{pair}",
                                distance=distance + 0.01 * index + rng.normal(0, 0.003),
                                method="pwcca",
                            ))
    return pd.DataFrame(runs), pd.DataFrame(layers), (pd.DataFrame(cca) if with_cca else None)


def expected_names(model=MODEL):
    return {
        f"fig1_selectivity_{model}",
        f"figA1_selectivity_promote_{model}",
        f"fig2_accuracy_suppress_{model}",
        f"fig3_cca_{model}",
        f"fig4_accuracy_promote_{model}",
        f"fig5_promote_vs_suppress_{model}",
        f"figA7_precision_suppress_{model}",
        f"figA8_precision_promote_{model}",
        f"figA9_dead_units_{model}",
        f"figA10_leaky_relu_{model}",
    }


def assert_valid_png(path):
    with open(path, "rb") as handle:
        assert handle.read(8) == PNG_SIGNATURE
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 50 and pixels.shape[1] > 50
    # Not blank: a white canvas has zero variance.
    assert pixels[..., :3].std() > 0.05


def assert_valid_pdf(path):
    with open(path, "rb") as handle:
        assert handle.read(5) == b"%PDF-"
    with open(path, "rb") as handle:
        assert b"%%EOF" in handle.read()[-1024:]


def line_by_gid(ax, gid):
    lines = [line for line in ax.lines if line.get_gid() == gid]
    assert len(lines) == 1, [line.get_gid() for line in ax.lines]
    return lines[0]


@pytest.fixture(scope="module")
def full_output(tmp_path_factory):
    runs, layers, cca = make_tables(
        alphas=(-10.0, -1.0, 0.0, 0.5, 1.0), seeds=3, leaky_slopes=(0.1, 0.5), with_cca=True
    )
    output_dir = tmp_path_factory.mktemp("figures")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Any warning during drawing fails the test.
        written = plots.draw_all(runs, layers, cca, None, output_dir, dpi=DPI,
                                 n_resamples=N_RESAMPLES, raise_errors=True)
    return written, output_dir


# ---------------------------------------------------------------- draw_all


def test_draw_all_writes_every_figure_as_png_and_pdf(full_output):
    written, output_dir = full_output
    assert set(written) == expected_names()
    for name, paths in written.items():
        assert paths == [str(output_dir / f"{name}.png"), str(output_dir / f"{name}.pdf")]
        assert_valid_png(paths[0])
        assert_valid_pdf(paths[1])


def test_draw_all_two_alphas_two_seeds_and_missing_inputs(tmp_path):
    # No positive alphas, no leaky runs, no CCA: those figures are skipped.
    runs, layers, _ = make_tables(alphas=(-1.0, 0.0), seeds=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        written = plots.draw_all(runs, layers, output_dir=tmp_path, formats=("png",),
                                 dpi=DPI, n_resamples=N_RESAMPLES, raise_errors=True)
    assert set(written) == {
        f"fig1_selectivity_{MODEL}",
        f"fig2_accuracy_suppress_{MODEL}",
        f"figA7_precision_suppress_{MODEL}",
        f"figA9_dead_units_{MODEL}",
    }
    for paths in written.values():
        assert len(paths) == 1
        assert_valid_png(paths[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.png" for n in written)


def test_figures_without_their_inputs_return_none():
    runs, layers, _ = make_tables(alphas=(-1.0, 0.0))
    assert plots.plot_selectivity(runs, layers, MODEL, "promote") is None
    assert plots.plot_accuracy(runs, MODEL, "promote") is None
    assert plots.plot_promote_vs_suppress(runs, MODEL) is None
    assert plots.plot_cca(None, None, MODEL) is None
    assert plots.plot_leaky_relu(runs, MODEL) is None
    assert plots.plot_model_comparison(runs) is None
    assert plots.plot_selectivity(runs, layers, "no_such_model") is None
    # Only the baseline: nothing regularized to show.
    baseline_only = runs.loc[runs["alpha"] == 0]
    assert plots.plot_accuracy(baseline_only, MODEL) is None
    assert plots.plot_dead_units(baseline_only, layers, MODEL) is None
    # Tables without the precision columns skip Figure A7.
    assert plots.plot_precision(runs.drop(columns="mean_precision"),
                                layers.drop(columns="mean_precision"), MODEL) is None


def test_draw_all_reports_a_failing_figure_and_keeps_the_others(tmp_path, monkeypatch):
    runs, layers, _ = make_tables(alphas=(-1.0, 0.0), seeds=2)

    def broken(*args, **kwargs):
        raise KeyError("boom")

    # Only Figure 2 draws for real; Figure 1 fails. `draw_all` calls each
    # figure through its family module.
    monkeypatch.setattr(plots.precision, "plot_precision", lambda *args, **kwargs: None)
    monkeypatch.setattr(plots.dead_units, "plot_dead_units", lambda *args, **kwargs: None)
    monkeypatch.setattr(plots.selectivity, "plot_selectivity", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = plots.draw_all(runs, layers, output_dir=tmp_path, formats=("png",),
                                 dpi=DPI, n_resamples=N_RESAMPLES)
    messages = sorted(str(w.message) for w in caught if w.category is RuntimeWarning)
    # plot_selectivity draws Figures 1 and A1.
    assert len(messages) == 2
    assert "fig1_selectivity_resnet20" in messages[0] and "boom" in messages[0]
    assert "figA1_selectivity_promote_resnet20" in messages[1]
    assert set(written) == {f"fig2_accuracy_suppress_{MODEL}"}
    with pytest.raises(KeyError):
        plots.draw_all(runs, layers, output_dir=tmp_path, formats=("png",),
                       n_resamples=N_RESAMPLES, raise_errors=True)


# ---------------------------------------------------------------- values


def test_figure_1b_line_is_per_alpha_mean_selectivity_of_relu_runs():
    runs, layers, _ = make_tables(alphas=(-10.0, -1.0, 0.0, 1.0), seeds=3, leaky_slopes=(0.5,))
    figure = plots.plot_selectivity(runs, layers, MODEL, "suppress", n_resamples=N_RESAMPLES)
    assert isinstance(figure, Figure)
    network_ax = figure.axes[1]
    line = line_by_gid(network_ax, "network_mean")
    relu = runs.loc[(runs["activation"] == "relu") & (runs["alpha"] <= 0)]
    expected = relu.groupby("alpha")["test_mean_selectivity"].mean()
    np.testing.assert_allclose(line.get_xdata(), expected.index.to_numpy())
    np.testing.assert_allclose(line.get_ydata(), expected.to_numpy())
    assert network_ax.get_xscale() == "symlog"
    assert "α" in network_ax.get_xlabel()

    # Panel (a): one line per alpha across layers, values = per-layer means.
    layer_ax = figure.axes[0]
    profile = line_by_gid(layer_ax, "layer_profile_-1")
    relu_layers = layers.loc[(layers["activation"] == "relu") & (layers["alpha"] == -1.0)]
    np.testing.assert_allclose(
        profile.get_ydata(), relu_layers.groupby("layer_index")["mean_selectivity"].mean()
    )


def test_selectivity_and_precision_figures_say_how_dead_units_count():
    runs, layers, _ = make_tables(alphas=(-1.0, 0.0))

    def footnote(figure):
        return " ".join(text.get_text() for text in figure.texts).replace("\n", " ")

    assert "Dead units count as selectivity 0" in footnote(
        plots.plot_selectivity(runs, layers, MODEL, n_resamples=N_RESAMPLES))
    assert "averaged over live units" in footnote(
        plots.plot_precision(runs, layers, MODEL, n_resamples=N_RESAMPLES))


def test_figure_2_points_intervals_and_asterisks():
    runs, _, _ = make_tables(alphas=(-10.0, -1.0, 0.0), seeds=4)
    # alpha = -10 collapses, alpha = -1 is the baseline distribution.
    runs.loc[runs["alpha"] == -10.0, "test_accuracy"] -= 0.2
    runs.loc[runs["alpha"] == -1.0, "test_accuracy"] = runs.loc[runs["alpha"] == 0.0, "test_accuracy"].to_numpy()
    figure = plots.plot_accuracy(runs, MODEL, "suppress", n_resamples=N_RESAMPLES)
    accuracy_ax = figure.axes[0]
    line = line_by_gid(accuracy_ax, "accuracy_mean")
    np.testing.assert_allclose(line.get_ydata(),
                               100 * runs.groupby("alpha")["test_accuracy"].mean().to_numpy())
    stars = [text for text in accuracy_ax.texts if set(text.get_text()) == {"*"}]
    assert len(stars) == 1
    p = stats.ttests_vs_baseline(runs).set_index("alpha").loc[-10.0, "p_bonferroni"]
    assert stars[0].get_text() == stats.significance_stars(p)
    assert stars[0].xy[0] == -10.0
    assert "Accuracy" in accuracy_ax.get_ylabel() or "accuracy" in accuracy_ax.get_ylabel()
    assert "%" in accuracy_ax.get_ylabel()


def test_single_seed_per_alpha_draws_points_without_intervals():
    runs, layers, _ = make_tables(alphas=(-1.0, 0.0, 1.0), seeds=1)
    figure = plots.plot_accuracy(runs, MODEL, "suppress", n_resamples=N_RESAMPLES)
    assert isinstance(figure, Figure)
    containers = figure.axes[0].containers
    assert containers
    for container in containers:
        _, _, bar_collections = container.lines
        for collection in bar_collections:
            for segment in collection.get_segments():
                # No visible error bar: the segment is empty or undefined.
                assert segment.size == 0 or np.isnan(segment).any()
    assert isinstance(plots.plot_selectivity(runs, layers, MODEL, n_resamples=N_RESAMPLES), Figure)
    assert isinstance(plots.plot_promote_vs_suppress(runs, MODEL, n_resamples=N_RESAMPLES), Figure)


def test_cca_figure_panels_follow_available_tables():
    runs, _, cca = make_tables(alphas=(-10.0, -1.0, 0.0), with_cca=True)
    figure = plots.plot_cca(cca, None, MODEL, n_resamples=N_RESAMPLES)
    assert len(figure.axes) == 2
    profile_ax, ratio_ax = figure.axes
    at_example = cca.loc[cca["alpha"] == -10.0]  # The paper's example alpha.
    for comparison in ("within", "to_baseline"):
        expected = at_example.loc[at_example["comparison"] == comparison].groupby("layer_index")["distance"].mean()
        np.testing.assert_allclose(line_by_gid(profile_ax, f"cca_{comparison}_relu").get_ydata(), expected)
    ratio = stats.cca_distance_ratio(cca)
    np.testing.assert_allclose(line_by_gid(ratio_ax, "cca_ratio_mean_relu").get_ydata(),
                               ratio.groupby("alpha")["ratio"].mean())

    only_ratio = plots.plot_cca(None, ratio, MODEL, n_resamples=N_RESAMPLES)
    assert len(only_ratio.axes) == 1
    chosen = plots.plot_cca(cca, None, MODEL, alpha=-1.0, n_resamples=N_RESAMPLES)
    assert "-1" in chosen.axes[0].get_legend().get_texts()[0].get_text()
    assert plots.plot_cca(cca, None, "vgg16") is None


def test_cca_figure_draws_one_series_per_condition():
    # ReLU runs moved away from their baseline (ratio 1.5), leaky-ReLU runs
    # did not (ratio 1.0): two labelled series, never one at 1.25.
    rows = []
    for activation, slope, to_baseline in (("relu", 0.0, 0.3), ("leaky_relu", 0.5, 0.2)):
        for alpha in (-10.0, -1.0):
            for index in range(3):
                for comparison, distance in (("within", 0.2), ("to_baseline", to_baseline)):
                    for pair in range(2):
                        rows.append(dict(model=MODEL, activation=activation, leaky_slope=slope,
                                         alpha=alpha, layer=f"conv{index}", layer_index=index,
                                         comparison=comparison, run_a=f"a{pair}", run_b=f"b{pair}",
                                         distance=distance * (1 + index), method="pwcca"))
    cca = pd.DataFrame(rows)
    figure = plots.plot_cca(cca, None, MODEL, n_resamples=N_RESAMPLES)
    profile_ax, ratio_ax = figure.axes
    np.testing.assert_allclose(line_by_gid(ratio_ax, "cca_ratio_mean_relu").get_ydata(), [1.5, 1.5])
    np.testing.assert_allclose(
        line_by_gid(ratio_ax, "cca_ratio_mean_leaky_relu_0.5").get_ydata(), [1.0, 1.0])
    np.testing.assert_allclose(line_by_gid(profile_ax, "cca_to_baseline_relu").get_ydata(),
                               [0.3, 0.6, 0.9])
    np.testing.assert_allclose(line_by_gid(profile_ax, "cca_to_baseline_leaky_relu_0.5").get_ydata(),
                               [0.2, 0.4, 0.6])
    labels = [text.get_text() for text in figure.legends[0].get_texts()]
    assert labels[:2] == ["ReLU", "leaky ReLU (slope 0.5)"]
    # The same numbers as the statistics (one implementation).
    summary = stats.cca_ratio_summary(stats.cca_distance_ratio(cca), n_resamples=N_RESAMPLES)
    assert sorted(summary["mean_ratio"].round(12)) == [1.0, 1.0, 1.5, 1.5]


def test_leaky_figure_uses_leaky_runs_per_slope():
    runs, _, _ = make_tables(alphas=(-1.0, 0.0, 1.0), leaky_slopes=(0.1, 0.5))
    figure = plots.plot_leaky_relu(runs, MODEL, n_resamples=N_RESAMPLES)
    accuracy_ax, selectivity_ax = figure.axes
    for slope in (0.1, 0.5):
        subset = runs.loc[(runs["activation"] == "leaky_relu") & (runs["leaky_slope"] == slope)]
        line = line_by_gid(accuracy_ax, f"accuracy_slope_{slope:g}")
        np.testing.assert_allclose(line.get_ydata(), 100 * subset.groupby("alpha")["test_accuracy"].mean())
    relu_line = line_by_gid(accuracy_ax, "accuracy_slope_0")
    np.testing.assert_allclose(
        relu_line.get_ydata(),
        100 * runs.loc[runs["activation"] == "relu"].groupby("alpha")["test_accuracy"].mean(),
    )
    # Panel (b) defaults to the paper's slope 0.5.
    chosen = runs.loc[(runs["activation"] == "leaky_relu") & (runs["leaky_slope"] == 0.5)]
    np.testing.assert_allclose(
        line_by_gid(selectivity_ax, "leaky_selectivity_mean").get_ydata(),
        chosen.groupby("alpha")["test_mean_selectivity"].mean(),
    )


def test_promote_vs_suppress_plots_against_abs_alpha():
    runs, _, _ = make_tables(alphas=(-1.0, -0.5, 0.0, 0.5, 1.0), seeds=3)
    figure = plots.plot_promote_vs_suppress(runs, MODEL, n_resamples=N_RESAMPLES)
    ax = figure.axes[0]
    for name, sign in (("negative", -1), ("positive", 1)):
        line = line_by_gid(ax, f"accuracy_{name}")
        side = runs.loc[np.sign(runs["alpha"]) == sign]
        expected = side.groupby(side["alpha"].abs())["test_accuracy"].mean()
        np.testing.assert_allclose(line.get_xdata(), expected.index.to_numpy())
        np.testing.assert_allclose(line.get_ydata(), 100 * expected.to_numpy())


def test_model_comparison_needs_two_models():
    runs, _, _ = make_tables(models=("resnet20", "vgg16"))
    figure = plots.plot_model_comparison(runs, n_resamples=N_RESAMPLES)
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert labels == ["ResNet20", "VGG16"]


# ---------------------------------------------------------------- helpers


def test_alpha_colors_blues_reds_and_intensity():
    colors = plots.alpha_colors([-100, -1, -0.1, 0, 0.1, 5])

    def luminance(color):
        red, green, blue, _ = matplotlib.colors.to_rgba(color)
        return 0.2126 * red + 0.7152 * green + 0.0722 * blue

    for alpha in (-100, -1, -0.1):
        red, _, blue, _ = colors[alpha]
        assert blue > red
    for alpha in (0.1, 5):
        red, _, blue, _ = colors[alpha]
        assert red > blue
    # Larger |alpha|, darker colour.
    assert luminance(colors[-100]) < luminance(colors[-1]) < luminance(colors[-0.1])
    assert luminance(colors[5]) < luminance(colors[0.1])


def test_save_figure_keeps_dots_in_names(tmp_path):
    figure = Figure()
    figure.add_subplot().plot([0, 1], [1, 0])
    paths = plots.save_figure(figure, tmp_path / "sub" / "slope_0.5", formats=("png",), dpi=DPI)
    assert paths == [str(tmp_path / "sub" / "slope_0.5.png")]
    assert_valid_png(paths[0])


def test_drawing_leaves_callers_matplotlib_state_alone():
    before = dict(matplotlib.rcParams)
    pyplot_loaded = "matplotlib.pyplot" in sys.modules
    runs, layers, _ = make_tables()
    plots.plot_accuracy(runs, MODEL, n_resamples=N_RESAMPLES)
    plots.plot_selectivity(runs, layers, MODEL, n_resamples=N_RESAMPLES)
    after = dict(matplotlib.rcParams)
    assert {k: v for k, v in after.items() if before.get(k) != v} == {}
    # Figures are built on their own canvas, never through pyplot.
    assert ("matplotlib.pyplot" in sys.modules) == pyplot_loaded

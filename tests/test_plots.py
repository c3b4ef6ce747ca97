"""The paper's figures (`tf_selectivity.plots`, the selectivity stage's `figures`, the similarity stage's Figure 3) on small synthetic tables."""

import itertools
import sys
import warnings

import matplotlib
import matplotlib.collections
import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from tf_selectivity import plots
from tf_selectivity.analysis.stages.selectivity import figures as selectivity_figures
from tf_selectivity.analysis.stages.similarity.figure3 import plot_cca
from tf_selectivity.analysis.stages.similarity.figures import similarity_figures
from tf_selectivity.measures import stats

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


def draw_and_save(runs, layers, cca=None, output_dir=".", formats=plots.DEFAULT_FORMATS, **kwargs):
    """{name: [paths]} of every figure of the selectivity stage (`selectivity_figures.iter_figures`), then
    of the similarity stage's Figure 3 (`similarity_figures`), saved as the analysis saves them."""
    figures = itertools.chain(selectivity_figures.iter_figures(runs, layers, n_resamples=N_RESAMPLES, **kwargs),
                              similarity_figures(cca, None, n_resamples=N_RESAMPLES, **kwargs))
    return {name: plots.save_figure(figure, output_dir / name, formats, DPI) for name, figure in figures}


@pytest.fixture(scope="module")
def full_output(tmp_path_factory):
    runs, layers, cca = make_tables(
        alphas=(-10.0, -1.0, 0.0, 0.5, 1.0), seeds=3, leaky_slopes=(0.1, 0.5), with_cca=True
    )
    output_dir = tmp_path_factory.mktemp("figures")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Any warning during drawing fails the test.
        written = draw_and_save(runs, layers, cca, output_dir, raise_errors=True)
    return written, output_dir


# ------------------------------------------------------------ iter_figures


def test_every_figure_is_drawn_and_saved_as_png_and_pdf(full_output):
    written, output_dir = full_output
    assert set(written) == expected_names() | {f"fig3_cca_{MODEL}"}
    for name, paths in written.items():
        assert paths == [str(output_dir / f"{name}.png"), str(output_dir / f"{name}.pdf")]
        assert_valid_png(paths[0])
        assert_valid_pdf(paths[1])


def test_two_alphas_two_seeds_and_missing_inputs(tmp_path):
    # No positive alphas, no leaky runs, no CCA: those figures are skipped.
    runs, layers, _ = make_tables(alphas=(-1.0, 0.0), seeds=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        written = draw_and_save(runs, layers, output_dir=tmp_path, formats=("png",), raise_errors=True)
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
    assert selectivity_figures.plot_selectivity(runs, layers, MODEL, "promote") is None
    assert selectivity_figures.plot_accuracy(runs, MODEL, "promote") is None
    assert selectivity_figures.plot_promote_vs_suppress(runs, MODEL) is None
    assert plot_cca(None, None, MODEL) is None
    assert selectivity_figures.plot_leaky_relu(runs, MODEL) is None
    assert selectivity_figures.plot_model_comparison(runs) is None
    assert selectivity_figures.plot_selectivity(runs, layers, "no_such_model") is None
    # Only the baseline: nothing regularized to show.
    baseline_only = runs.loc[runs["alpha"] == 0]
    assert selectivity_figures.plot_accuracy(baseline_only, MODEL) is None
    assert selectivity_figures.plot_dead_units(baseline_only, layers, MODEL) is None
    # Tables without the precision columns skip Figure A7.
    assert selectivity_figures.plot_precision(runs.drop(columns="mean_precision"),
                                              layers.drop(columns="mean_precision"), MODEL) is None


def test_a_failing_figure_is_reported_and_the_others_kept(tmp_path, monkeypatch):
    runs, layers, _ = make_tables(alphas=(-1.0, 0.0), seeds=2)

    def broken(*args, **kwargs):
        raise KeyError("boom")

    # Only Figure 2 draws for real; Figure 1 fails. `iter_figures` calls each
    # figure through its family module.
    monkeypatch.setattr(selectivity_figures.precision, "plot_precision", lambda *args, **kwargs: None)
    monkeypatch.setattr(selectivity_figures.dead_units, "plot_dead_units", lambda *args, **kwargs: None)
    monkeypatch.setattr(selectivity_figures.selectivity, "plot_selectivity", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = draw_and_save(runs, layers, output_dir=tmp_path, formats=("png",))
    messages = sorted(str(w.message) for w in caught if w.category is RuntimeWarning)
    # plot_selectivity draws Figures 1 and A1.
    assert len(messages) == 2
    assert "fig1_selectivity_resnet20" in messages[0] and "boom" in messages[0]
    assert "figA1_selectivity_promote_resnet20" in messages[1]
    assert set(written) == {f"fig2_accuracy_suppress_{MODEL}"}
    with pytest.raises(KeyError):
        draw_and_save(runs, layers, output_dir=tmp_path, formats=("png",), raise_errors=True)


# ---------------------------------------------------------------- values


def test_figure_1b_line_is_per_alpha_mean_selectivity_of_relu_runs():
    runs, layers, _ = make_tables(alphas=(-10.0, -1.0, 0.0, 1.0), seeds=3, leaky_slopes=(0.5,))
    figure = selectivity_figures.plot_selectivity(runs, layers, MODEL, "suppress", n_resamples=N_RESAMPLES)
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
        selectivity_figures.plot_selectivity(runs, layers, MODEL, n_resamples=N_RESAMPLES))
    assert "averaged over live units" in footnote(
        selectivity_figures.plot_precision(runs, layers, MODEL, n_resamples=N_RESAMPLES))


def test_figure_2_points_intervals_and_asterisks():
    runs, _, _ = make_tables(alphas=(-10.0, -1.0, 0.0), seeds=4)
    # alpha = -10 collapses, alpha = -1 is the baseline distribution.
    runs.loc[runs["alpha"] == -10.0, "test_accuracy"] -= 0.2
    runs.loc[runs["alpha"] == -1.0, "test_accuracy"] = runs.loc[runs["alpha"] == 0.0, "test_accuracy"].to_numpy()
    figure = selectivity_figures.plot_accuracy(runs, MODEL, "suppress", n_resamples=N_RESAMPLES)
    accuracy_ax = figure.axes[0]
    line = line_by_gid(accuracy_ax, "accuracy_mean")
    np.testing.assert_allclose(line.get_ydata(),
                               100 * runs.groupby("alpha")["test_accuracy"].mean().to_numpy())
    marks = [text for text in accuracy_ax.texts if text.get_gid() == "significance_lower"]
    assert len(marks) == 1 and len(accuracy_ax.texts) == 1
    p = stats.ttests_vs_baseline(runs).set_index("alpha").loc[-10.0, "p_bonferroni"]
    assert marks[0].get_text() == "▼" + stats.significance_stars(p)
    assert marks[0].xy[0] == -10.0
    assert "Accuracy" in accuracy_ax.get_ylabel() or "accuracy" in accuracy_ax.get_ylabel()
    assert "%" in accuracy_ax.get_ylabel()


def test_single_seed_per_alpha_draws_points_without_intervals():
    runs, layers, _ = make_tables(alphas=(-1.0, 0.0, 1.0), seeds=1)
    figure = selectivity_figures.plot_accuracy(runs, MODEL, "suppress", n_resamples=N_RESAMPLES)
    assert isinstance(figure, Figure)
    containers = figure.axes[0].containers
    assert containers
    for container in containers:
        _, _, bar_collections = container.lines
        for collection in bar_collections:
            for segment in collection.get_segments():
                # No visible error bar: the segment is empty or undefined.
                assert segment.size == 0 or np.isnan(segment).any()
    assert isinstance(selectivity_figures.plot_selectivity(runs, layers, MODEL, n_resamples=N_RESAMPLES), Figure)
    assert isinstance(selectivity_figures.plot_promote_vs_suppress(runs, MODEL, n_resamples=N_RESAMPLES), Figure)


def test_cca_figure_panels_follow_available_tables():
    runs, _, cca = make_tables(alphas=(-10.0, -1.0, 0.0), with_cca=True)
    figure = plot_cca(cca, None, MODEL, n_resamples=N_RESAMPLES)
    assert len(figure.axes) == 2
    profile_ax, ratio_ax = figure.axes
    at_example = cca.loc[cca["alpha"] == -10.0]  # The paper's example alpha.
    for comparison in ("within", "to_baseline"):
        expected = at_example.loc[at_example["comparison"] == comparison].groupby("layer_index")["distance"].mean()
        np.testing.assert_allclose(line_by_gid(profile_ax, f"cca_{comparison}_relu").get_ydata(), expected)
    ratio = stats.cca_distance_ratio(cca)
    np.testing.assert_allclose(line_by_gid(ratio_ax, "cca_ratio_mean_relu").get_ydata(),
                               ratio.groupby("alpha")["ratio"].mean())

    only_ratio = plot_cca(None, ratio, MODEL, n_resamples=N_RESAMPLES)
    assert len(only_ratio.axes) == 1
    chosen = plot_cca(cca, None, MODEL, alpha=-1.0, n_resamples=N_RESAMPLES)
    assert "-1" in chosen.axes[0].get_legend().get_texts()[0].get_text()
    assert plot_cca(cca, None, "vgg16") is None


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
    figure = plot_cca(cca, None, MODEL, n_resamples=N_RESAMPLES)
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


def test_similarity_figures_are_drawn_per_model_then_per_measure_and_map(monkeypatch):
    # Figure 3 of each model, again for each further measure, then its maps;
    # a figure that fails is reported and the others still drawn.
    _, _, cca = make_tables(alphas=(-10.0, -1.0, 0.0), models=(MODEL, "vgg16"), with_cca=True)
    cka = cca.assign(method="debiased_cka")
    maps = pd.DataFrame([
        dict(model=model, activation="relu", leaky_slope=0.0, alpha=-10.0, comparison=comparison,
             run_a="runs/a", run_b="runs/b", measure="debiased_cka", layer_a=f"conv{i}", layer_index_a=i,
             layer_b=f"conv{j}", layer_index_b=j, similarity=1.0 - 0.1 * abs(i - j))
        for model in (MODEL, "vgg16") for comparison in ("within", "to_baseline")
        for i in range(3) for j in range(3)
    ])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        drawn = dict(similarity_figures(cca, None, {"debiased_cka": (cka, None)}, maps,
                                        n_resamples=N_RESAMPLES, raise_errors=True))
    assert list(drawn) == [
        f"fig3_cca_{MODEL}", f"fig3_debiased_cka_{MODEL}", f"figS_similarity_maps_{MODEL}",
        "fig3_cca_vgg16", "fig3_debiased_cka_vgg16", "figS_similarity_maps_vgg16",
    ]
    assert "debiased CKA" in drawn[f"fig3_debiased_cka_{MODEL}"].axes[1].get_ylabel()
    assert len(drawn["figS_similarity_maps_vgg16"].axes[0].images) == 1
    assert list(similarity_figures(None, None)) == []

    from tf_selectivity.analysis.stages.similarity import map_figure

    def broken(*args, **kwargs):
        raise KeyError("boom")

    monkeypatch.setattr(map_figure, "plot_similarity_maps", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = [name for name, _ in similarity_figures(cca, None, similarity_maps=maps, n_resamples=N_RESAMPLES)]
    assert names == [f"fig3_cca_{MODEL}", "fig3_cca_vgg16"]
    messages = [str(w.message) for w in caught if w.category is RuntimeWarning]
    assert len(messages) == 2 and "figS_similarity_maps_resnet20" in messages[0] and "boom" in messages[0]
    with pytest.raises(KeyError):
        list(similarity_figures(cca, None, similarity_maps=maps, n_resamples=N_RESAMPLES, raise_errors=True))


def test_leaky_figure_uses_leaky_runs_per_slope():
    runs, _, _ = make_tables(alphas=(-1.0, 0.0, 1.0), leaky_slopes=(0.1, 0.5))
    figure = selectivity_figures.plot_leaky_relu(runs, MODEL, n_resamples=N_RESAMPLES)
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
    figure = selectivity_figures.plot_promote_vs_suppress(runs, MODEL, n_resamples=N_RESAMPLES)
    ax = figure.axes[0]
    for name, sign in (("negative", -1), ("positive", 1)):
        line = line_by_gid(ax, f"accuracy_{name}")
        side = runs.loc[np.sign(runs["alpha"]) == sign]
        expected = side.groupby(side["alpha"].abs())["test_accuracy"].mean()
        np.testing.assert_allclose(line.get_xdata(), expected.index.to_numpy())
        np.testing.assert_allclose(line.get_ydata(), 100 * expected.to_numpy())


def test_model_comparison_needs_two_models():
    runs, _, _ = make_tables(models=("resnet20", "vgg16"))
    figure = selectivity_figures.plot_model_comparison(runs, n_resamples=N_RESAMPLES)
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
    selectivity_figures.plot_accuracy(runs, MODEL, n_resamples=N_RESAMPLES)
    selectivity_figures.plot_selectivity(runs, layers, MODEL, n_resamples=N_RESAMPLES)
    after = dict(matplotlib.rcParams)
    assert {k: v for k, v in after.items() if before.get(k) != v} == {}
    # Figures are built on their own canvas, never through pyplot.
    assert ("matplotlib.pyplot" in sys.modules) == pyplot_loaded


# ------------------------------------------- figures a reader can trust


MARK_GIDS = ("significance_higher", "significance_lower")
HIGHER, LOWER = "▲", "▼"


def significance_marks(ax):
    """The significance marks of `ax`: texts with a mark's gid, or of asterisks only."""
    return [text for text in ax.texts
            if text.get_gid() in MARK_GIDS or (text.get_text() and set(text.get_text()) <= {"*"})]


def marks_by_x(ax):
    return {round(float(mark.xy[0]), 9): mark for mark in significance_marks(ax)}


def marker_ink(figure, ax):
    """(H, W) bool image: the pixels that `ax`'s markers paint, as Agg draws them.

    The figure is drawn once with everything else hidden (other axes, texts,
    the lines between markers, bands and error-bar segments, axes, spines,
    backgrounds): what keeps some opacity is marker ink (data points,
    error-bar caps, scatter). Independent of how `plots.labels` computes
    marker boxes.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    hidden, styles = [], []

    def hide(artist):
        if artist.get_visible():
            hidden.append(artist)
            artist.set_visible(False)

    for other in figure.axes:
        if other is not ax:
            hide(other)
    for artist in [*ax.texts, *figure.texts, ax.xaxis, ax.yaxis, ax.patch, figure.patch, *ax.spines.values()]:
        hide(artist)
    if ax.get_legend() is not None:
        hide(ax.get_legend())
    for collection in ax.collections:
        if not isinstance(collection, matplotlib.collections.PathCollection):
            hide(collection)
    for line in ax.lines:
        styles.append((line, line.get_linestyle()))
        line.set_linestyle("None")
    # The axes where the real drawing put them: no layout engine may move
    # them because their tick labels are hidden.
    layout = figure.get_layout_engine()
    figure.set_layout_engine("none")
    try:
        canvas = FigureCanvasAgg(figure)
        canvas.draw()
        ink = np.asarray(canvas.buffer_rgba())[..., 3] > 0
    finally:
        figure.set_layout_engine(layout)
        for artist in hidden:
            artist.set_visible(True)
        for line, style in styles:
            line.set_linestyle(style)
    return ink


def box_has_ink(ink, box, margin=1.0):
    """Whether any inked pixel lies inside `box` (display pixels), shrunk by `margin` for antialiasing."""
    height = ink.shape[0]
    x0, x1 = int(np.ceil(box.x0 + margin)), int(np.floor(box.x1 - margin))
    top, bottom = int(np.ceil(height - box.y1 + margin)), int(np.floor(height - box.y0 - margin))
    if x1 <= x0 or bottom <= top:
        return False
    return bool(ink[max(top, 0):max(bottom, 0), max(x0, 0):max(x1, 0)].any())


def test_marker_ink_sees_a_label_placed_on_a_marker():
    """The oracle itself: a label on a data point or an error-bar cap has
    marker ink under it; one in empty space has none."""
    figure = Figure(figsize=(3, 2), dpi=100)
    ax = figure.add_subplot()
    ax.errorbar([0, 1], [0, 1], yerr=[0.3, 0.3], marker="o", capsize=4, linestyle="-")
    on_point = ax.text(1, 1, "**", ha="center", va="center")
    on_cap = ax.text(0, 0.3, "*", ha="center", va="center")
    between = ax.text(0.5, 0.5, "**", ha="center", va="center")  # on the line, not a marker
    empty = ax.text(0.2, 0.9, "**", ha="center", va="center")
    figure.draw_without_rendering()
    ink = marker_ink(figure, ax)
    renderer = figure.canvas.get_renderer()
    assert box_has_ink(ink, on_point.get_window_extent(renderer))
    assert box_has_ink(ink, on_cap.get_window_extent(renderer))
    assert not box_has_ink(ink, between.get_window_extent(renderer))
    assert not box_has_ink(ink, empty.get_window_extent(renderer))


def error_bar_paths(ax):
    """Every error-bar segment of `ax`, in display coordinates."""
    paths = []
    for container in ax.containers:
        if not isinstance(container, matplotlib.container.ErrorbarContainer):
            continue
        for collection in container.lines[2]:
            for segment in collection.get_segments():
                if segment.size == 0 or not np.isfinite(segment).all():
                    continue
                display = collection.get_transform().transform(segment)
                paths.append(matplotlib.path.Path(display))
    return paths


def assert_labels_clear(figure, labels_of=significance_marks, extra=()):
    """Labels inside their axes, off every error bar, marker and each other."""
    figure.draw_without_rendering()
    renderer = figure.canvas.get_renderer()
    checked = 0
    for ax in figure.axes:
        labels = list(labels_of(ax)) + [text for text in ax.texts if text in extra]
        if not labels:
            continue
        axes_box = ax.get_window_extent(renderer)
        label_boxes = [label.get_window_extent(renderer) for label in labels]
        bars = error_bar_paths(ax)
        ink = marker_ink(figure, ax)  # draws the figure again (same size and dpi)
        boxes = []
        for label, box in zip(labels, label_boxes):
            where = f"{label.get_text()!r} at {getattr(label, 'xy', label.get_position())}"
            assert axes_box.x0 - 0.5 <= box.x0 and box.x1 <= axes_box.x1 + 0.5, where
            assert axes_box.y0 - 0.5 <= box.y0 and box.y1 <= axes_box.y1 + 0.5, where
            assert not box_has_ink(ink, box), f"{where} covers a marker"
            for bar in bars:
                assert not bar.intersects_bbox(box, filled=False), f"{where} sits on an error bar"
            for other in boxes:
                assert not box.overlaps(other), f"{where} overlaps another label"
            boxes.append(box)
            checked += 1
    return checked


def test_dead_unit_panel_without_dead_units_starts_at_zero_and_says_so():
    runs, layers, _ = make_tables(alphas=(-10.0, -1.0, 0.0, 1.0), seeds=3)
    layers["dead_fraction"] = 0.0
    runs["dead_unit_fraction"] = 0.0
    figure = selectivity_figures.plot_dead_units(runs, layers, MODEL, n_resamples=N_RESAMPLES)
    layer_ax = figure.axes[0]
    bottom, top = layer_ax.get_ylim()
    # Not autoscaled around 0 (a -0.05 .. 0.05 % axis of negative dead units).
    assert bottom == 0.0 and top >= 1.0
    notes = [text for text in layer_ax.texts if "no dead units" in text.get_text().lower()]
    assert len(notes) == 1
    # The note is in the free part of the panel, above the curves at 0.
    figure.draw_without_rendering()
    renderer = figure.canvas.get_renderer()
    note_box = notes[0].get_window_extent(renderer)
    axes_box = layer_ax.get_window_extent(renderer)
    assert axes_box.y0 + 0.2 * axes_box.height < note_box.y0 and note_box.y1 < axes_box.y1
    assert axes_box.x0 < note_box.x0 and note_box.x1 < axes_box.x1

    # With dead units the axis starts at 0 too, and no such note is drawn.
    runs, layers, _ = make_tables(alphas=(-10.0, -1.0, 0.0, 1.0), seeds=3)
    figure = selectivity_figures.plot_dead_units(runs, layers, MODEL, n_resamples=N_RESAMPLES)
    layer_ax = figure.axes[0]
    assert layer_ax.get_ylim()[0] == 0.0
    assert layer_ax.get_ylim()[1] >= 100 * layers.loc[layers["alpha"] == 1.0, "dead_fraction"].max()
    assert not [text for text in layer_ax.texts if "no dead units" in text.get_text().lower()]


def test_dead_unit_figure_names_alphas_without_dead_units():
    runs, layers, _ = make_tables(alphas=(-10.0, -1.0, 0.0, 1.0), seeds=3)
    layers.loc[layers["alpha"] < 0, "dead_fraction"] = 0.0
    figure = selectivity_figures.plot_dead_units(runs, layers, MODEL, n_resamples=N_RESAMPLES)
    footnote = " ".join(text.get_text() for text in figure.texts).replace("\n", " ")
    assert "No dead units at α = -10, -1" in footnote


ORDER_ALPHAS = (-10.0, -3.0, -1.0, -0.1, 0.0, 0.1, 1.0, 5.0)


def legend_alphas(legend):
    return [float(text.get_text()) for text in legend.get_texts()]


def assert_increasing(values, what):
    assert list(values) == sorted(values), f"{what}: {list(values)}"


def test_alphas_are_in_increasing_order_in_every_panel():
    runs, layers, _ = make_tables(alphas=ORDER_ALPHAS, seeds=2)
    figures = {
        "fig1": selectivity_figures.plot_selectivity(runs, layers, MODEL, "suppress", n_resamples=N_RESAMPLES),
        "figA1": selectivity_figures.plot_selectivity(runs, layers, MODEL, "promote", n_resamples=N_RESAMPLES),
        "fig2": selectivity_figures.plot_accuracy(runs, MODEL, "suppress", n_resamples=N_RESAMPLES),
        "fig4": selectivity_figures.plot_accuracy(runs, MODEL, "promote", n_resamples=N_RESAMPLES),
        "fig5": selectivity_figures.plot_promote_vs_suppress(runs, MODEL, n_resamples=N_RESAMPLES),
        "figA7": selectivity_figures.plot_precision(runs, layers, MODEL, "suppress", n_resamples=N_RESAMPLES),
        "figA9": selectivity_figures.plot_dead_units(runs, layers, MODEL, n_resamples=N_RESAMPLES),
    }
    for name, figure in figures.items():
        # The shared legend of alpha colours reads like the alpha axes, left to right.
        (legend,) = figure.legends
        assert_increasing(legend_alphas(legend), f"{name} legend")
        for index, ax in enumerate(figure.axes):
            where = f"{name} panel {index}"
            profiles = [float(line.get_gid()[len("layer_profile_"):]) for line in ax.lines
                        if str(line.get_gid()).startswith("layer_profile_")]
            assert_increasing(profiles, f"{where} layer profiles")
            labelled = [float(c.get_label()) for c in ax.containers
                        if c.get_label() and not c.get_label().startswith("_")
                        and c.get_label().lstrip("-").replace(".", "").isdigit()]
            assert_increasing(labelled, f"{where} points")
    for name in ("fig2", "fig4"):
        violin_ax = figures[name].axes[1]
        ticks = [float(label.get_text()) for label in violin_ax.get_xticklabels()]
        assert len(ticks) >= 4
        assert_increasing(ticks, f"{name} violins")
    # Figure 5 (a): suppressing, the baseline, promoting (as on a signed alpha axis).
    labels = [text.get_text() for text in figures["fig5"].axes[0].get_legend().get_texts()]
    assert labels == ["α < 0 (suppress)", "α = 0", "α > 0 (promote)"]


def test_significance_marks_show_the_direction_of_the_effect():
    runs, layers, _ = make_tables(alphas=(-10.0, -1.0, 0.0, 1.0), seeds=4)
    baseline = runs.loc[runs["alpha"] == 0.0, "test_accuracy"].to_numpy()
    # alpha = -1 significantly higher than alpha = 0, alpha = -10 significantly lower.
    runs.loc[runs["alpha"] == -1.0, "test_accuracy"] = baseline + 0.05
    runs.loc[runs["alpha"] == -10.0, "test_accuracy"] = baseline - 0.05
    tests = stats.ttests_vs_baseline(runs.loc[runs["activation"] == "relu"]).set_index("alpha")
    assert tests.loc[-1.0, "p_bonferroni"] < 0.05 and tests.loc[-10.0, "p_bonferroni"] < 0.05
    figure = selectivity_figures.plot_accuracy(runs, MODEL, "suppress", n_resamples=N_RESAMPLES)
    accuracy_ax, _, scatter_ax = figure.axes
    for ax in (accuracy_ax, scatter_ax):
        marks = significance_marks(ax)
        assert len(marks) == 2
        higher = [m for m in marks if m.get_gid() == "significance_higher"]
        lower = [m for m in marks if m.get_gid() == "significance_lower"]
        assert len(higher) == 1 and len(lower) == 1
        assert HIGHER in higher[0].get_text() and LOWER not in higher[0].get_text()
        assert LOWER in lower[0].get_text() and HIGHER not in lower[0].get_text()
        stars = stats.significance_stars(tests.loc[-1.0, "p_bonferroni"])
        assert higher[0].get_text().replace(HIGHER, "") == stars
    assert marks_by_x(accuracy_ax)[-1.0].get_gid() == "significance_higher"
    assert marks_by_x(accuracy_ax)[-10.0].get_gid() == "significance_lower"
    # The marks sit on the side of the effect: above the point that is higher,
    # below the point that is lower.
    figure.draw_without_rendering()
    renderer = figure.canvas.get_renderer()
    marks = marks_by_x(accuracy_ax)
    means = 100 * runs.loc[runs["activation"] == "relu"].groupby("alpha")["test_accuracy"].mean()
    to_display = accuracy_ax.transData.transform
    assert marks[-1.0].get_window_extent(renderer).y0 > to_display((-1.0, means[-1.0]))[1]
    assert marks[-10.0].get_window_extent(renderer).y1 < to_display((-10.0, means[-10.0]))[1]
    footnote = " ".join(text.get_text() for text in figure.texts)
    assert HIGHER in footnote and LOWER in footnote
    assert_labels_clear(figure)

    # Figure A9 (c) draws the same tests (x: selectivity of live units).
    figure = selectivity_figures.plot_dead_units(runs, layers, MODEL, n_resamples=N_RESAMPLES)
    live_si = runs.loc[runs["activation"] == "relu"].groupby("alpha")["test_mean_selectivity_alive"].mean()
    marks = {round(x, 9): mark.get_gid() for x, mark in marks_by_x(figure.axes[2]).items()}
    assert marks[round(live_si[-1.0], 9)] == "significance_higher"
    assert marks[round(live_si[-10.0], 9)] == "significance_lower"


def test_leaky_figure_marks_selectivity_up_and_down():
    runs, _, _ = make_tables(alphas=(-10.0, -1.0, 0.0, 1.0), seeds=3, leaky_slopes=(0.5,))
    figure = selectivity_figures.plot_leaky_relu(runs, MODEL, n_resamples=N_RESAMPLES)
    marks = marks_by_x(figure.axes[1])
    # Selectivity falls for alpha < 0 and rises for alpha > 0 (see make_tables).
    assert marks[-10.0].get_gid() == "significance_lower"
    assert marks[1.0].get_gid() == "significance_higher"
    assert_labels_clear(figure)


def test_rank_sum_marks_say_whether_promoting_is_higher_or_lower():
    runs, _, _ = make_tables(alphas=(-5.0, -1.0, 0.0, 1.0, 5.0), seeds=6)
    relu = runs["activation"] == "relu"
    # Promoting at |alpha| = 1 is better than suppressing, at 5 worse.
    runs.loc[relu & (runs["alpha"] == 1.0), "test_accuracy"] = (
        runs.loc[relu & (runs["alpha"] == -1.0), "test_accuracy"].to_numpy() + 0.03)
    tests = stats.ranksum_promote_vs_suppress(runs.loc[relu]).set_index("abs_alpha")
    assert tests["significant"].all()
    figure = selectivity_figures.plot_promote_vs_suppress(runs, MODEL, n_resamples=N_RESAMPLES)
    marks = marks_by_x(figure.axes[0])
    assert marks[1.0].get_gid() == "significance_higher"
    assert marks[5.0].get_gid() == "significance_lower"
    footnote = " ".join(text.get_text() for text in figure.texts).replace("\n", " ")
    assert "α > 0 higher" in footnote and "lower than α < 0" in footnote
    assert_labels_clear(figure)


def cca_rows(ratios, layers=4, pairs=3, jitter=0.01, seed=0):
    """A `cca` table whose to-baseline : within ratio per alpha is `ratios[alpha]`."""
    rng = np.random.default_rng(seed)
    rows = []
    for alpha, ratio in ratios.items():
        for index in range(layers):
            for pair in range(pairs):
                for comparison, distance in (("within", 0.2), ("to_baseline", 0.2 * ratio)):
                    rows.append(dict(model=MODEL, alpha=alpha, layer=f"conv{index}", layer_index=index,
                                     comparison=comparison, run_a=f"a{pair}", run_b=f"b{pair}",
                                     distance=distance * (1 + 0.1 * index) * (1 + rng.normal(0, jitter)),
                                     method="pwcca"))
    return pd.DataFrame(rows)


def test_cca_ratio_marks_show_larger_or_smaller_distance_to_baseline():
    cca = cca_rows({-10.0: 1.5, -1.0: 0.8, 1.0: 1.0})
    figure = plot_cca(cca, None, MODEL, n_resamples=N_RESAMPLES)
    marks = marks_by_x(figure.axes[1])
    assert marks[-10.0].get_gid() == "significance_higher"
    assert marks[-1.0].get_gid() == "significance_lower"
    assert 1.0 not in marks


def test_labels_never_sit_on_error_bars_markers_or_each_other():
    # Figure 3b: ratios next to 1 at the largest alphas (where the "ratio = 1"
    # label goes), wide intervals and the circled example alpha among
    # significant neighbours.
    cca = cca_rows({-100.0: 1.6, -30.0: 1.55, -10.0: 1.5, -5.0: 1.45, -1.0: 1.2,
                    0.5: 1.01, 1.0: 1.0, 5.0: 0.99}, jitter=0.04)
    figure = plot_cca(cca, None, MODEL, n_resamples=N_RESAMPLES)
    ratio_ax = figure.axes[1]
    reference = [text for text in ratio_ax.texts if "ratio = 1" in text.get_text()]
    assert len(reference) == 1
    assert_labels_clear(figure, extra=reference)

    # Many alphas, marks on most of them, in every figure that draws marks.
    runs, layers, cca = make_tables(
        alphas=(-100.0, -30.0, -10.0, -5.0, -1.0, -0.5, -0.1, 0.0, 0.1, 0.5, 1.0, 5.0),
        seeds=3, leaky_slopes=(0.5,), with_cca=True)
    drawn = [
        selectivity_figures.plot_accuracy(runs, MODEL, "suppress", n_resamples=N_RESAMPLES),
        selectivity_figures.plot_accuracy(runs, MODEL, "promote", n_resamples=N_RESAMPLES),
        selectivity_figures.plot_promote_vs_suppress(runs, MODEL, n_resamples=N_RESAMPLES),
        selectivity_figures.plot_dead_units(runs, layers, MODEL, n_resamples=N_RESAMPLES),
        selectivity_figures.plot_leaky_relu(runs, MODEL, n_resamples=N_RESAMPLES),
        plot_cca(cca, None, MODEL, n_resamples=N_RESAMPLES),
    ]
    assert sum(assert_labels_clear(figure) for figure in drawn) >= 20


def test_every_plotted_alpha_has_a_tick_and_tick_labels_do_not_overlap():
    paper_alphas = (-100.0, -50.0, -20.0, -10.0, -5.0, -2.0, -1.0, -0.5, -0.4, -0.3, -0.2,
                    -0.1, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0, 2.0, 5.0)
    for alphas in (paper_alphas, (-0.5, -0.3, -0.2, -0.1, 0.0), (-10.0, -1.0, 0.0, 1.0)):
        runs, layers, _ = make_tables(alphas=alphas, seeds=2)
        figure = selectivity_figures.plot_dead_units(runs, layers, MODEL, n_resamples=N_RESAMPLES)
        alpha_ax = figure.axes[1]
        figure.draw_without_rendering()
        renderer = figure.canvas.get_renderer()
        major = [float(t) for t in alpha_ax.get_xticks()]
        minor = [float(t) for t in alpha_ax.get_xticks(minor=True)]
        for alpha in alphas:
            assert any(np.isclose(alpha, t) for t in major + minor), (alpha, major, minor)
        # Labelled: 0, the extremes, and never a label on top of another.
        assert {0.0, min(alphas), max(alphas)} <= set(major)
        labels = [label for label in alpha_ax.get_xticklabels() if label.get_text()]
        assert [float(label.get_text()) for label in labels] == sorted(major)
        boxes = [label.get_window_extent(renderer) for label in labels]
        for left, right in zip(boxes, boxes[1:]):
            assert left.x1 < right.x0, [label.get_text() for label in labels]
    # Few alphas: every one labelled (not only the decades around them).
    assert sorted(major) == [-10.0, -1.0, 0.0, 1.0]


def test_figure_3b_has_a_zero_tick_without_a_zero_point():
    cca = cca_rows({-10.0: 1.5, -1.0: 1.2, 1.0: 1.1})
    figure = plot_cca(cca, None, MODEL, n_resamples=N_RESAMPLES)
    assert 0.0 in [float(t) for t in figure.axes[1].get_xticks()]


def test_leaky_slopes_are_green_not_the_red_of_positive_alphas():
    runs, _, _ = make_tables(alphas=(-1.0, 0.0, 1.0), leaky_slopes=(0.1, 0.5))
    figure = selectivity_figures.plot_leaky_relu(runs, MODEL, n_resamples=N_RESAMPLES)
    for slope in (0.1, 0.5):
        red, green, blue, _ = matplotlib.colors.to_rgba(
            line_by_gid(figure.axes[0], f"accuracy_slope_{slope:g}").get_color())
        assert green > red and green > blue


def test_footnotes_do_not_break_inside_a_comparison():
    runs, _, _ = make_tables(alphas=(-10.0, -1.0, 0.0, 1.0), seeds=3, leaky_slopes=(0.5,))
    figure = selectivity_figures.plot_leaky_relu(runs, MODEL, n_resamples=N_RESAMPLES)
    (footnote,) = [text.get_text() for text in figure.texts if "Welch" in text.get_text()]
    assert "\n" in footnote  # Long enough to wrap.
    for line in footnote.splitlines():
        assert not line.rstrip().endswith(("<", "=", ">", "*p", " α")), line
        assert not line.lstrip().startswith(("<", "=", ">")), line


def test_drawn_figures_warn_for_a_figure_that_fails_and_draw_the_others():
    from tf_selectivity.plots.drawing import drawn_figures

    def broken():
        raise ValueError("no such column")

    builders = {"broken": broken, "empty": lambda: None, "drawn": Figure}
    with pytest.warns(RuntimeWarning, match=r"Figure broken could not be drawn: ValueError\('no such column'\)"):
        names = [name for name, figure in drawn_figures(builders)]
    assert names == ["drawn"]
    with pytest.raises(ValueError, match="no such column"):
        list(drawn_figures(builders, raise_errors=True))

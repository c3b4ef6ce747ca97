"""Unit gallery figures (`tf_selectivity.analysis.stages.units.figures`): upsampling against
hand-computed values, the figure's parts, and PNG files that decode."""

import os

import keras
import numpy as np
import pytest
from PIL import Image

from tf_selectivity import instrument
from tf_selectivity.analysis.stages.units.figures import (
    display_image,
    layer_grid,
    save_unit_galleries,
    unit_figure,
    upsample,
)
from tf_selectivity.analysis.stages.units.gallery import unit_gallery
from tf_selectivity.core.settings import ParameterError


def _gallery(rng, classes=4, count=40, k=3):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="conv1")(x)
    logits = keras.layers.Dense(classes)(keras.layers.GlobalAveragePooling2D()(x))
    model = instrument(keras.Model(inputs, logits), alpha=0.0)
    images = rng.uniform(0, 255, (count, 12, 12, 3)).astype("float32")
    labels = np.resize(np.arange(classes), count)
    return unit_gallery(model, images, labels, units={"probe_conv1": [0, 2]}, k=k, batch_size=16), images


def test_upsample_is_bilinear_between_pixel_centres():
    feature_map = np.array([[0.0, 4.0], [8.0, 12.0]])
    up = upsample(feature_map, (4, 4))
    # Output centres 0.5, 1.5, 2.5, 3.5 sit at input coordinates -0.25, 0.25, 0.75, 1.25 (held beyond the centres).
    np.testing.assert_allclose(up[0], [0.0, 1.0, 3.0, 4.0])
    np.testing.assert_allclose(up[:, 0], [0.0, 2.0, 6.0, 8.0])
    np.testing.assert_allclose(up[1, 1], 0.25 * 8 + 0.25 * 4)  # bilinear: 0.25 down, 0.25 across
    assert upsample(np.ones((3, 5)), (7, 11)).shape == (7, 11)


def test_display_image_scales_to_unit_range():
    np.testing.assert_allclose(display_image(np.full((2, 2, 3), 255.0)), 1.0)
    np.testing.assert_allclose(display_image(np.full((2, 2, 3), 0.5)), 0.5)
    np.testing.assert_allclose(display_image(np.array([[-1.0, 3.0]])[..., None]), [[0.0, 1.0]])


def test_unit_figure_has_the_images_outlines_and_marked_preferred_class(rng):
    gallery, images = _gallery(rng)
    figure = unit_figure(gallery, "probe_conv1", 0, images, class_names=list("abcd"), null_p=0.012)
    gids = [ax.get_gid() for ax in figure.axes]
    assert sorted(g for g in gids if g and g.startswith("image-")) == sorted(
        f"image-{r}-{i}" for r in ("max", "mean") for i in range(3))
    tuning = figure.axes[gids.index("tuning")]
    preferred = [line for line in tuning.get_lines() if line.get_gid() == "preferred"]
    row = gallery.unit("probe_conv1", 0)
    assert len(preferred) == 1 and preferred[0].get_xdata()[0] == row.preferred_class  # classes in order (<= 20)
    assert [t.get_text() for t in tuning.get_xticklabels()] == list("abcd")
    outlined = sum(1 for ax in figure.axes for c in ax.collections if c.get_gid() == "outline")
    assert outlined >= 1
    title = figure.get_suptitle()
    assert f"SI {row.selectivity:.3f}" in title and "null p = 0.012" in title


def test_many_classes_are_sorted_and_only_the_top_ones_named(rng):
    gallery, images = _gallery(rng, classes=200, count=400, k=2)
    figure = unit_figure(gallery, "probe_conv1", 2, images, labelled_classes=7)
    gids = [ax.get_gid() for ax in figure.axes]
    top = figure.axes[gids.index("tuning-top")]
    curve = gallery.tuning[(gallery.tuning["layer"] == "probe_conv1") & (gallery.tuning["unit"] == 2)]
    expected = curve.sort_values(["mean", "class"], ascending=[False, True], kind="stable")["class"][:7]
    assert [t.get_text() for t in top.get_xticklabels()] == [str(c) for c in expected]
    full = figure.axes[gids.index("tuning")]
    means = full.get_lines()[0].get_ydata()
    assert len(means) == 200 and np.all(np.diff(means) <= 0)


def test_galleries_are_written_as_valid_pngs(rng, tmp_path):
    gallery, images = _gallery(rng)
    paths = save_unit_galleries(gallery, images, tmp_path / "gallery", null_p={("probe_conv1", 0): 0.5})
    assert [os.path.basename(p) for p in paths] == [
        "probe_conv1_unit0.png", "probe_conv1_unit2.png", "probe_conv1_grid.png"]
    for path in paths:
        with open(path, "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            width, height = image.size
        assert 300 <= width <= 3000 and 150 <= height <= 3000
        assert 10_000 < os.path.getsize(path) < 2_000_000


def test_bad_arguments(rng):
    gallery, images = _gallery(rng)
    with pytest.raises(ParameterError) as error:
        unit_figure(gallery, "probe_conv1", 1, images)  # not chosen
    assert error.value.parameter == "unit"
    with pytest.raises(ParameterError) as error:
        unit_figure(gallery, "probe_conv1", 0, images[:5])
    assert error.value.parameter == "images"
    with pytest.raises(ParameterError) as error:
        layer_grid(gallery, "nope", images)
    assert error.value.parameter == "layer"
    with pytest.raises(ParameterError) as error:
        layer_grid(gallery, "probe_conv1", images, ranking="median")
    assert error.value.parameter == "ranking"

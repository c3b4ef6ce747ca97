"""Users' own models by spec (``module.path:function``): building, training
runs, history with extra metrics, and the run identity."""

import csv
import os

import numpy as np
import pytest
import keras

import user_model_zoo
from tf_selectivity.models import SelectivityModel, build_model
from tf_selectivity.sweeps.layout import run_name
from tf_selectivity.training import ConfigError, TrainConfig, train
from tf_selectivity.core.files import read_json

TINY = "synthetic:train=300,test=100,size=16,classes=4"


@pytest.mark.backends
def test_spec_builds_an_instrumented_model_with_the_documented_arguments():
    model = build_model("user_model_zoo:small_cnn", num_classes=4, alpha=-2.0, input_shape=(16, 16, 3),
                        pixel_mean=(1.0, 2.0, 3.0), pixel_std=(4.0, 5.0, 6.0))
    assert isinstance(model, SelectivityModel)
    assert model.probe_names == ["probe_conv1", "probe_conv2"]
    assert model.alpha == -2.0 and model.output_shape == (None, 4)
    # Only the arguments its signature names.
    assert user_model_zoo.CALLS["small_cnn"] == {"num_classes": 4, "input_shape": (16, 16, 3)}
    model = build_model("user_model_zoo:configurable_cnn", num_classes=3, input_shape=(8, 8, 3),
                        activation="leaky_relu", leaky_slope=0.2,
                        pixel_mean=(1.0, 2.0, 3.0), pixel_std=(4.0, 5.0, 6.0))
    assert user_model_zoo.CALLS["configurable_cnn"] == {
        "num_classes": 3, "input_shape": (8, 8, 3), "pixel_mean": (1.0, 2.0, 3.0),
        "pixel_std": (4.0, 5.0, 6.0), "activation": "leaky_relu", "leaky_slope": 0.2,
    }
    assert model.probe_names == ["probe_act"]
    # A model with probes already is used as it is, alpha set.
    resnet = build_model("user_model_zoo:tiny_resnet18", num_classes=5, alpha=-3.0, input_shape=(32, 32, 3),
                         pixel_mean=(1.0, 2.0, 3.0), pixel_std=(4.0, 5.0, 6.0))
    assert len(resnet.probes) == 17 and resnet.alpha == -3.0


@pytest.mark.backends
@pytest.mark.parametrize(
    "spec,kwargs,message",
    [
        ("user_model_zoo", {}, "Unknown model"),
        ("user_model_zoo:", {}, "not of the form module.path:function"),
        ("no_such_module_xyz:build", {}, "cannot import module 'no_such_module_xyz'"),
        ("user_model_zoo:missing", {}, "has no function 'missing'"),
        ("user_model_zoo:small_cnn", {"activation": "leaky_relu", "leaky_slope": 0.1}, "does not take the argument 'activation'"),
        ("user_model_zoo:fixed_size", {}, r"inputs of shape \(8, 8, 3\)"),
        ("user_model_zoo:not_a_model", {}, "not a Keras model"),
        ("user_model_zoo:tiny_resnet18", {}, "cannot be called with"),  # no pixel statistics given
    ],
)
def test_bad_specs(spec, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_model(spec, num_classes=4, input_shape=(16, 16, 3), **kwargs)


def test_config_validation_imports_the_spec(tmp_path):
    from tf_selectivity.models import MODELS

    config = TrainConfig(model="user_model_zoo:small_cnn", output_dir=str(tmp_path))
    assert config.validate(known_models=["resnet8"]) is config
    for name in ("resnet18", "resnet50"):
        TrainConfig(model=name, output_dir=str(tmp_path)).validate(known_models=MODELS)
    with pytest.raises(ConfigError, match="cannot import module"):
        TrainConfig(model="no_such_module_xyz:f", output_dir=str(tmp_path)).validate(known_models=["resnet8"])


def test_sweep_run_names_of_specs_are_file_names():
    assert run_name("my.models:build_net", "relu", 0.0, -1.0, 3) == "my.models-build_net_relu_alpha-1_seed3"
    assert run_name("resnet20", "relu", 0.0, -1.0, 3) == "resnet20_relu_alpha-1_seed3"


@pytest.mark.backends
def test_train_a_user_model_with_extra_metrics(tmp_path):
    config = TrainConfig(
        model="user_model_zoo:small_cnn", alpha=-1.0, dataset=TINY, epochs=2, batch_size=50,
        lr_milestones=(), learning_rate=0.05, output_dir=str(tmp_path / "run"),
    )
    summary = train(config, verbose=0, metrics=[keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2")])
    assert summary.model == "user_model_zoo:small_cnn"
    assert summary.probe_names == ["probe_conv1", "probe_conv2"]
    assert len(summary.test_layer_selectivity) == 2
    recorded = read_json(os.path.join(config.output_dir, "config.json"))
    assert recorded["identity"]["model"] == "user_model_zoo:small_cnn"
    with open(os.path.join(config.output_dir, "history.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for column in ("top2", "val_top2", "accuracy", "selectivity/probe_conv1"):
        assert column in rows[0], column
        assert 0.0 <= float(rows[-1][column]) <= 1.0
    other = TrainConfig(**{**config.to_dict(), "model": "user_model_zoo:configurable_cnn"})
    with pytest.raises(ConfigError, match="model: 'user_model_zoo:small_cnn' there"):
        train(other, verbose=0)


@pytest.mark.tensorflow_only  # slow under JAX; test_imagenet_resnet.py trains resnet18 one step on both backends
def test_train_reduced_resnet18_on_64x64_with_200_classes(tmp_path):
    """The smallest Tiny ImageNet-shaped run: 64x64 images, 200 classes."""
    config = TrainConfig(
        model="user_model_zoo:tiny_resnet18", alpha=-1.0,
        dataset="synthetic:train=400,test=200,size=64,classes=200", epochs=1, batch_size=40,
        lr_milestones=(), output_dir=str(tmp_path / "run"),
    )
    summary = train(config, verbose=0)
    assert summary.num_classes == 200 and summary.image_shape == [64, 64, 3]
    assert len(summary.probe_names) == 17
    assert np.all(np.isfinite(summary.test_layer_selectivity))
    # The analysis of a 200-class run: precision's N capped at 1 image per
    # class of this test set.
    from tf_selectivity.analysis.options import AnalysisOptions
    from tf_selectivity.analysis.pipeline import analyze

    options = AnalysisOptions(n_resamples=100, figures=False)  # figures: test_user_model_analysis
    result = analyze([config.output_dir], str(tmp_path / "analysis"), options, verbose=0)
    assert not result.errors and list(result.runs["precision_top_n"]) == [1]
    assert len(result.layers) == 17

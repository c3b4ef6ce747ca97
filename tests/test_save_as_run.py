"""`save_as_run`: a model trained elsewhere is analysed like our own runs."""

import json
import os

import numpy as np
import pytest
import keras

from tf_selectivity.analysis.options import AnalysisOptions, SimilarityOptions
from tf_selectivity.analysis.pipeline import analyze
from tf_selectivity.models import build_model, load_torch_weights
from tf_selectivity.training import save_as_run

pytestmark = pytest.mark.backends

DATASET = "synthetic:train=100,test=120,size=8"


def test_a_model_with_loaded_weights_is_analysed_from_its_run_directory(tmp_path, rng):
    keras.utils.set_random_seed(0)
    source = build_model("resnet8", input_shape=(8, 8, 3))
    # A NumPy state dict in PyTorch's layout, made from a Keras model's weights.
    state = {}
    for layer in source.layers:
        if isinstance(layer, keras.layers.Conv2D):
            module = "conv1" if layer.name == "stem_conv" else f"layer{layer.name[1]}.0.{layer.name[-5:]}"
            state[f"{module}.weight"] = np.transpose(keras.ops.convert_to_numpy(layer.kernel), (3, 2, 0, 1))
        elif isinstance(layer, keras.layers.BatchNormalization):
            module = "bn1" if layer.name == "stem_bn" else f"layer{layer.name[1]}.0.{layer.name[-3:]}"
            for torch_field, ours in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"), ("running_var", "moving_variance")):
                state[f"{module}.{torch_field}"] = rng.uniform(0.5, 1.5, getattr(layer, ours).shape)
    state["linear.weight"] = keras.ops.convert_to_numpy(source.get_layer("logits").kernel).T
    state["linear.bias"] = np.zeros(10)
    model = build_model("resnet8", input_shape=(8, 8, 3))
    load_torch_weights(model, state, normalize_mean=(0.5,) * 3, normalize_std=(0.25,) * 3)

    run = save_as_run(model, str(tmp_path / "runs" / "published"), dataset=DATASET, seed=4, source="test")
    summary = json.load(open(os.path.join(run, "summary.json")))
    assert summary["model"] == "resnet8" and summary["seed"] == 4 and summary["imported"]
    assert (summary["activation"], summary["leaky_slope"], summary["alpha"]) == ("relu", 0.0, 0.0)
    with pytest.raises(FileExistsError, match="already holds a run"):
        save_as_run(model, run, dataset=DATASET)

    result = analyze([str(tmp_path / "runs")], str(tmp_path / "analysis"), AnalysisOptions(similarity=SimilarityOptions(enabled="false"), figures=False), verbose=0)
    assert not result.errors
    row = result.runs.iloc[0]
    assert row["run_dir"] == run and row["num_test_samples"] == 120
    # The analysis evaluated the loaded network: its accuracy is the model's own.
    from tf_selectivity.data import load_test_split

    images, labels, _ = load_test_split(DATASET)
    logits = model.predict(images.astype("float32"), verbose=0)
    assert row["test_accuracy"] == pytest.approx(np.mean(logits.argmax(axis=1) == labels))
    assert len(result.layers) == len(model.probes)
    assert os.path.exists(os.path.join(tmp_path, "analysis", "report.md"))
    # Its training is not ours to repeat: no network at initialization to set beside it.
    assert "initialization" not in result.tables


def test_only_selectivity_models_are_saved(tmp_path):
    inputs = keras.Input((4,))
    with pytest.raises(ValueError, match="needs a SelectivityModel"):
        save_as_run(keras.Model(inputs, keras.layers.Dense(2)(inputs)), str(tmp_path / "x"), dataset=DATASET)


def test_loading_a_saved_model_keeps_tensorflows_warnings_off_the_console(tmp_path, caplog):
    """A model exported from the JAX backend holds custom-gradient functions,
    and loading it makes TensorFlow warn (through absl) once per function
    that their gradients were not saved; analysis never asks for them."""
    import logging

    from tf_selectivity.analysis.runs import discover_runs, load_response_function
    from tf_selectivity.training.export import tensorflow_available

    if not tensorflow_available():
        pytest.skip("no TensorFlow: runs have no SavedModel to load")
    keras.utils.set_random_seed(0)
    run = save_as_run(build_model("resnet8", input_shape=(8, 8, 3)), str(tmp_path / "run"), dataset=DATASET)
    (record,), errors = discover_runs([run])
    assert not errors
    with caplog.at_level(logging.INFO):
        respond = load_response_function(record)
    assert not [r.getMessage() for r in caplog.records if "unsaved custom gradients" in r.getMessage()]
    outputs = respond(np.zeros((2, 8, 8, 3), "float32"))
    assert outputs["logits"].shape == (2, 10)

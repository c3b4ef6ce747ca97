"""`UnitResponses` averages in float32, also under mixed precision."""

import numpy as np
import pytest
import keras
from keras import ops

from tf_selectivity.models.probe import UnitResponses
from tf_selectivity.models import build_model

pytestmark = pytest.mark.backends


@pytest.fixture
def mixed_bfloat16():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def test_bf16_feature_maps_are_averaged_in_float32(rng, mixed_bfloat16):
    # Values near 3 over a 32x32 map: a bf16 mean (8-bit mantissa) is off by
    # up to ~1e-2 here; a float32 mean of the same bf16 numbers by ~1e-6.
    maps = ops.cast(rng.uniform(2.0, 4.0, size=(3, 32, 32, 5)).astype("float32"), "bfloat16")
    exact = ops.convert_to_numpy(ops.cast(maps, "float32")).astype(np.float64).mean(axis=(1, 2))
    layer = UnitResponses()
    responses = layer(maps)
    assert keras.backend.standardize_dtype(responses.dtype) == "float32"
    np.testing.assert_allclose(ops.convert_to_numpy(responses), exact, rtol=2e-6)
    dense = layer(ops.cast(np.ones((2, 4)), "bfloat16"))  # (batch, units): cast only
    assert keras.backend.standardize_dtype(dense.dtype) == "float32"
    clone = UnitResponses.from_config(layer.get_config())
    assert keras.backend.standardize_dtype(clone(maps).dtype) == "float32"


def test_unit_response_model_is_float32_under_mixed_precision(rng, mixed_bfloat16):
    model = build_model("resnet8", input_shape=(8, 8, 3))
    responses = model.unit_response_model()
    for name in model.probe_names:
        assert responses.get_layer(f"{name}_units").output.dtype == "float32"
    outputs = responses(rng.uniform(0, 255, (2, 8, 8, 3)).astype("float32"))
    activations = model.activation_model()(rng.uniform(0, 255, (2, 8, 8, 3)).astype("float32"))
    assert keras.backend.standardize_dtype(activations[model.probe_names[0]].dtype) == "bfloat16"
    for name in model.probe_names:
        assert keras.backend.standardize_dtype(outputs[name].dtype) == "float32"

"""The guard against oneDNN's broken 1x1 strided weight gradients (models/onednn.py)."""

import os
import subprocess
import sys

import keras
import pytest

from conftest import REPO, backend
from tf_selectivity.models import SelectivityModel
from tf_selectivity.models.onednn import onednn_gradient_hazards
from tf_selectivity.models.probe import SelectivityProbe


def small(channels, kernel, strides):
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(channels, 3, padding="same", activation="relu", name="first")(inputs)
    x = SelectivityProbe(num_classes=4, name="probe")(x)
    x = keras.layers.Conv2D(8, kernel, strides=strides, name="suspect")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return SelectivityModel(inputs, keras.layers.Dense(4)(x))


@pytest.mark.backends
def test_hazards_are_1x1_strided_convolutions_with_few_input_channels():
    assert onednn_gradient_hazards(small(8, 1, 2)) == ["suspect"]
    assert onednn_gradient_hazards(small(16, 1, 2)) == []  # enough channels
    assert onednn_gradient_hazards(small(8, 3, 2)) == []  # not 1x1
    assert onednn_gradient_hazards(small(8, 1, 1)) == []  # not strided


def test_compile_refuses_a_hazard_on_tensorflow_with_onednn_on():
    if backend() != "tensorflow":
        pytest.skip("the bug is in TensorFlow's oneDNN kernels")
    model = small(8, 1, 2)
    with pytest.raises(ValueError, match="'suspect' is a 1x1 convolution.*TF_ENABLE_ONEDNN_OPTS=0"):
        model.compile(optimizer="sgd")
    small(16, 1, 2).compile(optimizer="sgd")  # no hazard: compiles


def test_compile_accepts_it_with_onednn_off():
    code = (
        "import sys; sys.path.insert(0, 'tests');"
        "from test_onednn_guard import small;"
        "small(8, 1, 2).compile(optimizer='sgd'); print('compiled')"
    )
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", PYTHONPATH=REPO)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "compiled" in result.stdout

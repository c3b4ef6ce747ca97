"""`import tf_selectivity` alone makes our model files loadable by `keras.saving.load_model`."""

import os
import subprocess
import sys

import pytest

from conftest import REPO

# A run trained and committed before the package's modules moved: model files
# name classes, not modules, so they keep loading.
COMMITTED_MODEL = os.path.join(REPO, "results", "reduced", "trained", "resnet20_relu_alpha-10_seed0", "model.keras")

LOAD = """
{imports}
import keras
model = keras.saving.load_model({path!r})
print(type(model).__name__, type(model.optimizer).__name__)
{extra}
"""

STAND_IN_CHECKS = """
import tf_selectivity, keras
registry = keras.saving.get_custom_objects()
stand_in = registry["tf_selectivity>SelectivityProbe"]
assert type(stand_in).__name__ == "StandIn", stand_in
layer = stand_in.from_config({"alpha": -1.0, "name": "p"})
from tf_selectivity.models.probe import SelectivityProbe
assert type(layer) is SelectivityProbe and layer.alpha == -1.0
assert registry["tf_selectivity>SelectivityProbe"] is SelectivityProbe
"""


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tf_selectivity.models import build_model
    from tf_selectivity.training.optimizers import TorchSGD

    model = build_model("resnet8", input_shape=(8, 8, 3), alpha=-1.0)
    model.compile(optimizer=TorchSGD(0.1))
    path = str(tmp_path_factory.mktemp("lazy") / "model.keras")
    model.save(path)
    return path


def _load(path, imports, backend="tensorflow", extra=""):
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": REPO}
    code = LOAD.format(imports=imports, path=path, extra=extra)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def _loaded(result) -> list:
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split()[-2:]


def test_committed_run_loads_after_importing_the_package():
    assert _loaded(_load(COMMITTED_MODEL, "import tf_selectivity")) == ["SelectivityModel", "TorchSGD"]


def test_loads_on_jax_through_stand_ins_that_build_the_real_class(tiny_model):
    # A stand-in builds the real class, whose own registration then replaces
    # it; the model file loads on JAX too.
    result = _load(tiny_model, STAND_IN_CHECKS, backend="jax")
    assert _loaded(result) == ["SelectivityModel", "TorchSGD"]


@pytest.mark.parametrize("imports", ["import keras\nimport tf_selectivity", "import tf_selectivity.models.probe"])
def test_any_import_order(tiny_model, imports):
    assert _loaded(_load(tiny_model, imports)) == ["SelectivityModel", "TorchSGD"]


def test_without_the_package_keras_cannot_find_our_classes(tiny_model):
    # The checks above can fail: without the package Keras refuses the file.
    result = _load(tiny_model, "")
    assert result.returncode != 0 and "Could not locate class 'SelectivityModel'" in result.stderr

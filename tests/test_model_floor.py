"""`SelectivityModel` on the backends it has no steps for, and the floor
rule that `tf_selectivity.models` never imports `tf_selectivity.training`.

Each check runs in a fresh interpreter (the backend is fixed per process);
they run once, in the TensorFlow suite.
"""

import importlib.util
import os
import subprocess
import sys

import pytest

from conftest import REPO


def _run(code, backend):
    env = {"KERAS_BACKEND": backend, "PATH": "/usr/bin:/bin", "PYTHONPATH": REPO,
           "TF_CPP_MIN_LOG_LEVEL": "2", "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.mark.parametrize("backend", [
    # Keras' torch backend imports PyTorch; the numpy case checks the same refusal without it.
    pytest.param("torch", marks=pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                                   reason="Keras' torch backend needs PyTorch (the torch extra)")),
    "numpy",
])
def test_unsupported_backend_fails_when_the_model_is_built(backend):
    code = (
        "import keras\n"
        "from tf_selectivity.models import SelectivityModel\n"  # importing works
        "from tf_selectivity.models.probe import SelectivityProbe\n"
        "inputs = keras.Input((4, 4, 3))\n"
        "x = SelectivityProbe(num_classes=3)(keras.layers.Conv2D(2, 1)(inputs))\n"
        "logits = keras.layers.Dense(3)(keras.layers.Flatten()(x))\n"
        "try:\n"
        "    SelectivityModel(inputs, logits)\n"
        "except RuntimeError as error:\n"
        "    print('ERROR:', error)\n"
        "else:\n"
        "    print('built')\n"
    )
    result = _run(code, backend)
    assert result.returncode == 0, result.stderr[-3000:]
    message = [line for line in result.stdout.splitlines() if line.startswith("ERROR:")]
    assert message, result.stdout
    assert f"not for {backend!r}" in message[0]
    assert "tensorflow and jax" in message[0] and "KERAS_BACKEND" in message[0]


def test_models_do_not_import_training(tmp_path):
    """Building, compiling, saving and loading a model imports nothing of `training`; a model
    compiled with TorchSGD loads in a new process with only the optimizer's module of it (the
    lazy registration finds it), never the training loop."""
    path = str(tmp_path / "model.keras")
    listed = "print('training imported:', sorted(m for m in sys.modules if m.startswith('tf_selectivity.training')))\n"
    plain = (
        "import sys, keras\n"
        "from tf_selectivity.models import build_model\n"
        "model = build_model('resnet8', num_classes=3, alpha=-1.0, input_shape=(8, 8, 3))\n"
        "model.compile(optimizer=keras.optimizers.SGD(0.1))\n"
        f"model.save({path!r})\n"
        f"keras.saving.load_model({path!r})\n" + listed
    )
    result = _run(plain, "tensorflow")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training imported: []" in result.stdout, result.stdout
    saved = (
        "import keras\n"
        "from tf_selectivity.models import build_model\n"
        "from tf_selectivity.training.optimizers import TorchSGD\n"
        "model = build_model('resnet8', num_classes=3, alpha=-1.0, input_shape=(8, 8, 3))\n"
        "model.compile(optimizer=TorchSGD(0.1, momentum=0.9))\n"
        f"model.save({path!r})\n"
    )
    assert _run(saved, "tensorflow").returncode == 0
    loaded = (
        "import sys, keras, tf_selectivity\n"
        f"loaded = keras.saving.load_model({path!r})\n"
        "assert type(loaded.optimizer).__name__ == 'TorchSGD'\n" + listed
    )
    result = _run(loaded, "tensorflow")
    assert result.returncode == 0, result.stderr[-3000:]
    imported = result.stdout.split("training imported:", 1)[1]
    assert "tf_selectivity.training.optimizers" in imported and "tf_selectivity.training.loop" not in imported, imported

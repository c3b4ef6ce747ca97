"""tf_selectivity: class-selectivity regularization and analysis for Keras 3.

Implements Leavitt & Morcos, "Selectivity considered harmful: evaluating the
causal impact of class selectivity in DNNs": a differentiable class-selectivity
index added to the loss (``loss = CE - alpha * mu_SI``), the networks and
protocol of the paper, and the analyses behind its figures.

Submodules are imported on first use, so that ``import tf_selectivity`` is
cheap, the NumPy-only modules (`cca`, `similarity`, `stats`) never load Keras, and nothing
imports TensorFlow when ``KERAS_BACKEND=jax``. Importing the package
changes nothing in the environment (the command lines set TensorFlow's
logging and oneDNN variables, and say so in their ``--help``).
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "selectivity", "layers", "models", "data", "training", "analysis",
    "cca", "similarity", "stats", "plots", "report", "sweep",
)
_EXPORTS = {
    "SelectivityProbe": "tf_selectivity.layers",
    "SelectivityModel": "tf_selectivity.models",
    "build_model": "tf_selectivity.models",
    "instrument": "tf_selectivity.models",
    "class_selectivity": "tf_selectivity.selectivity",
}

__all__ = list(_SUBMODULES) + list(_EXPORTS)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"tf_selectivity.{name}")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tf_selectivity' has no attribute {name!r}")

"""tf_selectivity: class-selectivity regularization and analysis for Keras 3.

Implements Leavitt & Morcos, "Selectivity considered harmful: evaluating the
causal impact of class selectivity in DNNs": a differentiable class-selectivity
index added to the loss (``loss = CE - alpha * mu_SI``), the networks and
protocol of the paper, and the analyses behind its figures.

Submodules are imported on first use, so that ``import tf_selectivity`` is
cheap, the NumPy-only modules (`cca`, `stats`) never load Keras, and nothing
imports TensorFlow when ``KERAS_BACKEND=jax``.
"""

import importlib
import os

# TensorFlow's oneDNN CPU kernels are off by default on CPUs without AVX-512
# (e.g. AMD EPYC, most laptops); on the 2-core AVX2 development machine they
# made training 1.3x faster (BUILD_NOTES.md). Only takes effect if TensorFlow
# is imported after this package; an explicit setting is respected.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"

_SUBMODULES = (
    "selectivity", "layers", "models", "data", "training", "analysis",
    "cca", "stats", "plots", "report", "sweep",
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

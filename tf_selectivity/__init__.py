"""tf_selectivity: class-selectivity regularization and analysis for Keras 3.

Implements Leavitt & Morcos, "Selectivity considered harmful: evaluating the
causal impact of class selectivity in DNNs": a differentiable class-selectivity
index added to the loss (``loss = CE - alpha * mu_SI``), the networks and
protocol of the paper, and the analyses behind its figures.

Submodules are imported on first use, so that ``import tf_selectivity`` is
cheap, the NumPy-only modules (`similarity`, `stats`) never load Keras, and nothing
imports TensorFlow when ``KERAS_BACKEND=jax``. A model file written by the
package loads with ``keras.saving.load_model`` after ``import tf_selectivity``
alone (`core.lazy_registration`). Importing the package
changes nothing in the environment (the command lines set TensorFlow's
logging and oneDNN variables, and say so in their ``--help``).
"""

import importlib

from tf_selectivity.core.lazy_registration import register_lazily

__version__ = "0.1.0"

# Our Keras-serializable classes, by the name they are saved under: a model
# file loads after a plain `import tf_selectivity` (see `register_lazily`).
register_lazily({
    "tf_selectivity>SelectivityProbe": "tf_selectivity.models.probe",
    "tf_selectivity>UnitResponses": "tf_selectivity.models.probe",
    "tf_selectivity>ZeroPadShortcut": "tf_selectivity.models.blocks",
    "tf_selectivity>FusedBatchNormalization": "tf_selectivity.models.blocks",
    "tf_selectivity>DenseLogits": "tf_selectivity.models.instrumentation",
    "tf_selectivity>SelectivityModel": "tf_selectivity.models.selectivity_model",
    "tf_selectivity>VectorMean": "tf_selectivity.models.selectivity_model",
    "tf_selectivity>TorchSGD": "tf_selectivity.training.optimizers",
})

# What users import, each from the module that defines it, loaded on first use.
_SUBMODULES = {
    "measures": "tf_selectivity.measures",
    "selectivity": "tf_selectivity.measures.selectivity",
    "similarity": "tf_selectivity.measures.similarity",
    "stats": "tf_selectivity.measures.stats",
    "models": "tf_selectivity.models",
    "data": "tf_selectivity.data",
    "training": "tf_selectivity.training",
    "analysis": "tf_selectivity.analysis",
    "plots": "tf_selectivity.plots",
    "report": "tf_selectivity.report",
    "sweeps": "tf_selectivity.sweeps",
}
_EXPORTS = {
    "SelectivityProbe": "tf_selectivity.models.probe",
    "UnitResponses": "tf_selectivity.models.probe",
    "SelectivityModel": "tf_selectivity.models",
    "build_model": "tf_selectivity.models",
    "instrument": "tf_selectivity.models",
    "class_selectivity": "tf_selectivity.measures.selectivity",
    "TrainConfig": "tf_selectivity.training",
    "AnalysisOptions": "tf_selectivity.analysis",
}

__all__ = list(_SUBMODULES) + list(_EXPORTS)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(_SUBMODULES[name])
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tf_selectivity' has no attribute {name!r}")

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
    "dimensionality": "tf_selectivity.measures.dimensionality",
    "models": "tf_selectivity.models",
    "data": "tf_selectivity.data",
    "training": "tf_selectivity.training",
    "analysis": "tf_selectivity.analysis",
    "plots": "tf_selectivity.plots",
    "report": "tf_selectivity.report",
    "sweeps": "tf_selectivity.sweeps",
}
_EXPORTS = {
    # The probe and the networks.
    "SelectivityProbe": "tf_selectivity.models.probe",
    "UnitResponses": "tf_selectivity.models.probe",
    "find_probes": "tf_selectivity.models.probe",
    "SelectivityModel": "tf_selectivity.models",
    "build_model": "tf_selectivity.models",
    "instrument": "tf_selectivity.models",
    "load_torch_weights": "tf_selectivity.models",
    # The index.
    "class_selectivity": "tf_selectivity.measures.selectivity",
    "ClassSelectivityAccumulator": "tf_selectivity.measures.selectivity",
    "batch_class_selectivity": "tf_selectivity.measures.selectivity",
    "layer_dimensionality": "tf_selectivity.measures.dimensionality",
    # Data and training.
    "load_dataset": "tf_selectivity.data",
    "TrainConfig": "tf_selectivity.training",
    "TorchSGD": "tf_selectivity.training",
    "save_as_run": "tf_selectivity.training",
    "RunSummary": "tf_selectivity.training",
    # Analysis of saved runs and of models in memory.
    "load_run": "tf_selectivity.analysis.run",
    "Run": "tf_selectivity.analysis.run",
    "RunLoadError": "tf_selectivity.analysis.runs",
    "AnalysisOptions": "tf_selectivity.analysis",
    "redraw": "tf_selectivity.analysis",
    "read_tables": "tf_selectivity.analysis",
    "selectivity_null": "tf_selectivity.analysis.stages.selectivity.null",
    "null_layer_summary": "tf_selectivity.analysis.stages.selectivity.null",
    "ablation_curves": "tf_selectivity.analysis.stages.ablation.ablate",
    "unit_importance": "tf_selectivity.analysis.stages.ablation.ablate",
    "importance_correlations": "tf_selectivity.analysis.stages.ablation.ablate",
    "unit_gallery": "tf_selectivity.analysis.stages.units.gallery",
    "save_unit_galleries": "tf_selectivity.analysis.stages.units.figures",
    "fgsm": "tf_selectivity.analysis.stages.robustness.attacks",
    "pgd": "tf_selectivity.analysis.stages.robustness.attacks",
    "adversarial_accuracy": "tf_selectivity.analysis.stages.robustness.attacks",
    "read_training_curves": "tf_selectivity.analysis.stages.training_curves.curves",
    "summarize_training_curves": "tf_selectivity.analysis.stages.training_curves.curves",
    "half_rise_epochs": "tf_selectivity.analysis.stages.training_curves.curves",
    "summarize_half_rise": "tf_selectivity.analysis.stages.training_curves.curves",
    "plot_training_curves": "tf_selectivity.analysis.stages.training_curves.figures",
}

__all__ = list(_SUBMODULES) + list(_EXPORTS)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(_SUBMODULES[name])
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tf_selectivity' has no attribute {name!r}")

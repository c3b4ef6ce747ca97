"""The registry of `analyze`'s stages: one line per stage, in report order.

Each stage is a folder ``stages/<name>/`` holding its settings
(``options.py``, a group of `AnalysisOptions`), its `Stage` (``stage.py``)
and what it computes, draws and reports; see `tf_selectivity.analysis.stage`
for the protocol. A line is ``"<folder>:<class in its stage.py>"``: stages
are imported when an analysis starts, so that reading the settings (the
command line's flags) imports none of their code.
"""

from __future__ import annotations

import importlib

__all__ = ["REGISTRY", "registered_stages"]

REGISTRY = (
    "selectivity:SelectivityStage",  # runs, layers, units; the paper's figures; effects of alpha
    "chance:ChanceStage",  # test accuracy against chance: did the networks learn?
    "initialization:InitializationStage",  # SI of the untrained networks beside the trained
    "similarity:SimilarityStage",  # Figure 3 (CCA, CKA, Procrustes), similarity maps
    "ablation:AblationStage",  # ablation curves, single-unit importance
    "units:UnitsStage",  # unit galleries and their HTML page
    "training_curves:TrainingCurvesStage",  # SI while training, half-rise epochs
    "over_training:OverTrainingStage",  # kept checkpoints: SI, ablation, linearity; early-training claims
    "robustness:RobustnessStage",  # corruptions, attacks, dimensionality
)


def registered_stages() -> list:
    """An instance of every registered `Stage`, in registry (report) order."""
    stages = []
    for line in REGISTRY:
        folder, class_name = line.split(":")
        module = importlib.import_module(f"{__name__}.{folder}.stage")
        stages.append(getattr(module, class_name)())
    return stages

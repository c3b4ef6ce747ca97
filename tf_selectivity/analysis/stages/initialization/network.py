"""A run's network at initialization: its architecture with the weights its training started from.

Built as training builds it (`training.loop.build_compiled_model`): the
global random seed set to the run's seed, then `models.build_model` with the
run's model, classes, activation, index and image shape. The pixel
statistics of its input normalization are read from the trained model's
``model.keras`` configuration (training computed them from the training
images, which the analysis does not load); a network without a
``Normalization`` layer is built with its builder's defaults. The random
state of Python and NumPy is restored afterwards, so that building it
changes nothing for the analysis' other stages.
"""

from __future__ import annotations

import random

import numpy as np

from tf_selectivity.analysis.runs import RunRecord, keras_model_config, layer_configs

__all__ = ["initial_model", "input_statistics"]


def input_statistics(record: RunRecord) -> dict:
    """``{"pixel_mean": ..., "pixel_std": ...}`` of the first ``Normalization`` layer in the run's
    ``model.keras`` configuration (no weights loaded); empty without one."""
    for node in layer_configs(keras_model_config(record), "Normalization"):
        settings = node.get("config") or {}
        mean, variance = settings.get("mean"), settings.get("variance")
        if isinstance(mean, list) and isinstance(variance, list):
            return {"pixel_mean": tuple(float(m) for m in np.ravel(mean)),
                    "pixel_std": tuple(float(np.sqrt(v)) for v in np.ravel(variance))}
    return {}


def initial_model(record: RunRecord):
    """The run's network before its first training step (a `SelectivityModel`).

    Raises:
        ValueError: the run does not record what building it needs (an
            imported model: its training is not ours to repeat).
    """
    import keras

    from tf_selectivity.models import build_model

    summary = record.summary
    if summary.imported or not summary.num_classes or not summary.image_shape:
        raise ValueError("the run records no training of its own (an imported model): no initialization to rebuild")
    identity = record.identity()
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        keras.utils.set_random_seed(int(summary.seed))
        return build_model(
            summary.model, num_classes=int(summary.num_classes), alpha=float(summary.alpha),
            activation=summary.activation, leaky_slope=float(summary.leaky_slope),
            selectivity_index=identity.get("selectivity_index") or summary.selectivity_index,
            input_shape=tuple(summary.image_shape), **input_statistics(record),
        )
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)

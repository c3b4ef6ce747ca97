"""`SelectivityModel`'s train and test steps, one module per backend.

As Keras picks one trainer per backend when it is imported
(`keras.Model`'s base class is the backend's trainer), this package picks
the steps of the running backend once: `BackendSteps` is a mixin placed
before `keras.Model` in `SelectivityModel`'s bases. Each step follows
Keras' own trainer of its backend (the forward pass, `compute_loss`,
`optimizer.scale_loss` for a `LossScaleOptimizer`, the loss tracker, then
`compute_metrics`), with one difference: the forward pass gets the batch
labels as the `selectivity_labels` call-context argument, which is how the
probes see them.

A new backend's steps go in a module of their own here, beside `jax` and
`tensorflow`, in the shape of Keras' trainer for that backend.
"""

from __future__ import annotations

import keras

__all__ = ["SUPPORTED_BACKENDS", "BackendSteps"]

SUPPORTED_BACKENDS = ("tensorflow", "jax")


class UnsupportedBackendSteps:
    """Stands in on backends without steps: building the model raises."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError(
            f"{type(self).__name__} has train and test steps for the "
            f"{' and '.join(SUPPORTED_BACKENDS)} backends, not for "
            f"{keras.backend.backend()!r}; set KERAS_BACKEND to one of "
            f"{', '.join(SUPPORTED_BACKENDS)} before Keras is imported."
        )


if keras.backend.backend() == "jax":
    from tf_selectivity.models.steps.jax import JAXSteps as BackendSteps
elif keras.backend.backend() == "tensorflow":
    from tf_selectivity.models.steps.tensorflow import TensorFlowSteps as BackendSteps
else:
    BackendSteps = UnsupportedBackendSteps

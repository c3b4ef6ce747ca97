"""The Keras-serializable classes of the package, registered for loading.

`keras.saving.load_model` finds a class saved as ``tf_selectivity>Name``
only once the module that defines it has been imported; the packages import
their modules lazily, so a loader calls `register_serializables` first.
"""

from __future__ import annotations

__all__ = ["register_serializables"]


def register_serializables() -> None:
    """Imports every module that registers a Keras-serializable class of ours:
    the probes, the network blocks, `SelectivityModel` and `TorchSGD`."""
    import tf_selectivity.models.blocks  # noqa: F401
    import tf_selectivity.models.instrumentation  # noqa: F401
    import tf_selectivity.models.probe  # noqa: F401
    import tf_selectivity.models.selectivity_model  # noqa: F401
    import tf_selectivity.training.optimizers  # noqa: F401

"""The few private Keras and keras-tuner APIs we use, in one place.

Everything else in the package uses public APIs only. What is here has no
public equivalent in the versions we support (setup.cfg pins them); each
entry says why it is needed, and `tests/test_compat.py` checks each one
against the installed libraries, so that an upgrade that removes or changes
one fails with a message naming it instead of somewhere deep in training.

Import this module lazily (inside functions) from modules that must not
load Keras at import time.
"""

from __future__ import annotations

__all__ = ["register_call_context_args", "optimizer_variable_index", "run_graph"]


# ---------------------------------------------------------------------------
# Keras
# ---------------------------------------------------------------------------


def register_call_context_args(layer, *names) -> None:
    """Makes Keras pass the keyword arguments `names` down to nested layers.

    A *call-context argument* given to an outer layer's call (e.g.
    ``model(x, selectivity_labels=y)``) reaches every nested layer that
    registered it, the way `training` does. `SelectivityModel` and
    `SelectivityProbe` register the batch labels this way. Keras 3 has it only
    as the private ``Layer._register_call_context_args`` (documented in its
    docstring, no public alias).

    Args:
        layer: a `keras.layers.Layer` (or model) that has not been called yet.
        *names: argument names.

    Raises:
        RuntimeError: the layer was already called (raised by Keras).
    """
    layer._register_call_context_args(*names)


def optimizer_variable_index(optimizer, variable) -> int:
    """Index of `variable` among the variables `optimizer.build` was given.

    The slot variables an optimizer creates with `add_optimizer_variables`
    are in that order; Keras' own optimizers find a variable's slot with the
    private ``_get_variable_index``, which also maps TensorFlow's distributed
    variables to their key.
    """
    return optimizer._get_variable_index(variable)


def run_graph(model, inputs, call_layer):
    """A Functional model's graph run on `inputs`, calling `call_layer` per layer.

    ``call_layer(layer, *args, **kwargs)`` is called in graph order with each
    layer and the tensors (and call arguments) of its call, and returns its
    outputs; the model's outputs on those are returned. This is the walk
    Keras' public `keras.models.clone_model(..., call_function=...)` does,
    without the model it then builds: `instrument` flattens nested models
    into the one graph it builds, and `clone_model` refuses to build a
    Functional from a nested model's intermediate inputs ("Output ... is not
    connected to `inputs`"). Keras 3 has the walk only as the private
    ``Function._run_through_graph``.

    Args:
        model: a Functional `keras.Model`.
        inputs: tensors for its inputs, flat (in `keras.tree.flatten` order).
        call_layer: (layer, *args, **kwargs) -> outputs.

    Returns:
        The outputs, structured as the model's.
    """
    return model._run_through_graph(inputs, operation_fn=lambda operation: operation, call_fn=call_layer)


# ---------------------------------------------------------------------------
# keras-tuner
# ---------------------------------------------------------------------------

"""`SelectivityProbe`: an identity layer that adds the class-selectivity regularizer."""

from __future__ import annotations

import contextlib
import functools
import math
import threading
import warnings

import keras
import numpy as np
from keras import ops

from tf_selectivity.core.compat import register_call_context_args
from tf_selectivity.models.replicas import sum_over_replicas
from tf_selectivity.measures.selectivity import (
    DEFAULT_SELECTIVITY_INDEX,
    batch_class_selectivity,
    unit_responses,
    validate_index,
)

__all__ = [
    "SelectivityProbe",
    "UnitResponses",
    "LABELS_ARG",
    "GATE_ARG",
    "find_probes",
    "child_layers",
    "all_layers",
    "recording_unit_responses",
]

# Name of the call-context argument that carries the batch labels to every
# probe of a model: `model(x, training=True, selectivity_labels=y)`. Keras
# passes call-context arguments down through Functional, Sequential and nested
# layers, so a probe can sit anywhere in a model.
LABELS_ARG = "selectivity_labels"

# Name of the call-context argument that switches the regularizer on and off
# per step: a float scalar (1: on, 0: off) that multiplies every probe's loss
# term. A tensor computed inside the compiled step (from the optimizer's step
# counter, `SelectivityModel.selectivity_window`), so that a window of
# training needs no retrace and no host round trip. Absent: always on.
GATE_ARG = "selectivity_gate"


def representable_coefficient(value: float, dtype) -> float:
    """`value`, or an infinity of its sign where it exceeds `dtype`'s range.

    A coefficient such as alpha = 1e300 overflows float32 to inf (the run
    then diverges, as it should); converting it explicitly keeps NumPy's
    "overflow encountered in cast" warning off the console.
    """
    try:
        limit = float(np.finfo(keras.backend.standardize_dtype(dtype)).max)
    except (TypeError, ValueError):  # bfloat16: float32's exponent range
        limit = float(np.finfo(np.float32).max)
    return value if abs(value) <= limit else math.copysign(math.inf, value)


@keras.saving.register_keras_serializable(package="tf_selectivity")
class SelectivityProbe(keras.layers.Layer):
    """Identity layer that regularizes the class selectivity of its input's units.

    Placed after a layer's activation, it returns its input unchanged. When the
    batch labels reach it (the `selectivity_labels` call-context argument, which
    `tf_selectivity.models.SelectivityModel` passes in its train and test steps)
    it computes the batch class selectivity index of every unit (a unit is a
    channel; its response is the mean over spatial positions), records the
    layer mean in `self.batch_selectivity`, and calls `add_loss` with its share
    of the paper's regularizer::

        loss_term = -alpha * share * mean_over_units(SI)

    With ``share = 1 / L`` on each of L probes, the terms sum to ``-alpha *
    mu_SI`` (eqs. 2-3). `SelectivityModel` fills in ``share = 1 / L`` for probes
    created with ``share=None``. Without labels (inference, serving) the probe
    is a pure identity and adds nothing. The `selectivity_gate` call-context
    argument (a float scalar, 1 or 0), when given, multiplies the loss term
    (a Python False leaves it out, True keeps it as without a gate):
    `SelectivityModel` passes it in training steps when a window of training
    is set (`SelectivityModel.set_selectivity_window`).

    The batch is the global one in data-parallel training: under
    `tf.distribute` the class sums and counts of every replica are summed
    before the index (`tf_selectivity.models.replicas`); on JAX the step
    sees the whole sharded batch.

    Args:
        num_classes: number of classes of the labels.
        alpha: regularizer scale. Negative values penalize selectivity,
            positive values promote it, 0 only measures it.
        share: this layer's weight in the mean over layers (``1 / L``). `None`
            lets `SelectivityModel` set it; a probe used alone counts as 1.
        epsilon: stabilizer added to the SI denominator in the loss (see
            `tf_selectivity.measures.selectivity.batch_class_selectivity`).
        index: the selectivity index regularized and recorded: "eq1" (the
            paper's eq. 1 with its guard, default) or "bounded" (see
            `tf_selectivity.measures.selectivity`).
        **kwargs: base layer keyword arguments (e.g. `name`).

    Input shape:
        Any tensor (batch, ..., units), channels last.

    Output shape:
        Same as the input.
    """

    def __init__(
        self,
        num_classes=10,
        alpha=0.0,
        share=None,
        epsilon=1e-6,
        index=DEFAULT_SELECTIVITY_INDEX,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be at least 2; got {num_classes}.")
        self.num_classes = int(num_classes)
        self.alpha = float(alpha)
        self.share = None if share is None else float(share)
        self.epsilon = float(epsilon)
        self.index = validate_index(index, "index")
        self.supports_masking = True
        register_call_context_args(self, LABELS_ARG, GATE_ARG)
        # Last batch's mean SI over this layer's units, for logging. A variable
        # (not a Python attribute) so that it survives `stateless_call` on JAX
        # and tf.function tracing on TensorFlow.
        self.batch_selectivity = self.add_weight(
            shape=(),
            initializer="zeros",
            trainable=False,
            name="batch_selectivity",
            aggregation="mean",
        )

    def call(self, inputs, selectivity_labels=None, selectivity_gate=None, training=None):
        if selectivity_labels is None:
            # ---- No silent no-op: a regularizing probe trained without labels.
            if training and self.alpha != 0.0:
                _warn_no_labels(self)
            # ----
            return inputs
        # The responses once: the batch index takes them as they are, and a
        # `recording_unit_responses` context (the validation pass of
        # SelectivityModel's split selectivity) gets the same tensor.
        responses = unit_responses(inputs)
        _record_responses(self, responses)
        # The global batch's index: under tf.distribute the class sums and
        # counts of every replica (one device, JAX: the batch's own).
        layer_si = ops.mean(
            batch_class_selectivity(
                responses, selectivity_labels, self.num_classes, self.epsilon, self.index,
                combine=sum_over_replicas,
            )
        )
        self.batch_selectivity.assign(ops.stop_gradient(layer_si))
        if self.alpha != 0.0 and selectivity_gate is not False:
            share = 1.0 if self.share is None else self.share
            term = representable_coefficient(-self.alpha * share, layer_si.dtype) * layer_si
            if selectivity_gate is not None and selectivity_gate is not True:
                term = ops.cast(selectivity_gate, term.dtype) * term
            self.add_loss(term)
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "alpha": self.alpha,
                "share": self.share,
                "epsilon": self.epsilon,
                "index": self.index,
            }
        )
        return config


# ---- Unit responses recorded during one forward pass. A stack per thread:
# the step that opens a recording runs the forward pass in its own thread
# (tf.distribute replicas included).
_RECORDINGS = threading.local()


@contextlib.contextmanager
def recording_unit_responses():
    """Collects the unit responses every probe computes in a forward pass.

    Within the context, each `SelectivityProbe` called with labels stores
    its unit responses (batch, units), float32 (each unit's mean over
    positions, the tensor its batch index uses), under its name in the
    yielded dict. The tensors belong to the computation being traced or run
    (a `tf.function` graph, a JAX trace): use them inside it, e.g. in the
    same step, as `SelectivityModel.test_step` does for its split
    selectivity. So the responses come from the forward pass that computes
    the loss, without a second one.

    Yields:
        dict: probe name -> responses, filled as the probes run.

    Raises:
        ValueError: (from the probe) a probe is called twice in the pass.
    """
    recorded = {}
    stack = getattr(_RECORDINGS, "stack", None)
    if stack is None:
        stack = _RECORDINGS.stack = []
    stack.append(recorded)
    try:
        yield recorded
    finally:
        stack.pop()


def _record_responses(probe, responses) -> None:
    stack = getattr(_RECORDINGS, "stack", None)
    if not stack:
        return
    if probe.name in stack[-1]:
        raise ValueError(
            f"SelectivityProbe {probe.name!r} was called more than once in one forward pass; "
            "recording unit responses (split selectivity) needs each probe called once: "
            "give each place its own probe."
        )
    stack[-1][probe.name] = responses
# ----


# ---- Warned once per process: with L probes a missing-labels setup would
# otherwise repeat the same advice L times per trace.
_NO_LABELS_WARNED = False


def _warn_no_labels(probe) -> None:
    """Warns (once) that a probe with alpha != 0 is trained without labels."""
    global _NO_LABELS_WARNED
    if _NO_LABELS_WARNED:
        return
    _NO_LABELS_WARNED = True
    warnings.warn(
        f"SelectivityProbe {probe.name!r} (alpha={probe.alpha:g}) is being trained without "
        "labels, so the selectivity regularizer does nothing. Train the network as a "
        "SelectivityModel, whose train step passes the labels to every probe: "
        "tf_selectivity.instrument(model, alpha=...) for an existing Keras model, or "
        "SelectivityModel(inputs, outputs) instead of keras.Model / keras.Sequential. In a "
        "custom training loop call the model with selectivity_labels=labels. "
        "(This warning is shown once.)",
        UserWarning,
        stacklevel=3,
    )
# ----


@functools.cache
def _bookkeeping_attributes() -> frozenset:
    """Attribute names every Keras layer has (Keras' own state, e.g. the
    list it tracks sublayers in): not a layer's own sublayers. Keras' saving
    code tells them apart the same way, from a bare `Layer()`."""
    return frozenset(vars(keras.layers.Layer()))


def _layers_in(value):
    """Layers in an attribute value: a layer, or lists/tuples/dicts of them."""
    if isinstance(value, keras.layers.Layer):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _layers_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _layers_in(item)


def child_layers(layer) -> list:
    """The layers directly inside `layer`, in the order they were added.

    For a model (Functional, Sequential or subclassed): `model.layers`
    (a Functional model's in graph order). For any other layer: the layers it
    holds in its attributes (directly or in lists, tuples and dicts), in the
    order the attributes were first set, as Keras tracks them. Each layer is
    listed once; metrics are not layers.

    Args:
        layer: a `keras.layers.Layer` (or model).

    Returns:
        A list of `keras.layers.Layer`.
    """
    if isinstance(layer, keras.Model):
        candidates = layer.layers
    else:
        skip = _bookkeeping_attributes()
        candidates = [
            sublayer
            for name, value in vars(layer).items()
            if name not in skip
            for sublayer in _layers_in(value)
        ]
    children, seen = [], {id(layer)}
    for child in candidates:
        if id(child) not in seen and not isinstance(child, keras.metrics.Metric):
            seen.add(id(child))
            children.append(child)
    return children


def all_layers(layer) -> list:
    """Every layer nested in `layer` (not `layer` itself), depth first.

    Each layer's children (`child_layers`) follow it before its next
    sibling; a layer reached twice (shared) is listed once.
    """
    found, seen = [], {id(layer)}

    def visit(parent):
        for child in child_layers(parent):
            if id(child) in seen:
                continue
            seen.add(id(child))
            found.append(child)
            visit(child)

    visit(layer)
    return found


def find_probes(model) -> list:
    """All `SelectivityProbe` layers of a model in depth order, nested ones included.

    Depth-first over each layer's sublayers in the order they were added (for
    Functional models: the graph's topological order); a shared probe is
    listed once.
    """
    return [layer for layer in all_layers(model) if isinstance(layer, SelectivityProbe)]


@keras.saving.register_keras_serializable(package="tf_selectivity")
class UnitResponses(keras.layers.Layer):
    """Mean of each unit over all positions: (batch, ..., units) -> (batch, units).

    The response of a unit to a sample, as the selectivity index defines it.
    Used to build the `unit_responses` outputs for analysis, which are much
    smaller than the full feature maps.

    Under mixed precision the feature maps arrive in bfloat16 or float16; the
    mean is taken in float32 (a bf16 mean over a 32x32 map is off by up to
    ~0.4%, its 8-bit mantissa), and the responses are float32. float64 inputs
    stay float64.

    Input shape:
        (batch, units) or (batch, ..., units), channels last.

    Output shape:
        (batch, units), float32 (float64 for float64 inputs).
    """

    def __init__(self, **kwargs):
        # Keras would cast float inputs to a mixed policy's 16-bit compute
        # dtype before `call`; take them as they come and cast up instead.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)

    def call(self, inputs):
        if inputs.dtype not in ("float32", "float64"):
            inputs = ops.cast(inputs, "float32")
        if len(inputs.shape) == 2:
            return inputs
        return ops.mean(inputs, axis=tuple(range(1, len(inputs.shape) - 1)))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def compute_output_spec(self, inputs):
        dtype = inputs.dtype if inputs.dtype in ("float32", "float64") else "float32"
        return keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype=dtype)

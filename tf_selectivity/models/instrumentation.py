"""`instrument`: selectivity probes inserted into an existing Keras model.

`instrument(model, alpha=...)` re-runs the graph of a Functional or
Sequential model on new inputs, calling *the same layer objects* (so the
weights are shared with the original, not copied) and inserting a
`SelectivityProbe` after each chosen layer. Nested Functional and Sequential
submodels are flattened into the one new graph, so that every probe's output
is reachable from the model's inputs (which the analysis models, the
SavedModel export and CCA need). The result is a `SelectivityModel` whose
train and test steps pass the batch labels to the probes.
"""

from __future__ import annotations

import difflib
from typing import Callable, Optional, Sequence, Union

import keras
from keras import ops

from tf_selectivity.models.probe import SelectivityProbe, all_layers, find_probes
from tf_selectivity.models.selectivity_model import SelectivityModel

__all__ = ["instrument", "DenseLogits", "CONV_LAYERS", "UNIT_ACTIVATION_LAYERS"]

# Layers whose output channels are units "of a convolution".
CONV_LAYERS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
)

# Layers that apply a unit non-linearity and nothing else.
UNIT_ACTIVATION_LAYERS = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.PReLU,
    keras.layers.ELU,
)

# Layers between a convolution and its activation that keep "the conv's
# units" (normalization, regularization noise, padding, local pooling,
# residual merges): an activation after them still follows the convolution.
_TRANSPARENT_LAYERS = (
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.GroupNormalization,
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianDropout,
    keras.layers.GaussianNoise,
    keras.layers.AlphaDropout,
    keras.layers.Identity,
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.ZeroPadding3D,
    keras.layers.Cropping1D,
    keras.layers.Cropping2D,
    keras.layers.Cropping3D,
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
    keras.layers.Multiply,
    keras.layers.Concatenate,
)

# Activation functions that are gates or outputs rather than unit responses
# (squeeze-and-excitation sigmoids, classifier softmax) or no non-linearity
# at all; the default placement skips them.
_NON_UNIT_ACTIVATIONS = frozenset(
    {"linear", "sigmoid", "hard_sigmoid", "softmax", "log_softmax", "sparsemax", "log_sigmoid"}
)

LayerSelection = Union[None, str, Sequence[str], Callable[[keras.layers.Layer], bool]]


def _activation_name(function) -> str:
    if function is None:
        return "linear"
    return getattr(function, "__name__", type(function).__name__)


def _applies_unit_activation(layer) -> bool:
    """A unit non-linearity: a ReLU-like layer or `Activation` (not a gate)."""
    if isinstance(layer, keras.layers.Activation):
        return _activation_name(layer.activation) not in _NON_UNIT_ACTIVATIONS
    return isinstance(layer, UNIT_ACTIVATION_LAYERS)


def _is_graph_model(layer) -> bool:
    """Functional and Sequential models (whose graph can be re-run), not
    subclassed models (whose `call` is opaque Python)."""
    # A Functional model is a `keras.Model` that is also a `keras.Function`
    # (its graph of operations); a subclassed model is not.
    return isinstance(layer, keras.Sequential) or (
        isinstance(layer, keras.Model) and isinstance(layer, keras.Function)
    )


@keras.saving.register_keras_serializable(package="tf_selectivity")
class DenseLogits(keras.layers.Layer):
    """The pre-activation output of a `Dense` layer: its logits.

    `instrument` uses it for classifiers that end in ``Dense(...,
    activation="softmax")`` (e.g. `keras.applications` models built with the
    default ``classifier_activation="softmax"``): `SelectivityModel` trains on
    logits. The wrapped layer's kernel and bias are used as they are (shared,
    not copied); its activation is not applied.

    Args:
        dense: the `keras.layers.Dense` layer.
        **kwargs: base layer keyword arguments (e.g. `name`).

    Input shape:
        (batch, ..., input_dim), as the wrapped layer.

    Output shape:
        (batch, ..., units).
    """

    def __init__(self, dense, **kwargs):
        super().__init__(**kwargs)
        if isinstance(dense, dict):
            dense = keras.saving.deserialize_keras_object(dense)
        if not isinstance(dense, keras.layers.Dense):
            raise ValueError(f"DenseLogits wraps a Dense layer; got {type(dense).__name__}.")
        self.dense = dense

    def build(self, input_shape):
        if not self.dense.built:
            self.dense.build(input_shape)

    def call(self, inputs):
        outputs = ops.matmul(inputs, self.dense.kernel)
        if self.dense.bias is not None:
            outputs = ops.add(outputs, self.dense.bias)
        return outputs

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.dense.units)

    def get_config(self):
        config = super().get_config()
        config["dense"] = keras.saving.serialize_keras_object(self.dense)
        return config


class _GraphRewriter:
    """Re-runs a model's graph layer by layer, inserting probes (one use)."""

    def __init__(self, after: LayerSelection, make_probe: Callable[[str], keras.layers.Layer]):
        self.names = None
        self.predicate = None
        if after is None:
            pass  # the default placement, decided per call from the graph
        elif isinstance(after, str):
            self.names = [after]
        elif callable(after):
            self.predicate = after
        else:
            self.names = list(after)
            if not all(isinstance(name, str) for name in self.names):
                raise TypeError(
                    "`after` takes layer names, a predicate `fn(layer) -> bool`, or None "
                    f"(the default placement); got {after!r}."
                )
        self.make_probe = make_probe
        # id(new tensor) -> True if it is a convolution's output not yet
        # passed through an activation (the default placement's state).
        self._pre_activation = {}
        # id(new tensor) -> (layer, its call's inputs): to strip a softmax.
        self.producers = {}
        self.layers_by_name = {}  # every layer called, by name
        self.probed = []  # (layer, probe) in graph order

    # --------------------------------------------------------------- walk
    def run(self, model, inputs):
        """The outputs of `model`'s graph on `inputs`, probes inserted."""
        if isinstance(model, keras.Sequential):
            outputs = inputs
            for layer in model.layers:
                outputs = self._call(layer, outputs)
            return outputs
        # The walk of Keras' `clone_model`, without its model: nested models
        # are flattened into this graph instead of cloned (`compat.run_graph`).
        from tf_selectivity.core.compat import run_graph

        return run_graph(model, inputs, self._call)

    def _call(self, layer, *args, **kwargs):
        if _is_graph_model(layer):
            # Flatten: run the submodel's own layers on these tensors. Call
            # arguments of the submodel (e.g. `training=False`) are not
            # forwarded: at run time Keras overrides them with the outer
            # call's `training` for nested models too (checked on 3.15).
            inputs = args[0] if args else kwargs.get("inputs")
            outputs = self.run(layer, inputs)
            is_point = self._selected(layer, default=False)
        else:
            self._register(layer)
            outputs = layer(*args, **kwargs)
            sources = [t for t in keras.tree.flatten((args, kwargs)) if isinstance(t, keras.KerasTensor)]
            for tensor in keras.tree.flatten(outputs):
                self.producers[id(tensor)] = (layer, sources)
            is_point = self._selected(layer, default=self._follows_conv(layer, sources))
            pre_activation = self._is_pre_activation(layer, sources)
            for tensor in keras.tree.flatten(outputs):
                self._pre_activation[id(tensor)] = pre_activation
        if is_point:
            outputs = self._insert_probe(layer, outputs)
        return outputs

    def _register(self, layer):
        other = self.layers_by_name.get(layer.name)
        if other is not None and other is not layer:
            raise ValueError(
                f"Two different layers are named {layer.name!r}. `instrument` flattens nested "
                "models into one graph, whose layer names must be unique; give the layers "
                "(or the nested models' layers) distinct names."
            )
        self.layers_by_name[layer.name] = layer

    # ---------------------------------------------------------- selection
    def _selected(self, layer, default: bool) -> bool:
        if self.names is not None:
            return layer.name in self.names
        if self.predicate is not None:
            return bool(self.predicate(layer))
        return default

    def _follows_conv(self, layer, sources) -> bool:
        """Default placement: a unit activation fed (through normalization,
        padding, pooling or residual merges) by a convolution, or a
        convolution with a fused unit activation."""
        if isinstance(layer, CONV_LAYERS):
            return _activation_name(layer.activation) not in _NON_UNIT_ACTIVATIONS
        if _applies_unit_activation(layer):
            return any(self._pre_activation.get(id(t), False) for t in sources)
        return False

    def _is_pre_activation(self, layer, sources) -> bool:
        if isinstance(layer, CONV_LAYERS):
            return _activation_name(layer.activation) == "linear"
        if isinstance(layer, _TRANSPARENT_LAYERS):
            return any(self._pre_activation.get(id(t), False) for t in sources)
        return False

    def _insert_probe(self, layer, outputs):
        if not isinstance(outputs, keras.KerasTensor):
            raise ValueError(
                f"Cannot place a probe after {layer.name!r}: it has several outputs. "
                "Choose layers with one output tensor."
            )
        if len(outputs.shape) < 2:
            raise ValueError(f"Cannot place a probe after {layer.name!r}: its output has no unit axis.")
        if isinstance(layer, CONV_LAYERS) and getattr(layer, "data_format", None) == "channels_first":
            raise ValueError(
                f"{layer.name!r} is channels_first; probes take the last axis as units. "
                "Build the model with channels_last."
            )
        uses = sum(1 for probed, _ in self.probed if probed is layer)
        name = f"probe_{layer.name}" if uses == 0 else f"probe_{layer.name}_{uses + 1}"
        probe = self.make_probe(name)
        self.probed.append((layer, probe))
        probed_outputs = probe(outputs)
        self._pre_activation[id(probed_outputs)] = self._pre_activation.get(id(outputs), False)
        self.producers[id(probed_outputs)] = self.producers.get(id(outputs))
        return probed_outputs


def _strip_softmax(rewriter: _GraphRewriter, output):
    """Logits from an output that ends in a softmax; other outputs unchanged.

    A final `Activation("softmax")` / `Softmax` layer is dropped; a final
    ``Dense(activation="softmax")`` is replaced by `DenseLogits` on the same
    weights. A final sigmoid is refused: `SelectivityModel` trains a
    softmax classifier.
    """
    producer = rewriter.producers.get(id(output))
    if producer is None:
        return output
    layer, sources = producer
    if isinstance(layer, SelectivityProbe):
        return output
    if isinstance(layer, keras.layers.Softmax) or (
        isinstance(layer, keras.layers.Activation) and _activation_name(layer.activation) == "softmax"
    ):
        return sources[0]
    activation = _activation_name(getattr(layer, "activation", None))
    if activation == "softmax":
        if isinstance(layer, keras.layers.Dense):
            return DenseLogits(layer, name=f"{layer.name}_logits")(sources[0])
        raise ValueError(
            f"The output layer {layer.name!r} ({type(layer).__name__}) applies a softmax inside; "
            "SelectivityModel trains on logits. Build the model without the final softmax "
            "(keras.applications: classifier_activation=None)."
        )
    if activation in ("sigmoid", "hard_sigmoid"):
        raise ValueError(
            f"The output layer {layer.name!r} applies a {activation}; SelectivityModel trains a "
            "softmax classifier on logits (one output per class, integer labels)."
        )
    return output


def instrument(
    model: keras.Model,
    *,
    alpha: float,
    num_classes: Optional[int] = None,
    after: LayerSelection = None,
    epsilon: float = 1e-6,
    selectivity_index: str = "eq1",
    name: Optional[str] = None,
) -> SelectivityModel:
    """A `SelectivityModel` with a `SelectivityProbe` after the chosen layers of `model`.

    The model's graph is run again on new inputs with the same layer objects:
    **the weights are shared** with `model` (training the result trains
    `model`; copy the model first, e.g. `keras.models.clone_model` +
    `set_weights`, to keep an untouched original). Nested Functional and
    Sequential submodels are flattened into one graph (their layers keep
    their names, which must then be unique across the whole model). Other
    layers, including subclassed models, are called as they are; a probe can
    follow them but not sit inside them.

    The output must be one classifier output. A final softmax is removed so
    that the result returns logits: a final ``Activation("softmax")`` or
    ``Softmax`` layer is dropped, a final ``Dense(..., activation="softmax")``
    (what `keras.applications` builds by default) is replaced by a
    `DenseLogits` layer on the same weights. So ``softmax(result(x))`` equals
    ``model(x)``. A final sigmoid is refused.

    Args:
        model: a Functional or Sequential Keras model (built, i.e. with
            defined inputs), mapping inputs to class scores.
        alpha: selectivity regularizer scale of every probe: < 0 suppresses
            class selectivity, > 0 promotes it, 0 only measures it.
        num_classes: number of classes; None infers it from the output's
            last axis.
        after: where the probes go:
            * None (default): after every unit activation that follows a
              convolution: a conv layer with a fused activation
              (``Conv2D(..., activation="relu")``), or an activation layer
              (`Activation`, `ReLU`, `LeakyReLU`, `PReLU`, `ELU`) fed by a
              convolution directly or through normalization, dropout,
              padding, local pooling or a residual merge (``conv -> BN ->
              ReLU``, ``add -> ReLU``). Sigmoid and softmax activations
              (gates, classifiers) and activations of `Dense` layers are
              not probed by default.
            * layer names (a string or a list): after each of these layers
              (nested layers by their own names; a nested model's name
              probes its output).
            * a predicate ``fn(layer) -> bool``, called with every layer of
              the flattened graph (and with nested models).
            A layer called several times (a shared layer) gets one probe
            per call: ``probe_<layer>``, ``probe_<layer>_2``, ...
        epsilon: the probes' SI denominator stabilizer (in the loss only).
        selectivity_index: the index the probes regularize and record: "eq1"
            (the paper's eq. 1, default) or "bounded" (see
            `tf_selectivity.measures.selectivity`).
        name: name of the result (default: the model's name).

    Returns:
        An uncompiled `SelectivityModel` (inputs -> logits) whose probes are
        named ``probe_<layer name>``, in graph order, each with
        ``share = 1 / L``.

    Raises:
        ValueError: a subclassed or unbuilt model, a model that already has
            probes, unknown layer names, no layer selected, several outputs,
            a sigmoid output, a num_classes that does not match the output,
            clashing layer names after flattening.
    """
    if not _is_graph_model(model):
        raise ValueError(
            f"instrument() takes a Functional or Sequential model; {type(model).__name__} is a "
            "subclassed model whose graph cannot be re-run. Place SelectivityProbe layers in its "
            "call() and train it as a SelectivityModel, or build it functionally."
        )
    existing = find_probes(model)
    if existing:
        raise ValueError(
            f"{model.name!r} already has SelectivityProbe layers ({existing[0].name}, ...); "
            "use it as it is: SelectivityModel(model.inputs, model.outputs)."
        )
    try:
        original_inputs = model.inputs
    except AttributeError:
        original_inputs = None
    if not original_inputs:
        raise ValueError(
            f"{model.name!r} has no defined inputs: give the Sequential model a keras.Input "
            "(or call model.build(input_shape)) before instrumenting it."
        )
    outputs_spec = model.outputs
    if len(outputs_spec) != 1:
        raise ValueError(
            f"{model.name!r} has {len(outputs_spec)} outputs; instrument() needs one classifier "
            "output (class scores)."
        )
    if len(outputs_spec[0].shape) != 2:
        raise ValueError(
            f"The output of {model.name!r} has shape {outputs_spec[0].shape}; instrument() needs "
            "(batch, classes) class scores."
        )
    width = outputs_spec[0].shape[-1]
    if num_classes is None:
        num_classes = width
    if width is None or int(num_classes) != width:
        raise ValueError(f"num_classes={num_classes} does not match the output width {width}.")
    if int(num_classes) < 2:
        raise ValueError(f"The output has {num_classes} class score(s); a classifier needs at least 2.")

    inputs = [
        keras.Input(batch_shape=tensor.shape, dtype=tensor.dtype, name=tensor.name)
        for tensor in original_inputs
    ]
    probes = []

    def make_probe(probe_name):
        probe = SelectivityProbe(
            num_classes=int(num_classes), alpha=alpha, epsilon=epsilon,
            index=selectivity_index, name=probe_name,
        )
        probes.append(probe)
        return probe

    rewriter = _GraphRewriter(after, make_probe)
    # A Functional graph takes its inputs flat (as `keras.tree.flatten` orders them).
    outputs = rewriter.run(model, inputs[0] if isinstance(model, keras.Sequential) else inputs)
    if rewriter.names is not None:
        known = set(rewriter.layers_by_name) | _model_names(model)
        unknown = [n for n in rewriter.names if n not in known]
        if unknown:
            hints = []
            for missing in unknown:
                close = difflib.get_close_matches(missing, sorted(known), n=3)
                hints.append(f"{missing!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
            raise ValueError(f"No layer named {'; '.join(hints)} in {model.name!r}.")
    if not probes:
        raise ValueError(
            f"No layer of {model.name!r} was selected for a probe"
            + (" (the default places probes after activations that follow convolutions)" if after is None else "")
            + "; pass `after` with layer names or a predicate."
        )
    for probe in probes:
        if probe.name in rewriter.layers_by_name:
            raise ValueError(
                f"The model already has a layer named {probe.name!r}; rename it so that the "
                "probe after its layer can take that name."
            )
    logits = _strip_softmax(rewriter, keras.tree.flatten(outputs)[0])
    model_inputs = inputs[0] if len(inputs) == 1 else inputs
    return SelectivityModel(model_inputs, logits, name=name or model.name)


def _model_names(model) -> set:
    """Names of the nested graph models of `model` (which `after` may name)."""
    names = set()
    for layer in all_layers(model):
        if _is_graph_model(layer):
            names.add(layer.name)
    return names

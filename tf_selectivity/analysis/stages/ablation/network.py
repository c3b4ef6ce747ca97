"""The ablated network: a model whose probed units can be replaced by fixed values, and how it is run.

`ablated_network` returns an object whose ``correct(layer, keeps, fill)``
says, for each mask of one probed layer, which test images the network
still gets right with the masked units replaced (by zero or by their mean
response, `fill`). Two ways to run it (`method`):

* ``"suffix"`` (the default through ``"auto"``): per ablated layer, the
  tensors the rest of the network needs from the part up to the probe (the
  *cut*, `compat.graph_cut`: the probe's output and any tensor that skips
  around it) are computed once for every test image and kept in memory
  (float32), and only the rest is run again, compiled (`tf.function` on
  TensorFlow, `jax.jit` of the stateless call on JAX), with several masks
  stacked along the batch (images x masks) so that a pass stays near
  `batch_size` rows. On JAX the cut's tensors and the labels are put on the
  device once where they fit (`training.device_loop.fits_on_device`;
  `on_device`): a pass then slices its rows there and only the right/wrong
  of each image comes back, instead of copying every pass's rows from the
  host.
* ``"full"``: the whole network again per mask, through a `UnitMask` after
  every probe whose mask is a non-trainable variable set between passes
  (the reference; ``"auto"`` falls back to it when the cut cannot be made).

Both give the same logits up to float32 rounding (tests).
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
from keras import ops

from tf_selectivity.core.settings import ParameterError

__all__ = ["ABLATION_METHODS", "UnitMask", "ablated_network", "masked_model"]

ABLATION_METHODS = ("auto", "suffix", "full")

class UnitMask(keras.layers.Layer):
    """Replaces chosen units of its input (channels last) by fixed values.

    ``output = inputs * keep + (1 - keep) * fill`` with `keep` (units,) 1 for
    a kept unit and 0 for an ablated one, and `fill` (units,) the value an
    ablated unit takes at every position (0: zero-ablation).
    """

    def build(self, input_shape):
        units = input_shape[-1]
        self.keep = self.add_weight(shape=(units,), initializer="ones", trainable=False, name="keep")
        self.fill = self.add_weight(shape=(units,), initializer="zeros", trainable=False, name="fill")

    def call(self, inputs):
        keep = ops.cast(self.keep, inputs.dtype)
        return inputs * keep + (1.0 - keep) * ops.cast(self.fill, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


class _TileBatch(keras.layers.Layer):
    """`copies` copies of its input stacked along the batch (copy-major)."""

    def __init__(self, copies, **kwargs):
        super().__init__(**kwargs)
        self.copies = int(copies)

    def call(self, inputs):
        return ops.tile(inputs, [self.copies] + [1] * (len(inputs.shape) - 1))

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else input_shape[0] * self.copies
        return (batch, *input_shape[1:])


class _StackedMask(keras.layers.Layer):
    """`UnitMask` with one mask per copy of a `_TileBatch`ed batch.

    ``call(inputs, keep, fill)``: inputs (copies * batch, ..., units), keep
    (copies, units), fill (1, units); row ``c * batch + i`` gets mask ``c``.
    """

    def __init__(self, copies, **kwargs):
        super().__init__(**kwargs)
        self.copies = int(copies)

    def call(self, inputs, keep, fill):
        rows = ops.shape(inputs)[0] // self.copies
        keep = ops.repeat(ops.cast(keep, inputs.dtype), rows, axis=0)
        keep = ops.reshape(keep, (-1,) + (1,) * (len(inputs.shape) - 2) + (inputs.shape[-1],))
        return inputs * keep + (1.0 - keep) * ops.cast(fill, inputs.dtype)

    def compute_output_shape(self, inputs_shape, keep_shape, fill_shape):
        return inputs_shape


def masked_model(model, layers):
    """(model with a UnitMask after each probe in `layers`, {name: mask},
    {name: the probe's symbolic output in that model})."""
    from tf_selectivity.core.compat import run_graph

    masks = {name: UnitMask(name=f"{name}_ablation") for name in layers}
    probe_outputs = {}

    def call_layer(layer, *args, **kwargs):
        kwargs.pop("selectivity_labels", None)
        outputs = layer(*args, **kwargs)
        if layer.name not in masks:
            return outputs
        probe_outputs[layer.name] = outputs
        return masks[layer.name](outputs)

    inputs = keras.Input(model.inputs[0].shape[1:], dtype=model.inputs[0].dtype)
    outputs = run_graph(model, [inputs], call_layer)
    logits = keras.tree.flatten(outputs)[0]
    return keras.Model(inputs, logits), masks, probe_outputs


def _pad_rows(array, rows, value):
    """`array` with rows of `value` appended up to `rows`."""
    if len(array) == rows:
        return array
    pad = np.full((rows - len(array), *array.shape[1:]), value, dtype=array.dtype)
    return np.concatenate([array, pad])


def _compiled(model):
    """model(inputs) -> argmax of its logits, compiled for the backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        function = tf.function(lambda inputs: ops.argmax(model(inputs, training=False), axis=-1))
        return lambda inputs: function([tf.constant(x) for x in inputs])
    if backend == "jax":
        import jax

        @jax.jit
        def function(trainable, non_trainable, inputs):
            logits, _ = model.stateless_call(trainable, non_trainable, inputs, training=False)
            return ops.argmax(logits, axis=-1)

        # The variables' values are read at every call, not captured once: a
        # Keras predict on the same weights donates and replaces their
        # buffers (a captured array is then deleted), and the other layers'
        # masks may have been set since.
        return lambda inputs: function([v.value for v in model.trainable_variables],
                                       [v.value for v in model.non_trainable_variables], list(inputs))
    return lambda inputs: ops.argmax(model(inputs, training=False), axis=-1)


def _compiled_on_device(model, rows, copies):
    """(device values, device labels, start, keep, fill) -> (copies, rows) right/wrong, jitted (JAX).

    The pass slices rows ``start:start + rows`` of the resident tensors on
    the device (`jax.lax.dynamic_slice_in_dim`: one compilation for every
    start).
    """
    import jax

    @jax.jit
    def function(trainable, non_trainable, values, labels, start, keep, fill):
        inputs = [jax.lax.dynamic_slice_in_dim(v, start, rows) for v in values]
        logits, _ = model.stateless_call(trainable, non_trainable, [*inputs, keep, fill], training=False)
        predicted = ops.reshape(ops.argmax(logits, axis=-1), (copies, rows))
        return predicted == jax.lax.dynamic_slice_in_dim(labels, start, rows)[None]

    # Variables read at every call, as in `_compiled`.
    return lambda values, labels, start, keep, fill: function(
        [v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
        values, labels, np.int32(start), keep, fill)


def _device_resident(values, labels, rows, on_device):
    """(device values, device labels) padded to whole passes of `rows`, or None.

    JAX only. With ``on_device=None`` where they fit
    (`training.device_loop.fits_on_device`; a CPU device's memory is the
    host's); True requires it, False keeps them on the host.

    Raises:
        ParameterError: ``on_device=True`` on another backend.
    """
    if on_device is False:
        return None
    if keras.backend.backend() != "jax":
        if on_device:
            raise ParameterError("on_device", f"applies on the jax backend; this is {keras.backend.backend()!r}")
        return None
    import jax

    from tf_selectivity.training.device_loop import fits_on_device

    total = -(-len(labels) // rows) * rows
    needed = 4 * total * (1 + sum(int(np.prod(v.shape[1:])) for v in values))
    if on_device is None and not fits_on_device(needed):
        return None
    return ([jax.device_put(_pad_rows(v, total, 0.0)) for v in values],
            jax.device_put(_pad_rows(labels.astype(np.int32), total, -1)))


class _FullNetwork:
    """Ablated accuracy by re-running the whole network per mask."""

    method = "full"

    def __init__(self, masked, masks, images, labels, batch_size):
        self.predict = masked.predict_on_batch
        self.masks, self.images, self.labels, self.batch_size = masks, images, labels, batch_size

    def correct(self, name, keeps, fill, progress=None):
        """(masks, images) bool: image i right with layer `name` masked by keeps[m];
        `progress` (if any) is called with the number of masks done, as they are."""
        mask = self.masks[name]
        mask.fill.assign(fill)
        result = np.zeros((len(keeps), len(self.labels)), bool)
        for row, keep in enumerate(keeps):
            mask.keep.assign(keep)
            for start in range(0, len(self.labels), self.batch_size):
                logits = ops.convert_to_numpy(self.predict(self.images[start : start + self.batch_size]))
                result[row, start : start + self.batch_size] = logits.argmax(-1) == self.labels[start : start + self.batch_size]
            if progress is not None:
                progress(1)
        mask.keep.assign(np.ones(len(fill)))
        mask.fill.assign(np.zeros(len(fill)))
        return result


class _Suffix:
    """Ablated accuracy by re-running only the network after the probe.

    Per layer (the last one asked for is kept): the cut's tensors for every
    image (float32, in memory) and the compiled suffix, built for a fixed
    pass of `rows` images x `copies` masks (padded), so that it is traced
    and compiled once per layer.
    """

    method = "suffix"

    def __init__(self, masked, masks, probe_outputs, images, labels, batch_size, on_device=None):
        self.masked, self.masks, self.probe_outputs = masked, masks, probe_outputs
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.on_device = on_device
        self.resident = False  # whether the last prepared layer's cut is on the device
        self._layer = None

    def prepare(self, name, num_masks):
        """Computes the cut of layer `name` and compiles its suffix."""
        from tf_selectivity.core.compat import graph_cut, run_graph

        cut = graph_cut(self.masked, self.probe_outputs[name])
        rows = min(len(self.labels), self.batch_size)
        copies = max(1, min(num_masks, self.batch_size // rows))
        if self._layer is not None and self._layer[0] == (name, copies):
            return self._layer[1]
        if self._layer is not None and self._layer[0][0] == name:
            values, _, _, _, resident = self._layer[1]  # the same cut, another number of stacked masks
        else:
            self._layer = None  # frees the previous layer's cut first
            prefix = keras.Model(self.masked.inputs, cut)
            parts = [prefix.predict_on_batch(self.images[s : s + self.batch_size])
                     for s in range(0, len(self.labels), self.batch_size)]
            values = [np.concatenate([keras.tree.flatten(p)[i] for p in parts]).astype(np.float32)
                      for i in range(len(cut))]
            resident = _device_resident(values, self.labels, rows, self.on_device)
        rest = keras.Model(cut, self.masked.outputs)
        units = int(self.probe_outputs[name].shape[-1])
        cut_inputs = [keras.Input(t.shape[1:], dtype="float32") for t in cut]
        keep = keras.Input((units,), dtype="float32", name="keep")
        fill = keras.Input((units,), dtype="float32", name="fill")
        mask = self.masks[name]

        def call_layer(layer, *args, **kwargs):
            kwargs.pop("selectivity_labels", None)
            if layer is mask:
                return _StackedMask(copies)(args[0], keep, fill)
            if isinstance(layer, UnitMask):
                return args[0]
            return layer(*args, **kwargs)

        tiled = [_TileBatch(copies)(x) for x in cut_inputs]
        logits = keras.tree.flatten(run_graph(rest, tiled, call_layer))[0]
        suffix = keras.Model([*cut_inputs, keep, fill], logits)
        function = _compiled(suffix) if resident is None else _compiled_on_device(suffix, rows, copies)
        state = (values, function, rows, copies, resident)
        self._layer = ((name, copies), state)
        self.resident = resident is not None
        return state

    def correct(self, name, keeps, fill, progress=None):
        values, function, rows, copies, resident = self.prepare(name, len(keeps))
        keeps = np.asarray(keeps, np.float32)
        fill = np.asarray(fill, np.float32)[None]
        result = np.zeros((len(keeps), len(self.labels)), bool)
        for first in range(0, len(keeps), copies):
            keep = _pad_rows(keeps[first : first + copies], copies, 1.0)
            count = min(copies, len(keeps) - first)
            for start in range(0, len(self.labels), rows):
                labels = self.labels[start : start + rows]
                if resident is not None:
                    right = np.asarray(function(*resident, start, keep, fill))
                else:
                    inputs = [_pad_rows(v[start : start + rows], rows, 0.0) for v in values]
                    predicted = ops.convert_to_numpy(function([*inputs, keep, fill])).reshape(copies, rows)
                    right = predicted == _pad_rows(labels, rows, -1)
                result[first : first + count, start : start + len(labels)] = right[:count, : len(labels)]
            if progress is not None:
                progress(count)
        return result


def ablated_network(model, layers, images, labels, batch_size, method, on_device=None):
    """`model` with the units of its probes `layers` ablatable, on `images` and `labels`.

    Args:
        model: a `SelectivityModel`.
        layers: the probes whose units are ablated (at least one).
        images: (N, H, W, C) float32 test images; labels: (N,) int64 labels.
        batch_size: rows per forward pass (images x stacked masks).
        method: "auto", "suffix" or "full" (see the module).
        on_device: the suffix path on JAX: None where the cut fits on the
            device, True always, False on the host.

    Returns:
        An object with ``method`` ("suffix" or "full") and
        ``correct(layer, keeps, fill, progress=None)`` -> (masks, N) bool:
        whether image i is classified right with the units of `layer` whose
        ``keeps[m]`` is 0 replaced by `fill` (``progress``, if given, is
        called with the number of masks done, as they are).

    Raises:
        ParameterError: an unknown method or on_device, or on_device=True
            on a backend other than JAX.
    """
    if method not in ABLATION_METHODS:
        raise ParameterError("method", f"must be among {', '.join(ABLATION_METHODS)}; got {method!r}")
    if on_device not in (None, True, False):
        raise ParameterError("on_device", f"must be None (where the data fit), True or False; got {on_device!r}")
    masked, masks, probe_outputs = masked_model(model, layers)
    if method != "full":
        network = _Suffix(masked, masks, probe_outputs, images, labels, batch_size, on_device)
        try:
            network.prepare(layers[0], 1)
            return network
        except ParameterError:
            raise
        except Exception as error:  # noqa: BLE001 - a graph the cut cannot handle
            if method == "suffix":
                raise
            warnings.warn(f"ablation: re-running the whole network per mask (the suffix could not be cut: {error})")
    return _FullNetwork(masked, masks, images, labels, batch_size)

"""Ablation: test accuracy as a probed layer's units are silenced.

For each probed layer, its units are ablated (their responses replaced at
every spatial position of the probe's output: by zero, or by the unit's
mean response over the test set):

* `ablation_curves`: cumulatively, in three orders (most selective first,
  least selective first, random orders, one per seed), at a grid of
  fractions of the layer's units (Morcos et al. 2018, "On the importance of
  single directions for generalization");
* `unit_importance`: one unit at a time, the drop of overall and of
  per-class accuracy (Zhou et al. 2018, "Revisiting the importance of
  individual units in CNNs via ablation"), and `importance_correlations`,
  the Spearman correlation of selectivity with importance per layer.

Two ways to run the ablated network (`method`):

* ``"suffix"`` (the default through ``"auto"``): per ablated layer, the
  tensors the rest of the network needs from the part up to the probe (the
  *cut*, `compat.graph_cut`: the probe's output and any tensor that skips
  around it) are computed once for every test image and kept in memory
  (float32: ResNet20's first-stage maps of 10,000 CIFAR images take 655 MB),
  and only the rest is run again, compiled (`tf.function` on TensorFlow,
  `jax.jit` of the stateless call on JAX), with several masks stacked along
  the batch (images x masks) so that a pass stays near `batch_size` rows.
  On JAX the cut's tensors and the labels are put on the device once where
  they fit (`training.device_loop.fits_on_device`; `on_device`): a pass then slices its rows there and only
  the right/wrong of each image comes back, instead of copying every
  pass's rows from the host (on a GPU the cut of the stem, 655 MB, would
  cross the bus once per mask).
* ``"full"``: the whole network again per mask, through a `UnitMask` after
  every probe whose mask is a non-trainable variable set between passes
  (the reference; ``"auto"`` falls back to it when the cut cannot be made).

Both give the same logits up to float32 rounding (tests).
"""

from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import keras
import numpy as np
import pandas as pd
from keras import ops

from tf_selectivity.core.settings import ParameterError
from tf_selectivity.measures.selectivity_index import DEFAULT_SELECTIVITY_INDEX, validate_index

__all__ = [
    "ABLATION_METHODS", "ABLATION_MODES", "ABLATION_ORDERS", "DEFAULT_FRACTIONS", "UnitMask",
    "ablation_curves", "importance_correlations", "probe_layers", "unit_importance",
]

ABLATION_ORDERS = ("selective_first", "least_selective_first", "random")
ABLATION_MODES = ("zero", "mean")
ABLATION_METHODS = ("auto", "suffix", "full")
DEFAULT_FRACTIONS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)


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


def _masked_model(model, layers):
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

    def correct(self, name, keeps, fill):
        """(masks, images) bool: image i right with layer `name` masked by keeps[m]."""
        mask = self.masks[name]
        mask.fill.assign(fill)
        result = np.zeros((len(keeps), len(self.labels)), bool)
        for row, keep in enumerate(keeps):
            mask.keep.assign(keep)
            for start in range(0, len(self.labels), self.batch_size):
                logits = ops.convert_to_numpy(self.predict(self.images[start : start + self.batch_size]))
                result[row, start : start + self.batch_size] = logits.argmax(-1) == self.labels[start : start + self.batch_size]
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

    def correct(self, name, keeps, fill):
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
        return result


def _network(model, layers, images, labels, batch_size, method, on_device=None):
    if method not in ABLATION_METHODS:
        raise ParameterError("method", f"must be among {', '.join(ABLATION_METHODS)}; got {method!r}")
    if on_device not in (None, True, False):
        raise ParameterError("on_device", f"must be None (where the data fit), True or False; got {on_device!r}")
    masked, masks, probe_outputs = _masked_model(model, layers)
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


def _check_fractions(fractions):
    fractions = tuple(float(f) for f in fractions)
    if not fractions or any(not (0.0 <= f <= 1.0) for f in fractions):
        raise ParameterError("fractions", f"must be fractions in [0, 1]; got {', '.join(map(str, fractions)) or 'none'}")
    return tuple(sorted(set(fractions)))


def probe_layers(model, layers=None) -> list:
    """The probes of `model` named by `layers` (default: all), in graph order.

    Raises:
        ParameterError: a model without probes, or names that are not its
            probes (the message lists them).
    """
    probes = list(getattr(model, "probe_names", None) or [])
    if not probes:
        raise ParameterError("model", "has no selectivity probes: build it with build_model or pass it through instrument()")
    layers = probes if layers is None else [str(name) for name in layers]
    unknown = [name for name in layers if name not in probes]
    if unknown or not layers:
        raise ParameterError("layers", f"must name probes of the model ({', '.join(probes)}); got {', '.join(unknown) or 'none'}")
    return [name for name in probes if name in layers]


def _prepare(model, images, labels, layers, mode, index, batch_size, method, on_device=None):
    """(layers, images, labels, num_classes, statistics, network)."""
    from tf_selectivity.measures.unit_statistics import evaluate_responses

    validate_index(index, "index")
    layers = probe_layers(model, layers)
    if mode not in ABLATION_MODES:
        raise ParameterError("mode", f"must be zero or mean; got {mode!r}")
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    num_classes = int(model.probes[0].num_classes)
    respond_model = model.unit_response_model()
    batches = ((images[s : s + batch_size], labels[s : s + batch_size]) for s in range(0, len(labels), batch_size))
    statistics = evaluate_responses(
        lambda x: respond_model.predict_on_batch(np.asarray(x, np.float32)), batches,
        num_classes=num_classes, layer_names=layers, selectivity_index=index,
    )
    network = _network(model, layers, images, labels, batch_size, method, on_device)
    return layers, images, labels, num_classes, statistics, network


def _layer_si_and_fill(statistics, name, mode):
    accumulator = statistics.layers[name].selectivity
    si = np.asarray(accumulator.selectivity(), np.float64)
    mean_response = accumulator.class_sums.sum(axis=0) / max(accumulator.num_samples, 1)
    return si, (mean_response if mode == "mean" else np.zeros(len(si)))


def ablation_curves(
    model,
    images,
    labels,
    *,
    layers: Sequence[str] | None = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    orders: Sequence[str] = ABLATION_ORDERS,
    random_seeds: Sequence[int] = (0, 1, 2),
    mode: str = "zero",
    index: str = DEFAULT_SELECTIVITY_INDEX,
    batch_size: int = 500,
    method: str = "auto",
    on_device: bool | None = None,
) -> pd.DataFrame:
    """Test accuracy as each probed layer's units are ablated cumulatively.

    Units are ranked by the test-set selectivity index (ties by unit
    number); a fraction f ablates the first ``round(f * units)`` units of
    the order. Random order ``seed`` is
    ``np.random.default_rng(seed).permutation(units)``.

    Args:
        model: a `SelectivityModel` (built-in, ImageNet or `instrument()`ed).
        images: (N, H, W, C) test images; labels: (N,) integer labels.
        layers: probe names (default: every probe).
        fractions: fractions of a layer's units to ablate, in [0, 1].
        orders: among "selective_first", "least_selective_first", "random".
        random_seeds: seeds of the random orders.
        mode: "zero" or "mean" (the unit's mean response over the test set,
            at every position).
        index: "eq1" or "bounded", the index that ranks the units.
        batch_size: rows per forward pass (images x stacked masks).
        method: "auto" (the suffix, or the whole network where the cut
            cannot be made), "suffix" or "full" (see the module).
        on_device: the suffix path on JAX: None keeps the cut's tensors on
            the device where they fit, True always, False on the host (the
            results are the same; see the module).

    Returns:
        Tidy DataFrame, one row per (layer, order, seed, fraction):
        ``layer``, ``layer_index``, ``order``, ``order_seed`` (the random
        order's seed; -1 for the selectivity orders), ``fraction``, ``units_ablated``, ``num_units``,
        ``accuracy``.

    Raises:
        ParameterError: a model without probes, unknown layers, orders,
            mode or method, fractions outside [0, 1].
    """
    bad_orders = [o for o in orders if o not in ABLATION_ORDERS]
    if bad_orders or not orders:
        raise ParameterError("orders", f"must be among {', '.join(ABLATION_ORDERS)}; got {', '.join(bad_orders) or 'none'}")
    fractions = _check_fractions(fractions)
    probes = list(getattr(model, "probe_names", None) or [])
    layers, images, labels, _, statistics, network = _prepare(
        model, images, labels, layers, mode, index, batch_size, method, on_device)
    rows = []
    for name in layers:
        si, fill = _layer_si_and_fill(statistics, name, mode)
        units = len(si)
        plans = []
        for order in orders:
            if order == "selective_first":
                plans.append((order, -1, np.lexsort((np.arange(units), -si))))
            elif order == "least_selective_first":
                plans.append((order, -1, np.lexsort((np.arange(units), si))))
            else:
                plans.extend(("random", int(s), np.random.default_rng(int(s)).permutation(units)) for s in random_seeds)
        keeps, meta = [], []
        for order, seed, ranking in plans:
            for fraction in fractions:
                count = int(round(fraction * units))
                keep = np.ones(units, np.float32)
                keep[ranking[:count]] = 0.0
                keeps.append(keep)
                meta.append((order, seed, fraction, count))
        accuracy = network.correct(name, np.stack(keeps), fill).mean(axis=1)
        for (order, seed, fraction, count), value in zip(meta, accuracy):
            rows.append({
                "layer": name, "layer_index": probes.index(name), "order": order, "order_seed": seed,
                "fraction": fraction, "units_ablated": count, "num_units": units, "accuracy": float(value),
            })
    return pd.DataFrame(rows)


def unit_importance(
    model,
    images,
    labels,
    *,
    layers: Sequence[str] | None = None,
    mode: str = "zero",
    index: str = DEFAULT_SELECTIVITY_INDEX,
    batch_size: int = 500,
    method: str = "auto",
    on_device: bool | None = None,
) -> pd.DataFrame:
    """Each unit's importance: the accuracy drop when it alone is ablated.

    Args:
        model, images, labels, layers, mode, index, batch_size, method,
            on_device: as `ablation_curves`.

    Returns:
        Tidy DataFrame, one row per unit of each layer: ``layer``,
        ``layer_index``, ``unit``, ``num_units``, ``selectivity`` (the
        test-set index), ``clean_accuracy``, ``accuracy`` (unit ablated),
        ``importance`` (clean minus ablated accuracy), ``max_class_drop``
        (the largest drop of one class' accuracy) and ``max_drop_class``
        (that class; the lowest on ties).

    Raises:
        ParameterError: as `ablation_curves`.
    """
    probes = list(getattr(model, "probe_names", None) or [])
    layers, images, labels, num_classes, statistics, network = _prepare(
        model, images, labels, layers, mode, index, batch_size, method, on_device)
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    frames = []
    for name in layers:
        si, fill = _layer_si_and_fill(statistics, name, mode)
        units = len(si)
        keeps = np.ones((units + 1, units), np.float32)
        keeps[np.arange(units), np.arange(units)] = 0.0  # row u: unit u ablated; last row: none
        correct = network.correct(name, keeps, fill)
        per_class = np.stack([np.bincount(labels[row], minlength=num_classes) for row in correct]) / np.maximum(counts, 1)
        class_drop = per_class[-1] - per_class[:-1]
        clean = correct[-1].mean()
        frames.append(pd.DataFrame({
            "layer": name, "layer_index": probes.index(name), "unit": np.arange(units), "num_units": units,
            "selectivity": si, "clean_accuracy": clean, "accuracy": correct[:-1].mean(axis=1),
            "importance": clean - correct[:-1].mean(axis=1),
            "max_class_drop": class_drop.max(axis=1), "max_drop_class": class_drop.argmax(axis=1),
        }))
    return pd.concat(frames, ignore_index=True)


def _spearman_rows(x, y):
    """Spearman correlation of x[i] with y[i] for each row i (average ranks)."""
    from scipy.stats import rankdata

    rx, ry = rankdata(x, axis=-1), rankdata(y, axis=-1)
    rx = rx - rx.mean(axis=-1, keepdims=True)
    ry = ry - ry.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((rx ** 2).sum(-1) * (ry ** 2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (rx * ry).sum(-1) / denominator, np.nan)


def importance_correlations(
    importance: pd.DataFrame,
    *,
    columns: Sequence[str] = ("selectivity", "si_chance_corrected"),
    target: str = "importance",
    n_resamples: int = 10_000,
    seed: int = 0,
    group: Sequence[str] = ("layer",),
) -> pd.DataFrame:
    """Spearman correlation of each SI column with importance, per layer.

    The 95% CI is the percentile bootstrap over the layer's units
    (`stats.bootstrap_ci`, resampling (SI, importance) pairs).

    Args:
        importance: a `unit_importance` frame (optionally with more columns,
            e.g. ``si_chance_corrected``, and a ``run_dir``).
        columns: the SI columns correlated (those absent are skipped).
        target: the importance column.
        n_resamples, seed: of the bootstrap.
        group: the columns one correlation is computed per.

    Returns:
        One row per group and SI column: the group columns, ``si_column``,
        ``num_units``, ``spearman``, ``ci_low``, ``ci_high`` (NaN where a
        column is constant).
    """
    from tf_selectivity.measures.stats import bootstrap_ci

    group = [g for g in group if g in importance.columns]
    rows = []
    for key, frame in importance.groupby(group, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        for column in [c for c in columns if c in frame.columns]:
            x = frame[column].to_numpy(np.float64)
            y = frame[target].to_numpy(np.float64)
            finite = np.isfinite(x) & np.isfinite(y)
            x, y = x[finite], y[finite]

            def statistic(indices, axis=None):
                indices = np.atleast_2d(indices).astype(np.int64)
                return _spearman_rows(x[indices], y[indices])

            value = float(_spearman_rows(x, y)) if len(x) > 1 else np.nan
            low, high = bootstrap_ci(np.arange(len(x)), statistic, n_resamples=n_resamples, seed=seed) if len(x) > 1 else (np.nan, np.nan)
            rows.append({**dict(zip(group, key)), "si_column": column, "num_units": len(x),
                         "spearman": value, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)

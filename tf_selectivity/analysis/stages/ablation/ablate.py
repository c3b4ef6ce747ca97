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

The ablated network is run by its suffix after the probe, or whole
(`method`; `network.ablated_network`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from tf_selectivity.analysis.stages.ablation.network import ablated_network
from tf_selectivity.core.progress import Progress
from tf_selectivity.core.settings import ParameterError
from tf_selectivity.measures.selectivity_index import DEFAULT_SELECTIVITY_INDEX, validate_index

__all__ = [
    "ABLATION_MODES", "ABLATION_ORDERS", "DEFAULT_FRACTIONS",
    "ablation_curves", "importance_correlations", "probe_layers", "unit_importance",
]

ABLATION_ORDERS = ("selective_first", "least_selective_first", "random")
ABLATION_MODES = ("zero", "mean")
DEFAULT_FRACTIONS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)


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
    network = ablated_network(model, layers, images, labels, batch_size, method, on_device)
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
    verbose: int = 0,
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
            cannot be made), "suffix" or "full" (see `network`).
        on_device: the suffix path on JAX: None keeps the cut's tensors on
            the device where they fit, True always, False on the host (the
            results are the same; see `network`).
        verbose: 1 shows the progress of the ablations (every layer's orders
            x fractions; a bar on a terminal, a line elsewhere), 0 nothing.

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
    num_orders = sum(len(random_seeds) if order == "random" else 1 for order in orders)
    with Progress("Ablation curves", len(layers) * num_orders * len(fractions), unit="ablation",
                  enabled=verbose > 0) as bar:
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
            accuracy = network.correct(name, np.stack(keeps), fill, progress=bar.update).mean(axis=1)
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
    verbose: int = 0,
) -> pd.DataFrame:
    """Each unit's importance: the accuracy drop when it alone is ablated.

    Args:
        model: as `ablation_curves`.
        images: as `ablation_curves`.
        labels: as `ablation_curves`.
        layers: as `ablation_curves`.
        mode: as `ablation_curves`.
        index: as `ablation_curves`.
        batch_size: as `ablation_curves`.
        method: as `ablation_curves`.
        on_device: as `ablation_curves`.
        verbose: 1 shows the progress of the ablations (each unit of every
            layer, and each layer intact), 0 nothing.

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
    widths = [statistics.layers[name].selectivity.class_sums.shape[1] for name in layers]
    with Progress("Unit importance", sum(widths) + len(widths), unit="ablation", enabled=verbose > 0) as bar:
        for name in layers:
            si, fill = _layer_si_and_fill(statistics, name, mode)
            units = len(si)
            keeps = np.ones((units + 1, units), np.float32)
            keeps[np.arange(units), np.arange(units)] = 0.0  # row u: unit u ablated; last row: none
            correct = network.correct(name, keeps, fill, progress=bar.update)
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
        n_resamples: bootstrap resamples.
        seed: the bootstrap's seed.
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

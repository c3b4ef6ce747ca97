"""The measures of one network state (a kept checkpoint's weights in the run's model).

`measure_state` takes a `SelectivityModel` holding the weights to measure and
a class-balanced set of test images, and returns one row per probed layer
and one for the network:

* SI: the analysis' index (eq. 1 by default) per unit from one streaming
  pass (`ClassSelectivityAccumulator`, as the selectivity stage), its mean
  over the layer's units (dead units at 0, as eq. 3) and eq. 3's mean over
  layers;
* the fraction of units selective above chance: each unit's
  label-permutation null (`measures.unit_null`, the selectivity stage's
  test), q-values over every measured unit of the state (`measures.fdr`);
* single-unit ablation (`unit_importance` of the ablation stage, zero
  ablation): the mean importance, that of the layer's most selective tenth,
  and Spearman's correlation of SI with importance over the layer's units
  with its bootstrap CI (`importance_correlations`);
* the midpoint nonlinearity (`measures.linearity`) of the map from the image
  to each layer's unit responses and to the logits, on random pairs of the
  images;
* the accuracy on these images.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["LAYER_MEASURES", "NETWORK_MEASURES", "measure_state"]

# Measure columns of the per-layer and per-network tables, in order.
LAYER_MEASURES = ("num_units", "mean_selectivity", "dead_fraction", "selective_fraction", "mean_importance",
                  "selective_importance", "si_importance_spearman", "si_importance_ci_low",
                  "si_importance_ci_high", "nonlinearity")
NETWORK_MEASURES = ("accuracy", "mean_selectivity", "selective_fraction", "mean_importance",
                    "si_importance_spearman", "nonlinearity")

# The most selective tenth of a layer's units (at least one): whose importance `selective_importance` averages.
_TOP_FRACTION = 0.1


def measure_state(model, images, labels, num_classes: int, layers, *, index: str, batch_size: int,
                  null_permutations: int, null_seed: int, fdr: float, fdr_method: str, unit_ablation: bool,
                  linearity_pairs: int, n_resamples: int, respond_model=None, verbose: int = 0) -> tuple:
    """The per-layer and network measures of `model` as it is now.

    Args:
        model: a `SelectivityModel` (its current weights are measured).
        images: (N, H, W, C) test images; labels: (N,) integer labels.
        num_classes: the number of classes.
        layers: the probes measured, in network order.
        index: "eq1" or "bounded".
        batch_size: images per forward pass.
        null_permutations: B of each unit's null (0: no null; the
            selective fraction is then NaN).
        null_seed: the permutations' seed.
        fdr: the false discovery rate; fdr_method: "bh" or "by".
        unit_ablation: whether to ablate each unit (else the importance
            columns are NaN).
        linearity_pairs: the image pairs of the nonlinearity.
        n_resamples: bootstrap resamples of the correlation's CI.
        respond_model: ``model.unit_response_model()``, built once by a
            caller that measures several states (it shares the model's
            weights); None builds it.
        verbose: 1 shows the ablation's progress.

    Returns:
        (layer rows, network row): a list of dicts (``layer``,
        ``layer_index`` and `LAYER_MEASURES`) and a dict of `NETWORK_MEASURES`.
    """
    from tf_selectivity.measures.fdr import fdr_q_values
    from tf_selectivity.measures.linearity import midpoint_pairs, network_nonlinearity
    from tf_selectivity.measures.selectivity import ClassSelectivityAccumulator

    images = np.asarray(images)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    probes = list(model.probe_names)
    respond_model = respond_model or model.unit_response_model()

    def respond(batch):
        outputs = respond_model.predict_on_batch(np.asarray(batch, np.float32))
        return {name: outputs[name] for name in ("logits", *layers)}

    accumulators = {name: ClassSelectivityAccumulator(num_classes, index) for name in layers}
    responses = {name: [] for name in layers}
    correct = 0
    for start in range(0, len(labels), batch_size):
        batch_labels = labels[start : start + batch_size]
        outputs = respond(images[start : start + batch_size])
        correct += int(np.sum(np.argmax(np.asarray(outputs["logits"]), axis=-1) == batch_labels))
        for name in layers:
            values = np.asarray(outputs[name], np.float64)
            accumulators[name].update(values, batch_labels)
            responses[name].append(values)
    responses = {name: np.concatenate(chunks) for name, chunks in responses.items()}
    selectivity = {name: np.asarray(accumulators[name].selectivity(), np.float64) for name in layers}

    selective = {name: np.full(len(selectivity[name]), np.nan) for name in layers}
    if null_permutations:
        from tf_selectivity.measures.unit_null import permutation_nulls

        nulls = permutation_nulls(responses, labels, num_classes, num_permutations=null_permutations,
                                  seed=null_seed, index=index)
        # One family per state: every measured unit, as the selectivity stage's q-values over a run's units.
        q_values = fdr_q_values(np.concatenate([nulls[name].p_values for name in layers]), fdr_method)
        offsets = np.cumsum([0] + [len(selectivity[name]) for name in layers])
        selective = {name: (q_values[offsets[i] : offsets[i + 1]] < fdr).astype(np.float64)
                     for i, name in enumerate(layers)}

    importance = {}
    if unit_ablation:
        from tf_selectivity.analysis.stages.ablation.ablate import importance_correlations, unit_importance

        table = unit_importance(model, images, labels, layers=layers, mode="zero", index=index,
                                batch_size=batch_size, verbose=verbose)
        correlations = importance_correlations(table, columns=("selectivity",), n_resamples=n_resamples,
                                               seed=0).set_index("layer")
        for name, rows in table.groupby("layer", sort=False):
            importance[name] = (rows["importance"].to_numpy(np.float64), correlations.loc[name])

    first, second = midpoint_pairs(len(labels), linearity_pairs, seed=0)
    nonlinearity = network_nonlinearity(respond, images, first, second, batch_size=batch_size)

    rows = []
    for name in layers:
        si = selectivity[name]
        row = {"layer": name, "layer_index": probes.index(name), "num_units": len(si),
               "mean_selectivity": float(si.mean()), "dead_fraction": float(accumulators[name].dead_units().mean()),
               "selective_fraction": float(selective[name].mean()), "nonlinearity": nonlinearity[name]}
        if name in importance:
            values, correlation = importance[name]
            top = np.lexsort((np.arange(len(si)), -si))[: max(1, int(round(_TOP_FRACTION * len(si))))]
            row.update(mean_importance=float(values.mean()), selective_importance=float(values[top].mean()),
                       si_importance_spearman=float(correlation["spearman"]),
                       si_importance_ci_low=float(correlation["ci_low"]),
                       si_importance_ci_high=float(correlation["ci_high"]))
        rows.append({key: row.get(key, math.nan) for key in ("layer", "layer_index", *LAYER_MEASURES)})
    network = {
        "accuracy": correct / max(len(labels), 1),
        # Eq. 3: the mean over layers of each layer's mean.
        "mean_selectivity": float(np.mean([row["mean_selectivity"] for row in rows])),
        "selective_fraction": float(np.concatenate([selective[name] for name in layers]).mean()),
        "mean_importance": (float(np.concatenate([importance[name][0] for name in layers]).mean())
                            if importance else math.nan),
        "si_importance_spearman": _mean_of_finite([row["si_importance_spearman"] for row in rows]),
        "nonlinearity": nonlinearity["logits"],
    }
    return rows, network


def _mean_of_finite(values) -> float:
    """The mean of the finite `values` (a layer whose units all matter alike has no correlation); NaN if none."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else math.nan

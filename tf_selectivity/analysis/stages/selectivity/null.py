"""Selectivity above chance, per unit, layer and run (the analysis' tables).

`tf_selectivity.measures.unit_null` gives each unit's label-permutation null from
its per-image responses. This module turns that into table columns:

* ``units``: ``si_null_mean`` (the null's mean), ``si_p`` (the permutation
  p-value), ``si_q`` (its false-discovery-rate q-value over every unit of
  the run, Benjamini-Hochberg or -Yekutieli), ``selective`` (``si_q < fdr``)
  and ``si_chance_corrected`` (``selectivity - si_null_mean``);
* ``layers``: ``selective_fraction`` and ``mean_chance_corrected_selectivity``;
* ``runs``: the same over the run (the fraction over all its units, the
  mean chance-corrected index as eq. 3 averages: over layers of each
  layer's mean), with the ``selectivity_null`` (B), ``fdr`` and
  ``fdr_method`` used.

The null (``si_null_mean``, ``si_p``) is computed once per run and cached
with it; q-values depend on the FDR method only and are computed from the
cached p-values, so changing ``fdr`` or ``fdr_method`` re-evaluates nothing.

`selectivity_null` is the same for a model in memory (built-in,
`instrument()`ed or an ImageNet ResNet): model and data in, a tidy
DataFrame of units out.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd

from tf_selectivity.measures.fdr import DEFAULT_FDR, check_fdr, check_fdr_method, fdr_q_values
from tf_selectivity.core.progress import Progress
from tf_selectivity.core.settings import ParameterError
from tf_selectivity.measures.selectivity_index import DEFAULT_SELECTIVITY_INDEX, validate_index

__all__ = [
    "NULL_UNIT_COLUMNS",
    "NULL_LAYER_COLUMNS",
    "NULL_RUN_COLUMNS",
    "layer_null_columns",
    "add_fdr",
    "selectivity_null",
    "null_layer_summary",
]

# Columns the null adds to the analysis' tables (none without it).
NULL_UNIT_COLUMNS = ("si_null_mean", "si_p", "si_q", "selective", "si_chance_corrected")
NULL_LAYER_COLUMNS = ("selective_fraction", "mean_chance_corrected_selectivity")
NULL_RUN_COLUMNS = ("selectivity_null", "fdr", "fdr_method", *NULL_LAYER_COLUMNS)


def layer_null_columns(
    responses: dict,
    labels: np.ndarray,
    num_classes: int,
    *,
    num_permutations: int,
    seed: int = 0,
    index: str = DEFAULT_SELECTIVITY_INDEX,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """The null's per-unit columns of every layer of one run.

    Args:
        responses: layer name -> (images, units) per-image unit responses.
        labels: (images,) the test labels.
        num_classes: number of classes.
        num_permutations: B >= 1.
        seed: seed of the permutations (every layer sees the same ones).
        index: "eq1" or "bounded".
        progress: called with the number of permutations done, chunk by chunk.

    Returns:
        layer name -> {"si_null_mean": (units,), "si_p": (units,)} float64.
    """
    from tf_selectivity.measures.unit_null import permutation_nulls

    nulls = permutation_nulls(
        responses, labels, num_classes, num_permutations=num_permutations, seed=seed, index=index,
        progress=progress,
    )
    return {name: {"si_null_mean": null.null_mean, "si_p": null.p_values} for name, null in nulls.items()}


def _unit_fdr_columns(units: pd.DataFrame, fdr: float, method: str) -> pd.DataFrame:
    """`units` of one run with si_q, selective and si_chance_corrected."""
    units = units.copy()
    units["si_q"] = fdr_q_values(units["si_p"].to_numpy(), method)
    units["selective"] = units["si_q"] < fdr
    units["si_chance_corrected"] = units["selectivity"] - units["si_null_mean"]
    return units


def null_layer_summary(units: pd.DataFrame) -> pd.DataFrame:
    """Per layer: the fraction of selective units and the mean chance-corrected SI.

    Args:
        units: a units table with ``layer``, ``layer_index``, ``selective``
            and ``si_chance_corrected`` (and ``run_dir`` for several runs).

    Returns:
        DataFrame with one row per (run_dir,) layer, in network order:
        ``layer``, ``layer_index``, ``num_units``, ``selective_fraction``,
        ``mean_chance_corrected_selectivity``.
    """
    keys = [k for k in ("run_dir", "layer_index", "layer") if k in units.columns]
    grouped = units.groupby(keys, sort=True)
    return grouped.agg(
        num_units=("selective", "size"),
        selective_fraction=("selective", "mean"),
        mean_chance_corrected_selectivity=("si_chance_corrected", "mean"),
    ).reset_index()


def add_fdr(run_row: dict, layer_rows: Sequence[dict], units: pd.DataFrame, *, num_permutations: int,
            fdr: float = DEFAULT_FDR, method: str = "bh"):
    """One run's rows with the FDR columns, from its units' cached p-values.

    The family of the q-values is every unit of the run (all its layers;
    dead units, whose p-value is 1, included).

    Args:
        run_row: the run's row of the runs table (a dict).
        layer_rows: its rows of the layers table (dicts).
        units: its units table, with ``si_p`` and ``si_null_mean``.
        num_permutations: B, recorded in the run's row.
        fdr: the false discovery rate, in (0, 1).
        method: "bh" or "by".

    Returns:
        (run_row, layer_rows, units), new objects with the columns of
        `NULL_RUN_COLUMNS`, `NULL_LAYER_COLUMNS` and `NULL_UNIT_COLUMNS`.
    """
    fdr = check_fdr(fdr)
    check_fdr_method(method, "fdr_method")
    units = _unit_fdr_columns(units, fdr, method)
    summary = null_layer_summary(units.drop(columns=["run_dir"], errors="ignore")).set_index("layer")
    layer_rows = [
        {**row, **{c: float(summary.loc[row["layer"], c]) for c in NULL_LAYER_COLUMNS}} for row in layer_rows
    ]
    run_row = {
        **run_row,
        "selectivity_null": int(num_permutations),
        "fdr": fdr,
        "fdr_method": method,
        "selective_fraction": float(units["selective"].mean()),
        # Eq. 3's averaging: over layers of each layer's mean.
        "mean_chance_corrected_selectivity": float(summary["mean_chance_corrected_selectivity"].mean()),
    }
    return run_row, layer_rows, units


def selectivity_null(
    model,
    images,
    labels,
    *,
    num_permutations: int = 1000,
    seed: int = 0,
    fdr: float = DEFAULT_FDR,
    fdr_method: str = "bh",
    index: str = DEFAULT_SELECTIVITY_INDEX,
    layers: Sequence[str] | None = None,
    batch_size: int = 500,
    verbose: int = 0,
) -> pd.DataFrame:
    """Every probed unit's selectivity and its label-permutation null, for a model in memory.

    The same numbers as ``analyze --selectivity_null=B`` for a run of the
    model (the same responses, permutations, q-values over the units of
    the probed layers analysed).

    Args:
        model: a `tf_selectivity.models.SelectivityModel`: built with
            `build_model` (CIFAR or ImageNet ResNets, VGG16) or a user's
            model passed through `instrument()`.
        images: (N, H, W, C) test images as the model takes them.
        labels: (N,) integer labels.
        num_permutations: B >= 1.
        seed: seed of the permutations.
        fdr: the false discovery rate, in (0, 1): ``selective`` is
            ``si_q < fdr``.
        fdr_method: "bh" (Benjamini-Hochberg) or "by" (Benjamini-Yekutieli).
        index: "eq1" (the paper's) or "bounded".
        layers: probe names to analyse (default: every probe, in network
            order); the q-values are over their units.
        batch_size: images per forward pass.
        verbose: 1 shows the progress of the pass over the images and of
            the permutations (a bar on a terminal, a line per pass
            elsewhere), 0 nothing.

    Returns:
        Tidy DataFrame, one row per unit: ``layer``, ``layer_index``,
        ``unit``, ``selectivity``, ``dead``, ``preferred_class``, and the
        columns of `NULL_UNIT_COLUMNS`.

    Raises:
        ParameterError: B < 1, `fdr` outside (0, 1), an unknown FDR method
            or index, a model without probes, unknown layer names, or
            labels that do not match the images.
    """
    from tf_selectivity.measures.unit_null import check_num_permutations
    from tf_selectivity.measures.unit_statistics import evaluate_responses

    num_permutations = check_num_permutations(num_permutations)
    fdr = check_fdr(fdr)
    check_fdr_method(fdr_method, "fdr_method")
    validate_index(index, "index")
    probes = list(getattr(model, "probe_names", None) or [])
    if not probes:
        raise ParameterError("model", "has no selectivity probes: build it with build_model or pass it through instrument()")
    if layers is None:
        layers = probes
    else:
        layers = [str(name) for name in layers]
        unknown = [name for name in layers if name not in probes]
        if unknown or not layers:
            raise ParameterError(
                "layers", f"must name probes of the model ({', '.join(probes)}); got {', '.join(unknown) or 'none'}"
            )
        layers = [name for name in probes if name in layers]  # network order
    images = np.asarray(images)
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(images):
        raise ParameterError("labels", f"must hold one label per image; got {len(labels)} for {len(images)} images")
    num_classes = int(model.probes[0].num_classes)
    respond_model = model.unit_response_model()

    def respond(batch):
        return respond_model.predict_on_batch(np.asarray(batch, dtype=np.float32))

    batches = ((images[s : s + batch_size], labels[s : s + batch_size]) for s in range(0, len(labels), batch_size))
    with Progress("Selectivity", len(labels), unit="image", enabled=verbose > 0) as bar:
        result = evaluate_responses(
            respond, batches, num_classes=num_classes, layer_names=layers,
            selectivity_index=index, keep_responses=True, progress=bar.update,
        )
    with Progress("Selectivity null", num_permutations, unit="permutation", enabled=verbose > 0) as bar:
        columns_by_layer = layer_null_columns(
            result.responses, labels, num_classes, num_permutations=num_permutations, seed=seed, index=index,
            progress=bar.update,
        )
    frames = []
    for name in layers:
        table = result.layers[name].unit_table()
        columns = columns_by_layer[name]
        frames.append(
            pd.DataFrame(
                {
                    "layer": name,
                    "layer_index": probes.index(name),
                    "unit": np.arange(len(table["selectivity"])),
                    "selectivity": table["selectivity"],
                    "dead": table["dead"],
                    "preferred_class": table["preferred_class"],
                    **columns,
                }
            )
        )
    return _unit_fdr_columns(pd.concat(frames, ignore_index=True), fdr, fdr_method)

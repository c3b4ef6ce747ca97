"""One streaming pass of a run over its test set: accuracy, SI, precision, dead units (and CCA responses).

Memory is independent of the test set's size: statistics accumulate batch
by batch (`measures.unit_statistics.evaluate_responses`), and the unit
responses that the similarity stage compares are written to memory-mapped
files during the same pass. With ``selectivity_null=B`` the responses are
also kept in memory (float32, every layer's during the run's pass) for every
unit's label-permutation null (`null.layer_null_columns`).
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np
import pandas as pd

from tf_selectivity.analysis.runs import CONFIG_COLUMNS, RunRecord, load_response_function
from tf_selectivity.core.files import temporary_path
from tf_selectivity.core.progress import Progress

__all__ = ["RUN_COLUMNS", "LAYER_COLUMNS", "evaluate_run", "write_position_responses"]

# Column order of the tables (tidy: one row per run / run x layer).
RUN_COLUMNS = (
    "run_dir", *CONFIG_COLUMNS, "epochs", "best_epoch", "val_accuracy", "test_accuracy",
    "test_mean_selectivity", "test_mean_selectivity_alive", "mean_precision",
    "dead_unit_fraction", "eq1_guarded_fraction", "num_units", "num_test_samples",
    "precision_top_n", "selectivity_index", "trained_selectivity_index", "dataset",
)
LAYER_COLUMNS = (
    "run_dir", *CONFIG_COLUMNS, "layer", "layer_index", "num_units", "mean_selectivity",
    "mean_selectivity_alive", "mean_precision", "dead_fraction", "eq1_guarded_fraction",
)


def _batches(images, labels, batch_size):
    for start in range(0, len(labels), batch_size):
        yield images[start : start + batch_size].astype(np.float32), labels[start : start + batch_size]


def evaluate_run(
    record: RunRecord,
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    batch_size: int = 500,
    precision_top_n: int = 1000,
    response_dir: str | None = None,
    selectivity_index: str = "eq1",
    selectivity_null: int = 0,
    selectivity_null_seed: int = 0,
    verbose: int = 0,
    respond: Callable | None = None,
):
    """Test-set statistics of one run.

    Args:
        record: the run.
        images, labels: the test set (uint8 images, integer labels).
        num_classes: number of classes.
        batch_size: images per batch.
        precision_top_n: N of the precision metric (paper: 1000, the number
            of CIFAR-10 test images per class). Capped at the number of test
            images per class: with more, a unit's top N must mix classes and
            precision loses its meaning (N = all images gives 1/C always).
        response_dir: where to write unit responses for CCA (None: don't).
        selectivity_index: the index reported, "eq1" (the paper's) or
            "bounded", whatever index the run was trained with.
        selectivity_null: B > 0: every unit's label-permutation null from
            the responses of this pass (`null.layer_null_columns`): the
            units frame gains ``si_null_mean`` and ``si_p`` (q-values come
            later, `null.add_fdr`). 0: none.
        selectivity_null_seed: seed of the permutations.
        verbose: 1 shows the progress of the pass over the images and of
            the null's permutations (`core.progress`), 0 nothing.
        respond: the run's response function (default: loaded,
            `runs.load_response_function`).

    Returns:
        (run_row, layer_rows, units_frame): the run's row of the runs table,
        its rows of the layers table, and its per-unit DataFrame.
    """
    from tf_selectivity.measures.unit_statistics import evaluate_responses  # imports Keras

    if respond is None:
        respond = load_response_function(record, "unit_responses")
    layer_names = record.probe_names
    precision_top_n = max(1, min(precision_top_n, len(labels) // num_classes))
    with Progress("Selectivity", len(labels), unit="image", enabled=verbose > 0) as bar:
        result = evaluate_responses(
            respond,
            _batches(images, labels, batch_size),
            num_classes=num_classes,
            layer_names=layer_names,
            num_samples=len(labels),
            precision_top_n=precision_top_n,
            response_dir=response_dir,
            progress=bar.update,
            selectivity_index=selectivity_index,
            keep_responses=selectivity_null > 0,
        )
    nulls = {}
    if selectivity_null > 0:
        from tf_selectivity.analysis.stages.selectivity.null import layer_null_columns

        with Progress("Selectivity null", selectivity_null, unit="permutation", enabled=verbose > 0) as bar:
            nulls = layer_null_columns(
                result.responses, labels, num_classes,
                num_permutations=selectivity_null, seed=selectivity_null_seed, index=selectivity_index,
                progress=bar.update,
            )
        result.responses = None
    condition = {"run_dir": record.run_dir, **record.condition()}
    unit_frames, layer_rows = [], []
    for index, (name, statistics) in enumerate(result.layers.items()):
        table = statistics.unit_table()
        units = len(table["selectivity"])
        null_columns = nulls.get(name, {})
        unit_frames.append(
            pd.DataFrame(
                {
                    **{k: [v] * units for k, v in condition.items()},
                    "layer": name,
                    "layer_index": index,
                    "unit": np.arange(units),
                    "selectivity": table["selectivity"],
                    "precision": table["precision"],
                    "dead": table["dead"],
                    "eq1_guarded": table["eq1_guarded"],
                    "preferred_class": table["preferred_class"],
                    **null_columns,
                }
            )
        )
        alive = ~table["dead"]
        layer_rows.append(
            {
                **condition,
                "layer": name,
                "layer_index": index,
                "num_units": units,
                "mean_selectivity": float(np.mean(table["selectivity"])),
                "mean_selectivity_alive": float(np.mean(table["selectivity"][alive])) if alive.any() else np.nan,
                "mean_precision": float(np.nanmean(table["precision"])) if alive.any() else np.nan,
                "dead_fraction": float(np.mean(table["dead"])),
                # Units whose eq. 1 denominator was replaced by its guard
                # (negative responses only; 0 for ReLU networks).
                "eq1_guarded_fraction": float(np.mean(table["eq1_guarded"])),
            }
        )
    layers = pd.DataFrame(layer_rows, columns=list(LAYER_COLUMNS))
    num_units = int(layers["num_units"].sum())
    summary = record.summary
    run_row = {
        **condition,
        "epochs": summary.epochs,
        "best_epoch": summary.best_epoch,
        "val_accuracy": summary.val_accuracy,
        "test_accuracy": result.accuracy,
        # Eq. 3: mean over layers of each layer's mean over units.
        "test_mean_selectivity": float(layers["mean_selectivity"].mean()),
        "test_mean_selectivity_alive": float(layers["mean_selectivity_alive"].mean()),
        # Over live units (NaN for a dead unit, whose SI counts as 0 above).
        "mean_precision": float(layers["mean_precision"].mean()),
        "dead_unit_fraction": float((layers["dead_fraction"] * layers["num_units"]).sum() / num_units),
        "eq1_guarded_fraction": float(
            (layers["eq1_guarded_fraction"] * layers["num_units"]).sum() / num_units
        ),
        "num_units": num_units,
        "num_test_samples": result.num_samples,
        "precision_top_n": precision_top_n,
        "selectivity_index": selectivity_index,
        # What the run's loss regularized (`RunSummary.selectivity_index`
        # gives runs recorded before the field existed theirs).
        "trained_selectivity_index": summary.selectivity_index,
    }
    return run_row, layer_rows, pd.concat(unit_frames, ignore_index=True)


def write_position_responses(record, images, batch_size: int, max_datapoints: int, response_dir: str,
                             verbose: int = 0) -> None:
    """CCA with positions as datapoints: (units, datapoints) per layer.

    The same seeded subset of (sample, row, column) positions is taken from
    every network, so that datapoints stay aligned across the compared runs.
    `verbose` 1 shows the pass's progress.
    """
    respond = load_response_function(record, "activations")
    sinks, chosen = {}, {}
    os.makedirs(response_dir, exist_ok=True)
    with Progress("Responses at positions", len(images), unit="image", enabled=verbose > 0) as bar:
        for start in range(0, len(images), batch_size):
            outputs = respond(images[start : start + batch_size].astype(np.float32))
            for name in record.probe_names:
                maps = np.asarray(outputs[name])
                batch, height, width, units = maps.shape
                if name not in chosen:
                    total = len(images) * height * width
                    count = min(max_datapoints, total)
                    chosen[name] = np.sort(np.random.default_rng(0).choice(total, size=count, replace=False))
                    sinks[name] = np.lib.format.open_memmap(
                        temporary_path(os.path.join(response_dir, f"{name}.npy"), suffix=".npy"),
                        mode="w+", dtype=np.float32, shape=(units, count),
                    )
                first, last = start * height * width, (start + batch) * height * width
                selected = chosen[name]
                lo, hi = np.searchsorted(selected, [first, last])
                flat = maps.reshape(-1, units)
                sinks[name][:, lo:hi] = flat[selected[lo:hi] - first].T
            bar.update(min(batch_size, len(images) - start))
    for name, sink in sinks.items():
        sink.flush()
        final = os.path.join(response_dir, f"{name}.npy")
        os.replace(temporary_path(final, suffix=".npy"), final)

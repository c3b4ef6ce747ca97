"""The over-training stage's tables: one run's (`run_tables`) and across runs (`combined_tables`).

Long format: one row per (run, checkpoint epoch, layer) in
``over_training``, per (run, epoch) in ``over_training_network``, each
with the run's condition columns, its ``alpha_window`` where any analysed
run was trained in a window of alpha, and the epoch; ``over_training_runs``
has one row per analysed run (those without kept checkpoints included,
with 0 of them).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tf_selectivity.report.condition_names import own_rows
from tf_selectivity.analysis.stage import RunResult
from tf_selectivity.analysis.stages.over_training.measure import LAYER_MEASURES, NETWORK_MEASURES

__all__ = ["WINDOW", "run_tables", "combined_tables"]

# The identity field of a run trained with alpha only in a window of epochs (absent from older runs).
WINDOW = "alpha_window"


def _window_of(record):
    """The run's window of alpha as recorded (None: the whole run, or a run that predates windows)."""
    window = record.identity().get(WINDOW)
    return None if window is None else str(window)


def run_tables(run, paths: dict) -> RunResult:
    """The measures of every kept checkpoint of one run.

    Args:
        run: the run's `RunContext`.
        paths: {epoch: weights file} of its kept checkpoints, by epoch.

    Returns:
        A `RunResult`: tables ``layers`` and ``network`` (condition columns
        first), values ``checkpoints`` (the epochs measured).
    """
    from tf_selectivity.analysis.stages.ablation.ablate import probe_layers

    options = run.options
    settings = options.over_training
    model = run.model
    probes = probe_layers(model)
    layers = probes if settings.layers is None else [name for name in probes if name in settings.layers]
    if not layers:
        raise ValueError(f"none of --over_training_layers is a probe of this run (its probes: {', '.join(probes)})")
    data = run.subset(settings.max_samples)
    common = dict(
        index=options.selectivity_index, batch_size=options.batch_size,
        null_permutations=settings.null_permutations, null_seed=options.selectivity.null_seed,
        fdr=options.selectivity.fdr, fdr_method=options.selectivity.fdr_method,
        unit_ablation=settings.unit_ablation, linearity_pairs=settings.linearity_pairs,
        n_resamples=options.n_resamples, verbose=run.analysis.verbose,
    )
    from tf_selectivity.analysis.stages.over_training.measure import measure_state

    trained = model.get_weights()
    common["respond_model"] = model.unit_response_model()  # one per run: it reads the weights loaded below
    layer_rows, network_rows = [], []
    try:
        for epoch, path in paths.items():
            model.load_weights(path)
            rows, network = measure_state(model, data.images, data.labels, data.num_classes, layers, **common)
            layer_rows += [{"epoch": float(epoch), **row} for row in rows]
            network_rows.append({"epoch": float(epoch), **network})
    finally:
        model.set_weights(trained)  # the stages after this one measure the trained network
    extra = {WINDOW: _window_of(run.record)}
    return RunResult(
        tables={"layers": run.with_condition(pd.DataFrame(layer_rows), extra),
                "network": run.with_condition(pd.DataFrame(network_rows), extra)},
        values={"checkpoints": [float(epoch) for epoch in paths]},
    )


def combined_tables(results, context) -> dict:
    """``over_training``, ``over_training_network`` and ``over_training_runs`` across runs.

    The ``alpha_window`` column is kept only where some analysed run has a window.
    """
    from tf_selectivity.training.kept_checkpoints import kept_checkpoint_paths

    computed = [result for result in results.values() if "layers" in result.tables]
    runs_table = own_rows(context.tables["selectivity"]["runs"]).set_index("run_dir")
    run_rows = []
    for record in context.records:
        accuracy = runs_table["test_accuracy"].get(record.run_dir, np.nan) if "test_accuracy" in runs_table else np.nan
        run_rows.append({"run_dir": record.run_dir, **record.condition(), WINDOW: _window_of(record),
                         "test_accuracy": float(accuracy),
                         "kept_checkpoints": len(kept_checkpoint_paths(record.run_dir))})
    runs = context.with_condition_names(pd.DataFrame(run_rows), share_baselines=True)
    windowed = runs[WINDOW].notna().any()
    tables = {}
    for name, key, measures in (("over_training", "layers", ("layer", "layer_index", *LAYER_MEASURES)),
                                ("over_training_network", "network", NETWORK_MEASURES)):
        if computed:
            frame = context.with_condition_names(
                pd.concat([result.tables[key] for result in computed], ignore_index=True), share_baselines=True)
        else:
            frame = pd.DataFrame(columns=["run_dir", "epoch", *measures])
        tables[name] = frame if windowed else frame.drop(columns=[WINDOW], errors="ignore")
    tables["over_training_runs"] = runs if windowed else runs.drop(columns=[WINDOW])
    return tables

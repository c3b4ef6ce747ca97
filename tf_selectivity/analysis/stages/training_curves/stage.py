"""Selectivity while training, in the analysis: SI vs epoch and the half-rise epochs.

An optional stage of the analysis (`analysis.pipeline.optional_stages`, on
by default: ``training_curves``). Among the analysed runs, those whose
``history.csv`` holds the SI on the validation split (trained with
``--selectivity_every=N``) give, per model:

* figures ``figS_training_curves_<model>_<layer>``: SI vs epoch per alpha
  (mean over seeds, bootstrap 95% CI) beside validation accuracy vs epoch
  (`plots.training_curves`), for eq. 3's mean over layers and every layer,
  the mean half-rise epoch marked;
* tables ``training_curves`` (per run, epoch and layer), ``training_curves_summary``
  (mean and CI over seeds) and ``half_rise_epochs`` (per run and layer: the
  first recorded epoch at which the layer's SI reaches half its value at the
  last recorded epoch);
* a report section: per model, layer and alpha, the mean half-rise epoch
  over seeds with its CI.

Runs without such a history are left out of this stage only; if no run has
one, the stage writes nothing.
"""

from __future__ import annotations

import os

import pandas as pd

from tf_selectivity.analysis.training_curves import (
    LAYER_COLUMN_PREFIX,
    MEAN_COLUMN,
    MEAN_LAYER,
    half_rise_epochs,
    read_training_curves,
    summarize_half_rise,
    summarize_training_curves,
)

__all__ = ["training_curves_stage", "runs_with_training_curves"]


def runs_with_training_curves(records) -> list:
    """The run directories of `records` whose history.csv recorded the SI while training."""
    found = []
    for record in records:
        path = os.path.join(record.run_dir, "history.csv")
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as f:
            header = f.readline().strip().split(",")
        if MEAN_COLUMN in header or any(column.startswith(LAYER_COLUMN_PREFIX) for column in header):
            found.append(record.run_dir)
    return found


def _cell(row) -> str:
    if row["n"] == 0 or pd.isna(row["mean"]):
        return "not reached (final SI <= 0)"
    if row["n"] == 1 or pd.isna(row["ci_low"]):
        return f"{row['mean']:.1f} (n = {int(row['n'])})"
    return f"{row['mean']:.1f} [{row['ci_low']:.1f}, {row['ci_high']:.1f}] (n = {int(row['n'])})"


def training_curves_stage(context) -> list | None:
    """SI-vs-epoch figures, tables and the half-rise section; None when no run recorded the SI.

    Args:
        context: the analysis' `StageContext`.

    Returns:
        Markdown lines of the report's "Selectivity while training" section,
        or None.
    """
    from tf_selectivity.analysis.outputs import write_table
    from tf_selectivity.plots.style import file_safe, save_figure
    from tf_selectivity.plots.training_curves import plot_training_curves
    from tf_selectivity.report.formatting import markdown_table

    run_dirs = runs_with_training_curves(context.records)
    if not run_dirs:
        return None
    try:
        curves = read_training_curves(run_dirs)
    except ValueError as error:  # a damaged history or config
        context.errors.append((run_dirs[0], f"selectivity while training: {error}"))
        return None
    options = context.options
    summary = summarize_training_curves(curves, n_resamples=options.n_resamples)
    half_rise = half_rise_epochs(curves)
    half_summary = summarize_half_rise(half_rise, n_resamples=options.n_resamples)
    write_table(curves, context.staging, "training_curves")
    write_table(summary, context.staging, "training_curves_summary")
    write_table(half_rise, context.staging, "half_rise_epochs")

    lines = [
        "## Selectivity while training", "",
        f"{len(run_dirs)} run(s) recorded the class selectivity index on the validation split while training "
        "(`--selectivity_every`). Half-rise epoch: the first recorded epoch at which a layer's SI reaches half "
        "its value at the last recorded epoch (mean over seeds, bootstrap 95% CI; tables `training_curves`, "
        "`training_curves_summary`, `half_rise_epochs`).", "",
    ]
    for model in sorted(curves["model"].unique()):
        rows = half_summary[half_summary["model"] == model]
        layers = list(dict.fromkeys(rows.sort_values("layer_index", key=lambda s: s.where(s >= 0, 1e9))["layer"]))
        for layer in layers:
            figure = plot_training_curves(summary, layer=layer, half_rise=half_rise, model=model)
            if figure is None:
                continue
            name = f"figS_training_curves_{file_safe(model)}_{file_safe(layer)}"
            context.figures[name] = save_figure(figure, os.path.join(context.staging, "figures", name))
        alphas = sorted(rows["alpha"].unique())
        table = []
        for layer in layers:
            cells = [("eq. 3 mean" if layer == MEAN_LAYER else layer)]
            for alpha in alphas:
                match = rows[(rows["layer"] == layer) & (rows["alpha"] == alpha)]
                cells.append(_cell(match.iloc[0]) if len(match) else "")
            table.append(cells)
        lines += [f"### {model}: half-rise epoch per layer and alpha", "",
                  markdown_table(["layer"] + [f"α = {alpha:g}" for alpha in alphas], table), ""]
    return lines

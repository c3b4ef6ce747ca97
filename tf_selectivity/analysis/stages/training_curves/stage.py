"""The training-curves stage: selectivity while training, SI vs epoch and the half-rise epochs.

On by default (``training_curves``). Among the analysed runs, those whose
``history.csv`` holds the SI on the validation split (trained with
``--selectivity_every=N``) or that have a ``selectivity_steps.csv`` (every N
training steps early in training, ``--selectivity_every_steps=N``) give, per
model and condition (runs regularized in different windows of training,
``alpha_window``, are different conditions):

* figures ``figS_training_curves_<model>_<layer>``: SI vs epoch per alpha
  (mean over seeds, bootstrap 95% CI) beside validation accuracy vs epoch
  (`figures.plot_training_curves`; a symmetric-log epoch axis where steps
  were recorded), for eq. 3's mean over layers and every layer, the mean
  half-rise epoch marked;
* tables ``training_curves`` (per run, epoch and layer), ``training_curves_summary``
  (mean and CI over seeds) and ``half_rise_epochs`` (per run and layer: the
  first recorded epoch, fractional between recorded steps, at which the
  layer's SI reaches half its value at the last recorded epoch);
* a report section: per model, layer and alpha, the mean half-rise epoch
  over seeds with its CI.

Runs without such a history are left out of this stage only; if no run has
one, the stage is skipped. A run whose history cannot be read gets an
error row. Reading a history is cheap: results are not cached. `restore`
rebuilds the figures' and section's inputs from the written tables
(`combine` ends in it), so a redraw gives the same.
"""

from __future__ import annotations

import pandas as pd

from tf_selectivity.analysis.stage import RunResult, Stage, StageSkipped
from tf_selectivity.analysis.stages.training_curves.options import TrainingCurvesOptions

__all__ = ["TrainingCurvesStage"]

# The stage's tables, as `combine` writes them and `restore` reads them back.
TABLES = ("training_curves", "training_curves_summary", "half_rise_epochs")


class TrainingCurvesStage(Stage):
    """See the module docstring."""

    name = "training_curves"
    options_class = TrainingCurvesOptions

    def enabled(self, options):
        return options.training_curves.enabled

    def check(self, runs, options):
        from tf_selectivity.analysis.stages.training_curves.curves import has_training_curves

        if not any(has_training_curves(record.run_dir) for record in runs):
            raise StageSkipped("no run recorded the SI while training (--selectivity_every, --selectivity_every_steps)")

    def cache_key(self, options):
        return None

    def compute(self, run):
        from tf_selectivity.analysis.stages.training_curves.curves import has_training_curves, read_run_curves

        if not has_training_curves(run.run_dir):
            return None
        return RunResult(tables={"curves": read_run_curves(run.run_dir)})

    def run_error(self, run, error):
        if isinstance(error, (ValueError, OSError)):  # a damaged history, selectivity_steps.csv or config
            return f"selectivity while training: {error}"
        return None

    def combine(self, results, context):
        from tf_selectivity.analysis.stages.training_curves.curves import half_rise_epochs, summarize_training_curves

        if not results:
            return {}
        curves = context.with_condition_names(
            pd.concat([result.tables["curves"] for result in results.values()], ignore_index=True),
            share_baselines=True)
        return self.restore({
            "training_curves": curves,
            "training_curves_summary": summarize_training_curves(curves, n_resamples=context.options.n_resamples),
            "half_rise_epochs": half_rise_epochs(curves),
        }, context)

    def restore(self, tables, context):
        """The three tables and the report's per-model summary of the half-rise epochs (None without them)."""
        from tf_selectivity.analysis.stages.training_curves.curves import summarize_half_rise

        if any(tables.get(name) is None for name in TABLES):
            return None
        tables = {name: tables[name] for name in TABLES}
        return {
            **tables,
            "_half_rise_summary": summarize_half_rise(tables["half_rise_epochs"],
                                                      n_resamples=context.options.n_resamples),
            "_runs": tables["training_curves"]["run_dir"].nunique(),
        }

    def figures(self, tables, context):
        from tf_selectivity.analysis.stages.training_curves.figures import plot_training_curves
        from tf_selectivity.plots.style import condition_protocol, file_safe
        from tf_selectivity.plots.tables import protocol_suffix

        if "training_curves" not in tables:
            return
        for model, name, layers in _layers_by_model(tables):
            summary, half_rise = (_of_condition(tables[table], name)
                                  for table in ("training_curves_summary", "half_rise_epochs"))
            protocol = condition_protocol(_condition_of(tables["training_curves"], model, name))
            for layer in layers:
                figure = plot_training_curves(summary, layer=layer, half_rise=half_rise, model=model)
                if figure is not None and protocol:
                    figure.suptitle(f"{figure.get_suptitle()} ({protocol})")
                yield f"figS_training_curves_{file_safe(model)}_{file_safe(layer)}{protocol_suffix(protocol)}", figure

    def section(self, tables, context):
        from tf_selectivity.analysis.stages.training_curves.curves import MEAN_LAYER
        from tf_selectivity.report.formatting import markdown_table

        if "training_curves" not in tables:
            return None
        lines = [
            "## Selectivity while training", "",
            f"{tables['_runs']} run(s) recorded the class selectivity index on the validation split while training "
            "(`--selectivity_every`). Half-rise epoch: the first recorded epoch at which a layer's SI reaches half "
            "its value at the last recorded epoch (mean over seeds, bootstrap 95% CI; tables `training_curves`, "
            "`training_curves_summary`, `half_rise_epochs`).", "",
        ]
        # Epochs between recorded steps need a second decimal.
        steps = bool((tables["training_curves"]["epoch"] % 1 != 0).any())
        digits = 2 if steps else 1
        summary = tables["_half_rise_summary"]
        if steps:
            lines[-2] += (" Runs that recorded the SI every N training steps (`--selectivity_every_steps`) resolve "
                          "it within an epoch: their half-rise epoch is fractional, and 0 where the SI at "
                          "initialization already is half its final value.")
        for model, name, layers in _layers_by_model(tables):
            rows = _of_condition(summary[summary["model"] == model], name)
            alphas = sorted(rows["alpha"].unique())
            table = []
            for layer in layers:
                cells = [("eq. 3 mean" if layer == MEAN_LAYER else layer)]
                for alpha in alphas:
                    match = rows[(rows["layer"] == layer) & (rows["alpha"] == alpha)]
                    cells.append(_cell(match.iloc[0], digits) if len(match) else "")
                table.append(cells)
            lines += [f"### {name or model}: half-rise epoch per layer and alpha", "",
                      markdown_table(["layer"] + [f"α = {alpha:g}" for alpha in alphas], table), ""]
        return lines


def _layers_by_model(tables):
    """(model, condition name or "", its layers in network order, eq. 3's mean last) for every
    model of the curves, and each of its conditions where the tables name them."""
    summary = tables["_half_rise_summary"]
    curves = tables["training_curves"]
    for model in sorted(curves["model"].unique()):
        of_model = curves[curves["model"] == model]
        names = sorted(of_model["condition"].astype(str).unique()) if "condition" in of_model else [""]
        for name in names:
            rows = _of_condition(summary[summary["model"] == model], name)
            order = rows.sort_values("layer_index", key=lambda s: s.where(s >= 0, 1e9))["layer"]
            yield model, name, list(dict.fromkeys(order))


def _of_condition(frame, name):
    """The rows of `frame` of the condition `name` ("": all of them)."""
    return frame[frame["condition"].astype(str) == name] if name and "condition" in frame else frame


def _condition_of(curves, model, name) -> dict:
    """The condition columns of a (model, condition name) of the curves (`plots.style.condition_protocol`'s input)."""
    rows = _of_condition(curves[curves["model"] == model], name)
    return {column: rows[column].iloc[0] for column in ("model", "activation", "leaky_slope", "condition")
            if column in rows and len(rows)}


def _cell(row, digits: int) -> str:
    if row["n"] == 0 or pd.isna(row["mean"]):
        return "not reached (final SI <= 0)"
    if row["n"] == 1 or pd.isna(row["ci_low"]):
        return f"{row['mean']:.{digits}f} (n = {int(row['n'])})"
    return (f"{row['mean']:.{digits}f} [{row['ci_low']:.{digits}f}, {row['ci_high']:.{digits}f}] "
            f"(n = {int(row['n'])})")

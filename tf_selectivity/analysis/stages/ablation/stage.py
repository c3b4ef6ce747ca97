"""The ablation stage (``--ablation``, ``--unit_ablation``): do selective units matter?

Per analysed run, its Keras model (`RunContext.model`) is ablated on the
run's test set (`analysis.ablation`, the suffix path), cached per run; a run
that cannot be loaded or ablated gets an error row and the others go on.
The tables ``ablation_curves``, ``ablation_auc`` (per run and layer),
``unit_importance`` (with the null's mean per unit from the selectivity
stage, when computed) and ``importance_correlations``, the figures
``ablation_curves_<model>_<activation>`` and
``si_vs_importance_<model>_<activation>``, and the report section
(`analysis.ablation_stage`).
"""

from __future__ import annotations

from tf_selectivity.analysis.stage import RunResult, Stage, settings_key
from tf_selectivity.analysis.stages.ablation.options import AblationOptions

__all__ = ["AblationStage"]


class AblationStage(Stage):
    """See the module docstring."""

    name = "ablation"
    options_class = AblationOptions
    # Each unit's null mean (units table) and the regularization result (runs, layers) beside the ablation's.
    requires = ("selectivity",)

    def enabled(self, options):
        return options.ablation.curves or options.ablation.unit_importance

    def check(self, runs, options):
        from tf_selectivity.analysis.ablation_stage import check_ablation_layers

        check_ablation_layers(options.ablation.layers, [name for record in runs for name in record.probe_names])

    def cache_key(self, options):
        return (settings_key(options.ablation), options.selectivity_index, options.batch_size)

    def compute(self, run):
        from tf_selectivity.analysis.ablation_stage import ablate_run

        return RunResult(tables=ablate_run(run))

    def run_error(self, run, error):
        if isinstance(error, Exception):  # one run's model must not stop the others
            return f"ablation: {type(error).__name__}: {error}"
        return None

    def combine(self, results, context):
        from tf_selectivity.analysis.ablation_stage import combine_ablation

        curves = [r.tables["curves"] for r in results.values() if "curves" in r.tables]
        importance = [r.tables["importance"] for r in results.values() if "importance" in r.tables]
        return combine_ablation(curves, importance, context.tables["selectivity"]["units"],
                                context.options.n_resamples)

    def figures(self, tables, context):
        from tf_selectivity.analysis.ablation_stage import ablation_figures

        return ablation_figures(tables.get("ablation_curves"), tables.get("unit_importance"),
                                context.options.n_resamples)

    def section(self, tables, context):
        from tf_selectivity.analysis.ablation_stage import ablation_section

        selectivity = context.tables["selectivity"]
        return ablation_section(context.options, selectivity["runs"], selectivity["layers"], tables.get("_tests"),
                                tables.get("unit_importance"), tables.get("importance_correlations"))

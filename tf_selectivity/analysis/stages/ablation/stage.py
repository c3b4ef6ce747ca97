"""The ablation stage (``--ablation``, ``--unit_ablation``): do selective units matter?

Per analysed run, its Keras model (`RunContext.model`) is ablated on the
class-balanced subset of ``ablation.max_samples`` test images (`ablate`, run
by the suffix after each probe, `network`), cached per run; a run that
cannot be loaded or ablated gets an error row and the others go on. Across
runs (`tables`): ``ablation_curves``, ``ablation_auc`` (per run and layer),
``unit_importance`` (with the null's mean per unit from the selectivity
stage, when computed) and ``importance_correlations``; the figures
``ablation_curves_<model>_<activation>`` and
``si_vs_importance_<model>_<activation>`` (`figures`); and the report
section (`section`). `restore` rebuilds the figures' and section's inputs
from the written tables (`combine` ends in it), so a redraw gives the same.
"""

from __future__ import annotations

from tf_selectivity.analysis.stage import RunResult, Stage, settings_key
from tf_selectivity.analysis.stages.ablation.options import AblationOptions
from tf_selectivity.core.settings import ParameterError

__all__ = ["AblationStage", "check_ablation_layers"]

# The stage's tables, as `combine` writes them and `restore` reads them back.
TABLES = ("ablation_curves", "ablation_auc", "unit_importance", "importance_correlations")


def check_ablation_layers(requested, probes) -> None:
    """Raises ParameterError when a name of ``ablation.layers`` is a probe of no analysed run.

    Args:
        requested: the names (None: all probes, always fine).
        probes: every analysed run's probe names, in order (repeats allowed).
    """
    if requested is None:
        return
    known = list(dict.fromkeys(str(name) for name in probes))
    unknown = [name for name in requested if name not in known]
    if unknown:
        raise ParameterError(
            "ablation.layers",
            f"must name probes of the analysed runs ({', '.join(known)}); no run has {', '.join(unknown)}")


class AblationStage(Stage):
    """See the module docstring."""

    name = "ablation"
    options_class = AblationOptions
    # Each unit's null mean (units table) and the regularization result (runs, layers) beside the ablation's.
    requires = ("selectivity",)

    def enabled(self, options):
        return options.ablation.curves or options.ablation.unit_importance

    def check(self, runs, options):
        check_ablation_layers(options.ablation.layers, [name for record in runs for name in record.probe_names])

    def cache_key(self, options):
        return (settings_key(options.ablation), options.selectivity_index, options.batch_size)

    def compute(self, run):
        """The run's ``curves`` and ``importance`` tables (those asked for), its condition columns first."""
        from tf_selectivity.analysis.stages.ablation.ablate import ablation_curves, probe_layers, unit_importance

        options = run.options
        settings = options.ablation
        model = run.model
        probes = probe_layers(model)
        layers = probes if settings.layers is None else [n for n in settings.layers if n in probes]
        if not layers:
            raise ValueError(f"none of --ablation_layers is a probe of this run (its probes: {', '.join(probes)})")
        data = run.subset(settings.max_samples)
        common = dict(layers=layers, mode=settings.mode, index=options.selectivity_index,
                      batch_size=options.batch_size, verbose=run.analysis.verbose)
        tables = {}
        if settings.curves:
            tables["curves"] = run.with_condition(ablation_curves(
                model, data.images, data.labels, fractions=settings.fractions,
                random_seeds=tuple(range(settings.random_orders)), **common))
        if settings.unit_importance:
            tables["importance"] = run.with_condition(unit_importance(model, data.images, data.labels, **common))
        return RunResult(tables=tables, warnings=_capped("ablation_max_samples", settings.max_samples, run))

    def run_error(self, run, error):
        if isinstance(error, Exception):  # one run's model must not stop the others
            return f"ablation: {type(error).__name__}: {error}"
        return None

    def combine(self, results, context):
        from tf_selectivity.analysis.stages.ablation.tables import ablation_tables

        curves = [context.with_condition_names(r.tables["curves"]) for r in results.values() if "curves" in r.tables]
        importance = [context.with_condition_names(r.tables["importance"])
                      for r in results.values() if "importance" in r.tables]
        return self.restore(ablation_tables(curves, importance, context.tables["selectivity"]["units"],
                                            context.options.n_resamples), context) or {}

    def restore(self, tables, context):
        """The ablation tables (those present) and the test of selective-first ablation the section reports."""
        from tf_selectivity.analysis.stages.ablation.tables import selective_vs_random

        tables = {name: tables[name] for name in TABLES if tables.get(name) is not None}
        if not tables:
            return None
        if "ablation_auc" in tables:
            tables["_tests"] = selective_vs_random(tables["ablation_auc"], n_resamples=context.options.n_resamples)
        return tables

    def figures(self, tables, context):
        from tf_selectivity.analysis.stages.ablation.figures import ablation_figures

        return ablation_figures(tables.get("ablation_curves"), tables.get("unit_importance"),
                                context.options.n_resamples)

    def claims(self, tables, context):
        from tf_selectivity.analysis.stages.ablation.claims import ablation_claims

        return ablation_claims(tables.get("_tests"), context.options)

    def section(self, tables, context):
        from tf_selectivity.analysis.stages.ablation.section import ablation_section

        selectivity = context.tables["selectivity"]
        return ablation_section(context.options, selectivity["runs"], selectivity["layers"], tables.get("_tests"),
                                tables.get("unit_importance"), tables.get("importance_correlations"))


def _capped(flag: str, asked, run) -> list:
    """The warning, said once, of a number of test images larger than the analysis has."""
    data = run.test_data
    if asked is None or asked <= len(data.labels):
        return []
    return [f"--{flag}={asked} is more than the {len(data.labels):,} test images of {data.spec}: all of them are used"]

"""The over-training stage (``--over_training``): the networks as they were at their kept checkpoints.

Off by default. For every analysed run trained with ``--keep_checkpoints``,
each kept checkpoint's weights are loaded in turn into the run's model (the
one the engine loaded; its own weights are put back afterwards, so the
stages after this one see the trained network) and measured on the
class-balanced subset of ``over_training.max_samples`` test images
(`measure.measure_state`): per layer SI, the fraction selective above
chance, single-unit ablation importance and its correlation with SI, and the
midpoint nonlinearity; per network the same and the accuracy. A run's
result is cached; a cached result serves only while the run's list of
kept checkpoints is the one it was computed from (`accepts`).

Across runs (`tables`): ``over_training`` (run, epoch, layer),
``over_training_network`` (run, epoch) and ``over_training_runs`` (every
analysed run: its window of alpha, if any, its final test accuracy and
its number of kept checkpoints, for the window claim); figures per
condition on a log-epoch axis (`figures`); the four claims of Ranadive et
al. (2023) with their tests (`claims`), and a report section (`section`).

Runs without kept checkpoints are left out with one warning; with none
among the selected runs, `check` refuses before any pass.
"""

from __future__ import annotations

from tf_selectivity.analysis.stage import Stage, settings_key
from tf_selectivity.analysis.stages.over_training.options import OverTrainingOptions
from tf_selectivity.core.settings import ParameterError

__all__ = ["OverTrainingStage"]

# The stage's tables, as `combine` writes them and `restore` reads them back.
TABLES = ("over_training", "over_training_network", "over_training_runs")


class OverTrainingStage(Stage):
    """See the module docstring."""

    name = "over_training"
    options_class = OverTrainingOptions
    # The runs table (final test accuracy) beside the checkpoints' measures.
    requires = ("selectivity",)
    captions = {
        "over_training_": "Over training, per kept checkpoint (x: epoch, log scale; epoch 0, the initialization, "
                          "at the left end of a linear stretch): (a) mean SI over layers (eq. 3), (b) fraction of "
                          "units selective above chance, (c) Spearman correlation of SI with single-unit ablation "
                          "importance (mean over layers), (d) midpoint nonlinearity of the logits (0: linear), "
                          "(e) accuracy on the images measured. Lines: mean over seeds per α; bands: bootstrap 95% "
                          "CIs.",
    }

    def enabled(self, options):
        return options.over_training.enabled

    def check(self, runs, options):
        from tf_selectivity.training.kept_checkpoints import kept_checkpoint_paths

        with_checkpoints = [record for record in runs if kept_checkpoint_paths(record.run_dir)]
        if not with_checkpoints:
            raise ParameterError(
                "over_training.enabled",
                f"needs runs with kept checkpoints, and none of the {len(runs)} selected run(s) has any: train "
                "them with --keep_checkpoints=0,0.25,0.5,1,2,... (epochs; 0 = initialization)")
        requested = options.over_training.layers
        if requested is not None:
            known = list(dict.fromkeys(name for record in with_checkpoints for name in record.probe_names))
            unknown = [name for name in requested if name not in known]
            if unknown:
                raise ParameterError(
                    "over_training.layers",
                    f"must name probes of the runs with kept checkpoints ({', '.join(known)}); no run has "
                    f"{', '.join(unknown)}")

    def cache_key(self, options):
        settings = options.over_training
        selectivity = options.selectivity
        # The early phase only reads the tables: changing it recomputes nothing.
        own = tuple(item for item in settings_key(settings) if item[0] != "early_epochs")
        key = (own, options.selectivity_index, options.batch_size, options.n_resamples)
        if settings.null_permutations:
            key += (selectivity.null_seed, selectivity.fdr, selectivity.fdr_method)
        return key

    def compute(self, run):
        from tf_selectivity.analysis.stages.over_training.tables import run_tables
        from tf_selectivity.training.kept_checkpoints import kept_checkpoint_paths

        paths = kept_checkpoint_paths(run.run_dir)
        if not paths:
            return None
        return run_tables(run, paths)

    def accepts(self, cached, run):
        """A result serves while the run keeps the checkpoints it was computed from."""
        from tf_selectivity.training.kept_checkpoints import kept_checkpoint_paths

        return list(cached.values.get("checkpoints", [])) == [float(e) for e in kept_checkpoint_paths(run.run_dir)]

    def run_error(self, run, error):
        if isinstance(error, Exception):  # one run's checkpoints must not stop the others
            return f"over_training: {type(error).__name__}: {error}"
        return None

    def combine(self, results, context):
        from tf_selectivity.analysis.stages.over_training.tables import combined_tables

        return self.restore(combined_tables(results, context), context) or {}

    def restore(self, tables, context):
        """The three tables, the per-run early/late summary and the claims' tests (None without the tables)."""
        from tf_selectivity.analysis.stages.over_training.claims import claim_tests

        if any(tables.get(name) is None for name in TABLES):
            return None
        tables = {name: tables[name] for name in TABLES}
        return {**tables, "_tests": claim_tests(tables, context.options)}

    def figures(self, tables, context):
        from tf_selectivity.analysis.stages.over_training.figures import over_training_figures

        return over_training_figures(tables["over_training_network"], context.options.n_resamples)

    def warnings(self, tables, context):
        from tf_selectivity.report.condition_names import own_rows

        runs = own_rows(tables["over_training_runs"])
        missing = int((runs["kept_checkpoints"] == 0).sum())
        if not missing:
            return []
        return [f"{missing} of {len(runs)} analysed run(s) kept no checkpoints (train --keep_checkpoints): they "
                "are left out of the over-training measures"]

    def claims(self, tables, context):
        from tf_selectivity.analysis.stages.over_training.claims import as_claims

        return as_claims(tables["_tests"])

    def section(self, tables, context):
        from tf_selectivity.analysis.stages.over_training.section import over_training_section

        return over_training_section(tables, context.options, context.claims)

"""The robustness stage (``--robustness``): accuracy and dimensionality under perturbations.

Per run (its Keras model, `RunContext.model`): accuracy on every corruption
and severity and their mean, accuracy under FGSM and PGD at every epsilon,
and the dimensionality of every probed layer on each of those inputs
(`evaluate.evaluate_robustness`), cached per run. Across runs: the tables
``robustness`` and ``dimensionality`` (each row with the run's condition
columns and mean SI, from the selectivity stage's runs table),
``robustness_runs`` (one row per run) and ``robustness_claims``
(`claims.claims_table`); the figures ``figR_robustness_vs_alpha_<model>``,
``figR_robustness_vs_selectivity_<model>`` and
``figR_dimensionality_vs_alpha_<model>``; and the report section that sets
the follow-up paper's claims beside what these runs show. `restore`
rebuilds the figures' and section's inputs from the written tables
(`combine` ends in it), so a redraw gives the same.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd

from tf_selectivity.analysis.context import with_condition
from tf_selectivity.analysis.runs import RunLoadError
from tf_selectivity.analysis.stage import RunResult, Stage, settings_key
from tf_selectivity.analysis.stages.robustness.options import RobustnessOptions
from tf_selectivity.core.settings import ParameterError

__all__ = ["RobustnessStage"]

# The stage's tables, as `combine` writes them and `restore` reads them back.
TABLES = ("robustness", "dimensionality", "robustness_runs", "robustness_claims")


class CorruptedSets:
    """Each corrupted set made or read once for all runs on the same test set:
    generated (or decoded) sets are written to a temporary folder and memory-mapped
    (CIFAR-10's 14 x 5 sets are 2.1 GB: not kept in memory)."""

    def __init__(self, options):
        import tempfile

        self.options = options
        self._folder = tempfile.TemporaryDirectory(prefix="tf_selectivity_corruptions_")
        self._paths = {}

    def loader(self, data, class_names):
        """`load_set` for one run's `TestData` (a subset has ``chosen``: a
        published corrupted set is indexed by those positions)."""
        from tf_selectivity.data.corruptions import load_corrupted

        source = self.options.robustness.corruption_source
        images, labels, chosen = data.images, data.labels, data.chosen

        def load(corruption, severity):
            if source.startswith("cifar10c:"):  # memory-mapped already
                return load_corrupted(source, corruption, severity, clean_images=images,
                                      indices=chosen, max_samples=len(labels))
            key = (data.spec, len(labels), corruption, severity)
            if key not in self._paths:
                corrupted, corrupted_labels = load_corrupted(
                    source, corruption, severity, clean_images=images, clean_labels=labels,
                    seed=self.options.robustness.attack_seed, data_dir=self.options.data_dir,
                    class_names=class_names,
                    # The generated sets corrupt the run's clean images (already the
                    # subset); a published set is indexed by the subset's positions.
                    indices=None if source == "generated" else chosen,
                    max_samples=len(labels))
                base = os.path.join(self._folder.name, f"{len(self._paths)}")
                np.save(base + "_images.npy", corrupted)
                np.save(base + "_labels.npy", corrupted_labels)
                self._paths[key] = base
            base = self._paths[key]
            return np.load(base + "_images.npy", mmap_mode="r"), np.load(base + "_labels.npy")

        return load

    def close(self):
        self._folder.cleanup()


class RobustnessStage(Stage):
    """See the module docstring."""

    name = "robustness"
    options_class = RobustnessOptions
    # The tables carry each run's condition columns and mean SI from the runs table.
    requires = ("selectivity",)

    def enabled(self, options):
        return bool(options.robustness.perturbations)

    def check(self, runs, options):
        """The corrupted sets, from their headers, labels and folders: a published set must hold
        the runs' test set (size, image shape) with labels of their classes; a tensorflow-datasets
        one must be prepared."""
        source = options.robustness.corruption_source
        if source is None:
            return
        from tf_selectivity.data.corruptions import check_source

        fits = set()
        for record in runs:
            summary = record.summary
            # The test split's size is known without loading it for the runs' own data.
            test_size = summary.num_test if options.dataset in (None, summary.dataset) else None
            fits.add((tuple(summary.image_shape) if summary.image_shape else None, test_size, summary.num_classes))
        for shape, test_size, num_classes in sorted(fits, key=repr):
            try:
                check_source(source, options.robustness.corruptions, shape, test_size=test_size,
                             num_classes=num_classes, severities=options.robustness.severities,
                             data_dir=options.data_dir)
            except ValueError as error:
                raise ParameterError("robustness.perturbations", f"corruption source: {error}") from None

    def cache_key(self, options):
        key = (settings_key(options.robustness), min(options.batch_size, 256))
        if options.max_test_samples and options.robustness.corruption_source not in (None, "generated"):
            # A published set is read at the analysed images' positions in the test split.
            key += ("split_positions",)
        return key

    def compute(self, run):
        from tf_selectivity.analysis.stages.robustness.evaluate import evaluate_robustness

        options = run.options
        settings = options.robustness
        data = run.subset(settings.max_samples)
        model = run.model
        class_names = None  # runs record none: Tiny ImageNet-C names its classes by its sorted folders
        sets = run.analysis.shared("robustness.corrupted_sets", lambda: CorruptedSets(options))
        robustness, dimensionality = evaluate_robustness(
            model, data.images, data.labels, corruption_source=settings.corruption_source,
            corruptions=settings.corruptions, severities=settings.severities, attacks=settings.attacks,
            epsilons=settings.attack_epsilons, pgd_steps=settings.pgd_steps,
            pgd_step_size=settings.pgd_step_size, pgd_random_start=settings.pgd_random_start,
            seed=settings.attack_seed, batch_size=min(options.batch_size, 256),
            data_dir=options.data_dir, class_names=class_names,
            load_set=sets.loader(data, class_names), verbose=run.analysis.verbose,
        )
        warnings = []
        if settings.max_samples is not None and settings.max_samples > len(run.test_data.labels):
            warnings.append(f"--robustness_max_samples={settings.max_samples} is more than the "
                            f"{len(run.test_data.labels):,} test images of {data.spec}: all of them are perturbed")
        return RunResult(tables={"robustness": robustness, "dimensionality": dimensionality}, warnings=warnings)

    def run_error(self, run, error):
        from tf_selectivity.data.corruptions import CorruptedSetError

        if isinstance(error, (RunLoadError, CorruptedSetError, ParameterError)):
            return f"robustness: {error}"
        return None

    def combine(self, results, context):
        from tf_selectivity.analysis.stages.robustness.claims import claims_table, per_run_summary

        if not results:
            return {}
        robustness = pd.concat([with_condition(r.tables["robustness"], _run_columns(context, run_dir))
                                for run_dir, r in results.items()], ignore_index=True)
        dimensionality = pd.concat([with_condition(r.tables["dimensionality"], _run_columns(context, run_dir))
                                    for run_dir, r in results.items()], ignore_index=True)
        runs = context.tables["selectivity"]["runs"]
        summaries, claims = [], []
        for name, members in _model_groups(runs):
            in_group = robustness["run_dir"].isin(members["run_dir"])
            if not in_group.any():
                continue
            group_dims = dimensionality[dimensionality["run_dir"].isin(members["run_dir"])]
            summary = per_run_summary(robustness[in_group], group_dims, members).assign(group=name)
            summaries.append(summary)
            table = claims_table(summary, n_resamples=context.options.n_resamples).assign(model=name)
            if "condition" in members:
                table = table.assign(condition=members["condition"].iloc[0])
            claims.append(table)
        return self.restore({
            "robustness": robustness,
            "dimensionality": dimensionality,
            "robustness_runs": pd.concat(summaries, ignore_index=True),
            "robustness_claims": pd.concat(claims, ignore_index=True),
        }, context)

    def restore(self, tables, context):
        """The four tables and, per model group, the rows its figures draw (None without the tables)."""
        if any(tables.get(name) is None for name in TABLES):
            return None
        tables = {name: tables[name] for name in TABLES}
        robustness, dimensionality = tables["robustness"], tables["dimensionality"]
        summaries = tables["robustness_runs"]
        groups = []
        for name, members in _model_groups(context.tables["selectivity"]["runs"]):
            in_group = robustness["run_dir"].isin(members["run_dir"])
            if not in_group.any():
                continue
            group_dims = dimensionality[dimensionality["run_dir"].isin(members["run_dir"])]
            summary = summaries[summaries["group"] == name].reset_index(drop=True)
            groups.append((name, robustness[in_group], group_dims, summary))
        return {**tables, "_groups": groups}

    def figures(self, tables, context):
        from tf_selectivity.analysis.stages.robustness.figures import group_figures

        for name, robustness, dimensionality, summary in tables.get("_groups", ()):
            yield from group_figures(name, robustness, dimensionality, summary, context.options.n_resamples)

    def claims(self, tables, context):
        from tf_selectivity.analysis.stages.robustness.claims import as_claims

        if "robustness_claims" not in tables:
            return []
        return as_claims(tables["robustness_claims"], context.options.n_resamples)

    def section(self, tables, context):
        from tf_selectivity.analysis.stages.robustness.section import robustness_section

        if "robustness" not in tables:
            return None
        return robustness_section(tables["robustness"], tables["robustness_runs"], tables["robustness_claims"],
                                  context.options.robustness, _gated_verdicts(context.claims))


def _run_columns(context, run_dir) -> dict:
    """The run's condition columns and mean SI (from the runs table), first in its rows."""
    row = context.run_row(run_dir)
    if row is None:
        return {"run_dir": run_dir}
    return {**context.run_columns(run_dir), "test_mean_selectivity": row.get("test_mean_selectivity", math.nan)}


def _model_groups(runs: pd.DataFrame):
    """(name, runs) per condition: ReLU and leaky-ReLU networks, or networks
    trained otherwise, are not pooled in a claim; a group is named as the model
    alone for ReLU, with its protocol where conditions differ in one
    (`plots.style.condition_protocol`)."""
    from tf_selectivity.plots.style import condition_protocol
    from tf_selectivity.plots.tables import protocol_suffix

    keys = [c for c in ("model", "activation", "leaky_slope", "condition") if c in runs]
    for key, members in runs.groupby(keys, sort=False):
        condition = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        name = str(condition["model"])
        if condition.get("activation", "relu") != "relu":
            name += f"_{condition['activation']}{float(condition.get('leaky_slope', 0)):g}"
        yield name + protocol_suffix(condition_protocol(condition)), members


def _gated_verdicts(claims) -> dict:
    """(condition, claim) -> the verdict its premises allow, from the ``claims`` table (empty without one)."""
    if claims is None or claims.empty:
        return {}
    own = claims[claims["stage"] == RobustnessStage.name]
    return {(row.condition, row.claim): row.verdict for row in own.itertuples()}

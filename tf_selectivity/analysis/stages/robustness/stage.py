"""The analyze command's robustness stage (``--robustness``, issue 18 point 4).

Per run (its Keras model, `runs.load_run_model`): accuracy on every
corruption and severity and their mean, accuracy under FGSM and PGD at every
epsilon, and the dimensionality of every probed layer on each of those
inputs (`analysis.robustness.evaluate_robustness`). Writes the tables
``robustness`` and ``dimensionality`` (each row with the run's condition
columns), ``robustness_runs`` (one row per run) and ``robustness_claims``;
the figures ``figR_robustness_vs_alpha_<model>``,
``figR_robustness_vs_selectivity_<model>`` and
``figR_dimensionality_vs_alpha_<model>``; and the report section that sets
the follow-up paper's claims beside what these runs show.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd

from tf_selectivity.analysis.outputs import write_table
from tf_selectivity.analysis.robustness import claims_table, early_layers, evaluate_robustness, per_run_summary
from tf_selectivity.analysis.runs import CONFIG_COLUMNS, RunLoadError, load_run_model
from tf_selectivity.report.formatting import format_number as _number

__all__ = ["robustness_stage"]

PAPER = ('Leavitt & Morcos, "Linking average- and worst-case perturbation robustness via class selectivity '
         'and dimensionality" (arXiv 2010.07693)')


class _CorruptedSets:
    """Each corrupted set made or read once for all runs on the same test set:
    generated (or decoded) sets are written to a temporary folder and memory-mapped
    (CIFAR-10's 14 x 5 sets are 2.1 GB: not kept in memory)."""

    def __init__(self, options):
        import tempfile

        self.options = options
        self._folder = tempfile.TemporaryDirectory(prefix="tf_selectivity_corruptions_")
        self._paths = {}

    def loader(self, spec, images, labels, class_names, chosen=None):
        """`load_set` for one run: the run's (sub)set of the test images.

        `chosen`: positions of `images` in the full test set (a published
        corrupted set is indexed by them), None for the whole set.
        """
        from tf_selectivity.data.corruptions import load_corrupted

        def load(corruption, severity):
            if self.options.corruption_source.startswith("cifar10c:"):  # memory-mapped already
                return load_corrupted(self.options.corruption_source, corruption, severity, clean_images=images,
                                      indices=chosen, max_samples=len(labels))
            key = (spec, len(labels), corruption, severity)
            if key not in self._paths:
                corrupted, corrupted_labels = load_corrupted(
                    self.options.corruption_source, corruption, severity, clean_images=images, clean_labels=labels,
                    seed=self.options.attack_seed, data_dir=self.options.data_dir, class_names=class_names,
                    # The generated sets corrupt the run's clean images (already the
                    # subset); a published set is indexed by the subset's positions.
                    indices=None if self.options.corruption_source == "generated" else chosen,
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


def _run_columns(context, record) -> dict:
    row = context.runs.loc[context.runs["run_dir"] == record.run_dir]
    if row.empty:
        return {"run_dir": record.run_dir}
    row = row.iloc[0]
    return {"run_dir": record.run_dir, **{c: row[c] for c in CONFIG_COLUMNS if c in row},
            "test_mean_selectivity": row.get("test_mean_selectivity", math.nan)}


def robustness_stage(context):
    """Optional stage of `pipeline.optional_stages`: see the module docstring.

    Returns:
        The report section (Markdown lines), or None when no run could be
        perturbed.
    """
    options = context.options
    attacks = [a for a in options.robustness if a in ("fgsm", "pgd")]
    tables, dims = [], []
    sets = _CorruptedSets(options)
    try:
        _evaluate_runs(context, attacks, sets, tables, dims)
    finally:
        sets.close()
    if not tables:
        return None
    return _write_outputs(context, tables, dims)


def _evaluate_runs(context, attacks, sets, tables, dims):
    from tf_selectivity.data.corruptions import CorruptedSetError
    from tf_selectivity.core.settings import ParameterError

    options = context.options
    for record in context.records:
        try:
            spec, images, labels, _ = context.test_data.for_run(record)
            chosen = None
            if options.robustness_max_samples:
                from tf_selectivity.data.subsets import balanced_subset

                chosen = balanced_subset(labels, options.robustness_max_samples)
                images, labels = images[chosen], labels[chosen]
            model = load_run_model(record)
            if context.verbose:
                print(f"Robustness of {record.run_dir} on {len(labels):,} images", flush=True)
            robustness, dimensionality = evaluate_robustness(
                model, images, labels, corruption_source=options.corruption_source,
                corruptions=options.corruptions, severities=options.severities, attacks=attacks,
                epsilons=options.attack_epsilons, pgd_steps=options.pgd_steps,
                pgd_step_size=options.pgd_step_size, pgd_random_start=options.pgd_random_start,
                seed=options.attack_seed, batch_size=min(options.batch_size, 256),
                data_dir=options.data_dir, class_names=None,
                load_set=sets.loader(spec, images, labels, None, chosen),
            )
        except (RunLoadError, CorruptedSetError, ParameterError) as error:
            context.errors.append((record.run_dir, f"robustness: {error}"))
            continue
        columns = _run_columns(context, record)
        tables.append(robustness.assign(**columns))
        dims.append(dimensionality.assign(**columns))


def _write_outputs(context, tables, dims):
    options = context.options
    first = list(_run_columns(context, context.records[0]))
    robustness = pd.concat(tables, ignore_index=True)
    robustness = robustness[first + [c for c in robustness.columns if c not in first]]
    dimensionality = pd.concat(dims, ignore_index=True)
    dimensionality = dimensionality[first + [c for c in dimensionality.columns if c not in first]]
    write_table(robustness, context.staging, "robustness")
    write_table(dimensionality, context.staging, "dimensionality")

    summaries, claims = [], []
    # One group per model and activation (ReLU and leaky-ReLU networks are
    # not pooled in a claim), named as the model alone for ReLU.
    keys = [c for c in ("model", "activation", "leaky_slope") if c in context.runs]
    for key, runs in context.runs.groupby(keys, sort=False):
        condition = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        name = str(condition["model"])
        if condition.get("activation", "relu") != "relu":
            name += f"_{condition['activation']}{float(condition.get('leaky_slope', 0)):g}"
        in_group = robustness["run_dir"].isin(runs["run_dir"])
        if not in_group.any():
            continue
        group_dims = dimensionality[dimensionality["run_dir"].isin(runs["run_dir"])]
        summary = per_run_summary(robustness[in_group], group_dims, runs).assign(group=name)
        summaries.append(summary)
        claims.append(claims_table(summary, n_resamples=options.n_resamples).assign(model=name))
        if options.figures:
            _figures(context, name, robustness[in_group], group_dims, summary, options.n_resamples)
    summary = pd.concat(summaries, ignore_index=True)
    claims = pd.concat(claims, ignore_index=True)
    write_table(summary, context.staging, "robustness_runs")
    write_table(claims, context.staging, "robustness_claims")
    return _section(robustness, summary, claims, options)


def _figures(context, model_name, robustness, dimensionality, summary, n_resamples):
    from tf_selectivity.plots import robustness as plots
    from tf_selectivity.plots.style import file_safe, save_figure

    figures_dir = os.path.join(context.staging, "figures")
    drawn = {
        "figR_robustness_vs_alpha": plots.robustness_vs_alpha(robustness, n_resamples=n_resamples),
        "figR_robustness_vs_selectivity": plots.robustness_vs_selectivity(summary),
        "figR_dimensionality_vs_alpha": plots.dimensionality_vs_alpha(
            dimensionality, early_layers(dimensionality), n_resamples=n_resamples),
    }
    for name, figure in drawn.items():
        if figure is not None:
            full = f"{name}_{file_safe(model_name)}"
            context.figures[full] = save_figure(figure, os.path.join(figures_dir, full))


def _section(robustness, summary, claims, options) -> list:
    from tf_selectivity.measures.stats import format_p_value

    source = options.corruption_source
    lines = [
        "## Robustness: corruptions, attacks and dimensionality",
        "",
        f"The claims of {PAPER}, tested on these runs. Inputs: "
        + ", ".join(filter(None, [
            f"corruptions from `{source}` at severities {', '.join(map(str, options.severities))}" if source else "",
            *(f"{a.upper()} (L-inf) at epsilon {', '.join(f'{e:g}' for e in options.attack_epsilons)}/255"
              for a in options.robustness if a in ("fgsm", "pgd")),
        ]))
        + (f"; PGD: {options.pgd_steps} steps, {'random start' if options.pgd_random_start else 'no random start'}"
           if "pgd" in options.robustness else "")
        + f"; {int(robustness['num_samples'].iloc[0]):,} test images per run.",
        "",
        "Tables: `robustness.csv` (accuracy per run and input kind; name `mean`: the mean corruption accuracy), "
        "`dimensionality.csv` (participation ratio and components for 90/95% of the variance per layer and input "
        "kind, with the change from clean), `robustness_runs.csv`, `robustness_claims.csv`.",
        "",
        "| model | claim | test | rho / difference [95% CI] | p | n | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in claims.itertuples():
        p = "n/a" if not np.isfinite(row.p) else format_p_value(row.p)
        lines.append(f"| {row.model} | {row.claim} | {row.test} | {_number(row.statistic)} "
                     f"[{_number(row.low)}, {_number(row.high)}] | {p} | {row.n} | {row.verdict} |")
    lines += [
        "",
        "Verdicts follow from the numbers (never edited by hand): *supported* when p < 0.05 and the CI excludes 0 "
        "on the claimed side, *contradicted* on the other, *not shown* otherwise. rho: Spearman over networks, "
        "permutation p (exact for n <= 8), bootstrapped 95% CI; difference: paired t-test, bootstrapped CI. "
        "Early layers: the first third of the probed layers; dimensionality is that of the spatially averaged "
        "unit responses (one value per channel).",
        "",
        "| model | alpha | networks | clean accuracy | mean corruption accuracy | FGSM accuracy | PGD accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for (model, alpha), group in summary.groupby(["group", "alpha"]):
        lines.append(
            f"| {model} | {alpha:g} | {len(group)} | {_number(group['clean_accuracy'].mean())} | "
            f"{_number(group['mean_corruption_accuracy'].mean())} | {_number(group['fgsm_accuracy'].mean())} | "
            f"{_number(group['pgd_accuracy'].mean())} |")
    lines.append("")
    return lines

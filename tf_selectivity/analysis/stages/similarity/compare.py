"""Which runs are compared, and the comparisons: Figure 3's distances and the layer-by-layer maps.

Runs are grouped per condition (`cca_groups`: model, activation, leaky slope
and every other training setting but alpha and seed, `report.condition_names`):
the baseline runs (alpha = 0) against each treated alpha with >= 2 replicates.
Each run's responses are read from the files the selectivity stage's pass
wrote (``response_dirs[run_dir]/<layer>.npy``).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import pandas as pd

from tf_selectivity.analysis.runs import RunRecord
from tf_selectivity.core.progress import Progress

__all__ = ["BASELINE_ALPHA", "cca_groups", "comparison_key", "run_cca", "run_similarity_maps"]

# The unregularized runs every treated alpha is compared with: alpha = 0 by
# the loss's definition (loss = CE - alpha * mean SI).
BASELINE_ALPHA = 0.0


def comparison_key(record: RunRecord, options) -> tuple:
    """The condition `record` is compared within: (model, activation, leaky slope, the
    rest of its training settings but those ``options.pool_over`` pools)."""
    from tf_selectivity.report.condition_names import condition_identity

    s = record.summary
    protocol = tuple(condition_identity(record.identity(), options.pool_over).values())
    return s.model, s.activation, s.leaky_slope, protocol


def cca_groups(records: Sequence[RunRecord], options, errors: list):
    """(group key, baseline runs, {alpha: treated runs}) per condition (`comparison_key`)."""
    groups = {}
    for record in records:
        groups.setdefault(comparison_key(record, options), []).append(record)
    for key, members in groups.items():
        architecture = members[0].architecture()
        same = [r for r in members if r.architecture() == architecture]
        for record in members:
            if record.architecture() != architecture:
                errors.append((record.run_dir, f"left out of the CCA of {key[0]}: its layers differ from {members[0].run_dir}"))
        baseline = [r for r in same if r.summary.alpha == BASELINE_ALPHA]
        treated = {}
        for record in same:
            alpha = record.summary.alpha
            if alpha == BASELINE_ALPHA:
                continue
            if options.similarity.alphas is not None and not any(np.isclose(alpha, a) for a in options.similarity.alphas):
                continue
            treated.setdefault(alpha, []).append(record)
        treated = {a: runs for a, runs in sorted(treated.items()) if len(runs) >= 2}
        if baseline and treated:
            yield key, baseline, treated


def run_cca(records, options, response_dirs, errors, verbose, names=None):
    """Figure 3's tables (distances, ratios, tests) of every group (`cca_groups`), or (None, None, None).

    `names` (run directory -> condition name) gives the rows their ``condition`` column.
    """
    from tf_selectivity.measures import stats
    from tf_selectivity.analysis.stages.similarity.distances import distance_ratios, figure3_distances

    groups = list(cca_groups(records, options, errors))
    if not groups:
        if options.similarity.enabled == "true":
            errors.append(("CCA", f"needs runs at alpha={BASELINE_ALPHA} and >= 2 replicates at another alpha of the same model"))
        return None, None, None
    distances, ratios = [], []
    for (model, activation, slope, _), baseline, treated in groups:
        layers = baseline[0].probe_names
        named = {"condition": names[baseline[0].run_dir]} if names else {}
        label = named.get("condition") or f"{model} {activation}"
        for alpha, runs in treated.items():
            # One pass over the responses for every measure.
            methods = options.similarity.measures
            description = (f"Similarity ({', '.join(methods)}) {label}: "
                           f"alpha={alpha:g} ({len(runs)} runs) vs alpha={BASELINE_ALPHA:g} ({len(baseline)} runs)")

            def load(run_dir, layer):
                return np.load(os.path.join(response_dirs[run_dir], f"{layer}.npy"))

            try:
                with Progress(description, unit="comparison", enabled=bool(verbose)) as bar:
                    frame = figure3_distances(
                        [r.run_dir for r in runs],
                        [r.run_dir for r in baseline],
                        layers,
                        load,
                        method=methods,
                        pwcca_variant=options.similarity.pwcca_variant,
                        procrustes_alpha=options.similarity.procrustes_alpha,
                        progress=bar.update_to,
                        run_seeds=None if options.similarity.same_seed_pairs else {
                            r.run_dir: r.summary.seed for r in [*runs, *baseline]
                        },
                    )
            except ValueError as error:  # e.g. no pair of different seeds, unusable activations
                errors.append((f"CCA of {label} alpha={alpha:g}", str(error)))
                continue
            # One frame holds every measure (and, with
            # --cca_pwcca_variant=both, both PWCCA variants).
            for (method, variant), part in frame.groupby(["method", "pwcca_variant"], sort=False):
                context = {"model": model, "activation": activation, "leaky_slope": slope, **named, "alpha": alpha,
                           "method": method, "pwcca_variant": variant}
                distances.append(part.assign(**context))
                ratios.append(distance_ratios(part).assign(**context))
    if not distances:
        return None, None, None
    ratios = pd.concat(ratios, ignore_index=True)
    # The same function gives the report's and Figure 3b's numbers: one
    # paired t-test per condition and alpha, Bonferroni over its alphas.
    tests = stats.cca_ratio_summary(ratios, n_resamples=options.n_resamples)
    return pd.concat(distances, ignore_index=True), ratios, tests


def run_similarity_maps(records, options, response_dirs, errors, names=None, verbose=0):
    """The `similarity_maps` table: per condition and treated alpha, the layer
    map of one within-alpha and one to-baseline pair (or None). `names` (run
    directory -> condition name) gives the rows their ``condition`` column;
    `verbose` 1 shows the progress of each alpha's pairs."""
    from tf_selectivity.analysis.stages.similarity.maps import map_pairs, map_table

    def load(run_dir, layer):
        return np.load(os.path.join(response_dirs[run_dir], f"{layer}.npy"))

    tables = []
    for (model, activation, slope, _), baseline, treated in cca_groups(records, options, []):
        layers = baseline[0].probe_names
        named = {"condition": names[baseline[0].run_dir]} if names else {}
        label = named.get("condition") or f"{model} {activation}"
        for alpha, runs in treated.items():
            seeds = None if options.similarity.same_seed_pairs else {
                r.run_dir: r.summary.seed for r in [*runs, *baseline]}
            pairs = map_pairs([r.run_dir for r in runs], [r.run_dir for r in baseline], seeds)
            description = f"Similarity maps ({options.similarity.map_measure}) {label}: alpha={alpha:g}"
            try:
                with Progress(description, len(pairs), unit="pair", enabled=bool(verbose)) as bar:
                    table = map_table(pairs, layers, load, options.similarity.map_measure, progress=bar.update)
            except ValueError as error:
                errors.append((f"Similarity maps of {label} alpha={alpha:g}", str(error)))
                continue
            tables.append(table.assign(model=model, activation=activation, leaky_slope=slope, **named, alpha=alpha))
    if not tables:
        return None
    return pd.concat(tables, ignore_index=True)

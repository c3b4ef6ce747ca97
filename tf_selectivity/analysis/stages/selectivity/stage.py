"""The selectivity stage: every run's test-set accuracy, SI, precision and dead units, and the null.

Per run, one streaming pass over the test set (`evaluate.evaluate_run`):
the run's row of the ``runs`` table, its rows of ``layers`` and ``units``,
and with ``selectivity.null_permutations=B`` every unit's
label-permutation null (p-values; q-values and the selective units are
added across the run's units when combining, so that changing the FDR
settings reuses the cached null). When the similarity stage runs, the same
pass writes every unit's responses into the run's cache entry
(``responses/<layer>.npy``), which that stage compares.

Essential: a run this stage cannot evaluate is left out of the analysis.
Its figures are the paper's (`figures.iter_figures`, captioned by
`captions.FIGURE_CAPTIONS`; Figure 3 and the similarity maps are the
similarity stage's), its headlines and section the per-condition effects
of alpha against alpha = 0 (`section.condition_sections`: `effects`,
`promote_vs_suppress`).

    options.py              the stage's settings (precision N, the null, FDR)
    evaluate.py             the per-run streaming pass over the test set
    null.py                 the label-permutation null's columns; `selectivity_null` for a model in memory
    effects.py              per-alpha summary, tests against alpha = 0, their table and sentences
    promote_vs_suppress.py  rank-sum sentence and table (Figure 5)
    section.py              headline sentences per condition, the "Summary per α" section
    figures/                the paper's figures, one module per family
    captions.py             the figures' captions in the report
"""

from __future__ import annotations

import os

import pandas as pd

from tf_selectivity.analysis.runs import RunLoadError, error_for
from tf_selectivity.analysis.stage import RunResult, Stage
from tf_selectivity.analysis.stages.selectivity.captions import FIGURE_CAPTIONS
from tf_selectivity.analysis.stages.selectivity.options import SelectivityOptions

__all__ = ["SelectivityStage", "RESPONSES"]

# The folder of a cache entry holding the run's unit responses for the similarity stage.
RESPONSES = "responses"


class SelectivityStage(Stage):
    """See the module docstring."""

    name = "selectivity"
    options_class = SelectivityOptions
    essential = True
    captions = FIGURE_CAPTIONS

    def cache_key(self, options):
        settings, similarity = options.selectivity, options.similarity
        key = (settings.precision_top_n, similarity.spatial, similarity.max_datapoints, options.selectivity_index)
        if settings.null_permutations:
            key += (settings.null_permutations, settings.null_seed)
        return key

    @staticmethod
    def writes_responses(run) -> bool:
        """Whether this analysis compares the runs' responses (the similarity stage runs)."""
        return "similarity" in run.analysis.active

    def compute(self, run):
        from tf_selectivity.analysis.stages.selectivity.evaluate import (
            evaluate_run,
            write_position_responses,
        )

        from tf_selectivity.analysis.nonfinite import WatchedResponses, weights_warning

        options = run.options
        data = run.test_data
        respond = WatchedResponses(run.response_function())
        response_dir = os.path.join(run.directory, RESPONSES) if self.writes_responses(run) else None
        # Averaged responses come with the streaming pass; CCA with positions
        # as datapoints needs the feature maps.
        positions = response_dir is not None and options.similarity.spatial == "positions"
        run_row, layers, units = evaluate_run(
            run.record, data.images, data.labels, data.num_classes,
            batch_size=options.batch_size,
            precision_top_n=options.selectivity.precision_top_n,
            selectivity_index=options.selectivity_index,
            selectivity_null=options.selectivity.null_permutations,
            selectivity_null_seed=options.selectivity.null_seed,
            response_dir=None if positions else response_dir,
            verbose=run.analysis.verbose,
            respond=respond,
        )
        if positions:
            write_position_responses(run.record, data.images, options.batch_size,
                                     options.similarity.max_datapoints, response_dir, verbose=run.analysis.verbose)
        run_row["dataset"] = data.spec
        warnings = [weights_warning(run.record), respond.warning(run.run_dir), *_capped(options, data, run_row)]
        return RunResult(tables={"units": units}, values={"run": run_row, "layers": layers},
                         warnings=[message for message in warnings if message])

    def accepts(self, cached, run):
        """A result without responses does not serve an analysis that compares them."""
        if not self.writes_responses(run):
            return True
        folder = os.path.join(cached.directory, RESPONSES)
        return all(os.path.exists(os.path.join(folder, f"{name}.npy")) for name in run.record.probe_names)

    def run_error(self, run, error):
        if isinstance(error, (RunLoadError, OSError, ValueError, KeyError)):
            return error_for(run.run_dir, error)
        if isinstance(error, Exception):  # a broken model must not stop the others
            return f"{type(error).__name__}: {error}"
        return None

    def combine(self, results, context):
        from tf_selectivity.analysis.stages.selectivity.evaluate import LAYER_COLUMNS, RUN_COLUMNS
        from tf_selectivity.analysis.stages.selectivity.null import NULL_LAYER_COLUMNS, NULL_RUN_COLUMNS, add_fdr

        settings = context.options.selectivity
        run_rows, layer_rows, unit_frames = [], [], []
        for result in results.values():
            run_row, layers, units = result.values["run"], result.values["layers"], result.tables["units"]
            if settings.null_permutations:
                run_row, layers, units = add_fdr(
                    run_row, layers, units, num_permutations=settings.null_permutations,
                    fdr=settings.fdr, method=settings.fdr_method,
                )
            run_rows.append(run_row)
            layer_rows.extend(layers)
            unit_frames.append(units)
        run_columns, layer_columns = list(RUN_COLUMNS), list(LAYER_COLUMNS)
        if settings.null_permutations:
            run_columns += NULL_RUN_COLUMNS
            layer_columns += NULL_LAYER_COLUMNS
        return self.restore({
            "runs": context.with_condition_names(pd.DataFrame(run_rows, columns=run_columns), share_baselines=True),
            "layers": context.with_condition_names(pd.DataFrame(layer_rows, columns=layer_columns),
                                                   share_baselines=True),
            "units": context.with_condition_names(pd.concat(unit_frames, ignore_index=True)),
        }, context)

    def restore(self, tables, context):
        """``runs``, ``layers`` and ``units`` (those present), and the report's per-condition parts."""
        from tf_selectivity.analysis.stages.selectivity.section import condition_sections

        if tables.get("runs") is None:
            return None
        own = {name: tables[name] for name in ("runs", "layers", "units") if tables.get(name) is not None}
        # (condition, headline sentences, summary block) of the report, per condition.
        return {**own, "_conditions": condition_sections(own["runs"], context.options.n_resamples)}

    def figures(self, tables, context):
        from tf_selectivity.analysis.stages.selectivity.figures import iter_figures

        return iter_figures(tables["runs"], tables.get("layers"), n_resamples=context.options.n_resamples)

    def headlines(self, tables, context):
        return [(condition, sentences) for condition, sentences, *_ in tables["_conditions"]]

    def section(self, tables, context):
        from tf_selectivity.analysis.stages.selectivity.section import summary_section

        return summary_section([line for _, _, block, *_ in tables["_conditions"] for line in block])

    def claims(self, tables, context):
        from tf_selectivity.analysis.stages.selectivity.claims import selectivity_claims

        return selectivity_claims(tables["_conditions"], tables["runs"], context.options)

    def premises(self, tables, context):
        """`BASELINE` per condition: it has alpha = 0 runs."""
        from tf_selectivity.analysis.claims import BASELINE, Premise
        from tf_selectivity.report.conditions import condition_title, has_baseline

        return [Premise(BASELINE, condition_title(condition), has_baseline(runs),
                        "" if has_baseline(runs) else "no α = 0 networks")
                for condition, runs in _split(tables["runs"])]


def _split(runs):
    """`runs` per condition (`stats.split_by_condition`), alpha as floats."""
    from tf_selectivity.measures import stats

    return stats.split_by_condition(runs.assign(alpha=runs["alpha"].astype(float)))


def _capped(options, data, run_row) -> list:
    """Requests this test set cannot meet in full, each said once (the same words for every run)."""
    messages = []
    if options.max_test_samples and options.max_test_samples > len(data.labels):
        messages.append(f"--max_test_samples={options.max_test_samples} is more than the {len(data.labels):,} "
                        f"test images of {data.spec}: all of them are analysed")
    asked = options.selectivity.precision_top_n
    if asked != SelectivityOptions().precision_top_n and run_row["precision_top_n"] < asked:
        messages.append(f"--precision_top_n={asked} is more than the test images per class: precision is over the "
                        f"top {run_row['precision_top_n']:,} images of {data.spec}")
    return messages

"""The similarity stage: Figure 3 (CCA and the other measures) and the layer-by-layer maps.

Compares the responses of every treated run with the baseline runs and with
its replicates (`compare.run_cca`, `distances`), under every measure of
``similarity.measures``, and with ``similarity.maps`` each layer with each
layer for one pair per treated alpha (`compare.run_similarity_maps`,
`maps`). The responses come from the selectivity stage's pass (written into
its cache entries while this stage runs, see BUILD_NOTES' *Analysis
stages*), so this stage has no per-run work of its own.

Tables ``cca_distances``, ``cca_ratios``, ``cca_tests`` and
``similarity_maps``; Figure 3 of each model, once per measure, and the maps
(`figures`, captioned by `captions.FIGURE_CAPTIONS`); the report's CCA
sentence per condition (among the headline results) and its CCA section
(`section`). Figures and report show one method and one PWCCA variant
(``_cca_shown``). `restore` rebuilds all of it from the written tables, so
`combine` ends in it and a redraw gives the same figures and report.
"""

from __future__ import annotations

import os

from tf_selectivity.analysis.stage import Stage, StageSkipped
from tf_selectivity.analysis.stages.similarity.captions import FIGURE_CAPTIONS
from tf_selectivity.analysis.stages.similarity.options import SimilarityOptions
from tf_selectivity.core.settings import ParameterError

__all__ = ["SimilarityStage"]


class SimilarityStage(Stage):
    """See the module docstring."""

    name = "similarity"
    options_class = SimilarityOptions
    requires = ("selectivity",)
    captions = FIGURE_CAPTIONS

    def enabled(self, options):
        return options.similarity.enabled != "false"

    def check(self, runs, options):
        """Refused (``--cca=true``) or skipped (``auto``) when no condition can be compared."""
        from tf_selectivity.analysis.stages.similarity.coverage import coverage

        found = coverage(runs, options)
        if found.unknown_alphas and len(found.unknown_alphas) == len(options.similarity.alphas):
            raise ParameterError(
                "similarity.alphas",
                f"names alphas no run has: {', '.join(f'{a:g}' for a in found.unknown_alphas)} (the runs: "
                f"{'; '.join(found.runs_by_condition)})")
        if found.comparable:
            return
        if options.similarity.enabled == "true":
            raise ParameterError(
                "similarity.enabled",
                f"needs, for one model at least, runs at alpha = 0 and >= 2 replicates at another alpha (Figure 3 "
                f"compares them); the runs given: {'; '.join(found.runs_by_condition)}")
        raise StageSkipped("no model has alpha = 0 runs and >= 2 replicates at another alpha")

    def combine(self, results, context):
        from tf_selectivity.analysis.stages.selectivity.stage import RESPONSES
        from tf_selectivity.analysis.stages.similarity.compare import run_cca, run_similarity_maps

        options = context.options
        response_dirs = {run_dir: os.path.join(result.directory, RESPONSES)
                         for run_dir, result in context.results.get("selectivity", {}).items()}
        errors = []
        names = context.conditions.of if context.conditions is not None else None
        cca, cca_ratio, cca_tests = run_cca(context.records, options, response_dirs, errors, context.verbose, names)
        maps = None
        if options.similarity.maps:
            maps = run_similarity_maps(context.records, options, response_dirs, errors, names, context.verbose)
        for path, message in errors:
            context.add_error(path, message)
        from tf_selectivity.analysis.stages.similarity.coverage import coverage

        for message in coverage(context.records, options).left_out:
            context.add_warning(message)
        tables = {}
        if cca is not None:
            tables.update(cca_distances=cca, cca_ratios=cca_ratio, cca_tests=cca_tests)
        if maps is not None:
            tables["similarity_maps"] = maps
        return self.restore(tables, context) or {}

    def restore(self, tables, context):
        """The CCA tables and maps (those present), and the rows and report parts of the measure shown."""
        from tf_selectivity.analysis.stages.similarity.section import report_parts

        tables = {name: tables[name] for name in ("cca_distances", "cca_ratios", "cca_tests", "similarity_maps")
                  if tables.get(name) is not None}
        if not tables:
            return None
        cca, cca_ratio = tables.get("cca_distances"), tables.get("cca_ratios")
        if cca is not None or cca_ratio is not None:
            # Figures and report show one CCA method (PWCCA, the paper's, if
            # computed) and one PWCCA variant (google/svcca's, the paper's,
            # unless only the textbook one was computed).
            options = context.options
            measures = options.similarity.measures
            method = "pwcca" if "pwcca" in measures else measures[0]
            variant = ""
            if method == "pwcca":
                variant = "textbook" if options.similarity.pwcca_variant == "textbook" else "svcca"
            shown = _rows_of(cca, method, variant)
            tables["_cca_shown"] = shown
            tables["_cca_ratio_shown"] = _rows_of(cca_ratio, method, variant)
            # Figure 3 once more for each other measure (fig3_<measure>_<model>).
            tables["_other_measures"] = {
                measure: (_rows_of(cca, measure), _rows_of(cca_ratio, measure))
                for measure in measures if measure not in ("pwcca", method)
            }
            # The report's CCA section shows one measure (`section._one_method`'s
            # rule), and beside it the ratio under every measure.
            tables["_report"] = report_parts(shown, cca_ratio, options.n_resamples)
        return tables

    def figures(self, tables, context):
        from tf_selectivity.analysis.stages.similarity.figures import similarity_figures

        return similarity_figures(
            tables.get("_cca_shown"), tables.get("_cca_ratio_shown"), tables.get("_other_measures"),
            tables.get("similarity_maps"), n_resamples=context.options.n_resamples,
        )

    def headlines(self, tables, context):
        headlines, _ = tables.get("_report", ([], None))
        return headlines

    def claims(self, tables, context):
        from tf_selectivity.analysis.stages.similarity.claims import similarity_claims

        return similarity_claims(tables.get("cca_tests"))

    def section(self, tables, context):
        _, section = tables.get("_report", ([], None))
        return section


def _rows_of(frame, method, variant=None):
    """`frame`'s rows of one method (and PWCCA variant); None without `frame`.

    A table written before a column existed holds one method (or variant)
    and is kept whole.
    """
    if frame is None:
        return None
    chosen = frame["method"] == method if "method" in frame else True
    if variant is not None and "pwcca_variant" in frame:
        chosen = chosen & (frame["pwcca_variant"] == variant)
    return frame if chosen is True else frame.loc[chosen]

"""The similarity stage's figures, by file name: Figure 3 of each model (once per measure) and its maps.

Per model, in this order: ``fig3_cca_<model>`` (the measure the report
states, `figure3.plot_cca`), ``fig3_<measure>_<model>`` for each further
measure of ``--similarity``, and ``figS_similarity_maps_<model>``
(`map_figure.plot_similarity_maps`, with ``--similarity_maps``).
"""

from __future__ import annotations

import functools
from typing import Callable, Iterator, Mapping

import pandas as pd
from matplotlib.figure import Figure

from tf_selectivity.analysis.stages.similarity import figure3, map_figure
from tf_selectivity.plots.drawing import drawn_figures
from tf_selectivity.plots.style import DEFAULT_N_RESAMPLES, file_safe

__all__ = ["similarity_figures"]


def _models(*tables: pd.DataFrame | None) -> list[str]:
    """The models of `tables`, sorted as the paper's figures sort them."""
    models = set()
    for table in tables:
        if table is not None and not table.empty:
            models.update(table["model"].astype(str).unique())
    return sorted(models)


def similarity_figures(
    cca: pd.DataFrame | None,
    cca_ratio: pd.DataFrame | None,
    other_measures: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]] | None = None,
    similarity_maps: pd.DataFrame | None = None,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    raise_errors: bool = False,
) -> Iterator[tuple[str, Figure]]:
    """Yields ``(name, figure)`` for every figure the tables allow, model by model.

    Figures whose inputs are missing are skipped; one that fails for another
    reason is reported with a `RuntimeWarning` and skipped (or raised with
    `raise_errors`), so that one bad figure does not cost the others.

    Args:
        cca: The pairwise distances of the measure the report states (one
            method and PWCCA variant), or None.
        cca_ratio: Its ratios per layer (derived from `cca` when None).
        other_measures: ``{measure: (distances, ratios)}`` of the further
            measures of ``--similarity``: each gets its own Figure 3,
            ``fig3_<measure>_<model>``.
        similarity_maps: The `similarity_maps` table, or None.
        n_resamples: Bootstrap resamples per confidence interval.
        raise_errors: Raise instead of warning when a figure fails.
    """
    other_measures = other_measures or {}
    models = _models(cca, cca_ratio, similarity_maps,
                     *(table for tables in other_measures.values() for table in tables))
    builders: dict[str, Callable[[], Figure | None]] = {}
    for model in models:
        suffix = file_safe(model)
        builders[f"fig3_cca_{suffix}"] = functools.partial(
            figure3.plot_cca, cca, cca_ratio, model, n_resamples=n_resamples)
        for measure, (measure_cca, measure_ratio) in other_measures.items():
            builders[f"fig3_{file_safe(measure)}_{suffix}"] = functools.partial(
                figure3.plot_cca, measure_cca, measure_ratio, model, method=measure, n_resamples=n_resamples)
        if similarity_maps is not None and not similarity_maps.empty:
            builders[f"figS_similarity_maps_{suffix}"] = functools.partial(
                map_figure.plot_similarity_maps, similarity_maps, model)
    yield from drawn_figures(builders, raise_errors)

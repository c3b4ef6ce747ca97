"""Every figure by file name; `iter_figures` draws them, `draw_all` draws and saves them.

`_figure_builders` is the list of the paper's per-model figures: its keys
are the file stems (`fig1_selectivity_<model>`, ...), each value builds one
figure with the function of its family module. Builders look their function
up on the family module at call time, so a replaced function (e.g. in a
test) is the one drawn. Figure 3 and the similarity maps are the similarity
stage's (`analysis.stages.similarity.figures`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pandas as pd
from matplotlib.figure import Figure

from tf_selectivity.plots import (
    accuracy,
    comparison,
    dead_units,
    leaky_relu,
    precision,
    selectivity,
)
from tf_selectivity.plots.style import (
    DEFAULT_DPI,
    DEFAULT_FORMATS,
    DEFAULT_N_RESAMPLES,
    file_safe,
    save_figure,
)


def _figure_builders(
    runs: pd.DataFrame,
    layers: pd.DataFrame,
    model: str,
    n_resamples: int,
) -> dict[str, Callable[[], Figure | None]]:
    """Name -> zero-argument builder for every per-model figure."""
    suffix = file_safe(model)
    kwargs = {"n_resamples": n_resamples}
    return {
        f"fig1_selectivity_{suffix}": lambda: selectivity.plot_selectivity(runs, layers, model, "suppress", **kwargs),
        f"figA1_selectivity_promote_{suffix}": lambda: selectivity.plot_selectivity(runs, layers, model, "promote", **kwargs),
        f"fig2_accuracy_suppress_{suffix}": lambda: accuracy.plot_accuracy(runs, model, "suppress", **kwargs),
        f"fig4_accuracy_promote_{suffix}": lambda: accuracy.plot_accuracy(runs, model, "promote", **kwargs),
        f"fig5_promote_vs_suppress_{suffix}": lambda: comparison.plot_promote_vs_suppress(runs, model, **kwargs),
        f"figA7_precision_suppress_{suffix}": lambda: precision.plot_precision(runs, layers, model, "suppress", **kwargs),
        f"figA8_precision_promote_{suffix}": lambda: precision.plot_precision(runs, layers, model, "promote", **kwargs),
        f"figA9_dead_units_{suffix}": lambda: dead_units.plot_dead_units(runs, layers, model, **kwargs),
        f"figA10_leaky_relu_{suffix}": lambda: leaky_relu.plot_leaky_relu(runs, model, **kwargs),
    }


def iter_figures(
    runs: pd.DataFrame,
    layers: pd.DataFrame,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    raise_errors: bool = False,
) -> Iterator[tuple[str, Figure]]:
    """Yields ``(name, figure)`` for every figure the tables allow, one set per model, in `draw_all`'s order.

    Figures whose inputs are missing are skipped; one that fails for another
    reason is reported with a `RuntimeWarning` and skipped (or raised with
    `raise_errors`). The arguments are `draw_all`'s.
    """
    models = sorted(runs["model"].astype(str).unique()) if runs is not None and not runs.empty else []
    builders: dict[str, Callable[[], Figure | None]] = {}
    for model in models:
        builders.update(_figure_builders(runs, layers, model, n_resamples))
    builders["figA12_model_comparison"] = lambda: comparison.plot_model_comparison(runs, n_resamples=n_resamples)

    for name, build in builders.items():
        try:
            figure = build()
        except Exception as error:  # noqa: BLE001 - reported, see docstring.
            if raise_errors:
                raise
            warnings.warn(f"Figure {name} could not be drawn: {error!r}", RuntimeWarning)
            continue
        if figure is not None:
            yield name, figure


def draw_all(
    runs: pd.DataFrame,
    layers: pd.DataFrame,
    output_dir: str | Path = ".",
    formats: Sequence[str] = DEFAULT_FORMATS,
    dpi: int = DEFAULT_DPI,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    raise_errors: bool = False,
) -> dict[str, list[str]]:
    """Draws and saves every figure the tables allow, one set per model.

    Figures whose inputs are missing (no positive alphas, no leaky-ReLU
    runs, ...) are skipped. A figure that fails for another
    reason is reported with a `RuntimeWarning` and skipped too, so that one
    bad figure does not cost the others after a long sweep (set
    `raise_errors=True` to raise instead).

    Args:
        runs: The `runs` table.
        layers: The `layers` table.
        output_dir: Folder for the figure files (created if needed).
        formats: File formats written per figure.
        dpi: Resolution of raster formats.
        n_resamples: Bootstrap resamples per confidence interval.
        raise_errors: Raise instead of warning when a figure fails.

    Returns:
        Dict from figure name (file stem, e.g. "fig1_selectivity_resnet20")
        to the written paths, in drawing order.
    """
    output_dir = Path(output_dir)
    written: dict[str, list[str]] = {}
    figures = iter_figures(runs, layers, n_resamples=n_resamples, raise_errors=raise_errors)
    for name, figure in figures:
        try:
            written[name] = save_figure(figure, output_dir / name, formats, dpi)
        except Exception as error:  # noqa: BLE001 - reported, see docstring.
            if raise_errors:
                raise
            warnings.warn(f"Figure {name} could not be drawn: {error!r}", RuntimeWarning)
    return written

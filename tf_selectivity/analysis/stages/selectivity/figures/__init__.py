"""The selectivity stage's figures: the paper's, drawn from the runs and layers tables.

One module per figure family; `iter_figures` draws every figure the tables
allow, by file name (the stage's `figures`):

    selectivity.py   Figures 1, A1     class selectivity per layer and vs alpha
    accuracy.py      Figures 2, 4      test accuracy vs alpha and vs selectivity
    comparison.py    Figures 5, A6, A11, A12  promoting vs suppressing; models side by side
    precision.py     Figures A7, A8    the precision metric (Appendix A.5)
    dead_units.py    Figure A9         dead units and the selectivity of live units
    leaky_relu.py    Figure A10        leaky-ReLU networks

Each function takes the plain tables and returns a
`matplotlib.figure.Figure`, or None when the tables hold nothing to draw it
from (no positive alphas, no leaky-ReLU runs, ...). Drawing follows the
conventions of `tf_selectivity.plots`, whose primitives it uses; nothing
here imports Keras.

`_figure_builders` is the list of the paper's per-model figures: its keys
are the file stems (`fig1_selectivity_<model>`, ...), each value builds one
figure with the function of its family module. Builders look their function
up on the family module at call time, so a replaced function (e.g. in a
test) is the one drawn. Figure 3 and the similarity maps are the similarity
stage's (`analysis.stages.similarity.figures`).
"""

from __future__ import annotations

from typing import Callable, Iterator

import pandas as pd
from matplotlib.figure import Figure

from tf_selectivity.analysis.stages.selectivity.figures import (
    accuracy,
    comparison,
    dead_units,
    leaky_relu,
    precision,
    selectivity,
)
from tf_selectivity.analysis.stages.selectivity.figures.accuracy import plot_accuracy
from tf_selectivity.analysis.stages.selectivity.figures.comparison import (
    plot_model_comparison,
    plot_promote_vs_suppress,
)
from tf_selectivity.analysis.stages.selectivity.figures.dead_units import plot_dead_units
from tf_selectivity.analysis.stages.selectivity.figures.leaky_relu import DEFAULT_LEAKY_SLOPE, plot_leaky_relu
from tf_selectivity.analysis.stages.selectivity.figures.precision import plot_precision
from tf_selectivity.analysis.stages.selectivity.figures.selectivity import plot_selectivity
from tf_selectivity.plots.drawing import drawn_figures
from tf_selectivity.plots.style import DEFAULT_N_RESAMPLES, file_safe
from tf_selectivity.plots.tables import protocol_suffix, split_by_protocol

__all__ = [
    "DEFAULT_LEAKY_SLOPE",
    "iter_figures",
    "plot_accuracy",
    "plot_dead_units",
    "plot_leaky_relu",
    "plot_model_comparison",
    "plot_precision",
    "plot_promote_vs_suppress",
    "plot_selectivity",
]


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
    """Yields ``(name, figure)`` for every figure the tables allow, one set per model.

    Runs of conditions that differ in more than model and activation (other
    data, epochs, ...: `plots.tables.split_by_protocol`) get sets of their
    own, the protocol in their file names (``fig1_selectivity_<model>__<protocol>``)
    and titles: the paper's figures draw alpha as colours and test against
    alpha = 0, so each protocol is read as its own copy of them rather than as
    further series.

    Figures whose inputs are missing (no positive alphas, no leaky-ReLU runs,
    ...) are skipped. A figure that fails for another reason is
    reported with a `RuntimeWarning` and skipped, so that one bad figure does
    not cost the others after a long sweep (set `raise_errors` to raise
    instead).

    Args:
        runs: The `runs` table.
        layers: The `layers` table.
        n_resamples: Bootstrap resamples per confidence interval.
        raise_errors: Raise instead of warning when a figure fails.

    Yields:
        (figure name, the file stem, e.g. "fig1_selectivity_resnet20"; the
        `Figure`), per protocol and model in the order of `_figure_builders`,
        then Figure A12 of the protocol.
    """
    for protocol, protocol_runs in split_by_protocol(runs):
        protocol_layers = layers
        if protocol and layers is not None and "run_dir" in layers.columns:
            protocol_layers = layers.loc[layers["run_dir"].isin(protocol_runs["run_dir"])]
        yield from _protocol_figures(protocol_runs, protocol_layers, protocol, n_resamples, raise_errors)


def _protocol_figures(runs, layers, protocol, n_resamples, raise_errors):
    models = sorted(runs["model"].astype(str).unique()) if runs is not None and not runs.empty else []
    builders: dict[str, Callable[[], Figure | None]] = {}
    for model in models:
        builders.update(_figure_builders(runs, layers, model, n_resamples))
    builders["figA12_model_comparison"] = lambda: comparison.plot_model_comparison(runs, n_resamples=n_resamples)

    for name, figure in drawn_figures(builders, raise_errors):
        if protocol:
            figure.suptitle(f"{figure.get_suptitle()} ({protocol})")
        yield name + protocol_suffix(protocol), figure

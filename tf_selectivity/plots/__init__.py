"""The paper's figures, drawn from the analysis tables.

Every figure function takes the plain tables written by the analysis command
(`runs`, `layers`, see `tf_selectivity.measures.stats`), draws
one figure of "Selectivity considered harmful" (Leavitt & Morcos) for one
model, and returns a `matplotlib.figure.Figure`, or `None` when the tables
hold nothing to draw it from (e.g. no positive alphas, no leaky-ReLU
runs). `draw_all` draws everything drawable and saves each figure as PNG
and PDF. Figure 3 and the similarity maps are drawn by the
similarity stage (`tf_selectivity.analysis.stages.similarity.figures`) with
the primitives here.

One module per figure family:

    selectivity.py   Figures 1, A1     class selectivity per layer and vs alpha
    accuracy.py      Figures 2, 4      test accuracy vs alpha and vs selectivity
    comparison.py    Figures 5, A6, A11, A12   promoting vs suppressing; models side by side
    precision.py     Figures A7, A8    the precision metric (Appendix A.5)
    dead_units.py    Figure A9         dead units and the selectivity of live units
    leaky_relu.py    Figure A10        leaky-ReLU networks
    catalog.py       `draw_all`: every figure by file name
    style.py         style, colours, alpha axis, `save_figure`
    tables.py        rows and per-alpha summaries the figures draw
    drawing.py       drawing primitives shared by the figures
    labels.py        significance marks, and labels kept clear of the data

Conventions, as in the paper:
  * Colour intensity encodes |alpha|: blues for alpha < 0 (selectivity
    suppressed), reds for alpha > 0 (promoted), near-black for alpha = 0.
  * Error bars and shaded bands are percentile-bootstrapped 95% confidence
    intervals of the mean over replicate networks (seeds). Groups with a
    single replicate are drawn as points without an interval.
  * Significance marks show the direction of an effect: "▲**" above the
    error bar of a value significantly higher than its reference, "▼**"
    below that of one significantly lower; the asterisks give the
    Bonferroni-corrected p-value. References: alpha = 0 (Welch t-test,
    corrected over all alphas of the model); alpha < 0 at the same |alpha|
    for the alpha > 0 points of Figure 5 (Wilcoxon rank-sum); the distance
    between replicates in Figure 3b (paired t-test). See `labels.py`.
  * Marks and line labels never cover error bars, markers or each other
    and stay inside their panel (`labels.keep_labels_clear`, run on every
    figure).
  * Alphas appear in increasing order everywhere: legends, violins, curves
    and points, as on the alpha axes from left to right. Every plotted
    alpha has a tick; ticks are labelled where the labels fit.
  * Alpha axes use a symmetric-log scale because alphas span -100 .. +5
    including 0.
  * The main figures use the ReLU runs; Figure A10 uses the leaky-ReLU runs.

Figures are built with `matplotlib.figure.Figure` and the Agg canvas
directly, so nothing here touches the caller's pyplot state or backend.
"""

from tf_selectivity.plots.accuracy import plot_accuracy
from tf_selectivity.plots.catalog import draw_all
from tf_selectivity.plots.comparison import plot_model_comparison, plot_promote_vs_suppress
from tf_selectivity.plots.dead_units import plot_dead_units
from tf_selectivity.plots.leaky_relu import DEFAULT_LEAKY_SLOPE, plot_leaky_relu
from tf_selectivity.plots.precision import plot_precision
from tf_selectivity.plots.selectivity import plot_selectivity
from tf_selectivity.plots.style import (
    DEFAULT_DPI,
    DEFAULT_FORMATS,
    DEFAULT_N_RESAMPLES,
    FIGURE_STYLE,
    alpha_colors,
    display_model_name,
    format_alpha,
    save_figure,
    set_alpha_axis,
)
from tf_selectivity.plots.tables import select_runs

__all__ = [
    "DEFAULT_DPI",
    "DEFAULT_FORMATS",
    "DEFAULT_LEAKY_SLOPE",
    "DEFAULT_N_RESAMPLES",
    "FIGURE_STYLE",
    "alpha_colors",
    "display_model_name",
    "draw_all",
    "format_alpha",
    "plot_accuracy",
    "plot_dead_units",
    "plot_leaky_relu",
    "plot_model_comparison",
    "plot_precision",
    "plot_promote_vs_suppress",
    "plot_selectivity",
    "save_figure",
    "select_runs",
    "set_alpha_axis",
]

"""Drawing the paper's figures from the analysis tables: style, primitives, labels.

The figures themselves belong to the analysis stages that compute their
tables (e.g. the selectivity stage's Figures 1, 2, 4, 5 and A7-A12 in
`tf_selectivity.analysis.stages.selectivity.figures`, the similarity
stage's Figure 3 and maps in `tf_selectivity.analysis.stages.similarity.figures`);
this package holds what they share. Every figure function takes plain
tables (`runs`, `layers`, ...), draws one figure of "Selectivity considered
harmful" (Leavitt & Morcos) and returns a `matplotlib.figure.Figure`, or
`None` when the tables hold nothing to draw it from.

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
    "DEFAULT_N_RESAMPLES",
    "FIGURE_STYLE",
    "alpha_colors",
    "display_model_name",
    "format_alpha",
    "save_figure",
    "select_runs",
    "set_alpha_axis",
]

"""The Markdown report a researcher opens first after a sweep.

`write_report` turns the analysis tables (`runs`, `layers`) into one
`report.md`: the headline numbers in sentences (as the paper states them:
"mean class selectivity fell from 0.22 at alpha = 0 to 0.07 at alpha = -1
(3.1x lower); test accuracy changed by -0.30 points (p = 0.03, ...)"),
per-alpha summary tables with bootstrapped 95% CIs and Bonferroni-corrected
tests, the sections of other analyses (the CCA distance ratios come from the
similarity stage, `analysis.stages.similarity.section`), the figures drawn by
`tf_selectivity.plots.draw_all` linked with relative paths, the runs that
could not be analysed, and finally the table of every run.

All numbers come from `tf_selectivity.measures.stats`, so the report and the figures
agree. Runs are analysed per condition: one model with one activation (and
one leaky-ReLU slope); the headline comparison is always against the
`alpha = 0` runs of the same condition, and is omitted (with a sentence
saying why) when there are none.

One module per part of the report:

    document.py             `assemble_report`: the report's own parts (overview, headline
                            results, figures, errors, statistics used, all runs) around the
                            sections of the analysis stages; `write_report`: the paper's report
                            from its tables
    conditions.py           runs split by condition, condition titles
    effects.py              per-alpha summary and sentences vs alpha = 0 (selectivity,
                            accuracy, precision, dead units; Figures 1, 2, 4, A7-A9)
    promote_vs_suppress.py  rank-sum sentence and table (Figure 5)
    figures.py              captions and links of the figures
    runs.py                 the table of all runs, runs that could not be analysed
    formatting.py           numbers, p-values and Markdown tables
"""

from tf_selectivity.report.conditions import condition_title
from tf_selectivity.report.document import REPORT_FILENAME, assemble_report, write_report
from tf_selectivity.report.effects import TTEST_NAME, effect_sentence, summarize_condition
from tf_selectivity.report.figures import FIGURE_CAPTIONS
from tf_selectivity.report.formatting import markdown_table
from tf_selectivity.report.promote_vs_suppress import RANKSUM_NAME
from tf_selectivity.report.runs import RUN_COLUMNS

__all__ = [
    "FIGURE_CAPTIONS",
    "RANKSUM_NAME",
    "REPORT_FILENAME",
    "RUN_COLUMNS",
    "TTEST_NAME",
    "assemble_report",
    "condition_title",
    "effect_sentence",
    "markdown_table",
    "summarize_condition",
    "write_report",
]

"""The Markdown report a researcher opens first after a sweep.

`assemble_report` writes ``report.md`` from its parts: the overview, the
headline results (each condition's sentences of every analysis stage, under
the condition's title), the stages' sections in registry order, the figures
with their captions (linked with relative paths), the runs that diverged
or could not be analysed, the statistics used, and finally the table of
every run. What each part says is the stages' (`tf_selectivity.analysis.stages`,
e.g. the selectivity stage's per-alpha summary and sentences against
alpha = 0, the similarity stage's CCA distance ratios); this package only
assembles them, and formats numbers and tables for them.
`tf_selectivity.analysis.from_tables.redraw` writes the report again from
an analysis' saved tables.

Runs are analysed per condition: one model with one activation (and one
leaky-ReLU slope); the headline comparison is always against the
`alpha = 0` runs of the same condition.

    document.py             `assemble_report`: the report's own parts around the stages' sections
    condition_names.py      which runs form one condition, and its name
    conditions.py           condition titles and keys, per-alpha summary accessors
    figures.py              captions and links of the figures
    runs.py                 the table of all runs, runs that could not be analysed
    formatting.py           numbers, p-values and Markdown tables
"""

import importlib

# Loaded on first use, so that the light modules (`condition_names`, which
# the analysis' settings import) come without pandas and matplotlib.
_LAZY = {
    "REPORT_FILENAME": "document",
    "assemble_report": "document",
    "condition_title": "conditions",
    "markdown_table": "formatting",
    "RUN_COLUMNS": "runs",
}

__all__ = [
    "REPORT_FILENAME",
    "RUN_COLUMNS",
    "assemble_report",
    "condition_title",
    "markdown_table",
]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"tf_selectivity.report.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'tf_selectivity.report' has no attribute {name!r}")

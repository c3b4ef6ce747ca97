"""Analysis of saved runs: the `analyze` engine, its stages and their settings.

    options.py    `AnalysisOptions`: general settings and one group per stage
    stage.py      `Stage`, the protocol every analysis implements; `RunResult`
    context.py    `RunContext` (one run: model, test data, subsets, condition
                  columns) and `AnalysisContext` (what spans the runs)
    cache.py      per-run results kept between analyses
    pipeline.py   `analyze`: the engine
    from_tables.py  figures and report.md from the stages' tables (`redraw`
                  from saved tables, `read_tables`)
    stages/       the registry and one folder per stage
    outputs.py    the output directory (staged, swapped in at the end)
    runs.py       finding runs and loading their models
    run.py        `load_run`: one run in Python (model, configuration,
                  summary, history, test data), read as the analysis reads it

`analyze`, `load_run`, `redraw`, the protocol's classes and
`selectivity_null` (the label-permutation null of a model in memory) are
imported on first use.
"""

import importlib

from tf_selectivity.analysis.options import AnalysisOptions

_LAZY = {
    "load_run": "tf_selectivity.analysis.run",
    "Run": "tf_selectivity.analysis.run",
    "analyze": "tf_selectivity.analysis.pipeline",
    "AnalysisResult": "tf_selectivity.analysis.pipeline",
    "Stage": "tf_selectivity.analysis.stage",
    "RunResult": "tf_selectivity.analysis.stage",
    "StageSkipped": "tf_selectivity.analysis.stage",
    "RunContext": "tf_selectivity.analysis.context",
    "AnalysisContext": "tf_selectivity.analysis.context",
    "redraw": "tf_selectivity.analysis.from_tables",
    "read_tables": "tf_selectivity.analysis.from_tables",
    "selectivity_null": "tf_selectivity.analysis.stages.selectivity.null",
    "null_layer_summary": "tf_selectivity.analysis.stages.selectivity.null",
}

__all__ = ["AnalysisOptions", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tf_selectivity.analysis' has no attribute {name!r}")

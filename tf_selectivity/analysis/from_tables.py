"""Figures and ``report.md`` from the stages' tables: the engine's last step, and the same again from saved tables.

`draw_and_report` is how `analyze` ends: every stage's figures (with
``options.figures``), headline sentences, section and captions, assembled by
`tf_selectivity.report.assemble_report`. `redraw` does the same from the
tables of a finished analysis (`read_tables`), through each stage's
`Stage.restore`: a researcher redraws figures and report on a laptop from
the CSV or Parquet files alone, without the runs, their models or a Keras
backend (nothing here imports Keras). Stages that cannot be rebuilt from
their tables (`restore` returns None: the units stage, whose pages are
drawn from the test images) are left out of a redrawn report.

Example::

    from tf_selectivity.analysis import AnalysisOptions, read_tables, redraw

    tables = read_tables("analysis/resnet20")
    redraw(tables, "analysis/resnet20_again", AnalysisOptions(n_resamples=10_000))
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from tf_selectivity.analysis.context import AnalysisContext
from tf_selectivity.analysis.options import AnalysisOptions
from tf_selectivity.core.files import naming_full_disk

__all__ = ["Redrawn", "draw_and_report", "read_tables", "redraw"]

# Tables every analysis writes that belong to no stage.
ERRORS_TABLE = "errors"
DIVERGED_TABLE = "diverged"
WARNINGS_TABLE = "warnings"
CONDITIONS_TABLE = "conditions"
# Every stage's claims with the verdicts their premises allow (`claims.gate`);
# also the name under which the gates' warnings are filed.
CLAIMS_TABLE = "claims"


@dataclasses.dataclass
class Redrawn:
    """What `redraw` wrote: the report's path and ``{figure name: [paths]}``."""

    report: str
    figures: dict


def draw_and_report(context: AnalysisContext, stages: Sequence, folder: str, *,
                    errors: Sequence[tuple] = (), diverged: pd.DataFrame | None = None,
                    conditions: pd.DataFrame | None = None,
                    formats: Sequence[str] | None = None, dpi: int | None = None) -> tuple:
    """Every stage's figures, claims and the report, from ``context.tables``, into `folder`.

    The stages' claims, with the verdicts their premises allow, are written
    as ``claims.csv`` / ``.parquet`` and kept in ``context.claims``; the
    gates that fail add their warnings (filed under `CLAIMS_TABLE`).

    Args:
        context: the `AnalysisContext`, ``tables`` filled for every stage of
            `stages` (by their `combine` or `restore`).
        stages: the stages, in report order.
        folder: where ``figures/`` and ``report.md`` go.
        errors: ``(path, message)`` of every run that could not be analysed.
        diverged: the runs whose training diverged, or None.
        conditions: the ``conditions`` table (default: ``context.conditions``'),
            listed at the top of the report.
        formats: the figure files' formats (default `plots.save_figure`'s).
        dpi: their resolution (default `plots.save_figure`'s).

    Returns:
        (figures, report path): ``{figure name: [paths]}`` in drawing order,
        and the path of ``report.md``.
    """
    from tf_selectivity.analysis.claims import TRAINED, gate
    from tf_selectivity.analysis.outputs import write_table
    from tf_selectivity.report.document import assemble_report

    figures = {}
    if context.options.figures:
        from tf_selectivity.plots.style import DEFAULT_DPI, DEFAULT_FORMATS, save_figure

        formats, dpi = formats or DEFAULT_FORMATS, dpi or DEFAULT_DPI
        for stage in stages:
            for name, figure in stage.figures(context.tables[stage.name], context.for_stage(stage.name)):
                if figure is not None:
                    path = os.path.join(folder, "figures", name)
                    with naming_full_disk(path):
                        figures[name] = save_figure(figure, path, formats, dpi)
    claims, premises = [], []
    for stage in stages:
        view = context.for_stage(stage.name)
        claims += [(stage.name, claim) for claim in stage.claims(context.tables[stage.name], view)]
        premises += stage.premises(context.tables[stage.name], view)
    context.claims, gate_warnings = gate(claims, premises)
    write_table(context.claims, folder, CLAIMS_TABLE)
    for message in gate_warnings:
        context.for_stage(CLAIMS_TABLE).add_warning(message)
    # A condition whose networks learned nothing: its headline numbers describe, they do not claim.
    notes = {}
    for premise in premises:
        if premise.name == TRAINED and not premise.holds:
            notes.setdefault(premise.condition, []).append(
                f"Not testable as claims about trained networks: {premise.reason}. The numbers below describe "
                "these networks only.")
    headlines, sections, captions = [], [], {}
    for stage in stages:
        view = context.for_stage(stage.name)
        for message in stage.warnings(context.tables[stage.name], view):
            view.add_warning(message)
        headlines += stage.headlines(context.tables[stage.name], view)
        section = stage.section(context.tables[stage.name], view)
        if section:
            sections.append(section)
        captions.update(stage.captions)
    selectivity = context.tables.get("selectivity", {})
    if conditions is None and context.conditions is not None:
        conditions = context.conditions.table()
    with naming_full_disk(os.path.join(folder, "report.md")):
        report = assemble_report(
            folder, selectivity.get("runs"), selectivity.get("layers"), headlines=headlines, sections=sections,
            figures=figures, errors=list(errors), diverged=diverged, captions=captions,
            warnings=[message for _, message in context.warnings_in([*(stage.name for stage in stages),
                                                                     CLAIMS_TABLE])],
            conditions=conditions, claims=context.claims, condition_notes=notes,
        )
    return figures, str(report)


def read_tables(directory: str) -> dict:
    """Every table an analysis wrote into `directory`: ``{name: DataFrame}``.

    Each ``<name>.parquet``, else ``<name>.csv`` (``errors.csv`` and
    ``diverged.csv`` included).

    Raises:
        FileNotFoundError: `directory` holds no table.
    """
    names = {}
    for entry in sorted(os.listdir(directory)):
        stem, suffix = os.path.splitext(entry)
        if suffix in (".parquet", ".csv") and (suffix == ".parquet" or stem not in names):
            names[stem] = os.path.join(directory, entry)
    if not names:
        raise FileNotFoundError(f"{directory} holds no table of an analysis (*.csv, *.parquet)")
    return {name: pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
            for name, path in names.items()}


def redraw(tables: Mapping[str, pd.DataFrame], output_dir: str | Path, options: AnalysisOptions | None = None, *,
           formats: Sequence[str] | None = None, dpi: int | None = None, stages: Sequence | None = None) -> Redrawn:
    """Draws the figures and writes ``report.md`` again from an analysis' tables.

    The same figures and report text as `analyze` wrote for these tables and
    options (but the date line), for every stage that can be rebuilt from its
    tables (`Stage.restore`).

    Args:
        tables: ``{name: DataFrame}`` as the analysis wrote them
            (`read_tables`): ``runs`` and ``layers`` at least; ``errors``
            (columns ``path``, ``error``) and ``diverged`` when present.
        output_dir: folder of ``report.md`` and ``figures/`` (created).
        options: the analysis' `AnalysisOptions` (e.g. ``n_resamples``,
            ``figures``); default `AnalysisOptions()`.
        formats: the figure files' formats (default `plots.save_figure`'s).
        dpi: their resolution (default `plots.save_figure`'s).
        stages: the stages, in report order (default: the registry's).

    Returns:
        A `Redrawn`.

    Raises:
        ValueError: no ``runs`` table.
    """
    options = (options or AnalysisOptions()).validate()
    if tables.get("runs") is None:
        raise ValueError("redraw needs the analysis' runs table")
    if stages is None:
        from tf_selectivity.analysis.stages import registered_stages

        stages = registered_stages()
    output_dir = os.path.abspath(os.path.expanduser(str(output_dir)))
    os.makedirs(output_dir, exist_ok=True)
    context = AnalysisContext(options=options, records=[], test_data=None, staging=output_dir)
    restored = []
    for stage in stages:
        view = stage.restore(tables, context.for_stage(stage.name))
        if view is not None:
            context.tables[stage.name] = view
            restored.append(stage)
    context.active = [stage.name for stage in restored]
    errors = tables.get(ERRORS_TABLE)
    errors = [] if errors is None else [(row.path, row.error) for row in errors.itertuples(index=False)]
    diverged = tables.get(DIVERGED_TABLE)
    diverged = diverged if diverged is not None and not diverged.empty else None
    warnings = tables.get(WARNINGS_TABLE)
    for row in ([] if warnings is None else warnings.itertuples(index=False)):
        context.for_stage(row.stage).add_warning(row.warning)
    figures, report = draw_and_report(context, restored, output_dir, errors=errors, diverged=diverged,
                                      conditions=tables.get(CONDITIONS_TABLE), formats=formats, dpi=dpi)
    return Redrawn(report, figures)

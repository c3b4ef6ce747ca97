"""The table of every run, and the list of runs that could not be analysed."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from tf_selectivity.plots.style import format_alpha
from tf_selectivity.report.condition_names import SHARED_FROM, own_rows
from tf_selectivity.report.formatting import markdown_table


# Column order of the table of runs (any other columns follow).
RUN_COLUMNS = (
    "run_dir",
    "model",
    "activation",
    "leaky_slope",
    "alpha",
    "seed",
    "condition",
    "epochs",
    "best_epoch",
    "val_accuracy",
    "test_accuracy",
    "test_mean_selectivity",
    "test_mean_selectivity_alive",
    "mean_precision",
    "dead_unit_fraction",
    "num_units",
)


# How the selectivity and precision columns treat dead units (units that
# respond to no test image), written under the table of runs.
DEAD_UNITS_NOTE = (
    "`test_mean_selectivity` counts dead units as SI 0 (eq. 3, as in the paper); "
    "`test_mean_selectivity_alive` leaves them out (appendix A.6); `mean_precision` is over "
    "live units only, because a dead unit has no most-activating images and so no precision "
    "(appendix A.5). `dead_unit_fraction` is the share of dead units. Layer means first, "
    "then the mean over layers."
)


def _format_run_cell(column: str, value) -> str:
    """A cell of the table of runs."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if column == "run_dir":
        return f"`{value}`"
    if isinstance(value, (float, np.floating)):
        if column in ("alpha", "leaky_slope"):
            return format_alpha(value)
        return f"{float(value):.4g}"
    return str(value)


def _is_leaky_column(runs: pd.DataFrame) -> pd.Series:
    if "activation" not in runs.columns:
        return pd.Series(False, index=runs.index)
    return runs["activation"].astype(str).str.lower().str.contains("leaky")


def runs_table(runs: pd.DataFrame) -> str:
    if SHARED_FROM in runs.columns:  # each run once, in its own condition
        runs = own_rows(runs).drop(columns=SHARED_FROM)
    # ReLU runs (the main experiment) before leaky-ReLU runs of each model.
    keyed = runs.assign(_leaky=_is_leaky_column(runs))
    sort_columns = [c for c in ("model", "_leaky", "leaky_slope", "alpha", "seed") if c in keyed.columns]
    ordered = keyed.sort_values(sort_columns, kind="stable").drop(columns="_leaky")
    columns = [c for c in RUN_COLUMNS if c in runs.columns]
    columns += [c for c in runs.columns if c not in columns]
    rows = [[_format_run_cell(c, row[c]) for c in columns] for _, row in ordered.iterrows()]
    return markdown_table(columns, rows)


def diverged_section(diverged: pd.DataFrame | None) -> list[str]:
    """Runs whose training diverged (non-finite loss): listed apart.

    They have no test metrics and are in no other table, mean, test or figure
    of the report; the paper's figures would otherwise show them as chance
    accuracy or not at all, depending on how a reader fills the gap.
    """
    if diverged is None or diverged.empty:
        return []
    lines = [
        "## Runs that diverged",
        "",
        f"{len(diverged)} run(s) stopped at a non-finite loss. They have no test metrics and are "
        "left out of every table, mean, test and figure above (`diverged.csv` lists them).",
        "",
    ]
    columns = [c for c in ("model", "activation", "leaky_slope", "alpha", "seed", "diverged_epoch", "epochs", "reason")
               if c in diverged.columns]
    headers = {"leaky_slope": "slope", "diverged_epoch": "diverged in epoch", "epochs": "of"}
    rows = [[row[c] for c in columns] for _, row in diverged.iterrows()]
    lines += [markdown_table([headers.get(c, c) for c in columns], rows), ""]
    return lines


def errors_section(errors: Sequence[tuple[str, str]] | None) -> list[str]:
    lines = ["## Runs that could not be analysed", ""]
    if not errors:
        return lines + ["None: every run found was analysed.", ""]
    for path, message in errors:
        message = " ".join(str(message).split())
        lines.append(f"- `{path}`: {message}")
    return lines + [""]

"""What the unit pages show of each run, from the analysis' tables.

`run_page` builds a run's `pages.RunPage` (its facts, and per shown layer its
units table, numbers and galleries) from the runs and units tables of the
selectivity stage and the run's gallery tables; the figures it names are
those `run_galleries.draw_run_galleries` drew.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pandas as pd

from tf_selectivity.analysis.stages.units.pages import GalleryUnit, LayerPage, RunPage
from tf_selectivity.analysis.stages.units.run_galleries import GRID, HISTOGRAM, layer_folder, unit_figure_name

__all__ = ["run_directory_name", "run_page"]


def run_directory_name(run_dir: str) -> str:
    """A run's folder under ``units/``: its directory's name and 6 hex digits of its path (unique)."""
    from tf_selectivity.plots.style import file_safe

    digest = hashlib.sha256(os.path.abspath(run_dir).encode()).hexdigest()[:6]
    return f"{file_safe(os.path.basename(os.path.normpath(run_dir)))}-{digest}"


def _format(value, digits=3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _unit_numbers(row, class_names, gallery_row) -> dict:
    """The numbers shown beside a unit's figure: from the units table `row` and the gallery's row."""
    numbers = {
        "SI (analysis)": _format(float(row["selectivity"]), 4),
        "preferred class": str(class_names[int(row["preferred_class"])]),
        "precision": _format(float(row["precision"]), 3),
        "dead": "yes" if bool(row["dead"]) else "no",
        "threshold (top 0.5% of its map values)": f"{float(gallery_row['threshold']):.4g}",
    }
    if "si_p" in row.index:
        numbers["null p-value"] = _format(float(row["si_p"]), 4)
        numbers["q-value"] = _format(float(row["si_q"]), 4)
        numbers["selective above chance"] = "yes" if bool(row["selective"]) else "no"
    return numbers


def _layer_table(rows: pd.DataFrame, class_names) -> pd.DataFrame:
    columns = ["unit", "selectivity", "precision", "dead", "preferred_class"]
    columns += [c for c in ("si_p", "si_q", "selective", "si_chance_corrected") if c in rows.columns]
    table = rows[columns].copy()
    table["preferred_class"] = [str(class_names[int(c)]) for c in table["preferred_class"]]
    table["unit"] = table["unit"].astype(int)
    return table.sort_values(["selectivity", "unit"], ascending=[False, True], kind="stable").reset_index(drop=True)


def run_page(run_dir: str, run_row, run_units: pd.DataFrame, galleries: dict, layers, class_names,
             test_data: str) -> RunPage:
    """One run's page.

    Args:
        run_dir: the run's directory.
        run_row: its row of the runs table (a Series).
        run_units: its rows of the units table.
        galleries: its gallery tables (``unit_gallery``, ``unit_gallery_tuning``).
        layers: the layers with galleries, in network order.
        class_names: the test data's class names.
        test_data: the test data's spec.

    Returns:
        The `RunPage`; its folder is `run_directory_name` and each layer's `layer_folder`.
    """
    units, tuning = galleries["unit_gallery"], galleries["unit_gallery_tuning"]
    layer_pages = []
    for layer in layers:
        rows = run_units[run_units["layer"] == layer]
        selective = rows["selective"].to_numpy(bool) if "selective" in rows.columns else None
        entries = []
        for gallery_row in units[units["layer"] == layer].to_dict("records"):
            unit = int(gallery_row["unit"])
            row = rows[rows["unit"] == unit].iloc[0]
            curve = tuning[(tuning["layer"] == layer) & (tuning["unit"] == unit)]
            curve = curve.assign(**{"class": [str(class_names[int(c)]) for c in curve["class"]]})
            entries.append(GalleryUnit(unit, unit_figure_name(unit), _unit_numbers(row, class_names, gallery_row),
                                       curve.reset_index(drop=True)))
        numbers = {"units": str(len(rows)), "mean SI": _format(float(rows["selectivity"].mean()), 4),
                   "dead units": str(int(rows["dead"].sum()))}
        if selective is not None:
            numbers["selective above chance (null, FDR)"] = f"{selective.mean():.1%}"
        layer_pages.append(LayerPage(layer, layer_folder(layer), _layer_table(rows, class_names), HISTOGRAM, GRID,
                                     entries, numbers))
    facts = {
        "model": str(run_row["model"]), "alpha": f"{float(run_row['alpha']):g}", "seed": str(run_row["seed"]),
        "test accuracy": _format(float(run_row["test_accuracy"]), 4),
        "mean SI": _format(float(run_row["test_mean_selectivity"]), 4), "test data": test_data,
        "run directory": run_dir,
    }
    title = f"{run_row['model']}, alpha {float(run_row['alpha']):g}, seed {run_row['seed']}"
    return RunPage(title, run_directory_name(run_dir), facts, layer_pages)

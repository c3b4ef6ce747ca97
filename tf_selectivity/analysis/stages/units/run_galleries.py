"""One run's unit galleries, drawn into a folder: what the units stage computes per run.

`draw_run_galleries` streams the run's test set once through its Keras
model (`gallery.unit_gallery`) for the chosen units (`selection`) and
writes, per shown layer, into ``<folder>/<layer>/``:

* ``unit_<n>.png``: each shown unit's figure (`figures.unit_figure`: top-k images
  by spatial max and by spatial mean with the maps outlined at the unit's
  top-0.5% threshold, its tuning curve, SI, precision and, with the null,
  its p-value);
* ``grid.png``: the layer's gallery units side by side;
* ``histogram.png``: the SI of every unit of the layer, those selective
  above chance (the null's q-value below the FDR) apart.

The figures are PNGs reduced to a 256-colour palette (`figures.save_compact_png`):
a fraction of the bytes of full-colour PNGs, text kept sharp.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from tf_selectivity.analysis.stages.units.selection import check_unit_range, chosen_units, gallery_layers
from tf_selectivity.core.progress import Progress

__all__ = ["GALLERY_TABLES", "GRID", "HISTOGRAM", "PAGE_FIGURE_DPI", "PAGE_HISTOGRAM_DPI", "draw_run_galleries",
           "layer_folder", "unit_figure_name"]

# Resolution of the pages' unit figures and grids, and of their histograms.
PAGE_FIGURE_DPI = 90
PAGE_HISTOGRAM_DPI = 80
# The tables of a run's galleries (`UnitGallery` attributes), by their name in the analysis.
GALLERY_TABLES = {"unit_gallery": "units", "unit_gallery_images": "top_images", "unit_gallery_tuning": "tuning"}
# The figures in a layer's folder besides its units' (`unit_figure_name`).
HISTOGRAM = "histogram.png"
GRID = "grid.png"


def layer_folder(layer: str) -> str:
    """A layer's folder among its run's galleries (and pages)."""
    from tf_selectivity.plots.style import file_safe

    return file_safe(layer)


def unit_figure_name(unit: int) -> str:
    """A unit's figure in its layer's folder."""
    return f"unit_{unit}.png"


def draw_run_galleries(run, run_units: pd.DataFrame, named, folder: str, verbose: int = 0) -> tuple:
    """Draws one run's unit galleries into `folder`.

    Args:
        run: the run's `RunContext` (its model, test data and probes).
        run_units: the run's rows of the units table, with the null's
            columns (``si_p``, ``selective``) where it was computed.
        named: layer -> named unit indices (``units.named_units``).
        folder: where the figures go (one folder per layer).
        verbose: 1 shows the progress of the pass over the images and of
            the drawing (one item per figure), 0 nothing.

    Returns:
        (layers, tables): the layers drawn, in network order, and the
        gallery tables (``{name: DataFrame}`` of `GALLERY_TABLES`).

    Raises:
        ParameterError: a named unit beyond its layer's units in this run.
    """
    from tf_selectivity.analysis.stages.units.figures import (
        layer_grid,
        save_compact_png,
        selectivity_histogram,
        unit_figure,
    )
    from tf_selectivity.analysis.stages.units.gallery import unit_gallery

    if named:
        widths = (run_units.groupby("layer")["unit"].max() + 1).to_dict()
        check_unit_range(named, {(run.run_dir, layer): width for layer, width in widths.items()})
    options = run.options
    data = run.test_data
    images, labels, class_names = data.images, data.labels, data.class_names
    layers = gallery_layers(run.record.probe_names, options, named)
    per_class = int(np.bincount(labels, minlength=data.num_classes).min()) or 1
    gallery = unit_gallery(
        run.model, images, labels, units=chosen_units(run_units, layers, named), k=options.units.gallery_k,
        index=options.selectivity_index, precision_top_n=min(options.selectivity.precision_top_n, per_class),
        batch_size=options.batch_size, verbose=verbose,
    )
    shown = gallery.units["layer"].value_counts()
    with Progress("Drawing unit galleries", sum(2 + int(shown.get(layer, 0)) for layer in layers), unit="figure",
                  enabled=verbose > 0) as bar:
        for layer in layers:
            directory = os.path.join(folder, layer_folder(layer))
            os.makedirs(directory, exist_ok=True)
            rows = run_units[run_units["layer"] == layer]
            selective = rows["selective"].to_numpy(bool) if "selective" in rows.columns else None
            save_compact_png(
                selectivity_histogram(rows["selectivity"].to_numpy(), layer=layer, selective=selective,
                                      dead=rows["dead"].to_numpy(bool)),
                os.path.join(directory, HISTOGRAM), PAGE_HISTOGRAM_DPI)
            bar.update()
            save_compact_png(layer_grid(gallery, layer, images, class_names=class_names),
                             os.path.join(directory, GRID), PAGE_FIGURE_DPI)
            bar.update()
            for unit in gallery.units.loc[gallery.units["layer"] == layer, "unit"]:
                unit = int(unit)
                row = rows[rows["unit"] == unit].iloc[0]
                null_p = float(row["si_p"]) if "si_p" in rows.columns else None
                figure = unit_figure(gallery, layer, unit, images, class_names=class_names, null_p=null_p)
                save_compact_png(figure, os.path.join(directory, unit_figure_name(unit)), PAGE_FIGURE_DPI)
                bar.update()
    return layers, {name: getattr(gallery, attribute) for name, attribute in GALLERY_TABLES.items()}

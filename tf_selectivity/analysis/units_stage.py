"""`--units_page`: unit galleries of every analysed run and the page to browse them.

What the units stage (`stages.units`) draws. For each run it loads the run's Keras model, streams the test set once
through `analysis.units.unit_gallery` for the chosen units, and writes
under ``OUTPUT_DIR/units/``:

* ``<run>/<layer>/unit_<n>.png``: the unit's figure (`plots.gallery.unit_figure`:
  top-k images by spatial max and by spatial mean with the maps outlined at
  the unit's top-0.5% threshold, its tuning curve, SI, precision and, with
  ``--selectivity_null``, its null p-value);
* ``<run>/<layer>/grid.png`` (the layer's gallery units side by side) and
  ``histogram.png`` (the SI of every unit of the layer, selective ones
  apart with the null);
* the HTML pages (`analysis.unit_page`): ``index.html`` -> runs -> layers.

Units: per layer of ``units.gallery_layers`` (default: every probe), its most and
least selective live unit by the analysis' units table, plus those named by
``units.named_units`` (``--units=LAYER:3,17,...``). Tables ``unit_gallery`` (one row per
shown unit), ``unit_gallery_images`` (its top images) and
``unit_gallery_tuning`` (its tuning curve) go beside the analysis' others.

The figures are PNGs reduced to a 256-colour palette (Pillow's median cut):
about a third of the bytes of full-colour PNGs, text kept sharp.
"""

from __future__ import annotations

import hashlib
import io
import os

import numpy as np
import pandas as pd

from tf_selectivity.analysis.stages.units.options import parse_unit_specs
from tf_selectivity.analysis.runs import RunLoadError, error_for, probe_widths
from tf_selectivity.core.settings import ParameterError

__all__ = ["UNITS_DIR", "GALLERY_DPI", "check_unit_choices", "unit_pages", "run_directory_name",
           "save_compact_png"]

# The pages' directory in the analysis' output.
UNITS_DIR = "units"
# Resolution of the unit figures (1,090 x 660 px at 100 dpi for k = 10).
GALLERY_DPI = 90
HISTOGRAM_DPI = 80


def run_directory_name(record) -> str:
    """A run's folder under ``units/``: its directory's name and 6 hex digits of its path (unique)."""
    from tf_selectivity.plots.style import file_safe

    digest = hashlib.sha256(os.path.abspath(record.run_dir).encode()).hexdigest()[:6]
    return f"{file_safe(os.path.basename(os.path.normpath(record.run_dir)))}-{digest}"


def save_compact_png(figure, path: str, dpi: int) -> str:
    """Saves `figure` as a palette PNG (256 colours, Pillow's median cut); returns `path`."""
    from PIL import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    buffer.seek(0)
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


def check_unit_choices(records, options, units: pd.DataFrame | None = None) -> dict:
    """The named units, checked against the runs; raises before anything is drawn.

    Args:
        records: the runs (`RunRecord`s; their summaries name the probes).
        options: `AnalysisOptions` (``units.named_units``, ``units.gallery_layers``).
        units: the analysis' units table (every unit of every run). Without
            it, unit indices are checked against the widths in each run's
            ``model.keras`` config (`probe_widths`: before any pass over the
            data); with it, against the responses.

    Returns:
        layer -> named unit indices (``parse_unit_specs``).

    Raises:
        ParameterError: a layer of ``units.named_units`` or
            ``units.gallery_layers`` that no run has, or a unit index beyond a
            layer's units in a run that has it.
    """
    named = parse_unit_specs(options.units.named_units)
    probes = [name for record in records for name in record.probe_names]
    known = list(dict.fromkeys(probes))
    for parameter, layers in (("units.named_units", list(named)),
                              ("units.gallery_layers", list(options.units.gallery_layers or ()))):
        unknown = [layer for layer in layers if layer not in known]
        if unknown:
            shown = ", ".join(known[:40]) + (", ..." if len(known) > 40 else "")
            raise ParameterError(parameter, f"names a layer no run has: {unknown[0]} (the runs' probes: {shown})")
    if not named:
        return named
    if units is not None:
        widths = (units.groupby(["run_dir", "layer"])["unit"].max() + 1).to_dict()
    else:
        widths = {(record.run_dir, layer): width for record in records if not record.diverged
                  for layer, width in probe_widths(record).items()}
    for (run_dir, layer), width in widths.items():
        for index in named.get(layer, ()):
            if index >= width:
                raise ParameterError(
                    "units.named_units", f"unit {index} of layer {layer} is out of range: it has units 0..{width - 1} "
                             f"(in {run_dir})")
    return named


def _chosen(run_units: pd.DataFrame, layers, named) -> dict:
    """layer -> unit indices: the most and least selective live unit, plus the named ones."""
    chosen = {}
    for layer in layers:
        rows = run_units[run_units["layer"] == layer]
        alive = rows[~rows["dead"].astype(bool)]
        pool = alive if len(alive) else rows
        si = pool["selectivity"].to_numpy()
        picked = {int(pool["unit"].iloc[int(np.nanargmax(si))]), int(pool["unit"].iloc[int(np.nanargmin(si))])}
        chosen[layer] = sorted(picked | set(named.get(layer, ())))
    return chosen


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


def _draw_run(run, context, named, root):
    """The run's galleries and figures under `root` (`run`: its `RunContext`); returns its `RunPage` and gallery tables."""
    from tf_selectivity.analysis.unit_page import GalleryUnit, LayerPage, RunPage
    from tf_selectivity.analysis.units import unit_gallery
    from tf_selectivity.plots.gallery import layer_grid, selectivity_histogram, unit_figure
    from tf_selectivity.plots.style import file_safe

    options = context.options
    record = run.record
    data = run.test_data
    spec, images, labels, num_classes, class_names = data.spec, data.images, data.labels, data.num_classes, data.class_names
    units = context.tables["selectivity"]["units"]
    run_units = units[units["run_dir"] == record.run_dir]
    layers = [name for name in record.probe_names
              if options.units.gallery_layers is None or name in options.units.gallery_layers or name in named]
    model = run.model
    per_class = int(np.bincount(labels, minlength=num_classes).min()) or 1
    gallery = unit_gallery(
        model, images, labels, units=_chosen(run_units, layers, named), k=options.units.gallery_k,
        index=options.selectivity_index, precision_top_n=min(options.selectivity.precision_top_n, per_class),
        batch_size=options.batch_size,
    )
    run_name = run_directory_name(record)
    layer_pages = []
    for layer in layers:
        layer_dir = file_safe(layer)
        directory = os.path.join(root, run_name, layer_dir)
        os.makedirs(directory, exist_ok=True)
        rows = run_units[run_units["layer"] == layer]
        selective = rows["selective"].to_numpy(bool) if "selective" in rows.columns else None
        save_compact_png(
            selectivity_histogram(rows["selectivity"].to_numpy(), layer=layer, selective=selective,
                                  dead=rows["dead"].to_numpy(bool)),
            os.path.join(directory, "histogram.png"), HISTOGRAM_DPI)
        save_compact_png(layer_grid(gallery, layer, images, class_names=class_names),
                         os.path.join(directory, "grid.png"), GALLERY_DPI)
        entries = []
        for gallery_row in gallery.units[gallery.units["layer"] == layer].to_dict("records"):
            unit = int(gallery_row["unit"])
            row = rows[rows["unit"] == unit].iloc[0]
            null_p = float(row["si_p"]) if "si_p" in rows.columns else None
            figure = unit_figure(gallery, layer, unit, images, class_names=class_names, null_p=null_p)
            save_compact_png(figure, os.path.join(directory, f"unit_{unit}.png"), GALLERY_DPI)
            tuning = gallery.tuning[(gallery.tuning["layer"] == layer) & (gallery.tuning["unit"] == unit)]
            tuning = tuning.assign(**{"class": [str(class_names[int(c)]) for c in tuning["class"]]})
            entries.append(GalleryUnit(unit, f"unit_{unit}.png", _unit_numbers(row, class_names, gallery_row),
                                       tuning.reset_index(drop=True)))
        numbers = {"units": str(len(rows)), "mean SI": _format(float(rows["selectivity"].mean()), 4),
                   "dead units": str(int(rows["dead"].sum()))}
        if selective is not None:
            numbers["selective above chance (null, FDR)"] = f"{selective.mean():.1%}"
        layer_pages.append(LayerPage(layer, layer_dir, _layer_table(rows, class_names), "histogram.png",
                                     "grid.png", entries, numbers))
    run_row = context.run_row(record.run_dir)
    facts = {
        "model": str(run_row["model"]), "alpha": f"{float(run_row['alpha']):g}", "seed": str(run_row["seed"]),
        "test accuracy": _format(float(run_row["test_accuracy"]), 4),
        "mean SI": _format(float(run_row["test_mean_selectivity"]), 4), "test data": spec,
        "run directory": record.run_dir,
    }
    title = f"{run_row['model']}, alpha {float(run_row['alpha']):g}, seed {run_row['seed']}"
    tables = {name: frame.assign(run_dir=record.run_dir) for name, frame in
              (("unit_gallery", gallery.units), ("unit_gallery_images", gallery.top_images),
               ("unit_gallery_tuning", gallery.tuning))}
    return RunPage(title, run_name, facts, layer_pages), tables


def unit_pages(context) -> tuple:
    """Draws every run's unit galleries under ``units/`` and writes ``units/index.html``.

    Args:
        context: the analysis' `AnalysisContext` (the selectivity stage's
            tables combined).

    Returns:
        (tables, section): the gallery tables (``{name: DataFrame}``, empty
        when no run's galleries could be drawn) and the Markdown lines of the
        report's "Unit pages" section.

    Raises:
        ParameterError: a named layer that no run has or a unit out of a
            layer's range (checked before anything is drawn).
    """
    from tf_selectivity.analysis.context import RunContext
    from tf_selectivity.analysis.unit_page import write_unit_pages

    options = context.options
    named = check_unit_choices(context.records, options, context.tables["selectivity"]["units"])
    root = context.output_path(UNITS_DIR)
    pages, tables = [], {}
    for number, record in enumerate(context.records, start=1):
        if context.verbose:
            print(f"Unit galleries [{number}/{len(context.records)}] {record.run_dir}", flush=True)
        run = RunContext(record, context)
        try:
            page, run_tables = _draw_run(run, context, named, root)
        except ParameterError:  # the user's choice of units: the whole analysis fails
            raise
        except (RunLoadError, OSError, ValueError, KeyError) as error:
            context.add_error(record.run_dir, f"unit galleries: {error_for(record.run_dir, error)}")
            continue
        finally:
            run.close()
        pages.append(page)
        for name, frame in run_tables.items():
            tables.setdefault(name, []).append(frame)
    if not pages:
        return {}, ["## Unit pages", "", "No run's unit galleries could be drawn (see the errors below)."]
    written = {}
    for name, frames in tables.items():
        frame = pd.concat(frames, ignore_index=True)
        written[name] = frame[["run_dir"] + [c for c in frame.columns if c != "run_dir"]]
    notes = [
        f"Per layer its most and least selective live unit{' and the units named by --units' if named else ''}: "
        f"the top {options.units.gallery_k} test images by the spatial maximum and by the spatial mean of the unit's "
        "feature map, outlined where the map exceeds the unit's top 0.5% over the test set, and its class tuning "
        "curve with 95% confidence intervals.",
    ]
    write_unit_pages(root, pages, notes=notes)
    galleries = sum(len(layer.gallery) for page in pages for layer in page.layers)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(root) for f in files)
    return written, [
        "## Unit pages", "",
        f"[{UNITS_DIR}/index.html]({UNITS_DIR}/index.html): {len(pages)} run(s), "
        f"{sum(len(page.layers) for page in pages)} layers, {galleries} unit galleries (top {options.units.gallery_k} "
        f"images by spatial max and mean, outlined maps, tuning curves); {size / 1e6:.1f} MB. Open it from disk in "
        "a browser; tables `unit_gallery`, `unit_gallery_images` and `unit_gallery_tuning` hold the numbers.",
    ]

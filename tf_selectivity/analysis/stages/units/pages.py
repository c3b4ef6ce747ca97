"""A static HTML page to browse unit galleries: runs -> layers -> units.

`write_unit_pages` writes, under one directory (the analysis' ``units/``):

* ``index.html``: every run (model, alpha, seed, accuracy, mean SI) with a
  link to its page;
* ``<run>/index.html``: the run's layers, each with its SI histogram, mean
  SI and, where the label-permutation null was computed, the fraction of
  units selective above chance, and a link to the layer's page;
* ``<run>/<layer>/index.html``: the layer's gallery grid, then per unit with
  a gallery its figure (top images, outlined maps, tuning curve), its
  numbers and its tuning curve as a table, and the table of every unit of
  the layer, sortable by any column (a few lines of inline JavaScript).

The pages open from disk without a server: every link and image is a
relative path, nothing is loaded from elsewhere, and every string from the
runs (paths, layer and class names) is HTML-escaped. The figures themselves
are drawn by the caller (`run_galleries`); this module only writes
HTML and imports no Keras.
"""

from __future__ import annotations

import dataclasses
import html
import math
import os
import posixpath
import urllib.parse
from typing import Mapping, Sequence

import pandas as pd

__all__ = ["GalleryUnit", "LayerPage", "RunPage", "write_unit_pages", "INDEX"]

INDEX = "index.html"

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.2em 0.6em; text-align: right; vertical-align: middle; }
th { background: #f4f4f4; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[data-order="asc"]::after { content: " \\25B2"; }
table.sortable th[data-order="desc"]::after { content: " \\25BC"; }
td.name, th.name { text-align: left; }
tr.shown { background: #fff5d6; }
img.figure { max-width: 100%; height: auto; border: 1px solid #eee; }
img.thumb { width: 240px; height: auto; }
nav { margin-bottom: 1em; color: #666; }
dl.numbers { display: grid; grid-template-columns: max-content auto; gap: 0 1em; }
dl.numbers dt { color: #666; }
dl.numbers dd { margin: 0; }
section.unit { border-top: 2px solid #ccc; margin-top: 1.5em; padding-top: 0.5em; }
.note { color: #666; font-size: 12px; }
"""

# Sorts a table.sortable by the clicked column: numbers by data-value
# (NaN last), text otherwise; a second click reverses the order.
_SORT_SCRIPT = """
document.querySelectorAll("table.sortable th").forEach(function (th) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0], column = th.cellIndex;
    var ascending = th.dataset.order !== "asc";
    th.closest("tr").querySelectorAll("th").forEach(function (other) { delete other.dataset.order; });
    th.dataset.order = ascending ? "asc" : "desc";
    var key = function (row) {
      var cell = row.cells[column], value = parseFloat(cell.dataset.value);
      return isNaN(value) ? cell.textContent : value;
    };
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (typeof x === "number" && typeof y === "number") { return ascending ? x - y : y - x; }
      if (typeof x === "number") { return -1; }
      if (typeof y === "number") { return 1; }
      return ascending ? String(x).localeCompare(y) : String(y).localeCompare(x);
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
"""


@dataclasses.dataclass
class GalleryUnit:
    """A unit with a gallery on its layer's page.

    Attributes:
        unit: the unit's index in its layer.
        image: its figure, relative to the layer's directory.
        numbers: label -> value shown beside it (e.g. "SI" -> "0.512").
        tuning: one row per class: ``class`` (name), ``count``, ``mean``,
            ``ci_low``, ``ci_high``, ``preferred``.
    """

    unit: int
    image: str
    numbers: Mapping[str, str]
    tuning: pd.DataFrame


@dataclasses.dataclass
class LayerPage:
    """A layer of a run: its units table, histogram, grid and galleries.

    Attributes:
        name: the probe's name.
        directory: the layer's directory, relative to its run's.
        units: every unit of the layer, one row each, shown as a sortable
            table in column order; the first column must be ``unit``.
        histogram: the SI histogram, relative to `directory`.
        grid: the layer's gallery grid, relative to `directory` (None: none).
        gallery: the units with a figure, in the order shown.
        numbers: label -> value of the layer (mean SI, fraction selective...).
    """

    name: str
    directory: str
    units: pd.DataFrame
    histogram: str
    grid: str | None = None
    gallery: Sequence[GalleryUnit] = ()
    numbers: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class RunPage:
    """A run: its facts and layers.

    Attributes:
        title: e.g. "resnet20, alpha -1, seed 3".
        directory: the run's directory, relative to the pages' root.
        facts: label -> value shown on the index and the run's page; the
            index has one column per label of the first run.
        layers: the run's layers, in network order.
    """

    title: str
    directory: str
    facts: Mapping[str, str]
    layers: Sequence[LayerPage]


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _href(*parts: str) -> str:
    """A relative URL from path parts (POSIX separators, each segment percent-encoded)."""
    path = posixpath.join(*[str(p).replace(os.sep, "/") for p in parts if p])
    return "/".join(urllib.parse.quote(segment) for segment in path.split("/"))


def _page(title: str, body: list, *, sortable: bool = False) -> str:
    script = f"<script>{_SORT_SCRIPT}</script>" if sortable else ""
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{_e(title)}</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
        *body, script, "</body>", "</html>", "",
    ])


def _cell(value) -> str:
    """A table cell: numbers right-aligned with their value to sort by, text escaped."""
    if isinstance(value, bool):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        if math.isnan(number):
            return '<td data-value="NaN">&ndash;</td>'
        shown = str(int(number)) if float(number).is_integer() and abs(number) < 1e15 and isinstance(value, int) \
            else f"{number:.4g}"
        return f'<td data-value="{number!r}">{_e(shown)}</td>'
    try:  # a number as text (the facts): sorted as a number, shown as given
        number = float(value)
    except (TypeError, ValueError):
        return f'<td class="name">{_e(value)}</td>'
    return f'<td data-value="{number!r}">{_e(value)}</td>' if math.isfinite(number) else f"<td>{_e(value)}</td>"


def _python(value):
    return value.item() if hasattr(value, "item") else value


def _numbers(numbers: Mapping[str, str]) -> list:
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in numbers.items())
    return [f'<dl class="numbers">{items}</dl>'] if items else []


def _units_table(units: pd.DataFrame, shown: set) -> list:
    head = "".join(f'<th class="name">{_e(c)}</th>' if units[c].dtype == object else f"<th>{_e(c)}</th>"
                   for c in units.columns)
    rows = []
    for record in units.to_dict("records"):
        values = [_python(record[c]) for c in units.columns]
        unit = int(values[0])
        cells = "".join(_cell(v) for v in values)
        if unit in shown:
            cells = cells.replace(f">{unit}</td>", f'><a href="#unit-{unit}">{unit}</a></td>', 1)
        rows.append(f'<tr{" class=shown" if unit in shown else ""}>{cells}</tr>')
    return ['<table class="sortable" id="units">', f"<thead><tr>{head}</tr></thead>", "<tbody>", *rows,
            "</tbody></table>"]


def _tuning_table(tuning: pd.DataFrame) -> list:
    columns = ["class", "count", "mean", "ci_low", "ci_high"]
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    rows = []
    for record in tuning.to_dict("records"):
        cells = "".join(_cell(_python(record[c])) for c in columns)
        rows.append(f'<tr{" class=shown" if bool(record["preferred"]) else ""}>{cells}</tr>')
    return ['<table class="sortable">', f"<thead><tr>{head}</tr></thead>", "<tbody>", *rows, "</tbody></table>"]


def _layer_page(run: RunPage, layer: LayerPage) -> str:
    shown = {entry.unit for entry in layer.gallery}
    body = [
        f'<nav><a href="{_href("..", "..", INDEX)}">all runs</a> &rsaquo; '
        f'<a href="{_href("..", INDEX)}">{_e(run.title)}</a> &rsaquo; {_e(layer.name)}</nav>',
        f"<h1>{_e(layer.name)} <small>({_e(run.title)})</small></h1>",
        *_numbers(layer.numbers),
        f'<img class="figure" src="{_href(layer.histogram)}" alt="{_e("SI histogram of " + layer.name)}">',
    ]
    if layer.grid:
        body += ["<h2>Units with a gallery</h2>",
                 f'<img class="figure" src="{_href(layer.grid)}" alt="{_e("gallery grid of " + layer.name)}">']
    for entry in layer.gallery:
        body += [
            f'<section class="unit" id="unit-{int(entry.unit)}">', f"<h2>Unit {int(entry.unit)}</h2>",
            f'<img class="figure" src="{_href(entry.image)}" alt="{_e(f"unit {entry.unit} of {layer.name}")}">',
            *_numbers(entry.numbers),
            "<details><summary>Tuning curve (mean response per class, confidence interval)</summary>",
            *_tuning_table(entry.tuning), "</details>", "</section>",
        ]
    body += ["<h2>Every unit</h2>",
             '<p class="note">Click a column to sort by it; highlighted units have a gallery above.</p>',
             *_units_table(layer.units, shown)]
    return _page(f"{layer.name} - {run.title}", body, sortable=True)


def _run_page(run: RunPage) -> str:
    rows = []
    for layer in run.layers:
        link = _href(layer.directory, INDEX)
        numbers = "".join(f"<div>{_e(k)}: {_e(v)}</div>" for k, v in layer.numbers.items())
        thumb = _href(layer.directory, layer.histogram)
        rows.append(
            f'<tr><td class="name"><a href="{link}">{_e(layer.name)}</a></td><td class="name">{numbers}</td>'
            f'<td><a href="{link}"><img class="thumb" src="{thumb}" alt="{_e("SI histogram of " + layer.name)}">'
            f"</a></td></tr>"
        )
    body = [
        f'<nav><a href="{_href("..", INDEX)}">all runs</a> &rsaquo; {_e(run.title)}</nav>',
        f"<h1>{_e(run.title)}</h1>", *_numbers(run.facts),
        '<table><thead><tr><th class="name">layer</th><th class="name">numbers</th><th>SI of its units</th>'
        "</tr></thead><tbody>", *rows, "</tbody></table>",
    ]
    return _page(run.title, body)


def _index_page(runs: Sequence[RunPage], title: str, notes: Sequence[str]) -> str:
    labels = list(runs[0].facts) if runs else []
    def numeric(label):
        return all(_cell(run.facts.get(label, "")).startswith("<td data-value") for run in runs)

    head = '<th class="name">run</th>' + "".join(
        f"<th>{_e(label)}</th>" if numeric(label) else f'<th class="name">{_e(label)}</th>' for label in labels
    ) + "<th>layers</th>"
    rows = []
    for run in runs:
        cells = "".join(_cell(run.facts.get(label, "")) for label in labels)
        rows.append(f'<tr><td class="name"><a href="{_href(run.directory, INDEX)}">{_e(run.title)}</a></td>'
                    f"{cells}{_cell(len(run.layers))}</tr>")
    body = [f"<h1>{_e(title)}</h1>", *[f'<p class="note">{_e(note)}</p>' for note in notes],
            '<table class="sortable">', f"<thead><tr>{head}</tr></thead>", "<tbody>", *rows, "</tbody></table>"]
    return _page(title, body, sortable=True)


def _write(path: str, text: str) -> None:
    # (The analysis writes into its staging directory, replaced as a whole.)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_unit_pages(root: str, runs: Sequence[RunPage], *, title: str = "Unit galleries",
                     notes: Sequence[str] = ()) -> list:
    """Writes the index, one page per run and one per layer under `root`.

    Args:
        root: the pages' directory (created); the figures named by `runs`
            must lie under it, at the relative paths given.
        runs: the runs, in the order listed on the index.
        title: the index's title.
        notes: sentences shown under the title (e.g. how units were chosen).

    Returns:
        The written HTML files: the index first, then each run's page
        followed by its layers' pages.
    """
    os.makedirs(root, exist_ok=True)
    written = [os.path.join(root, INDEX)]
    _write(written[0], _index_page(runs, title, notes))
    for run in runs:
        run_dir = os.path.join(root, run.directory)
        os.makedirs(run_dir, exist_ok=True)
        written.append(os.path.join(run_dir, INDEX))
        _write(written[-1], _run_page(run))
        for layer in run.layers:
            layer_dir = os.path.join(run_dir, layer.directory)
            os.makedirs(layer_dir, exist_ok=True)
            written.append(os.path.join(layer_dir, INDEX))
            _write(written[-1], _layer_page(run, layer))
    return written

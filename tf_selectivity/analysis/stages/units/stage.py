"""The units stage (``--units_page``): unit galleries of every analysed run and the pages to browse them.

Per run (`compute`, cached): its galleries are drawn into its cache entry
(`run_galleries.draw_run_galleries`: per shown layer, each chosen unit's
figure, the layer's grid and its SI histogram), from the run's rows of the
selectivity stage's units table (the units shown are chosen by their SI; the
figures show the null's p-values and the histograms the units selective
above chance). The cache key holds every setting those figures depend on,
so a repeated analysis draws nothing again.

Across runs (`combine`): each run's figures are copied to
``units/<run>/<layer>/``, the HTML pages written (`pages`: ``units/index.html``
-> runs -> layers, their contents from the tables, `contents`), the tables
``unit_gallery``, ``unit_gallery_images`` and ``unit_gallery_tuning``, and the
report's "Unit pages" section.
"""

from __future__ import annotations

import os

from tf_selectivity.analysis.runs import RunLoadError, error_for
from tf_selectivity.analysis.stage import RunResult, Stage, settings_key
from tf_selectivity.analysis.stages.units.options import UnitsOptions
from tf_selectivity.core.files import naming_full_disk
from tf_selectivity.core.settings import ParameterError

__all__ = ["UnitsStage", "UNITS_DIR"]

# The pages' folder in the analysis' output.
UNITS_DIR = "units"
# The folder of a cache entry holding the run's gallery figures.
GALLERIES = "galleries"


class UnitsStage(Stage):
    """See the module docstring."""

    name = "units"
    options_class = UnitsOptions
    requires = ("selectivity",)

    def enabled(self, options):
        return options.units.page

    def check(self, runs, options):
        """Named layers and unit indices, against the widths in each run's model.keras config."""
        from tf_selectivity.analysis.stages.units.selection import check_unit_choices

        check_unit_choices(runs, options)

    def cache_key(self, options):
        selectivity = options.selectivity
        key = (settings_key(options.units), options.selectivity_index, selectivity.precision_top_n,
               options.batch_size)
        if selectivity.null_permutations:  # the figures show p-values, the histograms the selective units
            key += (selectivity.null_permutations, selectivity.null_seed, selectivity.fdr, selectivity.fdr_method)
        return key

    def compute(self, run):
        from tf_selectivity.analysis.stages.units.options import parse_unit_specs
        from tf_selectivity.analysis.stages.units.run_galleries import draw_run_galleries

        data = run.test_data
        layers, tables = draw_run_galleries(run, _run_units(run), parse_unit_specs(run.options.units.named_units),
                                            os.path.join(run.directory, GALLERIES), run.analysis.verbose)
        warnings = []
        if run.options.units.gallery_k > len(data.labels):
            warnings.append(f"--gallery_k={run.options.units.gallery_k} is more than the {len(data.labels):,} test "
                            f"images of {data.spec}: each gallery ranks all of them")
        return RunResult(tables=tables, values={"layers": layers, "class_names": list(data.class_names),
                                                "test_data": data.spec}, warnings=warnings)

    def run_error(self, run, error):
        if isinstance(error, ParameterError) or not isinstance(error, (RunLoadError, OSError, ValueError, KeyError)):
            return None  # the user's choice of units, or a bug: the whole analysis fails
        return f"unit galleries: {error_for(run.run_dir, error)}"

    def combine(self, results, context):
        """Copies each run's figures under ``units/``, writes the pages; the gallery tables and the section."""
        import shutil

        import pandas as pd

        from tf_selectivity.analysis.stages.units.contents import run_page
        from tf_selectivity.analysis.stages.units.options import parse_unit_specs
        from tf_selectivity.analysis.stages.units.pages import write_unit_pages

        options = context.options
        if not results:
            return {"_section": ["## Unit pages", "",
                                 "No run's unit galleries could be drawn (see the errors below)."]}
        units = context.tables["selectivity"]["units"]
        root = context.output_path(UNITS_DIR)
        pages, tables = [], {}
        for run_dir, result in results.items():
            values = result.values
            page = run_page(run_dir, context.run_row(run_dir), units[units["run_dir"] == run_dir], result.tables,
                            values["layers"], values["class_names"], values["test_data"])
            with naming_full_disk(os.path.join(root, page.directory)):
                shutil.copytree(os.path.join(result.directory, GALLERIES), os.path.join(root, page.directory))
            pages.append(page)
            for name, frame in result.tables.items():
                tables.setdefault(name, []).append(frame.assign(run_dir=run_dir))
        written = {}
        for name, frames in tables.items():
            frame = pd.concat(frames, ignore_index=True)
            written[name] = context.with_condition_names(frame[["run_dir"] + [c for c in frame.columns if c != "run_dir"]])
        named = parse_unit_specs(options.units.named_units)
        notes = [
            f"Per layer its most and least selective live unit{' and the units named by --units' if named else ''}: "
            f"the top {options.units.gallery_k} test images by the spatial maximum and by the spatial mean of the "
            "unit's feature map, outlined where the map exceeds the unit's top 0.5% over the test set, and its class "
            "tuning curve with 95% confidence intervals.",
        ]
        with naming_full_disk(root):
            write_unit_pages(root, pages, notes=notes)
        galleries = sum(len(layer.gallery) for page in pages for layer in page.layers)
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(root) for f in files)
        return {**written, "_section": [
            "## Unit pages", "",
            f"[{UNITS_DIR}/index.html]({UNITS_DIR}/index.html): {len(pages)} run(s), "
            f"{sum(len(page.layers) for page in pages)} layers, {galleries} unit galleries (top "
            f"{options.units.gallery_k} images by spatial max and mean, outlined maps, tuning curves); "
            f"{size / 1e6:.1f} MB. Open it from disk in a browser; tables `unit_gallery`, `unit_gallery_images` and "
            "`unit_gallery_tuning` hold the numbers.",
        ]}

    def section(self, tables, context):
        return tables["_section"]


def _run_units(run):
    """The run's rows of the units table as the selectivity stage combines them (q-values with the null)."""
    from tf_selectivity.analysis.stages.selectivity.null import add_fdr

    result = run.result("selectivity")
    units = result.tables["units"]
    settings = run.options.selectivity
    if settings.null_permutations:
        _, _, units = add_fdr(result.values["run"], result.values["layers"], units,
                              num_permutations=settings.null_permutations, fdr=settings.fdr,
                              method=settings.fdr_method)
    return units

"""The units stage (``--units_page``): unit galleries of every analysed run and the page to browse them.

Drawn after the selectivity stage's tables are combined (the units shown
are chosen by their SI, and the pages show the null's p- and q-values), by
`analysis.units_stage.unit_pages`: figures under ``units/``, the HTML pages
``units/index.html`` -> runs -> layers, the tables ``unit_gallery``,
``unit_gallery_images`` and ``unit_gallery_tuning``, and the report's
"Unit pages" section.
"""

from __future__ import annotations

from tf_selectivity.analysis.stage import Stage
from tf_selectivity.analysis.stages.units.options import UnitsOptions

__all__ = ["UnitsStage"]


class UnitsStage(Stage):
    """See the module docstring."""

    name = "units"
    options_class = UnitsOptions
    requires = ("selectivity",)

    def enabled(self, options):
        return options.units.page

    def check(self, runs, options):
        """Named layers and unit indices, against the widths in each run's model.keras config."""
        from tf_selectivity.analysis.units_stage import check_unit_choices

        check_unit_choices(runs, options)

    def combine(self, results, context):
        from tf_selectivity.analysis.units_stage import unit_pages

        tables, section = unit_pages(context)
        return {**tables, "_section": section}

    def section(self, tables, context):
        return tables["_section"]

"""The units stage: unit galleries and their HTML page (drawn by `analysis.units_stage`, `analysis.unit_page`)."""

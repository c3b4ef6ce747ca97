"""Which units get a gallery: each shown layer's most and least selective live unit, and the named ones.

`check_unit_choices` checks the layers and units named by the settings
(``units.named_units``, ``units.gallery_layers``) against the runs before
any pass over the data; `check_unit_range` checks the named units against
the units a run actually has; `chosen_units` picks a run's units from its
rows of the units table.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from tf_selectivity.analysis.runs import probe_widths
from tf_selectivity.analysis.stages.units.options import parse_unit_specs
from tf_selectivity.core.settings import ParameterError

__all__ = ["check_unit_choices", "check_unit_range", "chosen_units", "gallery_layers"]


def check_unit_choices(records, options) -> dict:
    """The named units, checked against the runs; raises before anything is computed.

    Unit indices are checked against the widths in each run's
    ``model.keras`` config (`probe_widths`: no weights, no backend); a run
    whose config gives none is checked against its responses when its
    galleries are drawn (`check_unit_range`).

    Args:
        records: the runs (`RunRecord`s; their summaries name the probes).
        options: `AnalysisOptions` (``units.named_units``, ``units.gallery_layers``).

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
    if named:
        check_unit_range(named, {(record.run_dir, layer): width for record in records if not record.diverged
                                 for layer, width in probe_widths(record).items()})
    return named


def check_unit_range(named: Mapping, widths: Mapping) -> None:
    """Raises ParameterError for a named unit beyond its layer's units.

    Args:
        named: layer -> named unit indices.
        widths: (run directory, layer) -> the layer's number of units in that run.
    """
    for (run_dir, layer), width in widths.items():
        for index in named.get(layer, ()):
            if index >= width:
                raise ParameterError("units.named_units", f"unit {index} of layer {layer} is out of range: it has "
                                                          f"units 0..{width - 1} (in {run_dir})")


def gallery_layers(probes, options, named: Mapping) -> list:
    """The probes of a run whose galleries are drawn, in network order (``units.gallery_layers``, else all;
    and those with named units)."""
    chosen = options.units.gallery_layers
    return [name for name in probes if chosen is None or name in chosen or name in named]


def chosen_units(run_units: pd.DataFrame, layers, named: Mapping) -> dict:
    """layer -> unit indices: the most and least selective live unit (any unit where none lives), plus the named ones.

    Args:
        run_units: the run's rows of the units table.
        layers: the layers shown.
        named: layer -> named unit indices.
    """
    chosen = {}
    for layer in layers:
        rows = run_units[run_units["layer"] == layer]
        alive = rows[~rows["dead"].astype(bool)]
        pool = alive if len(alive) else rows
        si = pool["selectivity"].to_numpy()
        picked = {int(pool["unit"].iloc[int(np.nanargmax(si))]), int(pool["unit"].iloc[int(np.nanargmin(si))])}
        chosen[layer] = sorted(picked | set(named.get(layer, ())))
    return chosen

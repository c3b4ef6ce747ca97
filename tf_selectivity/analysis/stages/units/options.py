"""Settings of the units stage: the unit galleries and their HTML page."""

from __future__ import annotations

import dataclasses
from typing import Optional

from tf_selectivity.core.settings import ParameterError, positive, setting

__all__ = ["UnitsOptions", "parse_unit_specs", "unit_specs_problem"]


def parse_unit_specs(specs) -> dict:
    """``("conv1:3", "17", "conv2:5")`` (or ``("conv1:3,17",)``) -> ``{"conv1": [3, 17], "conv2": [5]}``.

    A unit index without a layer belongs to the last layer named before it.

    Raises:
        ParameterError: (for ``units.named_units``) an index before any
            layer, an empty layer name, or an index that is not an integer >= 0.
    """
    parameter = "units.named_units"
    chosen, layer = {}, None
    tokens = [token.strip() for spec in (specs or ()) for token in str(spec).split(",") if token.strip()]
    for token in tokens:
        if ":" in token:
            layer, token = (part.strip() for part in token.rsplit(":", 1))
            if not layer:
                raise ParameterError(parameter, f"must name a layer before ':' (LAYER:3,17); got {token!r}")
            chosen.setdefault(layer, [])
            if not token:
                raise ParameterError(parameter, f"names no unit of layer {layer} (LAYER:3,17)")
        elif layer is None:
            raise ParameterError(parameter, f"must start with a layer: LAYER:3,17,...; got {token!r} first")
        if not token.isdigit():
            raise ParameterError(
                parameter, f"must hold unit indices that are integers >= 0; got {token!r} for layer {layer}")
        if int(token) not in chosen[layer]:
            chosen[layer].append(int(token))
    return chosen


def unit_specs_problem(specs):
    """`setting` check of ``named_units``: what is wrong with the specs, or None."""
    try:
        parse_unit_specs(specs)
    except ParameterError as error:
        return error.problem
    return None


@dataclasses.dataclass
class UnitsOptions:
    """`AnalysisOptions.units`: whether the unit pages are drawn, and of which units and layers."""

    page: bool = setting(
        False,
        "Unit galleries (top images by spatial max and mean with outlined maps, tuning curve, numbers) and a "
        "static HTML page to browse them, units/index.html: runs -> layers (SI histogram) -> units.",
        flag_name="units_page",
    )
    named_units: Optional[tuple] = setting(
        None,
        "Units shown with --units_page besides each layer's most and least selective: LAYER:3,17,... "
        "(a unit index after a layer belongs to it; several layers: conv1:3,17,conv2:5).",
        check=unit_specs_problem, item=str, flag_name="units",
    )
    gallery_k: int = setting(10, "Top images per unit and ranking in the unit galleries (NetDissect: 10).",
                             check=positive)
    gallery_layers: Optional[tuple] = setting(
        None, "Probed layers whose galleries --units_page draws (default: every probe).", item=str,
    )

    def __post_init__(self):
        if self.named_units is not None:
            self.named_units = tuple(str(spec).strip() for spec in self.named_units if str(spec).strip()) or None
        if self.gallery_layers is not None:
            self.gallery_layers = tuple(str(name).strip() for name in self.gallery_layers if str(name).strip()) or None

    def validate(self, options) -> None:
        """Checks that need the other settings (`options`, the `AnalysisOptions`)."""
        if not self.page:
            for name in ("named_units", "gallery_layers"):
                if getattr(self, name) is not None:
                    raise ParameterError(f"units.{name}", "applies only with --units_page (the unit galleries)")

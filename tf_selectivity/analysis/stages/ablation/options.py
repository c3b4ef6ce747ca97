"""Settings of the ablation stage: ablation curves and single-unit importance."""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

from tf_selectivity.core.settings import ParameterError, names, positive, setting

__all__ = ["AblationOptions"]


def _fractions(values):
    bad = [v for v in values if not (math.isfinite(v) and 0.0 <= v <= 1.0)]
    if bad or not values:
        return f"must be fractions in [0, 1]; got {', '.join(map(str, bad)) or 'none'}"
    return None


@dataclasses.dataclass
class AblationOptions:
    """`AnalysisOptions.ablation`: what is ablated, how and on which images (every run's model.keras is loaded)."""

    curves: bool = setting(
        False,
        "Ablation curves: test accuracy as each probed layer's units are zeroed cumulatively, most selective "
        "first, least selective first and in random orders (table ablation_curves, figures, report section).",
        flag_name="ablation",
    )
    unit_importance: bool = setting(
        False,
        "Single-unit importance: the accuracy drop (overall and of the class hit hardest) when each unit alone "
        "is ablated, and its Spearman correlation with SI per layer (tables unit_importance, "
        "importance_correlations).",
        flag_name="unit_ablation",
    )
    layers: Optional[tuple] = setting(
        None, "Probes ablated by --ablation/--unit_ablation (default: all); a name no run has is an error.",
        check=names, item=str, flag_name="ablation_layers",
    )
    fractions: tuple = setting(
        None, "Fractions of a layer's units ablated, in [0, 1], for --ablation.",
        default_factory=lambda: (0.0, 0.1, 0.25, 0.5, 0.75, 1.0), check=_fractions, item=float,
        flag_name="ablation_fractions",
    )
    random_orders: int = setting(
        3, "Random orders of --ablation (seeds 0..R-1), the baseline selective-first is compared with.",
        check=positive, flag_name="ablation_random_orders",
    )
    mode: str = setting(
        "zero", "Ablated units' value: zero, or mean (the unit's mean test response, at every position).",
        choices=("zero", "mean"), flag_name="ablation_mode",
    )
    max_samples: Optional[int] = setting(
        None,
        "Ablate on N test images only (default: all), the first of each class in turn: --ablation/"
        "--unit_ablation accuracies are then on N images (a CPU-sized reproduction).",
        check=positive, flag_name="ablation_max_samples",
    )

    def validate(self, options) -> None:
        """Checks that need the other settings (`options`, the `AnalysisOptions`)."""
        if not (self.curves or self.unit_importance):
            for name in ("layers", "max_samples"):
                if getattr(self, name) is not None:
                    raise ParameterError(f"ablation.{name}", "applies only with --ablation or --unit_ablation")

"""Settings of the initialization stage."""

from __future__ import annotations

import dataclasses

from tf_selectivity.core.settings import non_negative, setting

__all__ = ["InitializationOptions"]


@dataclasses.dataclass
class InitializationOptions:
    """`AnalysisOptions.initialization`: SI of each run's network before training, beside its SI after."""

    enabled: bool = setting(
        True,
        "Beside each run's selectivity, that of the same network at initialization (built from the run's "
        "configuration and seed, untrained) on the same test images: the SI that needs no learning (table "
        "initialization). Costs two forward passes per run over --initialization_max_samples images.",
        flag_name="initialization",
    )
    max_samples: int = setting(
        1000,
        "Test images of --initialization, the classes in turn (0: the whole test set); trained and untrained "
        "networks are measured on the same images.",
        check=non_negative, flag_name="initialization_max_samples",
    )

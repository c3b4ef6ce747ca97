"""Settings of the training-curves stage."""

from __future__ import annotations

import dataclasses

from tf_selectivity.core.settings import setting

__all__ = ["TrainingCurvesOptions"]


@dataclasses.dataclass
class TrainingCurvesOptions:
    """`AnalysisOptions.training_curves`: the SI recorded while training (``--selectivity_every``,
    ``--selectivity_every_steps``)."""

    enabled: bool = setting(
        True,
        "Where runs recorded the SI while training (--selectivity_every, --selectivity_every_steps), draw SI vs "
        "epoch per alpha beside validation accuracy and report the epoch each layer's SI reaches half its final "
        "value.",
        flag_name="training_curves",
    )

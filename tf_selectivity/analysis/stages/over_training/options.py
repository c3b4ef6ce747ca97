"""Settings of the over-training stage: the measures of every kept checkpoint."""

from __future__ import annotations

import dataclasses
from typing import Optional

from tf_selectivity.core.settings import ParameterError, names, permutation_count, positive, setting

__all__ = ["OverTrainingOptions"]


@dataclasses.dataclass
class OverTrainingOptions:
    """`AnalysisOptions.over_training`: the network as it was at each kept checkpoint (``train --keep_checkpoints``)."""

    enabled: bool = setting(
        False,
        "For runs trained with --keep_checkpoints: per kept checkpoint and probed layer, SI, the fraction of units "
        "selective above chance, single-unit ablation importance and its correlation with SI, and how far the "
        "network is from linear (tables over_training*, figures on a log-epoch axis, the early-training claims).",
        flag_name="over_training",
    )
    layers: Optional[tuple] = setting(
        None, "Probes measured by --over_training (default: all); a name no run has is an error.",
        check=names, item=str, flag_name="over_training_layers",
    )
    max_samples: int = setting(
        1000,
        "Test images of --over_training per checkpoint (a class-balanced subset; every measure uses the same): "
        "each checkpoint costs one pass, the null's permutations and one pass per ablated unit over them.",
        check=positive, flag_name="over_training_max_samples",
    )
    null_permutations: int = setting(
        100,
        "Label permutations per checkpoint of the units' null (--selectivity_null's test, its seed, --fdr and "
        "--fdr_method), for the fraction selective above chance (0: off).",
        check=permutation_count, flag_name="over_training_null",
    )
    unit_ablation: bool = setting(
        True, "Ablate each probed unit alone at every checkpoint (--unit_ablation's measure; the costliest part).",
        flag_name="over_training_ablation",
    )
    linearity_pairs: int = setting(
        250, "Pairs of test images of the midpoint nonlinearity (measures.linearity) per checkpoint.",
        check=positive, flag_name="over_training_linearity_pairs",
    )
    early_epochs: float = setting(
        1.0,
        "The early phase of the claims: kept checkpoints after 0 up to this epoch (the paper's first few "
        "epochs of 90); the last checkpoint after it is 'late'.",
        check=positive, flag_name="over_training_early_epochs",
    )

    def validate(self, options) -> None:
        """Checks that need the other settings (`options`, the `AnalysisOptions`)."""
        if not self.enabled and self.layers is not None:
            raise ParameterError("over_training.layers", "applies only with --over_training")

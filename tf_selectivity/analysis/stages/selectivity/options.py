"""Settings of the selectivity stage: precision and the label-permutation null."""

from __future__ import annotations

import dataclasses

from tf_selectivity.core.settings import in_unit_interval, permutation_count, positive, setting
from tf_selectivity.measures.fdr import DEFAULT_FDR, FDR_METHODS

__all__ = ["SelectivityOptions"]


@dataclasses.dataclass
class SelectivityOptions:
    """`AnalysisOptions.selectivity`: the per-unit measures of every run's test pass."""

    precision_top_n: int = setting(
        1000,
        "N of the precision metric: the N test images that drive a unit hardest (paper A.5: 1000, the "
        "test images per class of CIFAR-10); capped at the test images per class.",
        check=positive,
    )
    null_permutations: int = setting(
        0,
        "B label permutations per run for every unit's null distribution of the index: p-value "
        "(1 + #{null >= observed}) / (1 + B), q-values over the run's units, chance-corrected SI "
        "(observed - null mean) and the units selective above chance (0: off; 1000 is usual).",
        check=permutation_count, flag_name="selectivity_null",
    )
    null_seed: int = setting(
        0, "Seed of the label permutations (the same permutations for every layer and run on one test set).",
        flag_name="selectivity_null_seed",
    )
    fdr: float = setting(
        DEFAULT_FDR, "False discovery rate of --selectivity_null: a unit is selective when its q-value is below it.",
        check=in_unit_interval(low_open=True, high_open=True),
    )
    fdr_method: str = setting(
        "bh", "q-values of --selectivity_null: bh (Benjamini-Hochberg) or by (Benjamini-Yekutieli, any dependence).",
        choices=FDR_METHODS,
    )

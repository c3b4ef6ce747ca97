"""Settings of the similarity stage: Figure 3's measures and the layer-by-layer maps."""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

from tf_selectivity.core.settings import ParameterError, in_unit_interval, positive, setting

__all__ = ["SimilarityOptions", "SIMILARITY_MEASURES", "CCA_PWCCA_VARIANTS"]

# Measures of Figure 3 (`--similarity`): CCA (tf_selectivity.measures.similarity.cca) and the
# measures of tf_selectivity.measures.similarity computed from the same factors.
SIMILARITY_MEASURES = ("pwcca", "svcca", "linear_cka", "debiased_cka", "procrustes")
# google/svcca's compute_pwcca (the paper's), the textbook PWCCA, or both.
CCA_PWCCA_VARIANTS = ("svcca", "textbook", "both")


def _similarity_measures(measures):
    unknown = sorted(set(measures) - set(SIMILARITY_MEASURES))
    if unknown or not measures:
        return f"must be among {', '.join(SIMILARITY_MEASURES)}; got {', '.join(unknown) or 'nothing'}"
    if len(set(measures)) != len(measures):
        return f"must name each measure once; got {', '.join(measures)}"
    return None


def _finite_numbers(values):
    bad = [v for v in values if not math.isfinite(v)]
    return f"must be finite numbers; got {bad[0]}" if bad else None


@dataclasses.dataclass
class SimilarityOptions:
    """`AnalysisOptions.similarity`: which runs are compared, by which measures, on which datapoints."""

    enabled: str = setting(
        "auto", "Figure 3 CCA analysis; auto: when a model has alpha=0 runs and >= 2 replicates at another alpha.",
        choices=("auto", "true", "false"), flag_name="cca",
    )
    measures: tuple = setting(
        None,
        "Figure 3 measures, all from one pass over each run's responses: pwcca (the paper's), svcca, "
        "linear_cka, debiased_cka (distance 1 - CKA) and procrustes (angular, rotations only); the "
        "tables' method column names the measure.",
        default_factory=lambda: ("pwcca", "debiased_cka"), check=_similarity_measures, item=str,
        flag_name="similarity",
    )
    pwcca_variant: str = setting(
        "svcca",
        "PWCCA as google/svcca's compute_pwcca computes it (svcca: the paper's), as Morcos et al. define "
        "it (textbook), or both from the same factors; tables say which in their pwcca_variant column, "
        "figures and report show svcca unless only textbook was computed.",
        choices=CCA_PWCCA_VARIANTS, flag_name="cca_pwcca_variant",
    )
    procrustes_alpha: float = setting(
        1.0,
        "Partial whitening of the procrustes measure, in [0, 1]: 1 compares up to rotations only, 0 "
        "whitens fully (CCA-like, invariant to any invertible linear map).",
        check=in_unit_interval(high_open=False),
    )
    maps: bool = setting(
        False,
        "Layer-by-layer maps (Kornblith et al.'s Figure 2): every layer against every layer for one "
        "within-alpha and one to-baseline pair of runs per treated alpha (table similarity_maps, figure "
        "figS_similarity_maps_<model>).",
        flag_name="similarity_maps",
    )
    map_measure: str = setting(
        "debiased_cka", "Measure of --similarity_maps.", choices=("debiased_cka", "linear_cka"),
        flag_name="similarity_map_measure",
    )
    spatial: str = setting(
        "average", "Conv layers in CCA: units averaged over positions, or positions as datapoints (subsampled).",
        choices=("average", "positions"), flag_name="cca_spatial",
    )
    max_datapoints: int = setting(
        10_000, "Datapoints kept per layer with --cca_spatial=positions.", check=positive,
        flag_name="cca_max_datapoints",
    )
    alphas: Optional[tuple] = setting(
        None, "Treated alphas compared with the baseline (default: all with >= 2 replicates).",
        check=_finite_numbers, item=float, flag_name="cca_alphas",
    )
    # Runs sharing a seed share initial weights and batch order: not
    # independent replicates, so left out of CCA pairs unless asked for.
    same_seed_pairs: bool = setting(
        False,
        "Also compare runs that share a seed (the paper's 20 x 20 = 400 to-baseline pairs). Off by "
        "default: a seed fixes initial weights, batch order and augmentation, so such runs are not "
        "independent replicates and bias the CCA distance ratio down.",
        flag_name="cca_same_seed_pairs",
    )

    def __post_init__(self):
        self.measures = tuple(str(m).strip().lower() for m in self.measures if str(m).strip())
        if self.alphas is not None:
            self.alphas = tuple(float(a) for a in self.alphas) or None

    def validate(self, options) -> None:
        """Checks that need the other settings (`options`, the `AnalysisOptions`)."""
        unbiased = [m for m in self.measures if m == "debiased_cka"]
        if self.maps and self.map_measure == "debiased_cka":
            unbiased.append("--similarity_map_measure=debiased_cka")
        if unbiased and options.max_test_samples is not None and options.max_test_samples < 4:
            raise ParameterError(
                "max_test_samples",
                f"must be at least 4 with debiased CKA (the unbiased HSIC divides by n (n - 3); "
                f"leave debiased_cka out of --similarity for fewer); got {options.max_test_samples}")

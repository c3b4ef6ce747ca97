"""`AnalysisOptions`: the settings of one analysis, each defined once.

The flags of ``python -m tf_selectivity.analyze`` are derived from these
fields (`tf_selectivity.core.settings.define_flags`); a bad value raises a
`ParameterError` naming the field, which the command reports as its flag.
Imports neither Keras nor pandas.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

from tf_selectivity.measures.fdr import DEFAULT_FDR, FDR_METHODS
from tf_selectivity.core.settings import check_settings, finite, in_unit_interval, positive, setting
from tf_selectivity.measures.selectivity_index import DEFAULT_SELECTIVITY_INDEX, INDEX_HELP, SELECTIVITY_INDICES

__all__ = ["AnalysisOptions", "SIMILARITY_MEASURES", "CCA_PWCCA_VARIANTS", "parse_unit_specs"]

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


def _permutations(value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return f"must be a number of permutations B >= 1 (0: off); got {value!r}"
    return None


def parse_unit_specs(specs) -> dict:
    """``("conv1:3", "17", "conv2:5")`` (or ``("conv1:3,17",)``) -> ``{"conv1": [3, 17], "conv2": [5]}``.

    A unit index without a layer belongs to the last layer named before it.

    Raises:
        ParameterError: (for ``units``) an index before any layer, an empty
            layer name, or an index that is not an integer >= 0.
    """
    from tf_selectivity.core.settings import ParameterError

    chosen, layer = {}, None
    tokens = [token.strip() for spec in (specs or ()) for token in str(spec).split(",") if token.strip()]
    for token in tokens:
        if ":" in token:
            layer, token = (part.strip() for part in token.rsplit(":", 1))
            if not layer:
                raise ParameterError("units", f"must name a layer before ':' (LAYER:3,17); got {token!r}")
            chosen.setdefault(layer, [])
            if not token:
                raise ParameterError("units", f"names no unit of layer {layer} (LAYER:3,17)")
        elif layer is None:
            raise ParameterError("units", f"must start with a layer: LAYER:3,17,...; got {token!r} first")
        if not token.isdigit():
            raise ParameterError(
                "units", f"must hold unit indices that are integers >= 0; got {token!r} for layer {layer}")
        if int(token) not in chosen[layer]:
            chosen[layer].append(int(token))
    return chosen


def unit_specs_problem(specs):
    """`setting` check of ``units``: what is wrong with the specs, or None."""
    try:
        parse_unit_specs(specs)
    except ValueError as error:
        return error.problem if hasattr(error, "problem") else str(error)
    return None


def _finite_numbers(values):
    bad = [v for v in values if not math.isfinite(v)]
    return f"must be finite numbers; got {bad[0]}" if bad else None


def _names(values):
    if not values or any(not str(v).strip() for v in values):
        return f"must be layer names; got {', '.join(map(str, values)) or 'none'}"
    return None


def _fractions(values):
    bad = [v for v in values if not (math.isfinite(v) and 0.0 <= v <= 1.0)]
    if bad or not values:
        return f"must be fractions in [0, 1]; got {', '.join(map(str, bad)) or 'none'}"
    return None


# Issue 18 (robustness): the perturbations of --robustness.
ROBUSTNESS_HELP = "corruptions:SOURCE (SOURCE: generated, cifar10c:PATH, tfds:cifar10_corrupted or tinyimagenetc:PATH), fgsm, pgd"


def _robustness(items):
    corruptions = [i for i in items if i.startswith("corruptions:")]
    unknown = [i for i in items if i not in ("fgsm", "pgd") and not i.startswith("corruptions:")]
    if unknown:
        return f"must be among {ROBUSTNESS_HELP}; got {unknown[0]!r}"
    if len(corruptions) > 1 or len(set(items)) != len(items):
        return f"must name each perturbation once (one corruption source); got {', '.join(items)}"
    return None


def _severities(values):
    bad = [v for v in values if not 1 <= v <= 5]
    if bad or not values:
        return f"must be corruption severities from 1 to 5; got {bad[0] if bad else 'none'}"
    if len(set(values)) != len(values):
        return f"must name each severity once; got {', '.join(map(str, values))}"
    return None


def _epsilons(values):
    bad = [v for v in values if not (math.isfinite(v) and v >= 0)]
    if bad or not values:
        return f"must be attack budgets >= 0 in pixel units (8 = 8/255); got {bad[0] if bad else 'none'}"
    return None


@dataclasses.dataclass
class AnalysisOptions:
    """Settings of one analysis (the flags of `python -m tf_selectivity.analyze`)."""

    dataset: Optional[str] = setting(
        None, "Test data to use instead of each run's own (e.g. imagefolder:PATH)."
    )
    data_dir: Optional[str] = setting(None, "tensorflow-datasets directory for --dataset=cifar10.")
    batch_size: int = setting(500, "Test images per batch.", check=positive)
    precision_top_n: int = setting(
        1000,
        "N of the precision metric: the N test images that drive a unit hardest (paper A.5: 1000, the "
        "test images per class of CIFAR-10); capped at the test images per class.",
        check=positive,
    )
    max_test_samples: Optional[int] = setting(
        None, "Use only N test images (quick looks): the first of each class in turn, so that a test set stored "
        "by class still gives every class.", check=positive
    )
    cca: str = setting(
        "auto", "Figure 3 CCA analysis; auto: when a model has alpha=0 runs and >= 2 replicates at another alpha.",
        choices=("auto", "true", "false"),
    )
    similarity: tuple = setting(
        None,
        "Figure 3 measures, all from one pass over each run's responses: pwcca (the paper's), svcca, "
        "linear_cka, debiased_cka (distance 1 - CKA) and procrustes (angular, rotations only); the "
        "tables' method column names the measure.",
        default_factory=lambda: ("pwcca", "debiased_cka"), check=_similarity_measures, item=str,
    )
    cca_pwcca_variant: str = setting(
        "svcca",
        "PWCCA as google/svcca's compute_pwcca computes it (svcca: the paper's), as Morcos et al. define "
        "it (textbook), or both from the same factors; tables say which in their pwcca_variant column, "
        "figures and report show svcca unless only textbook was computed.",
        choices=CCA_PWCCA_VARIANTS,
    )
    procrustes_alpha: float = setting(
        1.0,
        "Partial whitening of the procrustes measure, in [0, 1]: 1 compares up to rotations only, 0 "
        "whitens fully (CCA-like, invariant to any invertible linear map).",
        check=in_unit_interval(high_open=False),
    )
    similarity_maps: bool = setting(
        False,
        "Layer-by-layer maps (Kornblith et al.'s Figure 2): every layer against every layer for one "
        "within-alpha and one to-baseline pair of runs per treated alpha (table similarity_maps, figure "
        "figS_similarity_maps_<model>).",
    )
    similarity_map_measure: str = setting(
        "debiased_cka", "Measure of --similarity_maps.", choices=("debiased_cka", "linear_cka"),
    )
    cca_spatial: str = setting(
        "average", "Conv layers in CCA: units averaged over positions, or positions as datapoints (subsampled).",
        choices=("average", "positions"),
    )
    cca_max_datapoints: int = setting(
        10_000, "Datapoints kept per layer with --cca_spatial=positions.", check=positive
    )
    cca_alphas: Optional[tuple] = setting(
        None, "Treated alphas compared with the baseline (default: all with >= 2 replicates).",
        check=_finite_numbers, item=float,
    )
    # Runs sharing a seed share initial weights and batch order: not
    # independent replicates, so left out of CCA pairs unless asked for.
    cca_same_seed_pairs: bool = setting(
        False,
        "Also compare runs that share a seed (the paper's 20 x 20 = 400 to-baseline pairs). Off by "
        "default: a seed fixes initial weights, batch order and augmentation, so such runs are not "
        "independent replicates and bias the CCA distance ratio down.",
    )
    baseline_alpha: float = setting(0.0, "Alpha of the unregularized baseline runs.", check=finite)
    selectivity_index: str = setting(
        DEFAULT_SELECTIVITY_INDEX,
        f"Index in every reported SI: {INDEX_HELP} Whatever the runs were trained with.",
        choices=SELECTIVITY_INDICES,
    )
    selectivity_null: int = setting(
        0,
        "B label permutations per run for every unit's null distribution of the index: p-value "
        "(1 + #{null >= observed}) / (1 + B), q-values over the run's units, chance-corrected SI "
        "(observed - null mean) and the units selective above chance (0: off; 1000 is usual).",
        check=_permutations,
    )
    selectivity_null_seed: int = setting(
        0, "Seed of the label permutations (the same permutations for every layer and run on one test set).",
    )
    fdr: float = setting(
        DEFAULT_FDR, "False discovery rate of --selectivity_null: a unit is selective when its q-value is below it.",
        check=in_unit_interval(low_open=True, high_open=True),
    )
    fdr_method: str = setting(
        "bh", "q-values of --selectivity_null: bh (Benjamini-Hochberg) or by (Benjamini-Yekutieli, any dependence).",
        choices=FDR_METHODS,
    )
    figures: bool = setting(True, "Draw the paper's figures (PNG and PDF).")
    n_resamples: int = setting(
        10_000, "Bootstrap resamples per 95% confidence interval.", check=positive,
        flag_name="bootstrap_resamples",
    )
    # Leave out test images that cannot be decoded (also done for runs that
    # were trained with skip_bad_images).
    skip_bad_images: bool = setting(
        False,
        "imagefolder: leave out test images that cannot be decoded instead of stopping (automatic for runs "
        "trained with --skip_bad_images).",
    )
    # -- Issue 16 points 2-6: ablation curves and single-unit importance
    # (analysis/ablation_stage.py; every run's model.keras is loaded).
    ablation: bool = setting(
        False,
        "Ablation curves: test accuracy as each probed layer's units are zeroed cumulatively, most selective "
        "first, least selective first and in random orders (table ablation_curves, figures, report section).",
    )
    unit_ablation: bool = setting(
        False,
        "Single-unit importance: the accuracy drop (overall and of the class hit hardest) when each unit alone "
        "is ablated, and its Spearman correlation with SI per layer (tables unit_importance, "
        "importance_correlations).",
    )
    ablation_layers: Optional[tuple] = setting(
        None, "Probes ablated by --ablation/--unit_ablation (default: all); a name no run has is an error.",
        check=_names, item=str,
    )
    ablation_fractions: tuple = setting(
        None, "Fractions of a layer's units ablated, in [0, 1], for --ablation.",
        default_factory=lambda: (0.0, 0.1, 0.25, 0.5, 0.75, 1.0), check=_fractions, item=float,
    )
    ablation_random_orders: int = setting(
        3, "Random orders of --ablation (seeds 0..R-1), the baseline selective-first is compared with.",
        check=positive,
    )
    ablation_mode: str = setting(
        "zero", "Ablated units' value: zero, or mean (the unit's mean test response, at every position).",
        choices=("zero", "mean"),
    )
    ablation_max_samples: Optional[int] = setting(
        None,
        "Ablate on N test images only (default: all), the first of each class in turn: --ablation/"
        "--unit_ablation accuracies are then on N images (a CPU-sized reproduction).",
        check=positive,
    )

    # Unit galleries, their HTML page and selectivity while training (issue 19, points 1-3 and 5).
    units_page: bool = setting(
        False,
        "Unit galleries (top images by spatial max and mean with outlined maps, tuning curve, numbers) and a "
        "static HTML page to browse them, units/index.html: runs -> layers (SI histogram) -> units.",
    )
    units: Optional[tuple] = setting(
        None,
        "Units shown with --units_page besides each layer's most and least selective: LAYER:3,17,... "
        "(a unit index after a layer belongs to it; several layers: conv1:3,17,conv2:5).",
        check=lambda specs: unit_specs_problem(specs), item=str,
    )
    gallery_k: int = setting(10, "Top images per unit and ranking in the unit galleries (NetDissect: 10).",
                             check=positive)
    gallery_layers: Optional[tuple] = setting(
        None, "Probed layers whose galleries --units_page draws (default: every probe).", item=str,
    )
    training_curves: bool = setting(
        True,
        "Where runs recorded the SI while training (--selectivity_every), draw SI vs epoch per alpha beside "
        "validation accuracy and report the epoch each layer's SI reaches half its final value.",
    )

    # ---- Issue 18 points 1, 4, 7: robustness to corruptions and attacks
    # (analysis/robustness_stage.py; data/corruptions.py, analysis/attacks.py).
    robustness: tuple = setting(
        None,
        f"Per run, accuracy and per-layer dimensionality under perturbations: {ROBUSTNESS_HELP} "
        "(e.g. corruptions:generated,fgsm,pgd); tables robustness and dimensionality, the follow-up "
        "paper's claims in the report. Empty: off.",
        default_factory=tuple, check=_robustness, item=str,
    )
    corruptions: Optional[tuple] = setting(
        None, "Corruptions of --robustness=corruptions:SOURCE (CIFAR-10-C's names; default: all the source has).",
        item=str,
    )
    severities: tuple = setting(
        None, "Corruption severities (1-5).", default_factory=lambda: (1, 2, 3, 4, 5), check=_severities, item=int,
    )
    attack_epsilons: tuple = setting(
        None, "FGSM/PGD L-infinity budgets in pixel units of [0, 255] images (8 = the literature's 8/255).",
        default_factory=lambda: (0.0, 1.0, 2.0, 4.0, 8.0), check=_epsilons, item=float,
    )
    pgd_steps: int = setting(10, "PGD's gradient steps.", check=positive)
    pgd_step_size: Optional[float] = setting(
        None, "PGD's step in pixel units (default 2.5 * epsilon / steps, Madry et al.).", check=positive,
    )
    pgd_random_start: bool = setting(True, "PGD starts from a seeded uniform point of the epsilon ball.")
    attack_seed: int = setting(0, "Seed of PGD's random starts and of the generated corruptions.")
    robustness_max_samples: Optional[int] = setting(
        None, "Perturb only N test images, the first of each class in turn (the attacks are the slow part).", check=positive,
    )

    def __post_init__(self):
        self.similarity = tuple(str(m).strip().lower() for m in self.similarity if str(m).strip())
        if self.cca_alphas is not None:
            self.cca_alphas = tuple(float(a) for a in self.cca_alphas) or None
        if self.units is not None:
            self.units = tuple(str(spec).strip() for spec in self.units if str(spec).strip()) or None
        if self.gallery_layers is not None:
            self.gallery_layers = tuple(str(name).strip() for name in self.gallery_layers if str(name).strip()) or None
        self.robustness = tuple(str(r).strip() for r in self.robustness if str(r).strip())
        if self.corruptions is not None:
            self.corruptions = tuple(str(c).strip() for c in self.corruptions if str(c).strip()) or None

    def validate(self) -> "AnalysisOptions":
        """Checks every option; returns self.

        Raises:
            ParameterError: (a ValueError) naming the first bad option.
        """
        check_settings(self)
        unbiased = [m for m in self.similarity if m == "debiased_cka"]
        if self.similarity_maps and self.similarity_map_measure == "debiased_cka":
            unbiased.append("--similarity_map_measure=debiased_cka")
        if unbiased and self.max_test_samples is not None and self.max_test_samples < 4:
            from tf_selectivity.core.settings import ParameterError

            raise ParameterError(
                "max_test_samples",
                f"must be at least 4 with debiased CKA (the unbiased HSIC divides by n (n - 3); "
                f"leave debiased_cka out of --similarity for fewer); got {self.max_test_samples}")
        if not self.units_page:
            for name in ("units", "gallery_layers"):
                if getattr(self, name) is not None:
                    from tf_selectivity.core.settings import ParameterError

                    raise ParameterError(name, "applies only with --units_page (the unit galleries)")
        self._validate_robustness()
        return self

    @property
    def corruption_source(self) -> Optional[str]:
        """SOURCE of --robustness=corruptions:SOURCE, or None."""
        for item in self.robustness:
            if item.startswith("corruptions:"):
                return item[len("corruptions:"):]
        return None

    def _validate_robustness(self) -> None:
        # Issue 18: the corruption source and names, checked before anything
        # is written (reads only .npy headers and folder names).
        from tf_selectivity.core.settings import ParameterError

        if self.corruptions and self.corruption_source is None:
            raise ParameterError("corruptions", "only applies with --robustness=corruptions:SOURCE")
        if self.corruption_source is not None:
            from tf_selectivity.data.corruptions import CorruptedSetError, check_source

            try:
                check_source(self.corruption_source, self.corruptions)
            except CorruptedSetError as error:
                message = str(error)
                if message.startswith("unknown corruption '"):
                    raise ParameterError("corruptions", "names an " + message) from None
                raise ParameterError("robustness", f"corruption source: {message}") from None

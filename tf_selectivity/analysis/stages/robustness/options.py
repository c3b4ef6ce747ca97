"""Settings of the robustness stage: corruptions, attacks and the images they perturb."""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

from tf_selectivity.core.settings import ParameterError, positive, setting

__all__ = ["RobustnessOptions", "ROBUSTNESS_HELP"]

# The perturbations of --robustness.
ROBUSTNESS_HELP = "corruptions:SOURCE (SOURCE: generated, cifar10c:PATH, tfds:cifar10_corrupted or tinyimagenetc:PATH), fgsm, pgd"
ATTACKS = ("fgsm", "pgd")


def _perturbations(items):
    corruptions = [i for i in items if i.startswith("corruptions:")]
    unknown = [i for i in items if i not in ATTACKS and not i.startswith("corruptions:")]
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
class RobustnessOptions:
    """`AnalysisOptions.robustness`: the perturbations and their settings (empty `perturbations`: off)."""

    perturbations: tuple = setting(
        None,
        f"Per run, accuracy and per-layer dimensionality under perturbations: {ROBUSTNESS_HELP} "
        "(e.g. corruptions:generated,fgsm,pgd); tables robustness and dimensionality, the follow-up "
        "paper's claims in the report. Empty: off.",
        default_factory=tuple, check=_perturbations, item=str, flag_name="robustness",
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
    max_samples: Optional[int] = setting(
        None, "Perturb only N test images, the first of each class in turn (the attacks are the slow part).",
        check=positive, flag_name="robustness_max_samples",
    )

    def __post_init__(self):
        self.perturbations = tuple(str(r).strip() for r in self.perturbations if str(r).strip())
        if self.corruptions is not None:
            self.corruptions = tuple(str(c).strip() for c in self.corruptions if str(c).strip()) or None

    @property
    def corruption_source(self) -> Optional[str]:
        """SOURCE of ``corruptions:SOURCE`` among the perturbations, or None."""
        for item in self.perturbations:
            if item.startswith("corruptions:"):
                return item[len("corruptions:"):]
        return None

    @property
    def attacks(self) -> list:
        """The attacks among the perturbations (fgsm, pgd), in the order given."""
        return [item for item in self.perturbations if item in ATTACKS]

    def validate(self, options) -> None:
        """The corruption source and names, checked before anything is written
        (reads only .npy headers and folder names)."""
        if self.corruptions and self.corruption_source is None:
            raise ParameterError("robustness.corruptions", "only applies with --robustness=corruptions:SOURCE")
        if self.corruption_source is not None:
            from tf_selectivity.data.corruptions import CorruptedSetError, check_source

            try:
                check_source(self.corruption_source, self.corruptions, severities=self.severities,
                             data_dir=options.data_dir)
            except CorruptedSetError as error:
                message = str(error)
                if message.startswith("unknown corruption '"):
                    raise ParameterError("robustness.corruptions", "names an " + message) from None
                raise ParameterError("robustness.perturbations", f"corruption source: {message}") from None

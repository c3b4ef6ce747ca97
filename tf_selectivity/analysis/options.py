"""`AnalysisOptions`: the settings of one analysis, each defined once.

General settings (the test data, batch size, figures, bootstrap) and one
group per analysis stage (`tf_selectivity.analysis.stages`), each group a
dataclass of `setting`s kept in its stage's folder. The flags of
``python -m tf_selectivity.analyze`` are derived from all of them
(`tf_selectivity.core.settings.define_flags`, groups included, with the
flag names users know: ``--ablation_layers`` sets ``ablation.layers``); a
bad value raises a `ParameterError` naming the setting (``ablation.layers``),
which the command reports as its flag. Imports neither Keras nor pandas.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from tf_selectivity.analysis.stages.ablation.options import AblationOptions
from tf_selectivity.analysis.stages.initialization.options import InitializationOptions
from tf_selectivity.analysis.stages.over_training.options import OverTrainingOptions
from tf_selectivity.analysis.stages.robustness.options import RobustnessOptions
from tf_selectivity.analysis.stages.selectivity.options import SelectivityOptions
from tf_selectivity.analysis.stages.similarity.options import SimilarityOptions
from tf_selectivity.analysis.stages.training_curves.options import TrainingCurvesOptions
from tf_selectivity.analysis.stages.units.options import UnitsOptions
from tf_selectivity.core.settings import check_settings, group, groups_of, positive, setting
from tf_selectivity.measures.selectivity_index import DEFAULT_SELECTIVITY_INDEX, INDEX_HELP, SELECTIVITY_INDICES
from tf_selectivity.report.condition_names import POOLABLE_FIELDS, pool_over_problem

__all__ = [
    "AnalysisOptions",
    "AblationOptions",
    "InitializationOptions",
    "OverTrainingOptions",
    "RobustnessOptions",
    "SelectivityOptions",
    "SimilarityOptions",
    "TrainingCurvesOptions",
    "UnitsOptions",
]


@dataclasses.dataclass
class AnalysisOptions:
    """Settings of one analysis (the flags of `python -m tf_selectivity.analyze`).

    Example::

        AnalysisOptions(
            max_test_samples=1000,
            ablation=AblationOptions(curves=True, layers=("probe_stem",)),
            robustness=RobustnessOptions(perturbations=("fgsm",)),
        )
    """

    dataset: Optional[str] = setting(
        None, "Test data to use instead of each run's own (e.g. imagefolder:PATH)."
    )
    data_dir: Optional[str] = setting(None, "tensorflow-datasets directory for --dataset=cifar10.")
    batch_size: int = setting(500, "Test images per batch.", check=positive)
    max_test_samples: Optional[int] = setting(
        None, "Use only N test images (quick looks): the first of each class in turn, so that a test set stored "
        "by class still gives every class.", check=positive
    )
    selectivity_index: str = setting(
        DEFAULT_SELECTIVITY_INDEX,
        f"Index in every reported SI: {INDEX_HELP} Whatever the runs were trained with.",
        choices=SELECTIVITY_INDICES,
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
    pool_over: tuple = setting(
        None,
        "Training settings whose differences do not separate conditions (e.g. epochs,dataset): runs that "
        "differ only in them are pooled. By default every training setting but alpha and seed defines the "
        f"condition; these can be pooled: {', '.join(POOLABLE_FIELDS)}.",
        default_factory=tuple, check=pool_over_problem, item=str,
    )

    # One group per stage that has settings, named as the stage (its folder
    # under analysis/stages/), in report order.
    selectivity: SelectivityOptions = group(SelectivityOptions)
    initialization: InitializationOptions = group(InitializationOptions)
    similarity: SimilarityOptions = group(SimilarityOptions)
    ablation: AblationOptions = group(AblationOptions)
    units: UnitsOptions = group(UnitsOptions)
    training_curves: TrainingCurvesOptions = group(TrainingCurvesOptions)
    over_training: OverTrainingOptions = group(OverTrainingOptions)
    robustness: RobustnessOptions = group(RobustnessOptions)

    def validate(self) -> "AnalysisOptions":
        """Checks every option, the groups' included; returns self.

        Raises:
            ParameterError: (a ValueError) naming the first bad option (a
                group's by its path, e.g. ``ablation.layers``).
        """
        check_settings(self)
        for field in groups_of(type(self)):
            settings = getattr(self, field.name)
            if hasattr(settings, "validate"):
                settings.validate(self)
        return self

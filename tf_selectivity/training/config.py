"""`TrainConfig`: everything that defines one training run."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Optional

__all__ = [
    "TrainConfig",
    "ConfigError",
    "PAPER_LEARNING_RATES",
    "LEGACY_IDENTITY_DEFAULTS",
    "with_legacy_defaults",
    "identity_defaults",
]

# Appendix A.1: "ResNet20s were trained with a learning rate of 0.1 and the
# VGG16 with a learning rate of 0.01".
PAPER_LEARNING_RATES = {"vgg16": 0.01}
_DEFAULT_LEARNING_RATE = 0.1

# Identity fields added after runs were already recorded without them, with
# the value those runs were trained with: before the paper's eq. 1 became the
# default (2026-11-26), every run regularized the bounded index; before
# --skip_bad_images existed, no image was skipped.
LEGACY_IDENTITY_DEFAULTS = {"selectivity_index": "bounded", "skip_bad_images": False}


def with_legacy_defaults(identity: dict) -> dict:
    """A recorded identity (or sweep settings) completed with the values that
    runs recorded before a field existed were trained with."""
    completed = dict(identity)
    for name, value in LEGACY_IDENTITY_DEFAULTS.items():
        if completed.get(name) is None:
            completed[name] = value
    return completed


class ConfigError(ValueError):
    """A run configuration that cannot be trained; the message says why."""


@dataclasses.dataclass
class TrainConfig:
    """One training run. Defaults are the paper's protocol (appendix A.1).

    Fields in `IDENTITY_FIELDS` define the run: an output directory that holds
    a run with different values is refused instead of being overwritten.
    """

    model: str = "resnet20"
    alpha: float = 0.0
    seed: int = 0
    activation: str = "relu"
    leaky_slope: float = 0.0
    # The index regularized (and reported in summary.json): "eq1", the paper's
    # eq. 1 with a guard, or "bounded" (tf_selectivity.selectivity).
    selectivity_index: str = "eq1"
    dataset: str = "cifar10"
    data_dir: Optional[str] = None
    epochs: int = 200
    batch_size: int = 256
    learning_rate: Optional[float] = None  # None: 0.1 (ResNets) or 0.01 (VGG16)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_milestones: tuple = (100, 150)
    lr_decay: float = 0.1
    validation_fraction: float = 0.1
    split_seed: int = 0
    max_train_samples: Optional[int] = None
    augment: bool = True
    # Leave out image-folder files that cannot be decoded (listed in
    # config.json) instead of refusing the dataset.
    skip_bad_images: bool = False
    jit_compile: str = "auto"
    precision: str = "float32"
    eval_batch_size: int = 500
    data_on_device: str = "auto"
    output_dir: str = ""

    # Changing these changes the result; `jit_compile` and `eval_batch_size`
    # only change speed, `output_dir` is where, `data_dir` is where the same
    # data are read from. `data_on_device` picks the input pipeline (JAX): a
    # different random stream of the same distribution, like the backend, so
    # not part of the identity; a resumed run keeps the pipeline of its
    # finished epochs (`training/placement.py`).
    IDENTITY_FIELDS = (
        "model", "alpha", "seed", "activation", "leaky_slope", "selectivity_index", "dataset", "epochs",
        "batch_size", "learning_rate", "momentum", "weight_decay", "lr_milestones",
        "lr_decay", "validation_fraction", "split_seed", "max_train_samples",
        "augment", "precision", "skip_bad_images",
    )

    def __post_init__(self):
        self.lr_milestones = tuple(int(m) for m in self.lr_milestones)
        if self.learning_rate is None:
            self.learning_rate = PAPER_LEARNING_RATES.get(self.model, _DEFAULT_LEARNING_RATE)

    def validate(self, known_models=None) -> "TrainConfig":
        """Raises ConfigError naming the first bad value; returns self."""
        if known_models is not None and self.model not in known_models:
            if ":" not in self.model:
                raise ConfigError(
                    f"unknown model {self.model!r}; choose one of {', '.join(known_models)}, "
                    "or module.path:function for a model of your own"
                )
            # A user's model spec: importable now, not at the first epoch.
            from tf_selectivity.models.user_models import load_model_function

            try:
                load_model_function(self.model)
            except ValueError as error:
                raise ConfigError(str(error)) from None
        if not isinstance(self.alpha, (int, float)) or not math.isfinite(self.alpha):
            raise ConfigError(f"alpha must be a finite number; got {self.alpha}")
        for name in ("seed", "split_seed"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be a non-negative integer; got {getattr(self, name)}")
        if self.activation not in ("relu", "leaky_relu"):
            raise ConfigError(
                f"unknown activation {self.activation!r}; choose relu or leaky_relu"
            )
        if not math.isfinite(self.leaky_slope) or not 0.0 <= self.leaky_slope < 1.0:
            raise ConfigError(f"leaky_slope must be in [0, 1); got {self.leaky_slope}")
        if self.activation == "relu" and self.leaky_slope != 0.0:
            raise ConfigError("leaky_slope only applies to --activation=leaky_relu")
        if self.selectivity_index not in ("eq1", "bounded"):
            raise ConfigError(
                f"unknown selectivity_index {self.selectivity_index!r}; choose eq1 (the paper's) or bounded"
            )
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive; got {getattr(self, name)}")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise ConfigError(f"max_train_samples must be positive; got {self.max_train_samples}")
        for name in ("learning_rate", "lr_decay"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name} must be a finite positive number; got {value}")
        if not math.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be a finite non-negative number; got {self.weight_decay}")
        if not math.isfinite(self.momentum) or not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"momentum must be in [0, 1); got {self.momentum}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ConfigError(
                f"validation_fraction must be in (0, 1); got {self.validation_fraction}"
            )
        if list(self.lr_milestones) != sorted(set(self.lr_milestones)) or any(
            m < 1 for m in self.lr_milestones
        ):
            raise ConfigError(
                f"lr_milestones must be increasing positive epochs; got {list(self.lr_milestones)}"
            )
        if self.jit_compile not in ("auto", "true", "false"):
            raise ConfigError(f"jit_compile must be auto, true or false; got {self.jit_compile!r}")
        if self.data_on_device not in ("auto", "true", "false"):
            raise ConfigError(
                f"data_on_device must be auto, true or false; got {self.data_on_device!r}"
            )
        if self.precision not in ("float32", "mixed_bfloat16"):
            raise ConfigError(
                f"precision must be float32 or mixed_bfloat16; got {self.precision!r}"
            )
        if not self.output_dir:
            raise ConfigError("output_dir is required")
        if not self.dataset or not str(self.dataset).strip():
            raise ConfigError("dataset is empty; see --helpfull for the choices")
        return self

    def identity(self) -> dict:
        """The values that define the run (JSON-compatible)."""
        values = dataclasses.asdict(self)
        identity = {name: values[name] for name in self.IDENTITY_FIELDS}
        identity["lr_milestones"] = list(identity["lr_milestones"])
        return identity

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["lr_milestones"] = list(values["lr_milestones"])
        return values

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def differences(self, other_identity: dict) -> list:
        """Names and values of identity fields that differ from `other_identity`.

        A field missing from `other_identity` (a run written before the field
        existed) counts as its default value.
        """
        mine = self.identity()
        other = with_legacy_defaults({name: other_identity.get(name) for name in self.IDENTITY_FIELDS})
        return [
            f"{name}: {other[name]!r} there, {mine[name]!r} now"
            for name in self.IDENTITY_FIELDS
            if _normalize(other[name]) != _normalize(mine[name])
        ]


def identity_defaults() -> dict:
    """The values of the identity fields added after the first release for
    runs and sweeps recorded before they existed (see
    `LEGACY_IDENTITY_DEFAULTS`)."""
    return dict(LEGACY_IDENTITY_DEFAULTS)


def _normalize(value):
    if isinstance(value, (list, tuple)):
        return [_normalize(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return value

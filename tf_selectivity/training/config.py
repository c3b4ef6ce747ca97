"""`TrainConfig`: everything that defines one training run."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Optional

__all__ = ["TrainConfig", "ConfigError", "PAPER_LEARNING_RATES"]

# Appendix A.1: "ResNet20s were trained with a learning rate of 0.1 and the
# VGG16 with a learning rate of 0.01".
PAPER_LEARNING_RATES = {"vgg16": 0.01}
_DEFAULT_LEARNING_RATE = 0.1


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
        "model", "alpha", "seed", "activation", "leaky_slope", "dataset", "epochs",
        "batch_size", "learning_rate", "momentum", "weight_decay", "lr_milestones",
        "lr_decay", "validation_fraction", "split_seed", "max_train_samples",
        "augment", "precision",
    )

    def __post_init__(self):
        self.lr_milestones = tuple(int(m) for m in self.lr_milestones)
        if self.learning_rate is None:
            self.learning_rate = PAPER_LEARNING_RATES.get(self.model, _DEFAULT_LEARNING_RATE)

    def validate(self, known_models=None) -> "TrainConfig":
        """Raises ConfigError naming the first bad value; returns self."""
        if known_models is not None and self.model not in known_models:
            raise ConfigError(
                f"unknown model {self.model!r}; choose one of {', '.join(known_models)}"
            )
        if not math.isfinite(self.alpha):
            raise ConfigError(f"alpha must be a finite number; got {self.alpha}")
        if self.activation not in ("relu", "leaky_relu"):
            raise ConfigError(
                f"unknown activation {self.activation!r}; choose relu or leaky_relu"
            )
        if not math.isfinite(self.leaky_slope) or not 0.0 <= self.leaky_slope < 1.0:
            raise ConfigError(f"leaky_slope must be in [0, 1); got {self.leaky_slope}")
        if self.activation == "relu" and self.leaky_slope != 0.0:
            raise ConfigError("leaky_slope only applies to --activation=leaky_relu")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive; got {getattr(self, name)}")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise ConfigError(f"max_train_samples must be positive; got {self.max_train_samples}")
        for name in ("learning_rate", "momentum", "weight_decay", "lr_decay"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"{name} must be a finite non-negative number; got {value}")
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
        """Names and values of identity fields that differ from `other_identity`."""
        mine = self.identity()
        return [
            f"{name}: {other_identity.get(name)!r} there, {mine[name]!r} now"
            for name in self.IDENTITY_FIELDS
            if _normalize(other_identity.get(name)) != _normalize(mine[name])
        ]


def _normalize(value):
    if isinstance(value, (list, tuple)):
        return [_normalize(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return value

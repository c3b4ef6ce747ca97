"""`TrainConfig`: everything that defines one training run."""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Optional

from tf_selectivity.core.settings import (
    ParameterError,
    check_settings,
    finite,
    in_unit_interval,
    non_negative,
    positive,
    setting,
    settings_of,
)
from tf_selectivity.measures.selectivity_index import DEFAULT_SELECTIVITY_INDEX, INDEX_HELP, SELECTIVITY_INDICES

__all__ = [
    "TrainConfig",
    "ConfigError",
    "ConfigValueError",
    "PAPER_LEARNING_RATES",
    "LEGACY_IDENTITY_DEFAULTS",
    "with_legacy_defaults",
    "parse_alpha_window",
]

# Appendix A.1: "ResNet20s were trained with a learning rate of 0.1 and the
# VGG16 with a learning rate of 0.01".
PAPER_LEARNING_RATES = {"vgg16": 0.01}
_DEFAULT_LEARNING_RATE = 0.1

# Identity fields added after runs were already recorded without them, with
# the value those runs were trained with: before the paper's eq. 1 became the
# default, every run regularized the bounded index; before --skip_bad_images
# existed, no image was skipped.
LEGACY_IDENTITY_DEFAULTS = {
    "selectivity_index": "bounded", "skip_bad_images": False, "augmentation": "pad_crop_flip",
    "lr_scaling": "none", "lr_reference_batch": 256,
}


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


class ConfigValueError(ParameterError, ConfigError):
    """A bad value of one `TrainConfig` field; `parameter` names the field."""


def _model_help() -> str:
    from tf_selectivity.models.registry import MODELS

    return (
        f"Network: one of {', '.join(MODELS)} (paper: resnet20, vgg16 on CIFAR-10; resnet18, resnet50 on "
        "Tiny ImageNet), or module.path:function, a function of yours that builds a Keras model from "
        "num_classes and input_shape (probes are inserted after its activations that follow convolutions)."
    )


def _dataset_help() -> str:
    from tf_selectivity.data.sources import DATASET_HELP

    return f"Data: {DATASET_HELP}."


def _milestones(value):
    if list(value) != sorted(set(value)) or any(m < 1 for m in value):
        return f"must be increasing positive epochs; got {list(value)}"
    return None


def _kept_epochs(value):
    if any(not math.isfinite(epoch) or epoch < 0 for epoch in value):
        return f"must be epochs >= 0 (0: the initialization); got {', '.join(f'{e:g}' for e in value)}"
    return None


def _devices(value):
    text = str(value).strip()
    if text == "all" or (text.isdigit() and int(text) >= 1):
        return None
    return f"must be all or a positive number of devices; got {value!r}"


def _not_blank(value):
    return "is empty" if not str(value).strip() else None


def parse_alpha_window(text: str) -> tuple:
    """``"START:END"`` (epochs, fractions allowed; END may be ``end``) -> (start, end).

    Returns:
        (start, end): floats, ``end`` None for ``end`` (the end of the run).

    Raises:
        ValueError: not of that form, or a negative epoch; the message says
            what is wrong (without the field's name).
    """
    parts = str(text).strip().split(":")
    if len(parts) != 2:
        raise ValueError(f"must be START:END in epochs (e.g. 0:2, 0.5:end); got {text!r}")
    try:
        start = float(parts[0])
        end = None if parts[1].strip().lower() == "end" else float(parts[1])
    except ValueError:
        raise ValueError(f"must be START:END in epochs (e.g. 0:2, 0.5:end); got {text!r}") from None
    if not all(math.isfinite(v) for v in (start, end if end is not None else 0.0)):
        raise ValueError(f"must be finite epochs; got {text!r}")
    if start < 0 or (end is not None and end < 0):
        raise ValueError(f"must be non-negative epochs; got {text!r}")
    if end is not None and start > end:
        raise ValueError(f"START must not be after END; got {text!r}")
    return start, end


def _alpha_window_syntax(value):
    try:
        parse_alpha_window(value)
    except ValueError as error:
        return str(error)
    return None


def _epochs_text(value: float) -> str:
    return f"{value:g}"


# Roles of the fields (see `setting`): "identity" fields define the run (an
# output directory holding a run with other values is refused, not
# overwritten); "local" ones change only speed, where data are read or what
# is logged, so each process (a sweep's worker) keeps its own.
IDENTITY, LOCAL = "identity", "local"


@dataclasses.dataclass
class TrainConfig:
    """One training run. Defaults are the paper's protocol (appendix A.1).

    Each field is defined once here, with its help text and check: the
    command lines derive their flags from these definitions
    (`tf_selectivity.core.settings.define_flags`), sweeps their shared settings
    (`identity` fields), and `validate` checks every value.
    """

    model: str = setting("resnet20", _model_help(), check=_not_blank, role=IDENTITY)
    alpha: float = setting(
        0.0, "Selectivity regularizer scale: < 0 suppresses class selectivity, > 0 promotes it.",
        check=finite, role=IDENTITY,
    )
    seed: int = setting(
        0, "Random seed of initialization, shuffling and augmentation.", check=non_negative,
        role=IDENTITY,
    )
    activation: str = setting(
        "relu", "Unit non-linearity: relu or leaky_relu (paper sec. 4.4).",
        choices=("relu", "leaky_relu"), role=IDENTITY,
    )
    leaky_slope: float = setting(
        0.0, "Negative slope of leaky_relu (paper fig. A10: 0.01 to 0.5).",
        check=in_unit_interval(), role=IDENTITY,
    )
    selectivity_index: str = setting(
        DEFAULT_SELECTIVITY_INDEX, f"Index in the loss and summary: {INDEX_HELP}",
        choices=SELECTIVITY_INDICES, role=IDENTITY,
    )
    dataset: str = setting("cifar10", _dataset_help(), check=_not_blank, role=IDENTITY)
    data_dir: Optional[str] = setting(
        None, "tensorflow-datasets data directory for --dataset=cifar10.", role=LOCAL,
    )
    epochs: int = setting(200, "Training epochs (paper: 200).", check=positive, role=IDENTITY)
    batch_size: int = setting(256, "Training batch size (paper: 256).", check=positive, role=IDENTITY)
    learning_rate: Optional[float] = setting(
        None, "Initial learning rate (default: 0.1 for ResNets, 0.01 for VGG16).",
        check=positive, role=IDENTITY,
    )
    momentum: float = setting(0.9, "SGD momentum (paper: 0.9).", check=in_unit_interval(), role=IDENTITY)
    weight_decay: float = setting(
        1e-4, "L2 weight decay added to the gradient, as PyTorch's SGD (paper: 1e-4).",
        check=non_negative, role=IDENTITY,
    )
    lr_milestones: tuple = setting(
        None, "Epochs at which the learning rate is multiplied by --lr_decay.",
        default_factory=lambda: (100, 150), check=_milestones, item=int, role=IDENTITY,
    )
    lr_decay: float = setting(0.1, "Learning-rate factor at each milestone (paper: 0.1).", check=positive,
                              role=IDENTITY)
    validation_fraction: float = setting(
        0.1, "Share of the training images held out for validation (45k/5k).",
        check=in_unit_interval(low_open=True), role=IDENTITY,
    )
    split_seed: int = setting(
        0, "Seed of the train/validation split (same for all runs).", check=non_negative, role=IDENTITY,
    )
    max_train_samples: Optional[int] = setting(
        None, "Train on the first N images of the (seeded, shuffled) training split only: quick runs.",
        check=positive, role=IDENTITY,
    )
    augment: bool = setting(True, "Augment training images (--augmentation); false: none.", role=IDENTITY)
    augmentation: str = setting(
        "pad_crop_flip",
        "Training augmentation and evaluation transform: pad_crop_flip (the paper's CIFAR one: pad 4, random "
        "crop, flip) or random_resized_crop (ImageNet's: crop of 8-100% of the area at aspect 3/4-4/3 resized to "
        "--image_size, flip; evaluation: shorter side to 256/224 of it, center crop). stream: datasets only "
        "for random_resized_crop.",
        choices=("pad_crop_flip", "random_resized_crop"), role=IDENTITY,
    )
    image_size: Optional[int] = setting(
        None, "stream: datasets: side of the square images the network sees (default 224).",
        check=positive, role=IDENTITY,
    )
    jit_compile: str = setting(
        "auto", "XLA-compile the train step; auto: on GPU/TPU (and always on JAX), off on a TensorFlow CPU.",
        choices=("auto", "true", "false"), role=LOCAL,
    )
    precision: str = setting(
        "float32", "Compute precision; mixed_bfloat16 is faster on recent GPUs/TPUs (paper: float32).",
        choices=("float32", "mixed_bfloat16"), role=IDENTITY,
    )
    skip_bad_images: bool = setting(
        False,
        "imagefolder: leave out image files that cannot be decoded (listed in the run's config.json) "
        "instead of stopping with an error that names them.",
        role=IDENTITY,
    )
    devices: str = setting(
        "1",
        "Data-parallel training over this many local accelerators (all: every one this process sees; "
        "JAX: keras.distribution.DataParallel, TensorFlow: MirroredStrategy). --batch_size stays the "
        "global batch, split evenly over the devices.",
        check=_devices, role=LOCAL,
    )
    per_device_batch_size: Optional[int] = setting(
        None,
        "The batch each device trains on, stated explicitly: must equal --batch_size / the devices "
        "(the run is refused otherwise); default: that quotient.",
        check=positive, role=LOCAL,
    )
    lr_scaling: str = setting(
        "none",
        "Learning-rate rule for the global batch: none uses --learning_rate as given (paper); linear "
        "multiplies it by --batch_size / --lr_reference_batch (Goyal et al. 2017).",
        choices=("none", "linear"), role=IDENTITY,
    )
    lr_reference_batch: int = setting(
        256, "The batch --learning_rate is meant for, under --lr_scaling=linear (paper: 256).",
        check=positive, role=IDENTITY,
    )
    eval_batch_size: int = setting(
        500, "Batch size for validation and test passes.", check=positive, role=LOCAL,
    )
    data_on_device: str = setting(
        "auto",
        "JAX: keep the training and validation splits on the accelerator and run whole epochs as "
        "compiled programs (auto: when they fit in half its free memory). TensorFlow keeps tf.data.",
        choices=("auto", "true", "false"), role=LOCAL,
    )
    alpha_window: Optional[str] = setting(
        None,
        "START:END: apply the regularizer (--alpha) only from epoch START to epoch END (fractions allowed, "
        "so a window can switch mid-epoch; END may be 'end'), alpha 0 before and after; the switch happens "
        "inside the compiled train step. Default: the whole run.",
        check=_alpha_window_syntax, role=IDENTITY,
    )
    selectivity_every: int = setting(
        0,
        "Every N epochs, the class selectivity index (eq. 1 or --selectivity_index) of every probed layer "
        "on the whole validation split, from the validation pass (history.csv, TensorBoard: "
        "val_split_selectivity/<layer>, val_split_mean_selectivity); 0: off.",
        check=non_negative, role=LOCAL,
    )
    keep_checkpoints: tuple = setting(
        None,
        "Epochs whose weights to keep in the run directory (checkpoints/epoch-<epoch>.weights.h5, loadable "
        "with load_run(...).at(epoch)), e.g. 0,0.25,0.5,1,2,4,8: 0 is the initialization, a fraction the "
        "weights after round(epoch * steps per epoch) steps.",
        default_factory=tuple, check=_kept_epochs, item=float, role=LOCAL,
    )
    selectivity_every_steps: int = setting(
        0,
        "Every N training steps (and at step 0), the class selectivity index (eq. 1 or --selectivity_index) "
        "of every probed layer on the whole validation split (selectivity_steps.csv, TensorBoard on a step "
        "axis), while the step is below --selectivity_steps_until epochs; 0: off.",
        check=non_negative, role=LOCAL,
    )
    selectivity_steps_until: Optional[float] = setting(
        None,
        "With --selectivity_every_steps: measure while the step is below this many epochs (fractions "
        "allowed; default: the whole run).",
        check=positive, role=LOCAL,
    )
    output_dir: str = setting("", "The run directory.", flag=False)

    # Changing the identity fields changes the result; `jit_compile` and
    # `eval_batch_size` only change speed, `output_dir` is where, `data_dir`
    # is where the same data are read from. `data_on_device` picks the input
    # pipeline (JAX): a different random stream of the same distribution,
    # like the backend, so not part of the identity; a resumed run keeps the
    # pipeline of its finished epochs (`training/placement.py`).
    IDENTITY_FIELDS: typing.ClassVar[tuple] = ()  # filled below, from the roles
    LOCAL_FIELDS: typing.ClassVar[tuple] = ()

    def __post_init__(self):
        self.lr_milestones = tuple(int(m) for m in self.lr_milestones)
        self.keep_checkpoints = tuple(sorted({float(epoch) for epoch in self.keep_checkpoints or ()}))
        if self.learning_rate is None:
            self.learning_rate = PAPER_LEARNING_RATES.get(self.model, _DEFAULT_LEARNING_RATE)
        self.alpha_window = self._normalized_alpha_window()

    def _normalized_alpha_window(self):
        """The window in one spelling, None for the whole run (the same
        condition as no window); a value that does not parse is left for
        `validate` to report."""
        if self.alpha_window is None:
            return None
        try:
            start, end = parse_alpha_window(self.alpha_window)
        except ValueError:
            return self.alpha_window
        if end is not None and end == self.epochs:
            end = None
        if start == 0 and end is None:
            return None
        return f"{_epochs_text(start)}:{'end' if end is None else _epochs_text(end)}"

    def alpha_window_steps(self, steps_per_epoch: int):
        """The window as training steps ``[start, end)`` (the optimizer's
        step counter; epoch boundaries rounded to the nearest step), end
        None for the end of the run; None without a window."""
        if self.alpha_window is None:
            return None
        start, end = parse_alpha_window(self.alpha_window)

        def step(epochs):
            return int(math.floor(epochs * steps_per_epoch + 0.5))

        return step(start), None if end is None else step(end)

    def validate(self, known_models=None) -> "TrainConfig":
        """Checks every field (and the combinations); returns self.

        Args:
            known_models: the built-in model names (default:
                `tf_selectivity.models.MODELS`); any other ``model`` must be
                a ``module.path:function`` spec that imports.

        Raises:
            ConfigValueError: naming the first bad field (a `ConfigError`).
        """
        if not self.output_dir:
            raise ConfigValueError("output_dir", "is required")
        check_settings(self, error=ConfigValueError)
        if known_models is None:
            from tf_selectivity.models.registry import MODELS as known_models
        if self.model not in known_models:
            if ":" not in self.model:
                raise ConfigValueError(
                    "model",
                    f"must be one of {', '.join(known_models)}, or module.path:function for a model of "
                    f"your own; got {self.model!r}",
                )
            # A user's model spec: importable, and its signature right, now
            # (the model is built before anything is written: `train`).
            from tf_selectivity.models.user_models import check_model_function

            try:
                check_model_function(self.model, self.activation, self.leaky_slope)
            except ValueError as error:
                raise ConfigError(str(error)) from None
        from tf_selectivity.data.streams import is_stream

        if not is_stream(self.dataset):
            if self.augmentation != "pad_crop_flip":
                raise ConfigValueError("augmentation", f"{self.augmentation} needs a stream: dataset (read while "
                                                       "training, images of any size)")
            if self.image_size is not None:
                raise ConfigValueError("image_size", "only applies to stream: datasets (in-memory images keep "
                                                     "their size)")
        elif self.skip_bad_images:
            raise ConfigValueError("skip_bad_images", "applies to in-memory image folders; a stream: dataset reads "
                                                      "each image while training")
        self.check_device_batch()
        if self.activation == "relu" and self.leaky_slope != 0.0:
            raise ConfigValueError("leaky_slope", "only applies to activation=leaky_relu")
        if self.alpha_window is not None:
            start, end = parse_alpha_window(self.alpha_window)
            if max(start, end if end is not None else 0.0) > self.epochs:
                raise ConfigValueError(
                    "alpha_window", f"{self.alpha_window} lies outside the run's {self.epochs} epochs"
                )
            if self.alpha == 0.0:
                raise ConfigValueError(
                    "alpha_window", "needs a non-zero alpha: with alpha = 0 there is no regularizer to switch"
                )
        beyond = [epoch for epoch in self.keep_checkpoints if epoch > self.epochs]
        if beyond:
            raise ConfigValueError(
                "keep_checkpoints",
                f"has epochs beyond the run's {self.epochs}: {', '.join(f'{e:g}' for e in beyond)}",
            )
        if self.selectivity_steps_until is not None:
            if not self.selectivity_every_steps:
                raise ConfigValueError("selectivity_steps_until", "needs --selectivity_every_steps")
            if self.selectivity_steps_until > self.epochs:
                raise ConfigValueError(
                    "selectivity_steps_until",
                    f"is beyond the run's {self.epochs} epochs; got {self.selectivity_steps_until:g}",
                )
        return self

    @property
    def device_count(self):
        """The number of devices of `devices`, or None for "all" (known
        once the backend starts: `training.devices`)."""
        text = str(self.devices).strip()
        return None if text == "all" else int(text)

    def check_device_batch(self, device_count=None) -> int:
        """The batch of one device: `batch_size` split over the devices.

        Args:
            device_count: the devices resolved (for ``devices="all"``);
                default: `device_count`, or 1 where that is "all".

        Returns:
            ``batch_size // device_count``.

        Raises:
            ConfigValueError: `batch_size` does not divide evenly over the
                devices, or `per_device_batch_size` is not the quotient.
        """
        count = device_count or self.device_count or 1
        if self.batch_size % count:
            raise ConfigValueError(
                "batch_size",
                f"is the global batch and must divide evenly over the {count} devices (--devices); "
                f"got {self.batch_size}",
            )
        per_device = self.batch_size // count
        if self.per_device_batch_size is not None and self.per_device_batch_size != per_device:
            raise ConfigValueError(
                "per_device_batch_size",
                f"must be --batch_size / the devices = {self.batch_size} / {count} = {per_device}; "
                f"got {self.per_device_batch_size}",
            )
        return per_device

    @property
    def scaled_learning_rate(self) -> float:
        """The initial learning rate the optimizer uses: `learning_rate`
        under `lr_scaling` ("linear": times ``batch_size / lr_reference_batch``)."""
        if self.lr_scaling == "linear":
            return self.learning_rate * self.batch_size / self.lr_reference_batch
        return self.learning_rate

    def identity(self) -> dict:
        """The values that define the run (JSON-compatible)."""
        values = self.to_dict()
        return {name: values[name] for name in self.IDENTITY_FIELDS}

    def to_dict(self) -> dict:
        """Every field, JSON-compatible (tuples as lists)."""
        values = dataclasses.asdict(self)
        values["lr_milestones"] = list(values["lr_milestones"])
        values["keep_checkpoints"] = list(values["keep_checkpoints"])
        return values

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


TrainConfig.IDENTITY_FIELDS = tuple(f.name for f in settings_of(TrainConfig, role=IDENTITY))
TrainConfig.LOCAL_FIELDS = tuple(f.name for f in settings_of(TrainConfig, role=LOCAL))


def _normalize(value):
    if isinstance(value, (list, tuple)):
        return [_normalize(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return value

"""The settings a sweep's runs share, and how a trial carries them.

A sweep directory holds runs of one configuration that differ only in
alpha, seed, leaky slope and window of training. Those shared *settings* (model, dataset,
epochs, optimizer...; `TrainConfig.IDENTITY_FIELDS` minus the four) are
recorded in ``sweep.json``: a later sweep on the same directory with other
settings is refused instead of mixing incomparable runs.

Each keras-tuner trial carries the settings as `Fixed` hyperparameters and
the point as values. A worker therefore trains exactly what the chief's
sweep defines, and ``trial.json`` describes its run completely.
"""

from __future__ import annotations

import datetime
from typing import Mapping, Optional

from tf_selectivity.training.config import TrainConfig, with_legacy_defaults

__all__ = [
    "POINT_FIELDS",
    "SETTING_FIELDS",
    "sweep_settings",
    "settings_differences",
    "settings_to_values",
    "config_from_values",
    "settings_record",
]

POINT_FIELDS = ("leaky_slope", "alpha", "seed", "alpha_window")
SETTING_FIELDS = tuple(f for f in TrainConfig.IDENTITY_FIELDS if f not in POINT_FIELDS)

# Knobs that change speed, where data are read or what is logged, never the
# result: each process (worker) keeps its own.
LOCAL_FIELDS = TrainConfig.LOCAL_FIELDS


def sweep_settings(config: TrainConfig) -> dict:
    """The shared settings of `config` (JSON-compatible)."""
    identity = config.identity()
    return {name: identity[name] for name in SETTING_FIELDS}


def _same(a, b) -> bool:
    """Equal settings, with 1 == 1.0 (JSON may turn one into the other)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    return type(a) is type(b) and a == b


def settings_differences(recorded: Mapping, current: Mapping) -> list:
    """Human-readable differences, e.g. ``["epochs: 200 there, 2 now"]``.

    A setting missing from `recorded` (a sweep written before the setting
    existed) counts as the value such sweeps ran with
    (`training.config.LEGACY_IDENTITY_DEFAULTS`).
    """
    recorded = with_legacy_defaults(recorded)
    return [
        f"{name}: {recorded.get(name)!r} there, {current.get(name)!r} now"
        for name in SETTING_FIELDS
        if not _same(recorded.get(name), current.get(name))
    ]


def settings_to_values(settings: Mapping) -> dict:
    """Settings as keras-tuner `Fixed` values (int, float, str or bool only).

    `lr_milestones` becomes "100,150"; an unset `max_train_samples` is left
    out (keras-tuner values cannot be None).
    """
    values = {}
    for name in SETTING_FIELDS:
        value = settings[name]
        if value is None:
            continue
        if name == "lr_milestones":
            value = ",".join(str(int(m)) for m in value)
        values[name] = value
    return values


def values_to_settings(values: Mapping) -> dict:
    """The inverse of `settings_to_values`."""
    values = with_legacy_defaults(values)
    settings = {}
    for name in SETTING_FIELDS:
        value = values.get(name)
        if name == "lr_milestones":
            value = [int(m) for m in str(value or "").split(",") if m]
        settings[name] = value
    return settings


def config_from_values(values: Mapping, output_dir: str, local: Optional[Mapping] = None) -> TrainConfig:
    """The `TrainConfig` of one trial from its hyperparameter values.

    Args:
        values: the trial's values: settings and point (alpha, seed, slope).
        output_dir: the run directory.
        local: this process' `LOCAL_FIELDS` (data_dir, jit_compile, ...);
            missing ones keep `TrainConfig`'s defaults.
    """
    settings = values_to_settings(values)
    settings["lr_milestones"] = tuple(settings["lr_milestones"])
    point = {
        "alpha": float(values["alpha"]),
        "seed": int(values["seed"]),
        "leaky_slope": float(values["leaky_slope"]),
        # Absent from trials without a window (and from sweeps recorded before windows).
        "alpha_window": values.get("alpha_window") or None,
    }
    extra = {k: v for k, v in dict(local or {}).items() if k in LOCAL_FIELDS}
    return TrainConfig(**settings, **point, **extra, output_dir=output_dir)


def settings_record(settings: Mapping) -> dict:
    """The content of ``sweep.json``."""
    return {
        "settings": dict(settings),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "format": 1,
    }

"""Selectivity while training, read from run directories.

A run trained with ``--selectivity_every=N`` has, in its ``history.csv``,
the class selectivity index (eq. 1) on the validation split every N epochs:
``val_split_selectivity/<probe>`` per layer and ``val_split_mean_selectivity``
(eq. 3), beside ``val_accuracy`` every epoch
(`tf_selectivity.training.callbacks.SplitSelectivityEvery`). This module
turns those files into tidy tables:

* `read_training_curves`: one row per (run, epoch, layer), the layer
  ``"mean"`` standing for eq. 3's mean over layers;
* `summarize_training_curves`: per (model, alpha, layer, epoch), the mean
  over seeds with a percentile-bootstrap CI, of the SI and of the
  validation accuracy;
* `half_rise_epochs`: per run and layer, the first epoch at which the SI
  reaches half its final value (when selectivity rises);
  `summarize_half_rise`: its mean over seeds with a CI, per alpha and layer.
"""

from __future__ import annotations

import os
from typing import Iterable

import numpy as np
import pandas as pd

from tf_selectivity.core.files import DamagedFileError, read_json
from tf_selectivity.core.settings import ParameterError

__all__ = [
    "MEAN_LAYER",
    "LAYER_COLUMN_PREFIX",
    "MEAN_COLUMN",
    "has_training_curves",
    "read_training_curves",
    "read_run_curves",
    "summarize_training_curves",
    "half_rise_epochs",
    "summarize_half_rise",
]

LAYER_COLUMN_PREFIX = "val_split_selectivity/"
MEAN_COLUMN = "val_split_mean_selectivity"
ACCURACY_COLUMN = "val_accuracy"
# The `layer` of eq. 3's mean over layers in the tables.
MEAN_LAYER = "mean"


def has_training_curves(run_dir: str) -> bool:
    """Whether the run's history.csv recorded the SI while training (reads its header only)."""
    path = os.path.join(run_dir, "history.csv")
    if not os.path.exists(path):
        return False
    with open(path, encoding="utf-8") as f:
        header = f.readline().strip().split(",")
    return MEAN_COLUMN in header or any(column.startswith(LAYER_COLUMN_PREFIX) for column in header)


def read_run_curves(run_dir: str) -> pd.DataFrame:
    """One run's rows of `read_training_curves`.

    Raises:
        ParameterError: no history.csv, one without the selectivity
            columns, or a damaged config.json.
    """
    history_path = os.path.join(run_dir, "history.csv")
    config_path = os.path.join(run_dir, "config.json")
    if not os.path.exists(history_path):
        raise ParameterError("run_dirs", f"{run_dir} has no history.csv")
    try:
        config = read_json(config_path) if os.path.exists(config_path) else {}
    except DamagedFileError as error:
        raise ParameterError("run_dirs", f"{run_dir}: {error}") from None
    # A run's config.json nests its settings (``{"config": {...}, "identity": ...}``).
    config = config.get("config", config) if isinstance(config.get("config"), dict) else config
    history = pd.read_csv(history_path)
    if "epoch" not in history.columns:
        raise ParameterError("run_dirs", f"{history_path} has no epoch column")
    layers = [c[len(LAYER_COLUMN_PREFIX):] for c in history.columns if c.startswith(LAYER_COLUMN_PREFIX)]
    if MEAN_COLUMN not in history.columns and not layers:
        raise ParameterError(
            "run_dirs", f"{run_dir} recorded no selectivity while training: train it with --selectivity_every=N"
        )
    accuracy = history[ACCURACY_COLUMN] if ACCURACY_COLUMN in history.columns else np.nan
    frames = []
    for index, layer in enumerate(layers + [MEAN_LAYER]):
        column = MEAN_COLUMN if layer == MEAN_LAYER else LAYER_COLUMN_PREFIX + layer
        if column not in history.columns:
            continue
        frames.append(pd.DataFrame({
            "epoch": history["epoch"].astype(int),
            "layer": layer,
            "layer_index": index if layer != MEAN_LAYER else -1,
            "selectivity": pd.to_numeric(history[column], errors="coerce"),
            "val_accuracy": pd.to_numeric(accuracy, errors="coerce"),
        }))
    frame = pd.concat(frames, ignore_index=True)
    frame.insert(0, "run_dir", os.path.abspath(run_dir))
    frame.insert(1, "model", str(config.get("model", "")))
    frame.insert(2, "alpha", float(config.get("alpha", np.nan)))
    frame.insert(3, "seed", int(config.get("seed", 0)))
    return frame


def read_training_curves(run_dirs: Iterable[str]) -> pd.DataFrame:
    """The SI on the validation split per epoch and layer, of every run.

    Args:
        run_dirs: run directories (each with ``history.csv``; ``config.json``
            gives the model, alpha and seed).

    Returns:
        Tidy DataFrame, one row per (run, recorded epoch, layer): ``run_dir``,
        ``model``, ``alpha``, ``seed``, ``epoch``, ``layer`` (a probe name, or
        `MEAN_LAYER` for eq. 3's mean), ``layer_index`` (-1 for the mean),
        ``selectivity``, ``val_accuracy``. Epochs where the SI was not
        recorded (``--selectivity_every`` > 1) keep their accuracy with a
        NaN selectivity.

    Raises:
        ParameterError: no run directories, or one without history.csv or
            without the selectivity columns.
    """
    run_dirs = [str(path) for path in run_dirs]
    if not run_dirs:
        raise ParameterError("run_dirs", "must name at least one run directory")
    return pd.concat([read_run_curves(path) for path in run_dirs], ignore_index=True)


def summarize_training_curves(curves: pd.DataFrame, confidence: float = 0.95, n_resamples: int = 1000,
                              seed: int = 0) -> pd.DataFrame:
    """Mean over seeds, with a bootstrap CI, per (model, alpha, layer, epoch).

    Args:
        curves: a `read_training_curves` table.
        confidence: level of the percentile-bootstrap intervals.
        n_resamples: bootstrap resamples.
        seed: bootstrap seed.

    Returns:
        DataFrame: ``model`` (and ``condition``, when `curves` has it),
        ``alpha``, ``layer``, ``layer_index``, ``epoch``, ``n`` (seeds with a value), ``selectivity_mean``,
        ``selectivity_ci_low``, ``selectivity_ci_high``, and the same three
        for ``val_accuracy`` (``accuracy_mean``, ...).
    """
    from tf_selectivity.measures.stats import summarize_by_group

    keys = _with_condition(curves, ["model", "alpha", "layer", "layer_index", "epoch"])
    parts = []
    for value, prefix in (("selectivity", "selectivity"), ("val_accuracy", "accuracy")):
        summary = summarize_by_group(curves, value, keys, confidence=confidence, n_resamples=n_resamples, seed=seed)
        summary = summary.rename(columns={"mean": f"{prefix}_mean", "ci_low": f"{prefix}_ci_low",
                                          "ci_high": f"{prefix}_ci_high", "n": f"{prefix}_n"})
        parts.append(summary[keys + [f"{prefix}_n", f"{prefix}_mean", f"{prefix}_ci_low", f"{prefix}_ci_high"]])
    summary = parts[0].merge(parts[1], on=keys, how="outer")
    summary = summary.rename(columns={"selectivity_n": "n"}).drop(columns=["accuracy_n"])
    return summary.sort_values(_with_condition(curves, ["model", "alpha", "layer_index", "epoch"]),
                               kind="stable").reset_index(drop=True)


def half_rise_epochs(curves: pd.DataFrame, fraction: float = 0.5) -> pd.DataFrame:
    """Per run and layer, the first epoch at which the SI reaches `fraction` of its final value.

    The final value is the SI at the last recorded epoch. Where it is not
    positive (no selectivity emerged) the epoch is NaN.

    Args:
        curves: a `read_training_curves` table.
        fraction: the share of the final value, in (0, 1].

    Returns:
        DataFrame, one row per (run, layer): ``run_dir``, ``model``,
        ``alpha``, ``seed``, ``layer``, ``layer_index``, ``final_epoch``,
        ``final_selectivity``, ``half_rise_epoch``.

    Raises:
        ParameterError: `fraction` outside (0, 1].
    """
    if not 0.0 < float(fraction) <= 1.0:
        raise ParameterError("fraction", f"must be in (0, 1]; got {fraction!r}")
    rows = []
    keys = _with_condition(curves, ["run_dir", "model", "alpha", "seed", "layer", "layer_index"])
    for key, group in curves.dropna(subset=["selectivity"]).groupby(keys, sort=False, dropna=False):
        group = group.sort_values("epoch")
        final = float(group["selectivity"].iloc[-1])
        epoch = np.nan
        if final > 0:
            reached = group["epoch"][group["selectivity"].to_numpy() >= fraction * final]
            epoch = int(reached.iloc[0])
        rows.append({**dict(zip(keys, key)), "final_epoch": int(group["epoch"].iloc[-1]),
                     "final_selectivity": final, "half_rise_epoch": epoch})
    return pd.DataFrame(rows, columns=keys + ["final_epoch", "final_selectivity", "half_rise_epoch"])


def summarize_half_rise(half_rise: pd.DataFrame, confidence: float = 0.95, n_resamples: int = 1000,
                        seed: int = 0) -> pd.DataFrame:
    """Mean over seeds, with a bootstrap CI, of the half-rise epoch per (model, alpha, layer).

    Args:
        half_rise: a `half_rise_epochs` table.
        confidence: level of the percentile-bootstrap intervals.
        n_resamples: bootstrap resamples.
        seed: bootstrap seed.

    Returns:
        DataFrame: ``model``, ``alpha``, ``layer``, ``layer_index``, ``n`` (runs
        whose SI rose), ``mean``, ``std``, ``ci_low``, ``ci_high``, in network
        order per (model, alpha), the mean over layers last.
    """
    from tf_selectivity.measures.stats import summarize_by_group

    keys = _with_condition(half_rise, ["model", "alpha", "layer", "layer_index"])
    summary = summarize_by_group(half_rise, "half_rise_epoch", keys, confidence=confidence,
                                 n_resamples=n_resamples, seed=seed)
    order = summary["layer_index"].where(summary["layer_index"] >= 0, np.inf)
    return summary.assign(_order=order).sort_values(_with_condition(half_rise, ["model", "alpha", "_order"]),
                                                    kind="stable").drop(columns="_order").reset_index(drop=True)


def _with_condition(frame: pd.DataFrame, keys: list) -> list:
    """`keys` with ``condition`` after ``model`` when `frame` names its runs' conditions:
    runs of different conditions are summarized apart."""
    if "condition" not in frame.columns:
        return keys
    position = keys.index("model") + 1
    return [*keys[:position], "condition", *keys[position:]]

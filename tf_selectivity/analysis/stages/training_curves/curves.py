"""Selectivity while training, read from run directories.

A run trained with ``--selectivity_every=N`` has, in its ``history.csv``,
the class selectivity index (eq. 1) on the validation split every N epochs:
``val_split_selectivity/<probe>`` per layer and ``val_split_mean_selectivity``
(eq. 3), beside ``val_accuracy`` every epoch
(`tf_selectivity.training.callbacks.SplitSelectivityEvery`). A run trained
with ``--selectivity_every_steps=N`` also has ``selectivity_steps.csv``: the
same index every N training steps early in training, at fractional epochs
(step / steps per epoch; epoch 0 is the initialization), its rows at an
epoch's end from that epoch's validation pass
(`tf_selectivity.training.step_events`). This module turns those files into
tidy tables:

* `read_training_curves`: one row per (run, epoch, layer), the layer
  ``"mean"`` standing for eq. 3's mean over layers; epochs are floats, the
  step rows between history.csv's epochs;
* `summarize_training_curves`: per (model, alpha, layer, epoch), the mean
  over seeds with a percentile-bootstrap CI, of the SI and of the
  validation accuracy;
* `half_rise_epochs`: per run and layer, the first recorded epoch (a
  fraction of one where steps were recorded) at which the SI reaches half
  its final value (when selectivity rises);
  `summarize_half_rise`: its mean over seeds with a CI, per alpha and layer.
"""

from __future__ import annotations

import os
from typing import Iterable

import numpy as np
import pandas as pd

from tf_selectivity.core.files import DamagedFileError, read_json
from tf_selectivity.core.settings import ParameterError
from tf_selectivity.training.run_dir import SELECTIVITY_STEPS_FILE

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
    """Whether the run recorded the SI while training: selectivity columns in its
    history.csv (reads its header only) or a ``selectivity_steps.csv``."""
    if os.path.exists(os.path.join(run_dir, SELECTIVITY_STEPS_FILE)):
        return True
    path = os.path.join(run_dir, "history.csv")
    if not os.path.exists(path):
        return False
    with open(path, encoding="utf-8") as f:
        header = f.readline().strip().split(",")
    return MEAN_COLUMN in header or any(column.startswith(LAYER_COLUMN_PREFIX) for column in header)


def read_run_curves(run_dir: str) -> pd.DataFrame:
    """One run's rows of `read_training_curves`.

    history.csv gives a row per epoch and layer; ``selectivity_steps.csv``,
    where the run has one, adds its steps at the epochs history.csv lacks
    (with a NaN ``val_accuracy``) and fills the SI of history.csv's epochs
    that recorded none. At an epoch both recorded, history.csv's row is
    kept (the two come from the same validation pass).

    Raises:
        ParameterError: neither history.csv nor selectivity_steps.csv, no
            selectivity in either, or a damaged config.json or table.
    """
    history_path = os.path.join(run_dir, "history.csv")
    steps_path = os.path.join(run_dir, SELECTIVITY_STEPS_FILE)
    config_path = os.path.join(run_dir, "config.json")
    has_steps = os.path.exists(steps_path)
    if not os.path.exists(history_path) and not has_steps:
        raise ParameterError("run_dirs", f"{run_dir} has no history.csv")
    try:
        config = read_json(config_path) if os.path.exists(config_path) else {}
    except DamagedFileError as error:
        raise ParameterError("run_dirs", f"{run_dir}: {error}") from None
    # A run's config.json nests its settings (``{"config": {...}, "identity": ...}``).
    config = config.get("config", config) if isinstance(config.get("config"), dict) else config
    history = pd.read_csv(history_path) if os.path.exists(history_path) else pd.DataFrame({"epoch": []})
    if "epoch" not in history.columns:
        raise ParameterError("run_dirs", f"{history_path} has no epoch column")
    steps = _read_steps(steps_path) if has_steps else None
    layers = [c[len(LAYER_COLUMN_PREFIX):] for c in history.columns if c.startswith(LAYER_COLUMN_PREFIX)]
    if steps is not None:
        layers += [layer for layer in dict.fromkeys(steps["layer"]) if layer not in layers]
    if MEAN_COLUMN not in history.columns and not layers:
        raise ParameterError(
            "run_dirs", f"{run_dir} recorded no selectivity while training: train it with --selectivity_every=N "
                        "or --selectivity_every_steps=N"
        )
    accuracy = history[ACCURACY_COLUMN] if ACCURACY_COLUMN in history.columns else np.nan
    with_mean = MEAN_COLUMN in history.columns or steps is not None
    indices = {layer: index for index, layer in enumerate(layers)}
    if with_mean:
        indices[MEAN_LAYER] = -1
    frames = []
    for layer, index in indices.items():
        column = MEAN_COLUMN if layer == MEAN_LAYER else LAYER_COLUMN_PREFIX + layer
        frames.append(pd.DataFrame({
            "epoch": history["epoch"].astype(int).astype(float),
            "layer": layer,
            "layer_index": index,
            "selectivity": pd.to_numeric(history[column], errors="coerce") if column in history.columns else np.nan,
            "val_accuracy": pd.to_numeric(accuracy, errors="coerce"),
        }))
    frame = pd.concat(frames, ignore_index=True)
    if steps is not None:
        frame = _with_steps(frame, steps, indices)
    frame.insert(0, "run_dir", os.path.abspath(run_dir))
    frame.insert(1, "model", str(config.get("model", "")))
    frame.insert(2, "alpha", float(config.get("alpha", np.nan)))
    frame.insert(3, "seed", int(config.get("seed", 0)))
    return frame


def _read_steps(path: str) -> pd.DataFrame:
    """A selectivity_steps.csv as (epoch, layer, selectivity) rows, eq. 3's mean as the layer `MEAN_LAYER`."""
    try:
        steps = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ParameterError("run_dirs", f"{path} cannot be read: {error}") from None
    missing = [c for c in ("epoch", "layer", "selectivity", "mean") if c not in steps.columns]
    if missing:
        raise ParameterError("run_dirs", f"{path} has no {', '.join(missing)} column")
    epoch = pd.to_numeric(steps["epoch"], errors="coerce")
    per_layer = pd.DataFrame({"epoch": epoch, "layer": steps["layer"].astype(str),
                              "selectivity": pd.to_numeric(steps["selectivity"], errors="coerce")})
    # One mean per step, repeated on each of its layers' rows.
    mean = pd.DataFrame({"epoch": epoch, "layer": MEAN_LAYER,
                         "selectivity": pd.to_numeric(steps["mean"], errors="coerce")}).drop_duplicates("epoch")
    return pd.concat([per_layer, mean], ignore_index=True)


def _with_steps(history_rows: pd.DataFrame, steps: pd.DataFrame, indices: dict) -> pd.DataFrame:
    """`history_rows` (a run's rows from history.csv) with the step rows of the epochs it lacks, and the SI of
    the steps at its epochs without one; in network order (`indices`: layer -> its ``layer_index``), then by
    epoch."""
    keys = ["epoch", "layer"]
    merged = history_rows.merge(steps.rename(columns={"selectivity": "_step_selectivity"}), on=keys,
                                how="outer", sort=False)
    merged["selectivity"] = merged["selectivity"].where(merged["selectivity"].notna(), merged["_step_selectivity"])
    merged["layer_index"] = merged["layer"].map(indices).astype(int)
    order = merged["layer_index"].where(merged["layer_index"] >= 0, np.inf)
    merged = merged.assign(_order=order).sort_values(["_order", "epoch"], kind="stable")
    return merged[["epoch", "layer", "layer_index", "selectivity", "val_accuracy"]].reset_index(drop=True)


def read_training_curves(run_dirs: Iterable[str]) -> pd.DataFrame:
    """The SI on the validation split per epoch and layer, of every run.

    Args:
        run_dirs: run directories (each with ``history.csv``, or
            ``selectivity_steps.csv``, or both; ``config.json`` gives the model,
            alpha and seed).

    Returns:
        Tidy DataFrame, one row per (run, recorded epoch, layer): ``run_dir``,
        ``model``, ``alpha``, ``seed``, ``epoch`` (float: history.csv's
        epochs, and the fractional epochs of recorded steps, 0 being the
        initialization), ``layer`` (a probe name, or `MEAN_LAYER` for eq.
        3's mean), ``layer_index`` (-1 for the mean), ``selectivity``,
        ``val_accuracy`` (NaN at the steps inside an epoch). Epochs where
        the SI was not recorded (``--selectivity_every`` > 1) keep their
        accuracy with a NaN selectivity.

    Raises:
        ParameterError: no run directories, or one with neither
            history.csv nor selectivity_steps.csv, or without selectivity.
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
    """Per run and layer, the first recorded epoch at which the SI reaches `fraction` of its final value.

    The final value is the SI at the last recorded epoch. Where it is not
    positive (no selectivity emerged) the epoch is NaN. Where the run
    recorded steps, the epoch is a fraction of one when the SI got there
    inside an epoch, and 0 when its value at initialization already was
    that high.

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
            epoch = float(reached.iloc[0])
        rows.append({**dict(zip(keys, key)), "final_epoch": float(group["epoch"].iloc[-1]),
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

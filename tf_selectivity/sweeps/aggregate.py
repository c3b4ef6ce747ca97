"""One table of every trial of a sweep: ``trials.csv`` and ``trials.parquet``.

Built from the directory alone -- keras-tuner's trial records
(``tuner/trial_*/trial.json``) and each run's ``summary.json`` -- so it can
be rebuilt anywhere the directory is visible (``--aggregate_only``), also
after a distributed sweep whose workers never held the oracle.

One row per trial, sorted by (leaky slope, alpha, seed): its status, the
sweep's settings, the run directory (relative to the sweep directory) and
the run's results: best epoch, validation and test accuracy, test mean
selectivity index and one ``test_selectivity/<layer>`` column per layer.
A failed trial keeps its row, with the last line of its error. A trial
whose run diverged has status ``DIVERGED``, its ``diverged_epoch`` and no
results.
"""

from __future__ import annotations

import glob
import os

import pandas as pd

from tf_selectivity.core.files import read_json, replacing
from tf_selectivity.sweeps.layout import SweepPaths, trial_run_name
from tf_selectivity.sweeps.settings import SETTING_FIELDS, values_to_settings
from tf_selectivity.training.run_dir import RunPaths
from tf_selectivity.training.summary import RunSummary

__all__ = ["collect_trials", "write_trials_table", "LEADING_COLUMNS"]

LEADING_COLUMNS = (
    "trial_id", "status", "model", "activation", "leaky_slope", "alpha", "seed",
    "run_name", "run_dir", "complete", "diverged_epoch", "best_epoch", "val_accuracy", "test_accuracy",
    "test_mean_selectivity",
)


def _error_line(paths: SweepPaths, record: dict) -> str:
    message = record.get("message")
    if not message:
        try:
            with open(paths.trial_error(record["trial_id"])) as f:
                message = f.read()
        except OSError:
            return ""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def collect_trials(sweep_dir: str) -> pd.DataFrame:
    """All trials of the sweep in `sweep_dir` as a DataFrame (see module doc)."""
    paths = SweepPaths(sweep_dir)
    rows = []
    for trial_file in sorted(glob.glob(os.path.join(paths.project, "trial_*", "trial.json"))):
        record = read_json(trial_file)
        values = record["hyperparameters"]["values"]
        name = trial_run_name(values)
        run_dir = paths.run_dir(name)
        row = {
            "trial_id": record["trial_id"],
            "status": record["status"],
            "model": values["model"],
            "activation": values["activation"],
            "leaky_slope": float(values["leaky_slope"]),
            "alpha": float(values["alpha"]),
            "seed": int(values["seed"]),
            **({"alpha_window": values["alpha_window"]} if values.get("alpha_window") else {}),
            "run_name": name,
            "run_dir": os.path.relpath(run_dir, paths.root),
        }
        settings = values_to_settings(values)
        row.update({k: v for k, v in settings.items() if k not in row})
        row["lr_milestones"] = ",".join(str(m) for m in settings["lr_milestones"])
        run_paths = RunPaths(run_dir)
        row["complete"] = run_paths.is_complete()
        if row["complete"]:
            summary = RunSummary.read(run_paths.summary)
            if summary.diverged:
                row["status"] = "DIVERGED"
                row["diverged_epoch"] = summary.diverged_epoch
                row["error"] = f"diverged: {'non-finite loss' if summary.reason is None else summary.reason}"
                row["train_seconds_last_session"] = summary.train_seconds_this_session
                rows.append(row)
                continue
            for key in ("best_epoch", "val_accuracy", "test_accuracy", "test_mean_selectivity"):
                row[key] = getattr(summary, key)
            for layer, value in zip(summary.probe_names or [], summary.test_layer_selectivity or []):
                row[f"test_selectivity/{layer}"] = value
            row["train_seconds_last_session"] = summary.train_seconds_this_session
        row["error"] = "" if record["status"] == "COMPLETED" else _error_line(paths, record)
        rows.append(row)
    columns = list(LEADING_COLUMNS) + [f for f in SETTING_FIELDS if f not in LEADING_COLUMNS]
    frame = pd.DataFrame(rows)
    windowed = "alpha_window" in frame.columns  # a column only in sweeps with windows of training
    if windowed:
        columns.insert(columns.index("alpha") + 1, "alpha_window")
    for column in columns:
        if column not in frame.columns:
            frame[column] = pd.Series(dtype="object")
    rest = [c for c in frame.columns if c not in columns]
    # Per-layer columns last, in the network's order (input side first), as
    # the rows list them; other extra columns alphabetically before them.
    layer_columns = [c for c in rest if c.startswith("test_selectivity/")]
    other = sorted(c for c in rest if c not in layer_columns)
    frame = frame[columns + other + layer_columns]
    if len(frame):
        keys = ["leaky_slope", "alpha", *(["alpha_window"] if windowed else []), "seed", "trial_id"]
        frame = frame.sort_values(keys, kind="stable", na_position="first").reset_index(drop=True)
    return frame


def write_trials_table(sweep_dir: str) -> list:
    """Writes ``trials.csv`` and (with pyarrow) ``trials.parquet``.

    Returns:
        The paths written.
    """
    paths = SweepPaths(sweep_dir)
    frame = collect_trials(sweep_dir)
    written = []
    with replacing(paths.trials_csv) as tmp:
        frame.to_csv(tmp, index=False)
    written.append(paths.trials_csv)
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        print("[sweep] pyarrow is not installed: trials.parquet skipped (trials.csv has the same table).")
        return written
    with replacing(paths.trials_parquet) as tmp:
        frame.to_parquet(tmp, index=False)
    written.append(paths.trials_parquet)
    return written

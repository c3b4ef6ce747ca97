"""Names and paths inside a sweep directory.

    SWEEP_DIR/
      sweep.json          the settings every run of the sweep shares
      runs/<run name>/    one training run per trial (see `training.RunPaths`)
      tuner/              keras-tuner's project: oracle.json, trial_*/trial.json
      hparams_config/     TensorBoard HParams experiment (the dashboard's columns)
      trials.csv          one row per trial (also trials.parquet)
      search.json         result of a --mode=search sweep
      .sweep.lock         held by the process that owns the oracle

Run names are readable and unique per (model, activation, leaky slope,
alpha, window, seed), e.g. ``resnet20_relu_alpha-1_seed3``,
``resnet20_leaky0.1_alpha0.5_seed0`` or, for a regularizer applied in a
window of training, ``resnet20_relu_alpha-10_window0-2_seed0``: the
analysis command and a researcher browsing the directory both see which run
is which.
"""

from __future__ import annotations

import os
import re

__all__ = ["SweepPaths", "format_float", "run_name", "trial_run_name", "PROJECT_NAME", "RUNS_DIR"]

PROJECT_NAME = "tuner"
RUNS_DIR = "runs"


def format_float(value: float) -> str:
    """Shortest text that reads back as the same float: 1.0 -> "1", 0.1 -> "0.1".

    Based on `repr` (which round-trips exactly), without a trailing ".0",
    and with -0.0 written as "0". The result only holds digits, ".", "-",
    "+" and "e": safe in file names on every platform.
    """
    value = float(value)
    if value == 0.0:
        return "0"
    text = repr(value)
    if text.endswith(".0"):
        text = text[:-2]
    return text


def run_name(model: str, activation: str, leaky_slope: float, alpha: float, seed: int,
             alpha_window: str | None = None) -> str:
    """The run directory name of one trial, e.g. ``resnet20_relu_alpha-1_seed3``.

    A user's model spec ``module.path:function`` is written
    ``module.path-function`` (":" is not allowed in Windows file names);
    so is a window of training ``START:END`` (``window0-2``, ``window5-end``),
    named only when there is one (None: the whole run).
    """
    model = re.sub(r"[^A-Za-z0-9_.+-]+", "-", str(model))
    if activation == "relu":
        unit = "relu"
    else:
        unit = f"leaky{format_float(leaky_slope)}"
    window = f"_window{str(alpha_window).replace(':', '-')}" if alpha_window else ""
    return f"{model}_{unit}_alpha{format_float(alpha)}{window}_seed{int(seed)}"


def trial_run_name(values, seed=None) -> str:
    """`run_name` of a trial's hyperparameter values (`seed`: another seed's run of its pack)."""
    return run_name(values["model"], values["activation"], values["leaky_slope"], values["alpha"],
                    values["seed"] if seed is None else seed, values.get("alpha_window"))


class SweepPaths:
    """Paths inside one sweep directory."""

    def __init__(self, root: str):
        self.root = os.path.abspath(os.path.expanduser(root))
        self.settings = os.path.join(self.root, "sweep.json")
        self.runs = os.path.join(self.root, RUNS_DIR)
        self.project = os.path.join(self.root, PROJECT_NAME)
        self.oracle_state = os.path.join(self.project, "oracle.json")
        self.hparams_config = os.path.join(self.root, "hparams_config")
        self.trials_csv = os.path.join(self.root, "trials.csv")
        self.trials_parquet = os.path.join(self.root, "trials.parquet")
        self.search_result = os.path.join(self.root, "search.json")
        self.lock = os.path.join(self.root, ".sweep.lock")

    def run_dir(self, name: str) -> str:
        return os.path.join(self.runs, name)

    def trial_dir(self, trial_id: str) -> str:
        return os.path.join(self.project, f"trial_{trial_id}")

    def trial_error(self, trial_id: str) -> str:
        """Where a tuner writes why a trial failed (gRPC does not carry it)."""
        return os.path.join(self.trial_dir(trial_id), "error.txt")

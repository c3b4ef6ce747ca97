"""Checkpoints kept along training: the weights of chosen epochs, for analysis.

A run trained with ``keep_checkpoints=(0, 0.25, 1, ...)`` keeps the model's
weights (no optimizer state) at those epochs in
``<run_dir>/checkpoints/epoch-<label>.weights.h5``: epoch 0 is the
initialization, a fractional epoch ``e`` the weights after
``round(e * steps_per_epoch)`` training steps. Each file is written to a
temporary name and renamed, so a file under its final name is complete.
"""

from __future__ import annotations

import math
import os
import re

__all__ = [
    "KEPT_CHECKPOINT_DIR",
    "epoch_label",
    "kept_checkpoint_dir",
    "kept_checkpoint_path",
    "kept_checkpoint_paths",
    "checkpoint_step",
]

KEPT_CHECKPOINT_DIR = "checkpoints"
_SUFFIX = ".weights.h5"
_NAME = re.compile(r"^epoch-(.+)\.weights\.h5$")


def epoch_label(epoch: float) -> str:
    """The label of `epoch` in file names: ``f"{epoch:g}"`` ("0", "0.25", "8")."""
    return f"{float(epoch):g}"


def kept_checkpoint_dir(run_dir: str) -> str:
    """The folder of a run's kept checkpoints."""
    return os.path.join(run_dir, KEPT_CHECKPOINT_DIR)


def kept_checkpoint_path(run_dir: str, epoch: float) -> str:
    """``<run_dir>/checkpoints/epoch-<label>.weights.h5``."""
    return os.path.join(kept_checkpoint_dir(run_dir), f"epoch-{epoch_label(epoch)}{_SUFFIX}")


def kept_checkpoint_paths(run_dir: str) -> dict:
    """The kept checkpoints written completely in `run_dir`.

    Returns:
        {epoch (float): path}, sorted by epoch; {} for a run without any.
        Temporaries of a write in progress (or killed) are not listed.
    """
    folder = kept_checkpoint_dir(run_dir)
    if not os.path.isdir(folder):
        return {}
    found = {}
    for name in os.listdir(folder):
        match = _NAME.match(name)
        if not match:
            continue
        try:
            epoch = float(match.group(1))
        except ValueError:  # a temporary: epoch-0.25.<pid>.tmp.weights.h5
            continue
        if math.isfinite(epoch) and epoch_label(epoch) == match.group(1):
            found[epoch] = os.path.join(folder, name)
    return dict(sorted(found.items()))


def checkpoint_step(epoch: float, steps_per_epoch: int) -> int:
    """The training steps done at `epoch`: ``round(epoch * steps_per_epoch)``."""
    return int(round(float(epoch) * int(steps_per_epoch)))

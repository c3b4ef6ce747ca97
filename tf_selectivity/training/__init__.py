"""Training: the paper's protocol as a resumable, single-call `train`.

`config`, `run_dir`, `summary`, `prepare` and `status` need only the
standard library; the rest imports Keras and is loaded on first use, so
that command lines can check their flags and directories before a backend
starts.
"""

import importlib

from tf_selectivity.training.config import ConfigError, PAPER_LEARNING_RATES, TrainConfig
from tf_selectivity.training.prepare import PreparedRun, prepare_runs
from tf_selectivity.training.run_dir import DamagedCheckpointError, RunLockedError, RunPaths
from tf_selectivity.training.summary import RunSummary

_LAZY = {
    "resolve_jit_compile": "loop",
    "train": "loop",
    "save_as_run": "imported",
    "TorchSGD": "optimizers",
    "make_optimizer": "optimizers",
    "step_schedule": "optimizers",
}

__all__ = [
    "ConfigError",
    "DamagedCheckpointError",
    "PAPER_LEARNING_RATES",
    "PreparedRun",
    "RunLockedError",
    "RunPaths",
    "RunSummary",
    "TorchSGD",
    "TrainConfig",
    "make_optimizer",
    "prepare_runs",
    "resolve_jit_compile",
    "save_as_run",
    "step_schedule",
    "train",
]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"tf_selectivity.training.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'tf_selectivity.training' has no attribute {name!r}")

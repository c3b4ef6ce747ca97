"""Training: the paper's protocol as a resumable, single-call `train`."""

from tf_selectivity.training.config import ConfigError, PAPER_LEARNING_RATES, TrainConfig
from tf_selectivity.training.imported import save_as_run
from tf_selectivity.training.loop import prepare_run_dir, resolve_jit_compile, train
from tf_selectivity.training.optimizers import TorchSGD, make_optimizer, step_schedule
from tf_selectivity.training.run_dir import RunLockedError, RunPaths

__all__ = [
    "ConfigError",
    "PAPER_LEARNING_RATES",
    "RunLockedError",
    "RunPaths",
    "TorchSGD",
    "TrainConfig",
    "make_optimizer",
    "prepare_run_dir",
    "resolve_jit_compile",
    "save_as_run",
    "step_schedule",
    "train",
]

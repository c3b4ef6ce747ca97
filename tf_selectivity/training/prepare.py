"""`prepare_runs`: which of the runs asked for are finished, locked or to train.

Every command that trains (``train``, its ``--seeds``, the sweep's trials
through `train` and `train_replicates`) decides here, before a backend
starts and before anything is written, what each of its runs needs:

* **finished**: the directory holds this run's ``summary.json`` (completed
  or diverged): it is not trained again, its `RunSummary` is the answer;
* **locked**: another process holds the run's lock: it is training it
  (`refuse_locked` raises the one message for that);
* **pending**: to be trained, from its start or resumed from its checkpoint.

Each configuration is validated here (`TrainConfig.validate`) and its
directory checked (`run_dir.check_run_dir`), once: `train` and
`train_replicates` take the `PreparedRun`s and do not check them again.
The state is what the directory said when it was prepared; training takes
the run's lock and looks again under it (another process may have finished
the run meanwhile).

This module needs only the standard library.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Optional

from tf_selectivity.training.config import TrainConfig
from tf_selectivity.training.run_dir import RunLockedError, RunPaths, check_run_dir
from tf_selectivity.training.summary import RunSummary

__all__ = ["PreparedRun", "prepare_runs", "refuse_locked", "FINISHED", "LOCKED", "PENDING"]

FINISHED = "finished"
LOCKED = "locked"
PENDING = "pending"


@dataclasses.dataclass(frozen=True)
class PreparedRun:
    """One run, its configuration checked, and what its directory holds.

    Attributes:
        config: its validated `TrainConfig`.
        paths: its `RunPaths`.
        state: `FINISHED`, `LOCKED` or `PENDING`.
        summary: a finished run's `RunSummary` (None otherwise).
    """

    config: TrainConfig
    paths: RunPaths
    state: str
    summary: Optional[RunSummary] = None

    @property
    def finished(self) -> bool:
        return self.state == FINISHED

    @property
    def locked(self) -> bool:
        return self.state == LOCKED

    @property
    def pending(self) -> bool:
        return self.state == PENDING


def prepare_runs(configs: Iterable[TrainConfig], known_models=None) -> list:
    """Checks each run's configuration and directory, and what is left to do.

    Writes nothing. Runs are checked in order; the first problem raises.

    Args:
        configs: the runs' `TrainConfig`s.
        known_models: the built-in model names (`TrainConfig.validate`).

    Returns:
        A `PreparedRun` per configuration, in their order.

    Raises:
        ConfigError: a bad setting (`ConfigValueError` names it), or a
            directory that cannot hold the run (`check_run_dir`).
        DamagedFileError: a finished run's ``summary.json`` cannot be read.
    """
    prepared = []
    for config in configs:
        config.validate(known_models)
        paths = check_run_dir(config)
        if paths.is_complete():
            prepared.append(PreparedRun(config, paths, FINISHED, RunSummary.read(paths.summary)))
        elif paths.is_locked():
            prepared.append(PreparedRun(config, paths, LOCKED))
        else:
            prepared.append(PreparedRun(config, paths, PENDING))
    return prepared


def refuse_locked(prepared: Iterable[PreparedRun]) -> None:
    """Raises for the first run that another process is training.

    Raises:
        RunLockedError: naming its directory.
    """
    for run in prepared:
        if run.locked:
            raise RunLockedError(run.paths.root)

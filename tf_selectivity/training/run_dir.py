"""Layout of a run directory, the checks before writing one, and its lock.

    RUN_DIR/
      config.json           the run's configuration (TrainConfig)
      checkpoint/           state after the last finished epoch, best weights
      logs/                 TensorBoard event files (train/, validation/)
      history.csv           one row per epoch
      saved_model/          SavedModel: serve, unit_responses, activations
      model.keras           the best-epoch model in Keras' native format
      summary.json          written last: the run is finished when it exists
                            (`training.summary.RunSummary`: completed or
                            diverged)
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil

from tf_selectivity.core.files import (
    PROBE_PREFIX,
    TEMPORARY_PATTERNS,
    DamagedFileError,
    LockedError,
    exclusive_lock,
    is_locked,
    read_json,
    writable_dir_problem,
)

from tf_selectivity.training.config import ConfigError
from tf_selectivity.training.kept_checkpoints import KEPT_CHECKPOINT_DIR

# The validation split's selectivity at step resolution (`training.step_events`),
# named here so that readers of runs need not import Keras.
SELECTIVITY_STEPS_FILE = "selectivity_steps.csv"

__all__ = [
    "SELECTIVITY_STEPS_FILE",
    "RunPaths",
    "RunLockedError",
    "DamagedCheckpointError",
    "check_run_dir",
    "check_checkpoint",
    "read_checkpoint_state",
    "remove_partial_files",
]


class RunLockedError(LockedError):
    """Another process is training in this run directory.

    Its message is the one every command gives for a locked run; it quotes
    `output_dir`, which a command line names as its flag
    (`core.settings.message_for_flags`).

    Args:
        root: the run directory.
        owner: the pid of the process holding the lock, if known.
    """

    def __init__(self, root: str, owner: str = ""):
        super().__init__(
            f"another process is training in {root}; wait for it or use another `output_dir`", owner
        )
        self.root = root

    def __reduce__(self):
        return type(self), (self.root, self.owner)


class DamagedCheckpointError(ConfigError):
    """A file of an interrupted run's checkpoint cannot be read.

    The message names the file and the two ways on: delete the checkpoint
    directory to train the run from its start, or restore the file.

    Attributes:
        path: the damaged file.
        reason: what is wrong with it, in words.
    """

    def __init__(self, path: str, reason: str):
        checkpoint_dir = os.path.dirname(path)
        super().__init__(
            f"the checkpoint file {path} is damaged ({reason}); delete {checkpoint_dir} to train the run "
            "from its start, or restore the file from a copy, then run the same command again"
        )
        self.path = path
        self.reason = reason


class RunPaths:
    """Paths inside one run directory."""

    def __init__(self, root: str):
        self.root = os.path.abspath(os.path.expanduser(root))
        self.config = os.path.join(self.root, "config.json")
        self.summary = os.path.join(self.root, "summary.json")
        self.checkpoint_dir = os.path.join(self.root, "checkpoint")
        self.state_weights = os.path.join(self.checkpoint_dir, "state.weights.h5")
        self.state = os.path.join(self.checkpoint_dir, "state.json")
        self.best_weights = os.path.join(self.checkpoint_dir, "best.weights.h5")
        self.logs = os.path.join(self.root, "logs")
        self.history = os.path.join(self.root, "history.csv")
        self.saved_model = os.path.join(self.root, "saved_model")
        self.keras_model = os.path.join(self.root, "model.keras")
        self.lock = os.path.join(self.root, ".lock")

    def is_complete(self) -> bool:
        """Whether the run is finished (completed or diverged): summary.json exists."""
        return os.path.exists(self.summary)

    def is_locked(self) -> bool:
        """Whether another process holds the run's lock (creates nothing)."""
        return is_locked(self.lock)

    @contextlib.contextmanager
    def locked(self):
        """Holds an exclusive lock on the run directory (released on exit or death).

        Raises:
            ConfigError: the directory cannot be created.
            RunLockedError: another process holds the lock.
        """
        with contextlib.ExitStack() as stack:
            try:
                os.makedirs(self.root, exist_ok=True)
                stack.enter_context(exclusive_lock(self.lock, describe=self.root))
            except LockedError as error:
                raise RunLockedError(self.root, error.owner) from None
            except OSError as error:
                from tf_selectivity.training.config import ConfigError

                raise ConfigError(f"cannot create {self.root} ({error.strerror or error})") from None
            yield self


def check_run_dir(config) -> RunPaths:
    """Checks that `config.output_dir` can hold this run; writes nothing.

    The directory may be missing (its parent must then be creatable), empty,
    or hold this same run (same identity fields: it is resumed or, if
    finished, left alone).

    Returns:
        The run's `RunPaths`.

    Raises:
        ConfigError: the directory holds a run of another configuration or
            files that are not a run, is a file, lies under a file, cannot
            be written, or its config.json cannot be read.
    """
    from tf_selectivity.training.config import ConfigError, ConfigValueError

    paths = RunPaths(config.output_dir)
    problem = writable_dir_problem(paths.root)
    if problem:
        raise ConfigValueError("output_dir", problem)
    if os.path.exists(paths.config):
        try:
            previous = read_json(paths.config)
            identity = previous.get("identity", previous)
            if not isinstance(identity, dict):
                raise ValueError("it holds no run configuration")
        except (OSError, ValueError, AttributeError) as error:
            raise ConfigError(
                f"cannot read {paths.config} ({error}); it is not a run's configuration: "
                "choose another `output_dir`"
            ) from None
        differences = config.differences(identity)
        if differences:
            raise ConfigError(
                f"{paths.root} holds a run of another configuration ("
                + "; ".join(differences)
                + "); choose another `output_dir`"
            )
    elif os.path.isdir(paths.root):
        foreign = [n for n in os.listdir(paths.root) if n != ".lock" and not n.startswith(PROBE_PREFIX)]
        if foreign:
            raise ConfigError(
                f"{paths.root} is not empty and holds no run (found {', '.join(sorted(foreign)[:3])}); "
                "choose another `output_dir`"
            )
    return paths


_STATE_FIELDS = {"epochs_done": int, "best_value": (int, float), "history": list}


def read_checkpoint_state(paths: RunPaths):
    """The checkpoint's ``state.json`` as a dict, or None when there is none.

    Raises:
        DamagedCheckpointError: it is not valid JSON or lacks the training
            state (epochs done, best epoch and value, history).
    """
    if not os.path.exists(paths.state):
        return None
    try:
        state = read_json(paths.state)
    except DamagedFileError as error:
        raise DamagedCheckpointError(paths.state, error.reason) from None
    except OSError as error:
        raise DamagedCheckpointError(paths.state, f"it cannot be read: {error.strerror or error}") from None
    if not isinstance(state, dict):
        raise DamagedCheckpointError(paths.state, "it holds no training state")
    for name, kind in _STATE_FIELDS.items():
        if not isinstance(state.get(name), kind) or isinstance(state.get(name), bool):
            raise DamagedCheckpointError(paths.state, f"its {name!r} is missing or not a {_kind_name(kind)}")
    best_epoch = state.get("best_epoch")
    if state["epochs_done"] < 1 or len(state["history"]) != state["epochs_done"] or not (
        best_epoch is None or (isinstance(best_epoch, int) and 1 <= best_epoch <= state["epochs_done"])
    ):
        raise DamagedCheckpointError(
            paths.state,
            f"its epochs_done {state['epochs_done']}, best_epoch {best_epoch!r} and {len(state['history'])} "
            "history rows do not agree",
        )
    return state


def _kind_name(kind) -> str:
    return "number" if isinstance(kind, tuple) else {int: "integer", list: "list"}[kind]


def check_checkpoint(paths: RunPaths) -> None:
    """Checks that an interrupted run's checkpoint can be resumed; changes nothing.

    ``state.json`` must hold the training state, and the weights files it
    needs (``state.weights.h5``, ``best.weights.h5``) must be complete HDF5
    files whose every dataset reads. No checkpoint (a run not started, or
    killed before its first epoch ended) passes. Whether the weights fit
    the model is found when they are loaded (`RunCheckpoint.restore`).

    Raises:
        DamagedCheckpointError: naming the first damaged file.
    """
    state = read_checkpoint_state(paths)
    if state is None:
        return
    needed = [paths.state_weights] + ([paths.best_weights] if state.get("best_epoch") is not None else [])
    for path in needed:
        problem = _weights_file_problem(path)
        if problem:
            raise DamagedCheckpointError(path, problem)


def _weights_file_problem(path: str):
    """Why `path` is not a readable HDF5 file (every dataset read), or None."""
    if not os.path.exists(path):
        return "it is missing"
    import h5py

    def read(name, item):
        if isinstance(item, h5py.Dataset):
            item[()]  # reads the values: a truncated or overwritten file fails here

    try:
        with h5py.File(path, "r") as f:
            f.visititems(read)
    except Exception as error:  # h5py raises OSError, KeyError, RuntimeError... by the kind of damage
        text = str(error).strip() or type(error).__name__
        return f"not a readable HDF5 weights file: {text}"
    return None


def remove_partial_files(paths: RunPaths) -> list:
    """Deletes what a killed process left half-written; call with the lock held.

    Every write into a run directory goes to a temporary name first
    (``*.tmp``, ``*.partial``, ``model.<pid>.partial.keras``...) and is
    renamed into place, so such leftovers are never part of the run.

    Returns:
        The paths removed.
    """
    patterns = [
        os.path.join(directory, pattern)
        for directory in (paths.root, paths.checkpoint_dir, os.path.join(paths.root, KEPT_CHECKPOINT_DIR))
        for pattern in TEMPORARY_PATTERNS
    ]
    patterns += [
        os.path.join(paths.root, "saved_model.*.partial"),
        os.path.join(paths.root, f"{PROBE_PREFIX}*"),
    ]
    removed = []
    for pattern in patterns:
        for path in glob.glob(pattern):
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.remove(path)
                except OSError:
                    continue
            removed.append(path)
    return sorted(removed)

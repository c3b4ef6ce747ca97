"""Layout of a run directory, atomic writes, and the lock that guards it.

    RUN_DIR/
      config.json           the run's configuration (TrainConfig)
      checkpoint/           state after the last finished epoch, best weights
      logs/                 TensorBoard event files (train/, validation/)
      history.csv           one row per epoch
      saved_model/          SavedModel: serve, unit_responses, activations
      model.keras           the best-epoch model in Keras' native format
      summary.json          written last: the run is finished when it exists
                            ("status": "completed", or "diverged": see
                            `training.status`)
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil

__all__ = [
    "RunPaths", "RunLockedError", "write_json_atomic", "read_json", "check_run_dir", "remove_partial_files",
]


class RunLockedError(RuntimeError):
    """Another process is training in this run directory."""


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
        import fcntl

        if not os.path.exists(self.lock):
            return False
        try:
            descriptor = os.open(self.lock, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(descriptor)  # also releases the probe's lock
        return False

    @contextlib.contextmanager
    def locked(self):
        """Holds an exclusive lock on the run directory (released on exit or death)."""
        import fcntl

        try:
            os.makedirs(self.root, exist_ok=True)
            handle = open(self.lock, "w")
        except OSError as error:
            from tf_selectivity.training.config import ConfigError

            raise ConfigError(f"cannot create {self.root} ({error.strerror or error})") from None
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                raise RunLockedError(
                    f"another process is training in {self.root}; wait for it or use another --output_dir"
                ) from error
            handle.write(str(os.getpid()))
            handle.flush()
            yield self
        finally:
            handle.close()


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
    from tf_selectivity.training.config import ConfigError

    paths = RunPaths(config.output_dir)
    problem = writable_dir_problem(paths.root)
    if problem:
        raise ConfigError(f"output_dir {problem}")
    if os.path.exists(paths.config):
        try:
            previous = read_json(paths.config)
            identity = previous.get("identity", previous)
            if not isinstance(identity, dict):
                raise ValueError("it holds no run configuration")
        except (OSError, ValueError, AttributeError) as error:
            raise ConfigError(
                f"cannot read {paths.config} ({error}); it is not a run's configuration: "
                "choose another --output_dir"
            ) from None
        differences = config.differences(identity)
        if differences:
            raise ConfigError(
                f"{paths.root} holds a run of another configuration ("
                + "; ".join(differences)
                + "); choose another --output_dir"
            )
    elif os.path.isdir(paths.root):
        foreign = [n for n in os.listdir(paths.root) if n != ".lock" and not n.startswith(PROBE_PREFIX)]
        if foreign:
            raise ConfigError(
                f"{paths.root} is not empty and holds no run (found {', '.join(sorted(foreign)[:3])}); "
                "choose another --output_dir"
            )
    return paths


# Name prefix of the probe directories of `writable_dir_problem` (removed at
# once; one left by a process killed in between is not anyone's file).
PROBE_PREFIX = ".tf_selectivity-probe-"


def writable_dir_problem(path: str):
    """Why a directory cannot be used (created if missing) at `path`, or None.

    Checks `path`, or its nearest existing ancestor: a directory in which
    this process can create entries. Permissions alone do not tell (root
    passes every `os.access` check, yet cannot write to /proc or a read-only
    mount), so an empty probe directory is created there and removed at
    once, and the directory's modification time restored: the tree is left
    as it was.
    """
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(path):
        if not os.path.isdir(path):
            return f"{path} exists and is a file, not a directory"
        problem = _creation_problem(path)
        return f"{path} cannot be written ({problem})" if problem else None
    parent = os.path.dirname(path)
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"{path} cannot be created: {parent} is a file, not a directory"
    problem = _creation_problem(parent)
    return f"{path} cannot be created in {parent} ({problem})" if problem else None


def _creation_problem(directory: str):
    """Why nothing can be created in `directory`, or None."""
    import tempfile

    if not os.access(directory, os.W_OK | os.X_OK):
        return "permission denied"
    before = os.stat(directory)
    try:
        probe = tempfile.mkdtemp(prefix=PROBE_PREFIX, dir=directory)
    except OSError as error:
        return error.strerror or str(error)
    shutil.rmtree(probe, ignore_errors=True)
    try:  # the directory's modification time as it was: nothing happened here
        os.utime(directory, ns=(before.st_atime_ns, before.st_mtime_ns))
    except OSError:
        pass
    return None


def remove_partial_files(paths: RunPaths) -> list:
    """Deletes what a killed process left half-written; call with the lock held.

    Every write into a run directory goes to a temporary name first
    (``*.tmp``, ``*.partial``, ``model.<pid>.partial.keras``...) and is
    renamed into place, so such leftovers are never part of the run.

    Returns:
        The paths removed.
    """
    patterns = (
        os.path.join(paths.root, "*.tmp"),
        os.path.join(paths.root, "*.partial"),
        os.path.join(paths.root, "*.partial.keras"),
        os.path.join(paths.root, "saved_model.*.partial"),
        os.path.join(paths.checkpoint_dir, "*.tmp"),
        os.path.join(paths.checkpoint_dir, "*.tmp.weights.h5"),
        os.path.join(paths.root, f"{PROBE_PREFIX}*"),
    )
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


def write_json_atomic(path: str, payload) -> None:
    """Writes JSON to `path` so that readers never see a partial file."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True, default=_to_builtin)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def _to_builtin(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"Cannot serialize {type(value).__name__} to JSON.")

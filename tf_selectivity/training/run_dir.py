"""Layout of a run directory, atomic writes, and the lock that guards it.

    RUN_DIR/
      config.json           the run's configuration (TrainConfig)
      checkpoint/           state after the last finished epoch, best weights
      logs/                 TensorBoard event files (train/, validation/)
      history.csv           one row per epoch
      saved_model/          SavedModel: serve, unit_responses, activations
      model.keras           the best-epoch model in Keras' native format
      summary.json          written last: the run is complete when it exists
"""

from __future__ import annotations

import contextlib
import json
import os

__all__ = ["RunPaths", "RunLockedError", "write_json_atomic", "read_json"]


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
        return os.path.exists(self.summary)

    @contextlib.contextmanager
    def locked(self):
        """Holds an exclusive lock on the run directory (released on exit or death)."""
        import fcntl

        os.makedirs(self.root, exist_ok=True)
        handle = open(self.lock, "w")
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

"""An analysis' output directory: all of one analysis, never a mix of two.

Tables, figures and the report are written into a staging folder inside the
output directory and moved into place only when the analysis has finished:
the outputs of the previous analysis (listed in ``analysis.json``) are moved
out first, so that no table or figure that this analysis did not produce
survives it, and an analysis that fails or is interrupted leaves the
previous one untouched. The per-run cache (``cache/``) is shared between
analyses and kept.

One process writes into an output directory at a time: it holds an
exclusive lock (``.lock``, released when it ends or dies) from its first
write to the end; another gets `AnalysisLockedError` and writes nothing.

Moving a finished analysis into place is a few renames, done with Ctrl-C and
SIGTERM held back (`core.signals.signals_held`). A process killed outright
(SIGKILL, a power cut) in the middle of them leaves its finished staging
folder renamed ``.analysis-*.ready``: the next analysis into the directory
completes that move first, so that the directory always ends up holding
the whole of one analysis. What a killed process leaves half-written (a
``.partial`` staging folder, a cache entry's temporary folder) is removed by
the next one.

    OUTPUT_DIR/
      analysis.json           marker and manifest: patterns, options, outputs
      .lock                   held by the process writing into the directory
      cache/<stage>/<run id>-<key>/  per-run results of each stage (reused by the next analysis)
      runs.csv ... report.md  outputs of the last finished analysis
      .analysis-*.partial/    staging of an analysis in progress (or killed)
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import shutil
import tempfile
import time

from tf_selectivity.core.files import (
    PROBE_PREFIX,
    TEMPORARY_PATTERNS,
    LockedError,
    NoSpaceError,
    exclusive_lock,
    free_bytes,
    is_locked,
    is_no_space,
    read_json,
    replacing,
    write_json_atomic,
)
from tf_selectivity.core.settings import ParameterError
from tf_selectivity.core.signals import signals_held

__all__ = [
    "MARKER", "CACHE_DIR", "LOCK", "AnalysisLockedError", "OutputDirectory", "check_unlocked",
    "output_dir_problem", "unfinished_state", "write_table",
]

MARKER = "analysis.json"
CACHE_DIR = "cache"
LOCK = ".lock"
_STAGING_PREFIX = ".analysis-"
_STAGING_SUFFIX = ".partial"
# A staging folder whose analysis finished and is being moved into place.
_READY_SUFFIX = ".ready"
# In a ready folder: the marker that the finished analysis writes.
_COMMIT_RECORD = ".commit.json"
# How long a process waits for the lock before it says who holds it: long
# enough to outlast another process' `check_unlocked` probe, which holds the
# lock for an instant.
_LOCK_PATIENCE_S = 1.0
# Outputs of analyses written before analysis.json listed them.
_LEGACY_OUTPUTS = (
    "runs.csv", "runs.parquet", "layers.csv", "layers.parquet", "units.csv", "units.parquet",
    "cca_distances.csv", "cca_distances.parquet", "cca_ratios.csv", "cca_ratios.parquet",
    "cca_tests.csv", "cca_tests.parquet", "errors.csv", "diverged.csv", "report.md", "figures",
)


class AnalysisLockedError(LockedError):
    """Another process is writing an analysis into this output directory.

    Its message has the style of `training.RunLockedError`; it quotes
    `output_dir`, which a command line names as its flag.

    Args:
        path: the output directory.
        owner: the pid of the process holding the lock, if known.
    """

    def __init__(self, path: str, owner: str = ""):
        super().__init__(f"another process is analysing into {path}; wait for it or use another `output_dir`", owner)
        self.path = path

    def __reduce__(self):
        return type(self), (self.path, self.owner)


def check_unlocked(output_dir: str) -> None:
    """Raises `AnalysisLockedError` when another process writes into `output_dir`; creates nothing."""
    output_dir = os.path.abspath(os.path.expanduser(output_dir))
    if is_locked(os.path.join(output_dir, LOCK)):
        raise AnalysisLockedError(output_dir)


def unfinished_state(output_dir: str) -> str:
    """What an analysis that stopped early (interrupted, a full disk) left in `output_dir`, in words.

    E.g. "the earlier analysis in /x/analysis is unchanged and the runs
    analysed so far are kept in its cache", or "nothing was written".
    """
    output_dir = os.path.abspath(os.path.expanduser(output_dir))
    try:
        earlier = bool(read_json(os.path.join(output_dir, MARKER)).get("outputs"))
    except (OSError, ValueError, AttributeError):
        earlier = False
    cached = bool(glob.glob(os.path.join(glob.escape(output_dir), CACHE_DIR, "*", "*", "result.json")))
    if earlier:
        kept = " and the runs analysed so far are kept in its cache" if cached else ""
        return f"the earlier analysis in {output_dir} is unchanged{kept}"
    if cached:
        return f"the runs analysed so far are kept in {os.path.join(output_dir, CACHE_DIR)}"
    return "nothing was written"


def output_dir_problem(output_dir: str):
    """Why `output_dir` cannot take an analysis, or None. Writes nothing.

    It may be missing (and creatable), empty, or hold an earlier analysis
    (``analysis.json``); anything else is someone's files.
    """
    from tf_selectivity.core.files import writable_dir_problem

    problem = writable_dir_problem(output_dir)
    if problem:
        return problem
    if not os.path.isdir(output_dir) or os.path.exists(os.path.join(output_dir, MARKER)):
        return None
    entries = [
        n for n in os.listdir(output_dir)
        if n not in (CACHE_DIR, LOCK) and not n.startswith(_STAGING_PREFIX) and not n.startswith(PROBE_PREFIX)
    ]
    if entries:
        return (
            f"{output_dir} is not empty and holds no earlier analysis (found {', '.join(sorted(entries)[:3])}); "
            "choose another directory"
        )
    return None


@dataclasses.dataclass
class OutputDirectory:
    """Stages one analysis' outputs and swaps them in at the end.

    Usage::

        out = OutputDirectory(path, record={...})
        try:
            out.begin()  # when the first thing is to be written
            ... write into out.staging and out.cache ...
            out.commit()
        except BaseException:
            out.abort()
            raise
    """

    path: str
    record: dict = dataclasses.field(default_factory=dict)
    staging: str | None = None
    created: bool = False
    _lock: contextlib.ExitStack | None = dataclasses.field(default=None, repr=False)

    def begin(self) -> "OutputDirectory":
        """Creates the directory (if needed), takes its lock and makes the staging folder; idempotent.

        Call it when there is something to write: an analysis that fails
        before then leaves no trace at all. Under the lock it first finishes
        moving into place an analysis whose process was killed doing so, and
        removes what killed processes left half-written.

        Raises:
            AnalysisLockedError: another process writes into the directory
                (nothing is written).
            NoSpaceError: the file system is full.
            ParameterError: the directory cannot be created or written.
        """
        if self.staging is not None:
            return self
        self.created = not os.path.exists(self.path)
        try:
            os.makedirs(self.path, exist_ok=True)
            self._take_lock()
            self._finish_interrupted_commits()
            self._remove_leftovers()
            marker = os.path.join(self.path, MARKER)
            if not os.path.exists(marker):
                write_json_atomic(marker, {**self.record, "started": time.time(), "outputs": []})
            self.staging = tempfile.mkdtemp(prefix=_STAGING_PREFIX, suffix=_STAGING_SUFFIX, dir=self.path)
        except AnalysisLockedError:
            self.created = False  # the directory is the other process'
            raise
        except OSError as error:
            self.abort()
            if is_no_space(error):
                raise (error if isinstance(error, NoSpaceError) else NoSpaceError(self.path, free_bytes(
                    os.path.join(self.path, MARKER)))) from None
            raise ParameterError("output_dir", f"{self.path} cannot be written ({error.strerror or error})") from None
        return self

    def _take_lock(self) -> None:
        stack = contextlib.ExitStack()
        deadline = time.monotonic() + _LOCK_PATIENCE_S
        while True:
            try:
                stack.enter_context(exclusive_lock(os.path.join(self.path, LOCK), describe=self.path))
                break
            except LockedError as error:
                if time.monotonic() >= deadline:
                    raise AnalysisLockedError(self.path, error.owner) from None
                time.sleep(0.05)
        self._lock = stack

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    @property
    def cache(self) -> str:
        return os.path.join(self.path, CACHE_DIR)

    def final_path(self, staged_path: str) -> str:
        """Where a file written under `staging` lies after `commit`."""
        return os.path.join(self.path, os.path.relpath(staged_path, self.staging))

    def _previous_outputs(self) -> list:
        try:
            listed = read_json(os.path.join(self.path, MARKER)).get("outputs")
        except (OSError, ValueError, AttributeError):
            listed = None
        names = listed if listed else _LEGACY_OUTPUTS
        return [n for n in names if n not in (MARKER, CACHE_DIR, LOCK) and os.path.basename(n) == n]

    def commit(self) -> list:
        """Replaces the previous analysis' outputs with the staged ones; releases the lock.

        Returns:
            The names of this analysis' outputs (also listed in analysis.json).
        """
        try:
            with signals_held():
                names = sorted(os.listdir(self.staging))
                write_json_atomic(os.path.join(self.staging, _COMMIT_RECORD),
                                  {**self.record, "finished": time.time(), "outputs": names})
                # From this rename on, the analysis is finished: if this process
                # dies before the renames below are done, the next one does them.
                ready = self.staging[: -len(_STAGING_SUFFIX)] + _READY_SUFFIX
                os.replace(self.staging, ready)
                self._move_into_place(ready)
        finally:
            self._release_lock()
        return names

    def _move_into_place(self, ready: str) -> None:
        """Moves a finished analysis' outputs from `ready` into place, then its marker.

        Repeatable: run again after it was cut short, it does what is left.
        """
        record = read_json(os.path.join(ready, _COMMIT_RECORD))
        names = list(record["outputs"])
        trash = tempfile.mkdtemp(prefix=_STAGING_PREFIX, suffix=".old", dir=self.path)
        for name in sorted(set(self._previous_outputs()) | set(names)):
            if name in names and not os.path.lexists(os.path.join(ready, name)):
                continue  # this analysis' own, moved in already
            if os.path.lexists(os.path.join(self.path, name)):
                os.replace(os.path.join(self.path, name), os.path.join(trash, name))
        for name in names:
            if os.path.lexists(os.path.join(ready, name)):
                os.replace(os.path.join(ready, name), os.path.join(self.path, name))
        write_json_atomic(os.path.join(self.path, MARKER), record)
        shutil.rmtree(trash, ignore_errors=True)
        shutil.rmtree(ready, ignore_errors=True)

    def _finish_interrupted_commits(self) -> None:
        for ready in sorted(glob.glob(os.path.join(glob.escape(self.path), f"{_STAGING_PREFIX}*{_READY_SUFFIX}"))):
            if os.path.exists(os.path.join(ready, _COMMIT_RECORD)):
                self._move_into_place(ready)

    def _remove_leftovers(self) -> None:
        """Staging folders and cache entries' temporaries of processes that were killed (the lock is held)."""
        for leftover in glob.glob(os.path.join(glob.escape(self.path), f"{_STAGING_PREFIX}*")):
            shutil.rmtree(leftover, ignore_errors=True)
        for pattern in TEMPORARY_PATTERNS:
            for leftover in glob.glob(os.path.join(glob.escape(self.cache), "*", pattern)):
                if os.path.isdir(leftover) and not os.path.islink(leftover):
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        os.remove(leftover)

    def abort(self) -> None:
        """Drops the staged outputs and releases the lock; removes the directory if this analysis created it.

        A directory this analysis created is kept when its cache holds a
        finished per-run result (`analysis.cache`): an interrupted analysis
        started again then computes only what is missing.
        """
        try:
            with signals_held():
                if self.staging and os.path.isdir(self.staging):
                    shutil.rmtree(self.staging, ignore_errors=True)
                if self.created and not glob.glob(os.path.join(glob.escape(self.cache), "*", "*", "result.json")) \
                        and not glob.glob(os.path.join(glob.escape(self.path), f"{_STAGING_PREFIX}*{_READY_SUFFIX}")):
                    shutil.rmtree(self.path, ignore_errors=True)
        finally:
            self._release_lock()


def write_table(frame, output_dir: str, name: str) -> list:
    """Writes `name`.csv and `name`.parquet (a pandas DataFrame) into `output_dir`; returns their paths.

    Here (not in `pipeline`) so that the optional stages of `analysis/` can
    write their tables without importing the floor above them.
    """
    paths = []
    for suffix, writer in (("csv", lambda p: frame.to_csv(p, index=False)), ("parquet", lambda p: frame.to_parquet(p, index=False))):
        path = os.path.join(output_dir, f"{name}.{suffix}")
        with replacing(path) as tmp:
            writer(tmp)
        paths.append(path)
    return paths

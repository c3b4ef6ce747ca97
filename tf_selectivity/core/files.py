"""Files: JSON, atomic replacement, exclusive locks and writable directories.

The bottom floor of the package: `data`, `training`, `analysis` and `sweep`
all write through these functions, and this module imports nothing of ours
(NumPy only to serialize its scalars). Every write that a reader, a resumed
run or a killed process may see goes to a temporary name beside its target
and is renamed into place (`os.replace` is atomic within a file system), so
a file is either its old or its new content, never half of one.

Temporary names are ``<target without suffix>.<pid>.tmp<suffix>``: the
suffix is kept last because some writers insist on it (Keras wants
``.weights.h5`` / ``.keras``, `np.save` appends ``.npy`` otherwise), and the
pid keeps two processes from sharing one. `TEMPORARY_PATTERNS` are the globs
that match what a killed process may leave behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile

__all__ = [
    "DamagedFileError",
    "LockedError",
    "NoSpaceError",
    "PROBE_PREFIX",
    "TEMPORARY_PATTERNS",
    "exclusive_lock",
    "free_bytes",
    "is_locked",
    "is_no_space",
    "naming_full_disk",
    "read_json",
    "replacing",
    "temporary_path",
    "writable_dir_problem",
    "write_json_atomic",
]

# Globs (relative to a directory) of what an interrupted write leaves: ours,
# and the names that earlier versions of the package used.
TEMPORARY_PATTERNS = (
    "*.tmp", "*.tmp.*",
    "*.partial", "*.partial.keras", "*.partial.npy",
)


class DamagedFileError(ValueError):
    """A file exists but cannot be read as what it should hold.

    Attributes:
        path: the file.
        reason: what is wrong with it, in words.
    """

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path} is damaged ({reason})")
        self.path = path
        self.reason = reason


class LockedError(RuntimeError):
    """Another process holds the lock.

    Attributes:
        owner: the pid written in the lock file by its holder, or "" if unknown.
    """

    def __init__(self, message: str, owner: str = ""):
        super().__init__(message)
        self.owner = owner


class NoSpaceError(OSError):
    """A write failed because its file system is full (or its quota spent).

    Raised by `replacing` (and so by every atomic write of the package) in
    place of the bare ``OSError: [Errno 28] No space left on device``,
    after the temporary file was removed: the target keeps its old content.

    Attributes:
        path: the file that could not be written.
        free_bytes: the space left on its file system, or None if unknown.
        note: what the caller adds (e.g. what is still intact).
    """

    def __init__(self, path: str, free_bytes=None, note: str = ""):
        super().__init__(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        self.path = path
        self.free_bytes = free_bytes
        self.note = note

    def __str__(self) -> str:
        free = "" if self.free_bytes is None else f"; {format_bytes(self.free_bytes)} free on its file system"
        text = f"no space left on the device to write {self.path}{free}"
        return f"{text}; {self.note}" if self.note else text

    def __reduce__(self):
        return type(self), (self.path, self.free_bytes, self.note)

    def with_note(self, note: str) -> "NoSpaceError":
        """The same error with `note` added to its message."""
        return NoSpaceError(self.path, self.free_bytes, note)


def format_bytes(count: int) -> str:
    """1536 -> "1.5 KB": a size in bytes, in decimal units."""
    value = float(count)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def is_no_space(error: BaseException) -> bool:
    """Whether `error` says the file system is full: ENOSPC or EDQUOT, also
    as h5py and pyarrow report them (an OSError whose text carries the C
    library's message, without an errno), or a `NoSpaceError`."""
    if isinstance(error, NoSpaceError):
        return True
    if not isinstance(error, OSError):
        return False
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error)
    return os.strerror(errno.ENOSPC) in text or os.strerror(errno.EDQUOT) in text


def free_bytes(path: str):
    """The space left on the file system that holds `path` (or would: its
    nearest existing ancestor), in bytes; None if unknown."""
    directory = os.path.dirname(os.path.abspath(path))
    while directory and not os.path.isdir(directory) and os.path.dirname(directory) != directory:
        directory = os.path.dirname(directory)
    try:
        return shutil.disk_usage(directory or ".").free
    except OSError:
        return None


@contextlib.contextmanager
def naming_full_disk(path: str):
    """A full file system inside the block raises `NoSpaceError` naming `path`.

    A write that fails for lack of space says only ``[Errno 28] No space
    left on device``, without the file (a failed ``write`` has no name):
    wrap the code that writes `path` (a file, or a folder of files) so that
    the error names it and the space left. A `NoSpaceError` raised inside
    (it names its own file) passes unchanged.
    """
    try:
        yield
    except OSError as error:
        if isinstance(error, NoSpaceError) or not is_no_space(error):
            raise
        raise NoSpaceError(path, free_bytes(path)) from error


# ------------------------------------------------------------ atomic writes
def temporary_path(path: str, suffix: str = "") -> str:
    """The temporary name beside `path` that this process writes first.

    Args:
        path: the final path.
        suffix: an ending that must stay last (e.g. ``".weights.h5"``); it
            is taken off `path` (if there) and put after ``.<pid>.tmp``.

    Returns:
        ``<path without suffix>.<pid>.tmp<suffix>``.
    """
    stem = path[: -len(suffix)] if suffix and path.endswith(suffix) else path
    return f"{stem}.{os.getpid()}.tmp{suffix}"


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


@contextlib.contextmanager
def replacing(path: str, suffix: str = ""):
    """Yields a temporary path; on success it replaces `path` atomically.

    Write the file (or directory) to the yielded path inside the block.
    When the block ends normally the result is renamed onto `path` (a
    directory at `path` is removed first: two renames, so a reader may find
    no directory for an instant, never a half-written one); when it raises,
    the temporary is removed and `path` is left as it was. A full file
    system (``ENOSPC``, ``EDQUOT``) is raised as `NoSpaceError`, naming
    `path` and the space left.

    Args:
        path: the final path.
        suffix: see `temporary_path`.

    Yields:
        The temporary path (nothing exists there yet).
    """
    tmp = temporary_path(path, suffix)
    _remove(tmp)
    try:
        yield tmp
        if os.path.isdir(tmp) and os.path.isdir(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException as error:
        _remove(tmp)
        if is_no_space(error) and not isinstance(error, NoSpaceError):
            raise NoSpaceError(path, free_bytes(path)) from error
        raise


def write_json_atomic(path: str, payload, *, indent=2, sort_keys=True) -> None:
    """Writes `payload` as JSON to `path` so that readers never see a partial file.

    NumPy scalars and arrays are written as numbers and lists.
    """
    with replacing(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=indent, sort_keys=sort_keys, default=_to_builtin)
            f.write("\n")


def read_json(path: str):
    """The JSON content of `path`.

    Raises:
        FileNotFoundError: there is no such file.
        DamagedFileError: the file is not valid JSON (or not UTF-8 text).
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        reason = "it is empty" if not data.strip() else f"not valid JSON: {error}"
        raise DamagedFileError(path, reason) from None


def _to_builtin(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"Cannot serialize {type(value).__name__} to JSON.")


# -------------------------------------------------------------------- locks
@contextlib.contextmanager
def exclusive_lock(path: str, describe: str = "it"):
    """Holds an exclusive `flock` on the file `path` (created if missing).

    The lock is released when the block ends or the process dies (the
    kernel drops it with the descriptor), so a killed holder never leaves a
    stale lock. The holder's pid is written into the file, for messages.

    Args:
        path: the lock file (its directory must exist).
        describe: what the lock guards, for the error message.

    Raises:
        LockedError: another process holds the lock (its pid in `owner`).
        OSError: the lock file cannot be created.
    """
    import fcntl

    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip()
            raise LockedError(f"another process (pid {owner or '?'}) holds {describe}", owner) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()


def is_locked(path: str) -> bool:
    """Whether another process holds `exclusive_lock(path)`; creates nothing."""
    import fcntl

    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(descriptor)  # also releases this probe's own lock
    return False


# ------------------------------------------------------ writable directories
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

    Returns:
        A phrase that completes "output_dir ..." (e.g. "/x exists and is a
        file, not a directory"), or None when the directory can be used.
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

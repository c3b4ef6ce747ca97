"""The analysis cache: every stage's per-run results, kept between analyses.

    OUTPUT_DIR/cache/<stage>/<run id>-<key>/
        result.json        the result's values and table names (written last)
        <table>.parquet    its tables
        ...                files the stage wrote for the run (e.g. responses/)

``<run id>`` identifies the run (`RunRecord.run_id`: its path and summary),
``<key>`` hashes the run's test data (dataset, number of images) and the
stage's `cache_key` (the settings that change its results). An entry is
written into a temporary folder and renamed into place when complete, so
that an analysis killed at any point leaves either a whole entry or none:
the next analysis computes exactly the missing ones.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
from typing import Callable

from tf_selectivity.analysis.stage import RunResult
from tf_selectivity.core.files import NoSpaceError, free_bytes, is_no_space, read_json, temporary_path, write_json_atomic

__all__ = ["ResultCache", "MISSING"]

RESULT_FILE = "result.json"
# `ResultCache.load` of an entry that does not exist (None is a cached "nothing for this run").
MISSING = object()


class ResultCache:
    """Per-run results of the stages under `root` (``OUTPUT_DIR/cache``).

    Args:
        root: the cache folder.
        before_write: called before anything is written (the output
            directory is created only when there is something to write).
    """

    def __init__(self, root: str, before_write: Callable[[], object] = lambda: None):
        self.root = root
        self.before_write = before_write

    def entry(self, stage, run) -> str | None:
        """The entry of `stage`'s result for `run` (a `RunContext`), or None when the stage is not cached."""
        key = stage.cache_key(run.options)
        if key is None:
            return None
        digest = hashlib.sha256(repr((run.data_key, key)).encode()).hexdigest()[:8]
        return os.path.join(self.root, stage.name, f"{run.record.run_id}-{digest}")

    def load(self, entry: str):
        """The result in `entry`: a `RunResult`, None (the run had nothing for the stage), or `MISSING`.

        An entry that cannot be read (damaged on disk) is `MISSING`: computed again.
        """
        path = os.path.join(entry, RESULT_FILE)
        if not os.path.exists(path):
            return MISSING
        import pandas as pd

        try:
            content = read_json(path)
            if content.get("nothing"):
                return None
            tables = {name: pd.read_parquet(os.path.join(entry, f"{name}.parquet")) for name in content["tables"]}
            return RunResult(tables=tables, values=content["values"], directory=entry,
                             warnings=list(content.get("warnings", [])))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return MISSING

    @contextlib.contextmanager
    def writing(self, entry: str):
        """Yields ``(make_folder, store)`` for one entry; on success the entry replaces any earlier one.

        ``make_folder()`` makes (once) and returns the temporary folder where
        the stage writes its files while computing; ``store(result)`` writes
        the result beside them and returns it with its final ``directory``.
        When the block ends, the folder is renamed onto `entry`; if the
        block raises, nothing of the entry is left. A full file system
        while the block writes raises `NoSpaceError` naming the entry.
        """
        folder = temporary_path(entry)
        made = []

        def make_folder() -> str:
            if not made:
                self.before_write()
                os.makedirs(os.path.dirname(entry), exist_ok=True)
                # Temporary folders of analyses that were killed.
                for leftover in glob.glob(glob.escape(entry) + ".*.tmp"):
                    shutil.rmtree(leftover, ignore_errors=True)
                os.makedirs(folder)
                made.append(folder)
            return folder

        def store(result: RunResult | None) -> RunResult | None:
            make_folder()
            if result is None:
                write_json_atomic(os.path.join(folder, RESULT_FILE), {"nothing": True})
                return None
            for name, table in result.tables.items():
                table.to_parquet(os.path.join(folder, f"{name}.parquet"), index=False)
            write_json_atomic(os.path.join(folder, RESULT_FILE),
                              {"tables": list(result.tables), "values": result.values,
                               "warnings": list(result.warnings)})
            return RunResult(tables=result.tables, values=result.values, directory=entry,
                             warnings=list(result.warnings))

        try:
            yield make_folder, store
        except BaseException as error:
            if made:
                shutil.rmtree(folder, ignore_errors=True)
            if is_no_space(error):  # named as the entry, not its temporary folder
                raise NoSpaceError(entry, free_bytes(entry)) from None
            raise
        if made:
            if os.path.isdir(entry):
                shutil.rmtree(entry)
            os.replace(folder, entry)

"""An analysis' output directory: all of one analysis, never a mix of two.

Tables, figures and the report are written into a staging folder inside the
output directory and moved into place only when the analysis has finished:
the outputs of the previous analysis (listed in ``analysis.json``) are moved
out first, so that no table or figure that this analysis did not produce
survives it, and an analysis that fails leaves the previous one untouched.
The per-run cache (``cache/``) is shared between analyses and kept.

    OUTPUT_DIR/
      analysis.json           marker and manifest: patterns, options, outputs
      cache/<stage>/<run id>-<key>/  per-run results of each stage (reused by the next analysis)
      runs.csv ... report.md  outputs of the last finished analysis
      .analysis-*.partial/    staging of an analysis in progress (or killed)
"""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import tempfile
import time

from tf_selectivity.core.files import PROBE_PREFIX, read_json, replacing, write_json_atomic
from tf_selectivity.core.settings import ParameterError

__all__ = ["MARKER", "CACHE_DIR", "OutputDirectory", "output_dir_problem", "write_table"]

MARKER = "analysis.json"
CACHE_DIR = "cache"
_STAGING_PREFIX = ".analysis-"
# Outputs of analyses written before analysis.json listed them.
_LEGACY_OUTPUTS = (
    "runs.csv", "runs.parquet", "layers.csv", "layers.parquet", "units.csv", "units.parquet",
    "cca_distances.csv", "cca_distances.parquet", "cca_ratios.csv", "cca_ratios.parquet",
    "cca_tests.csv", "cca_tests.parquet", "errors.csv", "diverged.csv", "report.md", "figures",
)


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
        if n != CACHE_DIR and not n.startswith(_STAGING_PREFIX) and not n.startswith(PROBE_PREFIX)
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

    def begin(self) -> "OutputDirectory":
        """Creates the directory (if needed) and the staging folder; idempotent.

        Call it when there is something to write: an analysis that fails
        before then leaves no trace at all.
        """
        if self.staging is not None:
            return self
        self.created = not os.path.exists(self.path)
        try:
            os.makedirs(self.path, exist_ok=True)
            # Staging folders of analyses that were killed.
            for leftover in glob.glob(os.path.join(self.path, f"{_STAGING_PREFIX}*")):
                shutil.rmtree(leftover, ignore_errors=True)
            marker = os.path.join(self.path, MARKER)
            if not os.path.exists(marker):
                write_json_atomic(marker, {**self.record, "started": time.time(), "outputs": []})
            self.staging = tempfile.mkdtemp(prefix=_STAGING_PREFIX, suffix=".partial", dir=self.path)
        except OSError as error:
            self.abort()
            raise ParameterError("output_dir", f"{self.path} cannot be written ({error.strerror or error})") from None
        return self

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
        return [n for n in names if n not in (MARKER, CACHE_DIR) and os.path.basename(n) == n]

    def commit(self) -> list:
        """Replaces the previous analysis' outputs with the staged ones.

        Returns:
            The names of this analysis' outputs (also listed in analysis.json).
        """
        names = sorted(os.listdir(self.staging))
        trash = tempfile.mkdtemp(prefix=_STAGING_PREFIX, suffix=".old", dir=self.path)
        for name in sorted(set(self._previous_outputs()) | set(names)):
            if os.path.lexists(os.path.join(self.path, name)):
                os.replace(os.path.join(self.path, name), os.path.join(trash, name))
        for name in names:
            os.replace(os.path.join(self.staging, name), os.path.join(self.path, name))
        write_json_atomic(
            os.path.join(self.path, MARKER), {**self.record, "finished": time.time(), "outputs": names}
        )
        shutil.rmtree(trash, ignore_errors=True)
        shutil.rmtree(self.staging, ignore_errors=True)
        return names

    def abort(self) -> None:
        """Drops the staged outputs; removes the directory if this analysis created it.

        A directory this analysis created is kept when its cache holds a
        finished per-run result (`analysis.cache`): an interrupted analysis
        started again then computes only what is missing.
        """
        if self.staging:
            shutil.rmtree(self.staging, ignore_errors=True)
        if self.created and not glob.glob(os.path.join(glob.escape(self.cache), "*", "*", "result.json")):
            shutil.rmtree(self.path, ignore_errors=True)


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

"""Finding trained runs on disk and loading their models without Python model code."""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
from typing import Callable, Mapping

import numpy as np

from tf_selectivity.core.files import DamagedFileError, read_json
from tf_selectivity.training.run_dir import RunPaths
from tf_selectivity.training.summary import RunSummary

__all__ = [
    "RunRecord",
    "RunLoadError",
    "discover_runs",
    "error_for",
    "keras_model_config",
    "layer_configs",
    "load_response_function",
    "load_run_model",
    "probe_widths",
    "CONFIG_COLUMNS",
    "run_conditions",
]

# Columns that identify a run's condition in every table.
CONFIG_COLUMNS = ("model", "alpha", "seed", "activation", "leaky_slope")


class RunLoadError(Exception):
    """A run that cannot be analysed; the message names the path."""


def error_for(path: str, error: BaseException) -> str:
    """`error`'s message for a (path, message) row: without the path it starts with."""
    text = str(error)
    prefix = f"{path}: "
    return text[len(prefix):] if text.startswith(prefix) else text


@dataclasses.dataclass
class RunRecord:
    """A finished run directory (completed or diverged) and what its files say about it.

    Attributes:
        run_dir: the run directory (absolute).
        summary: its `RunSummary`.
        config: its ``config.json``'s configuration (empty if it has none).
    """

    run_dir: str
    summary: RunSummary
    config: dict

    @property
    def run_id(self) -> str:
        """Stable short id (cache key): the path and the summary's contents
        (its recorded values: the same whichever schema version the file has)."""
        digest = hashlib.sha256(self.run_dir.encode())
        digest.update(repr(sorted(self.summary.to_dict(schema_version=False).items())).encode())
        return digest.hexdigest()[:16]

    @property
    def diverged(self) -> bool:
        """The run stopped at a non-finite loss: no results."""
        return self.summary.diverged

    @property
    def probe_names(self) -> list:
        return list(self.summary.probe_names)

    def identity(self) -> dict:
        """The run's identity fields (`TrainConfig.IDENTITY_FIELDS`) as recorded.

        From ``config.json``'s configuration, completed from ``summary.json``
        (a run without ``config.json``, e.g. an imported model, records only
        what its summary holds); a field recorded nowhere is None (legacy
        values are the conditions' business: `report.condition_names`).
        """
        from tf_selectivity.training.config import TrainConfig

        summary = self.summary.to_dict(schema_version=False)
        identity = {}
        for name in TrainConfig.IDENTITY_FIELDS:
            value = self.config.get(name)
            identity[name] = summary.get(name) if value is None else value
        return identity

    def condition(self) -> dict:
        """The run's `CONFIG_COLUMNS`."""
        summary = self.summary
        return {
            "model": summary.model, "alpha": summary.alpha, "seed": summary.seed,
            "activation": summary.activation, "leaky_slope": summary.leaky_slope,
        }

    def architecture(self) -> tuple:
        """What must match for two runs' layers to be compared by CCA."""
        return (self.summary.model, tuple(self.probe_names))


def run_conditions(records, pool_over=()):
    """The conditions of `records` (`report.condition_names.name_conditions`), keyed by run directory."""
    from tf_selectivity.report.condition_names import name_conditions

    return name_conditions({r.run_dir: (r.identity(), r.summary.alpha) for r in records}, pool_over)


def _read_json_file(path: str, what: str) -> dict:
    """A JSON object from `path`; RunLoadError saying what is wrong with it."""
    try:
        value = read_json(path)
    except FileNotFoundError:
        raise RunLoadError(f"{os.path.dirname(path)}: {what} is missing") from None
    except OSError as error:
        raise RunLoadError(f"{os.path.dirname(path)}: cannot read {what} ({error.strerror or error})") from None
    except ValueError as error:
        raise RunLoadError(
            f"{os.path.dirname(path)}: {what} is not valid JSON ({error}); the file is damaged "
            "(an interrupted copy?): copy the run again or retrain it"
        ) from None
    if not isinstance(value, dict):
        raise RunLoadError(f"{os.path.dirname(path)}: {what} does not hold a JSON object")
    return value


def _load_record(run_dir: str) -> RunRecord:
    paths = RunPaths(run_dir)
    try:
        summary = RunSummary.read(paths.summary)
    except FileNotFoundError:
        raise RunLoadError(f"{paths.root}: summary.json is missing") from None
    except DamagedFileError as error:
        raise RunLoadError(
            f"{paths.root}: summary.json is damaged ({error.reason}; an interrupted copy?): copy the run "
            "again or retrain it"
        ) from None
    except OSError as error:
        raise RunLoadError(f"{paths.root}: cannot read summary.json ({error.strerror or error})") from None
    config = {}
    if os.path.exists(paths.config):
        config = _read_json_file(paths.config, "config.json").get("config", {})
        if not isinstance(config, dict):
            raise RunLoadError(f"{paths.root}: config.json holds no run configuration")
    return RunRecord(run_dir=paths.root, summary=summary, config=config)


def discover_runs(patterns) -> tuple[list, list]:
    """Finds run directories (those holding a summary.json).

    Each pattern is a run directory, a directory searched recursively for
    runs (e.g. a sweep's output), or a glob of either.

    Args:
        patterns: iterable of paths or globs.

    Returns:
        (records, errors): the `RunRecord`s found, sorted by condition, and
        (path, message) pairs for patterns that matched nothing or runs that
        cannot be read. Directories found twice are listed once.
    """
    records, errors, seen = [], [], set()
    for pattern in patterns:
        pattern = os.path.expanduser(pattern.strip())
        if not pattern:
            continue
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        matches = [m for m in matches if os.path.exists(m)]
        if not matches:
            errors.append((pattern, "no such file or directory" if not glob.has_magic(pattern) else "the pattern matched nothing"))
            continue
        found_here = 0
        for match in matches:
            for run_dir in _run_dirs_under(match):
                found_here += 1
                key = os.path.realpath(run_dir)
                if key in seen:
                    continue
                seen.add(key)
                try:
                    records.append(_load_record(run_dir))
                except RunLoadError as error:
                    errors.append((run_dir, error_for(run_dir, error)))
            if os.path.isdir(match) and not os.path.exists(os.path.join(match, "summary.json")):
                if os.path.exists(os.path.join(match, "config.json")):
                    errors.append((match, "the run is not complete (no summary.json): finish training it first"))
        if not found_here and not any(p == pattern for p, _ in errors):
            errors.append((pattern, "holds no completed run (no summary.json found)"))
    records.sort(key=lambda r: (r.summary.model, r.summary.activation, r.summary.leaky_slope, r.summary.alpha, r.summary.seed, r.run_dir))
    return records, errors


def _run_dirs_under(path: str):
    if os.path.isfile(path):
        if os.path.basename(path) == "summary.json":
            yield os.path.dirname(os.path.abspath(path))
        return
    if os.path.exists(os.path.join(path, "summary.json")):
        yield os.path.abspath(path)
        return
    for root, dirs, files in os.walk(path):
        dirs.sort()
        if "summary.json" in files:
            yield os.path.abspath(root)
            dirs[:] = []  # a run directory holds no further runs


def _import_user_model_module(model: str) -> None:
    """Imports the module of a ``module.path:function`` model, so that the
    custom layers it registers can be deserialized from ``model.keras``."""
    if ":" not in str(model):
        return
    import importlib

    try:
        importlib.import_module(str(model).split(":", 1)[0])
    except ImportError:
        pass  # the model may not need it; load_model names what is missing


def load_run_model(record: RunRecord):
    """The run's Keras model (a `SelectivityModel`, probes included) from ``model.keras``.

    For what needs the model itself rather than its exported responses:
    ablation (re-running the network with units silenced), attacks
    (gradients) and unit galleries. Any Keras backend; a user's
    ``module.path:function`` model's module is imported first so that its
    custom layers deserialize.

    Raises:
        RunLoadError: no ``model.keras``, or one that cannot be loaded
            (the message says why).
    """
    paths = RunPaths(record.run_dir)
    if not os.path.exists(paths.keras_model):
        raise RunLoadError(f"{record.run_dir}: model.keras is missing (the run's Keras model)")
    try:
        import zipfile

        import keras

        if not zipfile.is_zipfile(paths.keras_model):
            # Keras says "File not found" for a file that exists but is not a
            # zip archive.
            raise ValueError("it is not a Keras model file (not a zip archive: damaged, truncated or overwritten)")
        _import_user_model_module(record.summary.model)
        return keras.saving.load_model(paths.keras_model)
    except Exception as error:
        raise RunLoadError(
            f"{record.run_dir}: model.keras could not be loaded ({type(error).__name__}: {error})") from None


def keras_model_config(record: RunRecord) -> dict:
    """The configuration in the run's ``model.keras`` archive (its ``config.json``), read without
    weights or a backend; empty when the archive is missing or cannot be read."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(RunPaths(record.run_dir).keras_model) as archive:
            return json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return {}


def layer_configs(config, class_name: str):
    """Every layer entry (a dict with ``class_name`` == `class_name`) in a Keras configuration,
    nested models included, in the order of the configuration."""
    if isinstance(config, dict):
        if config.get("class_name") == class_name:
            yield config
        for value in config.values():
            yield from layer_configs(value, class_name)
    elif isinstance(config, list):
        for value in config:
            yield from layer_configs(value, class_name)


def probe_widths(record: RunRecord) -> dict:
    """probe name -> its number of units, read from ``model.keras``'s config alone.

    No weights are loaded and no backend is started: the probes' build
    shapes are in the archive's ``config.json`` (nested models included), so
    a command can check unit indices before its first pass over the data.

    Returns:
        The widths found; empty when the run has no readable ``model.keras``
        (the caller then checks against the responses instead).
    """
    widths = {}
    for node in layer_configs(keras_model_config(record), "SelectivityProbe"):
        shape = (node.get("build_config") or {}).get("input_shape")
        name = (node.get("config") or {}).get("name")
        if name and isinstance(shape, list) and shape and isinstance(shape[-1], int):
            widths[name] = shape[-1]
    return widths


def load_response_function(
    record: RunRecord, endpoint: str = "unit_responses"
) -> Callable[[np.ndarray], Mapping[str, np.ndarray]]:
    """A function images -> {"logits", layer: array} for one run's model.

    Prefers the run's SavedModel (only TensorFlow is needed, no Python model
    code); falls back to ``model.keras`` (any Keras backend; needs this
    package's layers, which importing it registers, and, for a user's
    ``module.path:function`` model with custom layers, that module
    importable: it is imported first).

    Args:
        record: the run.
        endpoint: "unit_responses" ({"logits", probe: (B, units)}) or
            "activations" ({probe: (B, H, W, units)}).

    Returns:
        The response function (NumPy in, NumPy out).

    Raises:
        RunLoadError: the run has no loadable model.
    """
    paths = RunPaths(record.run_dir)
    problems = []
    if os.path.isdir(paths.saved_model):
        try:
            import tensorflow as tf

            from absl import logging as absl_logging

            # Loading warns (through absl), once per gradient function, that
            # custom gradients were not saved: analysis never asks for them.
            verbosity = absl_logging.get_verbosity()
            absl_logging.set_verbosity(absl_logging.ERROR)
            try:
                loaded = tf.saved_model.load(paths.saved_model)
            finally:
                absl_logging.set_verbosity(verbosity)
            function = getattr(loaded, endpoint)

            def respond(images):
                outputs = function(tf.constant(np.asarray(images, dtype=np.float32)))
                return {name: value.numpy() for name, value in outputs.items()}

            respond.keep_alive = loaded  # the function needs the loaded object
            return respond
        except ImportError:
            problems.append("TensorFlow is not installed to read saved_model/")
        except Exception as error:  # a corrupt or foreign SavedModel
            problems.append(f"saved_model/ could not be loaded ({type(error).__name__}: {error})")
    if os.path.exists(paths.keras_model):
        try:
            model = load_run_model(record)
            derived = model.unit_response_model() if endpoint == "unit_responses" else model.activation_model()

            def respond(images):
                import keras

                outputs = derived.predict_on_batch(np.asarray(images, dtype=np.float32))
                return {name: keras.ops.convert_to_numpy(value) for name, value in outputs.items()}

            return respond
        except RunLoadError as error:
            problems.append(error_for(record.run_dir, error))
        except Exception as error:
            problems.append(f"model.keras could not be loaded ({type(error).__name__}: {error})")
    if not problems:
        problems.append("it holds no model (neither saved_model/ nor model.keras)")
    raise RunLoadError(f"{record.run_dir}: " + "; ".join(problems))

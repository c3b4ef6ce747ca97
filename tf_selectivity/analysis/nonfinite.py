"""Runs whose numbers cannot be trusted: NaN or Inf in their weights or in their responses.

A network with a NaN weight still gives numbers: a ReLU turns NaN into 0,
so its units look dead or constant, its SI is 0 and its accuracy that of
one class; an Inf response makes a class mean infinite, and the index's
guard gives 0 again. Such a run is analysed like any other (its rows are
kept), and named in the report's warnings (`RunResult.warnings`) so that
nobody reads its numbers as a result.

`nonfinite_weights` reads the weights from ``model.keras`` (no backend);
`WatchedResponses` counts the non-finite values of a response function's
outputs as a pass goes.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np

from tf_selectivity.training.run_dir import RunPaths

__all__ = ["WatchedResponses", "nonfinite_weights", "weights_warning"]

# The weights inside a Keras 3 `.keras` archive.
_WEIGHTS_MEMBER = "model.weights.h5"


def nonfinite_weights(record) -> tuple:
    """``({weight: non-finite values}, total values)`` of the run's ``model.keras``.

    Weights that are all finite are not listed; an archive that cannot be
    read gives ``({}, 0)`` (loading the model says what is wrong with it).
    """
    import h5py

    path = RunPaths(record.run_dir).keras_model
    found, total = {}, 0
    try:
        with zipfile.ZipFile(path) as archive:
            data = archive.read(_WEIGHTS_MEMBER)
        with h5py.File(io.BytesIO(data), "r") as weights:
            arrays = []
            weights.visititems(lambda name, item: arrays.append((name, item)) if isinstance(item, h5py.Dataset)
                               else None)
            for name, item in arrays:
                if not np.issubdtype(item.dtype, np.floating):
                    continue
                values = item[()]
                total += values.size
                bad = int(values.size - np.count_nonzero(np.isfinite(values)))
                if bad:
                    found[name] = bad
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return {}, 0
    return found, total


def weights_warning(record) -> str | None:
    """The warning of a run whose weights hold NaN or Inf, or None."""
    found, total = nonfinite_weights(record)
    if not found:
        return None
    names = sorted(found, key=lambda name: -found[name])
    shown = ", ".join(_layer_of(name) for name in names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return (f"{record.run_dir}: its weights hold NaN or Inf ({sum(found.values()):,} of {total:,} values, in {shown}); "
            "every number of this run describes a broken network, not a trained one")


def _layer_of(weight: str) -> str:
    """``layers/stem_conv/vars/0`` -> ``stem_conv``: the layer a weight belongs to, for a message."""
    parts = [part for part in weight.split("/") if part not in ("layers", "vars", "_layer_checkpoint_dependencies")]
    return "/".join(part for part in parts if not part.isdigit()) or weight


class WatchedResponses:
    """A response function (images -> ``{name: array}``) that counts its outputs' non-finite values.

    Args:
        respond: the response function (`runs.load_response_function`).
    """

    def __init__(self, respond):
        self.respond = respond
        self.nonfinite = {}  # output name -> count
        self.values = 0

    def __call__(self, images):
        outputs = self.respond(images)
        for name, value in outputs.items():
            value = np.asarray(value)
            self.values += value.size
            bad = int(value.size - np.count_nonzero(np.isfinite(value)))
            if bad:
                self.nonfinite[name] = self.nonfinite.get(name, 0) + bad
        return outputs

    def warning(self, run_dir: str) -> str | None:
        """The warning of a run whose responses held NaN or Inf in this pass, or None."""
        if not self.nonfinite:
            return None
        names = sorted(self.nonfinite, key=lambda name: -self.nonfinite[name])
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        return (f"{run_dir}: its responses hold NaN or Inf ({sum(self.nonfinite.values()):,} values, in {shown}); "
                "its SI, precision and accuracy count them as 0 and cannot be trusted")

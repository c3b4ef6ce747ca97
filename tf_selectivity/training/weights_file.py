"""`WeightsFile`: a model's ``.weights.h5``, written fast after the first time.

Keras' `Model.save_weights` walks the model's objects in Python on every
call, and a run writes its weights file up to twice per epoch (best and last
state; a pack of N replicates 2N per round). The file's layout depends only
on the model's structure, so `WeightsFile` lets Keras write the first file,
learns which variable each of its datasets holds, and afterwards copies
that file and overwrites its datasets with the variables' current values.
Keras' datasets are stored contiguously, so a value is overwritten as raw
bytes at its dataset's offset in the file (HDF5's `get_offset`): a save is
one copy of the file in memory and one write; where offsets are not
available, h5py's dataset writes are the fallback. The result is the file
Keras would write, dataset for dataset (tested), and `load_weights` reads
it as such. Measured costs: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import numpy as np

from tf_selectivity.core.files import replacing

__all__ = ["WeightsFile"]


class WeightsFile:
    """Writes `model`'s weights (and optimizer state) as `save_weights` does.

    Args:
        model: a built Keras model (its optimizer built, if it is saved).
    """

    def __init__(self, model):
        self.model = model
        self._template = None  # bytes of a file Keras wrote
        self._sources = None  # [(dataset path, variable index)], or False: use Keras
        self._variables = None
        self._offsets = None  # [(byte offset, variable index, dtype)], or None: write through h5py

    def save(self, path: str) -> None:
        """Writes the weights file at `path` atomically (a temporary name, then renamed)."""
        with replacing(path, suffix=".weights.h5") as tmp:
            self.write(tmp)

    def write(self, path: str) -> None:
        """Writes the weights file at `path` (a new file, not atomically: see
        `save`, or write to a `files.replacing` temporary)."""
        if self._sources is None or (self._sources and self._stale()):
            self._learn_layout(path)  # leaves Keras' own file at `path`
        elif self._sources is False:
            self.model.save_weights(path)
        else:
            self._write(path)

    def _stale(self) -> bool:
        """Whether the model gained or lost variables since the layout was learned."""
        return [id(v) for v in self._all_variables()] != [id(v) for v in self._variables]

    # -------------------------------------------------------------- layout
    def _all_variables(self):
        seen, variables = set(), []
        optimizer = getattr(self.model, "optimizer", None)
        groups = [self.model.variables] + ([optimizer.variables] if optimizer is not None else [])
        for group in groups:
            for variable in group:
                if id(variable) not in seen:
                    seen.add(id(variable))
                    variables.append(variable)
        return variables

    def _learn_layout(self, tmp: str) -> None:
        """Finds which variable each dataset of Keras' file holds.

        Every variable is set to its own index for one save (then restored):
        each dataset then holds one index everywhere, its variable's. Any
        dataset that does not (a variable Keras saves that is not among the
        model's and optimizer's variables) leaves `save` to Keras.
        """
        import h5py
        from keras import ops

        variables = self._all_variables()
        values = [np.array(ops.convert_to_numpy(variable)) for variable in variables]
        try:
            for index, variable in enumerate(variables):
                variable.assign(np.full(variable.shape, index, dtype=values[index].dtype))
            self.model.save_weights(tmp)
        finally:
            for variable, value in zip(variables, values):
                variable.assign(value)
        sources = []
        with h5py.File(tmp, "r") as f:
            datasets = []
            f.visititems(lambda name, item: datasets.append((name, item[()])) if isinstance(item, h5py.Dataset) else None)
        for name, marked in datasets:
            marked = np.asarray(marked)
            index = int(marked.flat[0]) if marked.size else -1
            if not (0 <= index < len(variables)) or marked.shape != values[index].shape or not np.all(marked == index):
                sources = False
                break
            sources.append((name, index))
        self.model.save_weights(tmp)
        if sources is False:
            self._sources = False
            return
        with open(tmp, "rb") as f:
            self._template = f.read()
        self._variables = variables
        self._sources = sources
        self._offsets = self._raw_offsets(tmp, sources, values)

    @staticmethod
    def _raw_offsets(path, sources, values):
        """Where each dataset's bytes lie in the file, if all are stored
        contiguously in the variables' own (native) dtypes; else None."""
        import h5py

        offsets = []
        with h5py.File(path, "r") as f:
            for name, index in sources:
                dataset = f[name]
                offset = dataset.id.get_offset()
                dtype = values[index].dtype
                if (
                    offset is None
                    or dataset.dtype != dtype
                    or not dtype.isnative
                    or dataset.id.get_storage_size() != values[index].nbytes
                ):
                    return None
                offsets.append((int(offset), index, dtype))
        return offsets

    def _write(self, tmp: str) -> None:
        import h5py
        from keras import ops

        if self._offsets is not None:
            image = bytearray(self._template)
            for offset, index, dtype in self._offsets:
                raw = np.ascontiguousarray(ops.convert_to_numpy(self._variables[index]), dtype=dtype).tobytes()
                image[offset : offset + len(raw)] = raw
            with open(tmp, "wb") as f:
                f.write(image)
            return
        with open(tmp, "wb") as f:
            f.write(self._template)
        with h5py.File(tmp, "r+") as f:
            for name, index in self._sources:
                f[name][...] = ops.convert_to_numpy(self._variables[index])

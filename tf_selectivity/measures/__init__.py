"""Numerics: the selectivity index and everything measured from responses.

`selectivity` (eq. 1 and the bounded index, streaming and differentiable),
`selectivity_index` (the index names), `unit_statistics` (streaming SI,
precision and dead units over a response function), `unit_null` and `fdr`
(selectivity above chance), `dimensionality`, `stats` (tests and intervals,
without formatting), `premises` (accuracy against chance, the smallest p a
test can reach) and `similarity` (CCA, CKA, Procrustes). NumPy or
`keras.ops` on arrays; no models, no runs. Submodules load on first use.
"""

import importlib

_SUBMODULES = ("selectivity", "selectivity_index", "unit_statistics", "unit_null", "fdr",
               "dimensionality", "stats", "premises", "similarity")

__all__ = list(_SUBMODULES)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"tf_selectivity.measures.{name}")
    raise AttributeError(f"module 'tf_selectivity.measures' has no attribute {name!r}")

"""False-discovery-rate control over a family of tests (NumPy only).

Benjamini-Hochberg q-values (valid for independent or positively dependent
tests) and Benjamini-Yekutieli's (valid under any dependence, more
conservative by ``sum_{i=1}^m 1 / i``), e.g. over the permutation p-values
of every unit of a run (`tf_selectivity.measures.unit_null`). Imports nothing of
ours but `options`: command lines read `FDR_METHODS` before a backend starts.
"""

from __future__ import annotations

import numpy as np

from tf_selectivity.core.settings import ParameterError

__all__ = ["FDR_METHODS", "DEFAULT_FDR", "check_fdr", "check_fdr_method", "fdr_q_values", "selective_units"]

FDR_METHODS = ("bh", "by")
DEFAULT_FDR = 0.05


def check_fdr(fdr, parameter: str = "fdr") -> float:
    """Returns `fdr` as a float if it lies strictly between 0 and 1.

    Raises:
        ParameterError: naming `parameter`.
    """
    if isinstance(fdr, bool) or not isinstance(fdr, (int, float, np.number)) or not 0.0 < float(fdr) < 1.0:
        raise ParameterError(parameter, f"must be a false discovery rate in (0, 1); got {fdr!r}")
    return float(fdr)


def check_fdr_method(method: str, parameter: str = "method") -> str:
    """Returns `method` if it is one of `FDR_METHODS`; raises ParameterError."""
    if method not in FDR_METHODS:
        raise ParameterError(parameter, f"must be one of {', '.join(FDR_METHODS)}; got {method!r}")
    return method


def fdr_q_values(p_values, method: str = "bh") -> np.ndarray:
    """False-discovery-rate adjusted p-values (q-values) of a family of tests.

    Benjamini & Hochberg (1995): ``q_(i) = min_{j >= i} m p_(j) / j`` over the
    p-values sorted ascending, capped at 1; Benjamini & Yekutieli (2001)
    multiply by ``sum_{i=1}^m 1 / i``. The same values as
    `scipy.stats.false_discovery_control`.

    Args:
        p_values: the family's p-values (any shape; e.g. every unit of a run).
        method: "bh" or "by".

    Returns:
        float64 array of `p_values`' shape.

    Raises:
        ParameterError: an unknown method, or p-values outside [0, 1] or NaN.
    """
    check_fdr_method(method)
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return p.copy()
    if not np.all((p >= 0) & (p <= 1)):
        raise ParameterError("p_values", "must lie in [0, 1]")
    flat = p.reshape(-1)
    m = flat.size
    order = np.argsort(flat, kind="stable")
    scaled = flat[order] * m / np.arange(1, m + 1)
    if method == "by":
        scaled *= np.sum(1.0 / np.arange(1, m + 1))
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(adjusted, 1.0)
    return q.reshape(p.shape)


def selective_units(q_values, fdr: float = DEFAULT_FDR) -> np.ndarray:
    """Boolean array: the units called selective above chance (q < `fdr`).

    Raises:
        ParameterError: `fdr` outside (0, 1).
    """
    fdr = check_fdr(fdr)
    return np.asarray(q_values) < fdr

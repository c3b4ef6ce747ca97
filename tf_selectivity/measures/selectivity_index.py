"""The names of the class-selectivity indices, readable without Keras.

`tf_selectivity.measures.selectivity` computes them; configurations and command
lines only need their names, before a backend starts.
"""

from __future__ import annotations

from tf_selectivity.core.settings import ParameterError

__all__ = ["SELECTIVITY_INDICES", "DEFAULT_SELECTIVITY_INDEX", "INDEX_HELP", "validate_index"]

# The two indices (see `tf_selectivity.measures.selectivity`); "eq1" is the paper's.
SELECTIVITY_INDICES = ("eq1", "bounded")
DEFAULT_SELECTIVITY_INDEX = "eq1"
INDEX_HELP = (
    "eq1 = the paper's eq. 1, (mu_max - mu_rest) / (mu_max + mu_rest), guarded near its pole for "
    "negative (leaky) responses; bounded = divide by |mu_max| + |mu_rest| (the same for ReLU, in "
    "[0, 1] for leaky units). See tf_selectivity/measures/selectivity.py."
)


def validate_index(index: str, parameter: str = "selectivity_index") -> str:
    """Returns `index` if it names a selectivity index.

    Raises:
        ParameterError: (a ValueError) naming `parameter` and the choices.
    """
    if index not in SELECTIVITY_INDICES:
        raise ParameterError(parameter, f"must be one of {', '.join(SELECTIVITY_INDICES)}; got {index!r}")
    return index

"""The few private Keras and keras-tuner APIs we use, in one place.

Everything else in the package uses public APIs only. What is here has no
public equivalent in the versions we support (setup.cfg pins them); each
entry says why it is needed, and `tests/test_compat.py` checks each one
against the installed libraries, so that an upgrade that removes or changes
one fails with a message naming it instead of somewhere deep in training.

Import this module lazily (inside functions) from modules that must not
load Keras at import time.
"""

from __future__ import annotations

__all__ = []


# ---------------------------------------------------------------------------
# Keras
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# keras-tuner
# ---------------------------------------------------------------------------

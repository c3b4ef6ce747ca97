"""Shared plumbing of the command-line tools: quiet start-up, exit codes.

Every command exits with status 2 and a one-line ``<command>: error: ...``
message on bad input (unknown flag values, missing paths, conflicting output
directories), before anything is written.
"""

from __future__ import annotations

import os
import sys

# TensorFlow's C++ start-up messages (CUDA probing, CPU features) drown the
# useful output of a command; keep warnings and errors.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Faster CPU kernels (see tf_selectivity/__init__.py); set before TensorFlow loads.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

USAGE_ERROR = 2


class UsageError(Exception):
    """Bad input from the user: reported in one line, exit status 2."""


def quiet_logging() -> None:
    """Keeps library INFO chatter (SavedModel writing, signatures) off the console."""
    import logging

    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("tensorflow").setLevel(logging.WARNING)


def fail(command: str, message: str) -> None:
    """Prints ``command: error: message`` to stderr and exits with status 2."""
    print(f"{command}: error: {message}", file=sys.stderr)
    sys.exit(USAGE_ERROR)


def flags_parser(command: str):
    """An absl `flags_parser` that reports flag errors in one line, status 2."""
    from absl import flags

    def parse(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as error:
            fail(command, str(error))

    return parse


def parse_float_list(text: str, name: str) -> list:
    """"0,-1,1e-1" -> [0.0, -1.0, 0.1]; raises UsageError naming the bad item."""
    import math

    values = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        try:
            value = float(item)
        except ValueError:
            raise UsageError(f"--{name}: {item!r} is not a number") from None
        if not math.isfinite(value):
            raise UsageError(f"--{name}: {item!r} is not a finite number")
        values.append(value)
    if not values:
        raise UsageError(f"--{name} is empty")
    return values


def parse_int_list(text: str, name: str) -> list:
    """"0,1,2" -> [0, 1, 2]; raises UsageError naming the bad item."""
    values = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        try:
            values.append(int(item))
        except ValueError:
            raise UsageError(f"--{name}: {item!r} is not an integer") from None
    if not values:
        raise UsageError(f"--{name} is empty")
    return values

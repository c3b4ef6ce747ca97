"""Shared plumbing of the command-line tools: quiet start-up, help, exit codes.

Every command exits with status 2 and a one-line ``<command>: error: ...``
message on bad input (unknown flag values, missing paths, conflicting output
directories, unreadable data), before anything is written. Checks that need
no deep-learning backend run before one is imported, so that a usage error
answers at once instead of after TensorFlow's start-up.

`start_backend` imports Keras (and TensorFlow where installed) with the
process' standard error captured at the file-descriptor level: TensorFlow's
C++ start-up lines (oneDNN, CUDA probing, the ``cuInit`` error on a machine
without a GPU) are written by absl's C++ logging before any Python setting
can reach it. Lines that are not such start-up chatter are written out after
the import; ``--verbose=3`` shows everything.
"""

from __future__ import annotations

import os
import re
import sys

# What the command lines set in their own process, before TensorFlow loads
# (a value already set is respected; `--help` lists them). Only the command
# lines import this module, so importing the package itself changes nothing
# in the environment. TensorFlow's C++ start-up messages (CUDA probing, CPU
# features) drown the useful output of a command: keep warnings and errors.
# TensorFlow's oneDNN CPU kernels are off by default on CPUs without AVX-512
# (AMD EPYC, most laptops), where they train markedly faster
# (benchmarks/RESULTS.md).
ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "1"}
for _name, _value in ENVIRONMENT.items():
    os.environ.setdefault(_name, _value)

USAGE_ERROR = 2
# `--verbose` at or above this level shows the backend's start-up messages.
BACKEND_LOG_VERBOSITY = 3

_HELP_TOKENS = {"-h", "-help", "--help", "-?", "--helpshort", "-helpshort"}
_HELPFULL_TOKENS = {"--helpfull", "-helpfull"}

# Flags given on the command line itself (not read from a --flagfile), by
# name; filled by the parser of `flags_parser`.
EXPLICIT_FLAGS: set = set()


class UsageError(Exception):
    """Bad input from the user: reported in one line, exit status 2."""


class _ExpectedRetracing:
    """Drops TensorFlow's "N out of the last N calls ... triggered tf.function
    retracing" warning. It fires when several models are evaluated in one
    process (an analysis of many runs loaded from model.keras, a sweep's
    trials): each new model is traced once, which is expected and cannot be
    avoided; the warning would suggest a bug that is not there."""

    def filter(self, record) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


_RETRACING_FILTER = _ExpectedRetracing()


def quiet_logging() -> None:
    """Keeps library INFO chatter (SavedModel writing, signatures) and expected
    retracing warnings off the console."""
    import logging

    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    logger = logging.getLogger("tensorflow")
    logger.setLevel(logging.WARNING)
    if _RETRACING_FILTER not in logger.filters:
        logger.addFilter(_RETRACING_FILTER)


def one_line(message: str) -> str:
    """`message` with its line breaks joined by "; " (errors stay one line)."""
    parts = [part.strip() for part in str(message).splitlines() if part.strip()]
    return "; ".join(parts) if parts else "unknown error"


def error_message(error, flag_names=None) -> str:
    """The message of `error` as a command line states it: a bad parameter
    of the library (`ParameterError`) and the parameters its message quotes
    are named as the command's flags (`options.message_for_flags`)."""
    from absl import flags

    from tf_selectivity.core.settings import ParameterError, message_for_flags

    flag_names = dict(flag_names or {})
    # The parameters with a flag: flags named as their parameter, and the renamed ones.
    parameters = set(flags.FLAGS) | set(flag_names)
    message = error.for_flags(flag_names) if isinstance(error, ParameterError) else str(error)
    return message_for_flags(message, parameters, flag_names)


def fail(command: str, error, flag_names=None) -> None:
    """Prints ``command: error: message`` (one line) to stderr and exits with status 2.

    Args:
        command: the command, as the user typed it.
        error: the message, or the exception to report (see `error_message`).
        flag_names: Python parameter -> flag name, where they differ.
    """
    sys.stdout.flush()
    print(f"{command}: error: {one_line(error_message(error, flag_names))}", file=sys.stderr, flush=True)
    sys.exit(USAGE_ERROR)


# ------------------------------------------------------------------ flags


def _flag_name(token: str):
    """The flag named by a command-line token ("--alpha=1" -> "alpha"), or None."""
    if not token.startswith("-") or token in ("-", "--"):
        return None
    name = token.lstrip("-").split("=", 1)[0]
    return name or None


PRESETS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "presets")


def presets() -> dict:
    """``{name: (path, description)}`` of the flagfiles shipped with the package.

    A preset is ``tf_selectivity/presets/<name>.flags``; its description is
    its first comment line.
    """
    found = {}
    if not os.path.isdir(PRESETS_DIR):
        return found
    for entry in sorted(os.listdir(PRESETS_DIR)):
        if not entry.endswith(".flags"):
            continue
        path = os.path.join(PRESETS_DIR, entry)
        description = ""
        with open(path, encoding="utf-8") as file:
            for line in file:
                if line.startswith("#"):
                    description = line.lstrip("#").strip()
                    break
        found[entry[: -len(".flags")]] = (path, description)
    return found


def expand_presets(argv) -> list:
    """``--preset=NAME`` (or ``--preset NAME``) -> ``--flagfile=<the preset's file>``, in place.

    Flags after it on the command line override the preset's, as for any
    flagfile.

    Raises:
        UsageError: a preset name that is not shipped (the message lists them).
    """
    expanded, tokens = [], list(argv)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if _flag_name(token) == "preset":
            if "=" in token:
                name = token.split("=", 1)[1]
            elif index + 1 < len(tokens):
                index += 1
                name = tokens[index]
            else:
                name = ""
            known = presets()
            if name not in known:
                choices = ", ".join(known) or "none"
                got = f"got {name!r}" if name else "none named (--preset=NAME)"
                raise UsageError(f"--preset must be one of {choices}; {got}")
            token = f"--flagfile={known[name][0]}"
        expanded.append(token)
        index += 1
    return expanded


def _check_flagfiles(argv) -> None:
    """Refuses a --flagfile that cannot be read, in one line (absl's own error is two)."""
    for index, token in enumerate(argv):
        if _flag_name(token) != "flagfile":
            continue
        if "=" in token:
            paths = token.split("=", 1)[1]
        elif index + 1 < len(argv):
            paths = argv[index + 1]
        else:
            raise UsageError("--flagfile needs a file name (--flagfile=PATH)")
        for path in filter(None, paths.split(",")):
            if not os.path.exists(path):
                raise UsageError(f"--flagfile {path}: no such file")
            if os.path.isdir(path):
                raise UsageError(f"--flagfile {path} is a directory, not a file of flags")
            if not os.access(path, os.R_OK):
                raise UsageError(f"--flagfile {path} cannot be read (permission denied)")


def _our_flag_modules(flag_values):
    """Names of the modules (this package's, or __main__) that define flags."""
    names = []
    for module in flag_values.flags_by_module_dict():
        if module.startswith("tf_selectivity") or module in ("__main__", sys.argv[0]):
            names.append(module)
    return names


def _module_label(module: str) -> str:
    """"/x/tf_selectivity/sweep.py" -> "tf_selectivity.sweep"."""
    if module.endswith(".py"):
        parts = os.path.normpath(module[:-3]).split(os.sep)
        if "tf_selectivity" in parts:
            parts = parts[len(parts) - 1 - parts[::-1].index("tf_selectivity"):]
            return ".".join(parts)
    return module


def print_help(doc: str | None, full: bool = False, with_presets: bool = False) -> None:
    """Writes the command's help (its docstring and flags) to stdout."""
    from absl import flags

    FLAGS = flags.FLAGS
    text = (doc or "").strip("\n")
    if full:
        flag_text = FLAGS.get_help()
    else:
        blocks = []
        for module in _our_flag_modules(FLAGS):
            block = FLAGS.module_help(module).strip("\n")
            if block.strip():
                header, _, body = block.partition("\n")
                blocks.append(f"{_module_label(header.rstrip(':').strip())}:\n{body}")
        flag_text = "\n\n".join(blocks)
    environment = ", ".join(f"{name}={value}" for name, value in ENVIRONMENT.items())
    text += (
        f"\n\nEnvironment: the command sets {environment} for its own process (TensorFlow's start-up "
        "logging and its oneDNN CPU kernels) unless they are already set."
    )
    if with_presets:
        listed = "\n".join(f"  {name}: {description}" for name, (_, description) in presets().items())
        text += f"\n\nPresets (--preset=NAME reads the flags of one; flags after it override them):\n{listed}"
    sys.stdout.write(f"{text}\n\nflags:\n{flag_text}\n")
    if not full:
        sys.stdout.write("\nTry --helpfull for every flag, absl's included.\n")
    sys.stdout.flush()


def _retired_flag(name: str | None, retired):
    """The retired flag that `name` (a token's flag name, maybe ``no``-prefixed) spells, or None."""
    if not name:
        return None
    if name in retired:
        return name
    if name.startswith("no") and name[2:] in retired:
        return name[2:]
    return None


def flags_parser(command: str, doc: str | None = None, with_presets: bool = False, retired=None):
    """An absl `flags_parser` for `app.run`.

    * ``--help`` (``-h``, ``--helpshort``) prints the command's docstring and
      its own flags, ``--helpfull`` every flag; both exit with status 0.
    * Flag errors (unknown flag, bad value, unreadable flagfile) exit with
      status 2 and one line.
    * Records which flags the command line names itself (`EXPLICIT_FLAGS`),
      as opposed to those read from a ``--flagfile``.
    * With `with_presets`, ``--preset=NAME`` reads a flagfile shipped with the
      package (`presets`), listed by ``--help``.
    * `retired`: ``{flag: what became of it}`` for flags the command no
      longer has, e.g. ``{"cca_methods": "was renamed --similarity"}``: such
      a flag (on the command line or in a flagfile) exits with status 2 and
      the line ``--cca_methods was renamed --similarity``, where absl would
      suggest the nearest spelling of another flag.
    """
    retired = dict(retired or {})
    from absl import flags

    def parse(argv):
        tokens = list(argv[1:])
        if "--" in tokens:
            tokens = tokens[: tokens.index("--")]
        wants_full = any(t in _HELPFULL_TOKENS for t in tokens)
        if wants_full or any(t in _HELP_TOKENS for t in tokens):
            # Before parsing: help must work whatever else the line holds.
            print_help(doc, full=wants_full, with_presets=with_presets)
            sys.exit(0)
        try:
            if with_presets:
                tokens = expand_presets(tokens)
                argv = [argv[0], *expand_presets(argv[1:])]
            _check_flagfiles(tokens)
        except UsageError as error:
            fail(command, str(error))
        for token in tokens:
            name = _retired_flag(_flag_name(token), retired)
            if name:
                fail(command, f"--{name} {retired[name]}")
        EXPLICIT_FLAGS.clear()
        for token in tokens:
            name = _flag_name(token)
            if name:
                EXPLICIT_FLAGS.add(name)
                if name.startswith("no"):
                    EXPLICIT_FLAGS.add(name[2:])
        try:
            return flags.FLAGS(argv)
        except flags.Error as error:
            name = _retired_flag(getattr(error, "flagname", None), retired)
            if name:  # from a flagfile
                fail(command, f"--{name} {retired[name]}")
            fail(command, re.sub(r"^ERROR::\s*", "", str(error)))

    return parse


def check_verbose(value: int, name: str = "verbose", levels=(0, 1, 2, 3)) -> None:
    if value not in levels:
        raise UsageError(f"--{name} must be one of {', '.join(map(str, levels))}; got {value}")


# ---------------------------------------------------------------- backend

_NOISE = (
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called"),
    # absl / glog INFO and WARNING lines from C++: I0000 00:00:... or W1126 12:00:...
    re.compile(r"^[IW]\d{4} \d\d:\d\d:\d\d"),
    # The CUDA probe's error on a machine without a GPU driver.
    re.compile(r"^E\d{4} \d\d:\d\d:\d\d.*(cuInit|cuda_platform|cuda_driver|Unable to register cu)"),
    # The second line of the CPU-feature notice (its first is an I line).
    re.compile(r"^To enable the following instructions: .* rebuild TensorFlow"),
)
_started = False


def is_start_up_noise(line: str) -> bool:
    """Whether `line` is one of TensorFlow's C++ start-up messages."""
    return any(pattern.search(line) for pattern in _NOISE)


def start_backend(verbose: int = 1) -> None:
    """Imports Keras and its backend, keeping TensorFlow's start-up lines off the console.

    Call before anything imports Keras or TensorFlow. Idempotent. With
    `verbose` >= 3 nothing is captured. TensorFlow is imported (and its
    devices listed, which is when CUDA is probed) also on the JAX backend
    when it is installed: export and TensorBoard load it later anyway.
    """
    global _started
    if _started:
        return
    _started = True
    quiet_logging()
    if verbose >= BACKEND_LOG_VERBOSITY:
        _import_backend()
        return
    import tempfile

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            _import_backend()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines() if line.strip() and not is_start_up_noise(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr, flush=True)
    quiet_logging()


def _import_backend() -> None:
    import keras

    try:
        import tensorflow as tf
    except ImportError:
        tf = None
    if tf is not None:
        tf.config.list_physical_devices()  # the CUDA probe happens here, once
    if keras.backend.backend() == "jax":
        import jax

        join_hosts()
        jax.devices()


def join_hosts() -> bool:
    """Joins the JAX cluster of several processes the environment names, once.

    `keras.distribution.initialize` (``jax.distributed.initialize``) reads
    ``KERAS_DISTRIBUTION_JOB_ADDRESSES``, ``KERAS_DISTRIBUTION_NUM_PROCESSES``
    and ``KERAS_DISTRIBUTION_PROCESS_ID``, and must run before anything
    starts JAX's backend (listing its devices included): `start_backend`
    calls it first. Does nothing on another backend, without those
    variables, or when this process joined already.

    Returns:
        Whether this process is one of several.
    """
    import keras

    if keras.backend.backend() != "jax" or int(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1")) <= 1:
        return False
    import jax

    if not jax.distributed.is_initialized():
        keras.distribution.initialize()
    return True


def progress_verbosity(verbose: int) -> int:
    """Keras progress verbosity for this console: a live bar (1) only on a terminal.

    Keras' progress bar rewrites its line with ``\\r`` and colours it with
    ANSI codes even when stdout is a file or a pipe (it treats every POSIX
    system as a terminal); logs then fill with escape codes. Off a terminal,
    1 becomes 2: one plain line per epoch.
    """
    if verbose == 1 and not (hasattr(sys.stdout, "isatty") and sys.stdout.isatty()):
        return 2
    return min(verbose, 2)


# ----------------------------------------------------------------- lists


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


def parse_seeds(text: str, name: str = "seeds") -> list:
    """"0,1,5-7" -> [0, 1, 5, 6, 7]; rejects negatives, empty ranges and repeats."""
    import re

    seeds = []
    for item in filter(None, (t.strip() for t in (text or "").split(","))):
        match = re.fullmatch(r"(\d+)-(\d+)", item)
        if match:
            first, last = int(match.group(1)), int(match.group(2))
            if first > last:
                raise UsageError(f"--{name}: range {item!r} is empty (write FIRST-LAST, FIRST <= LAST)")
            seeds.extend(range(first, last + 1))
            continue
        try:
            seed = int(item)
        except ValueError:
            raise UsageError(f"--{name}: {item!r} is not an integer") from None
        if seed < 0:
            raise UsageError(f"--{name}: {seed} is negative; seeds are non-negative integers")
        seeds.append(seed)
    if not seeds:
        raise UsageError(f"--{name} is empty")
    seen = set()
    for seed in seeds:
        if seed in seen:
            raise UsageError(f"--{name}: {seed!r} appears twice")
        seen.add(seed)
    return seeds

"""Settings defined once: dataclass fields that carry their help, choices and check.

A configuration of the library (`TrainConfig`, `AnalysisOptions`) is a
dataclass whose fields are made with `setting`. Each field states, in one
place, its default, its help text, its allowed values and how a value is
checked. From that single definition:

* the library validates values (`check_settings`) and, on a bad one, raises
  `ParameterError` naming the *Python* parameter (``alpha must be a finite
  number; got inf``);
* a command line defines its absl flags (`define_flags`), reads them back
  (`values_from_flags`) and reports the same error in terms of its own
  flags (`ParameterError.for_flags`: ``--alpha must be ...``).

A configuration may nest groups of settings (`group`: a field holding
another such dataclass, e.g. each analysis stage's settings in
`AnalysisOptions`). A setting of a group is named by its path in the
library (``ablation.layers must ...``); its flag keeps one flat namespace
with the others: the field's `flag_name` or, without one, its own name
(``--ablation_layers``, ``--pgd_steps``).

This module imports nothing of ours and absl only inside the flag functions.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from typing import Callable, Mapping, Sequence

__all__ = [
    "ParameterError",
    "quote",
    "message_for_flags",
    "setting",
    "group",
    "settings_of",
    "groups_of",
    "setting_paths",
    "check_settings",
    "flag_names",
    "define_flags",
    "values_from_flags",
    "finite",
    "positive",
    "non_negative",
    "in_unit_interval",
]


class ParameterError(ValueError):
    """A bad value of a named parameter.

    ``str(error)`` is ``"<parameter> <problem>"``, e.g. ``"alpha must be a
    finite number; got inf"``.

    Args:
        parameter: the Python name of the parameter (a field, an argument).
        problem: what is wrong, as the rest of a sentence that starts with
            the parameter's name.
    """

    def __init__(self, parameter: str, problem: str):
        super().__init__(f"{parameter} {problem}")
        self.parameter = parameter
        self.problem = problem

    def for_flags(self, flag_names: Mapping[str, str] | None = None) -> str:
        """The message with the parameter spelled as a command-line flag.

        Args:
            flag_names: Python parameter -> flag name, where they differ
                (e.g. ``{"n_resamples": "bootstrap_resamples"}``); by default
                a flag has the parameter's name.

        Returns:
            e.g. ``"--bootstrap_resamples must be a positive integer; got 0"``.
        """
        flag = dict(flag_names or {}).get(self.parameter, self.parameter)
        return f"--{flag} {self.problem}"


# A parameter quoted in a message, with an optional value: `name` or
# `name=value` (the value may be quoted: `data_on_device='auto'`); a
# setting of a group is quoted by its path (`ablation.layers`).
_QUOTED_PARAMETER = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)(?:=([^`]*))?`")


def quote(parameter: str, value=None) -> str:
    """A parameter (and value) as library messages quote it: `name='value'`.

    Command lines turn such quotes into their flags (`message_for_flags`).
    """
    return f"`{parameter}`" if value is None else f"`{parameter}={value!r}`"


def message_for_flags(message: str, parameters, flag_names: Mapping[str, str] | None = None) -> str:
    """A library message as a command line states it.

    Every quoted parameter (`quote`) that the command has a flag for
    becomes the flag: `` `data_on_device='false'` `` -> ``--data_on_device=false``.

    Args:
        message: the library's message.
        parameters: the Python parameters the command has flags for.
        flag_names: parameter -> flag name, where they differ.
    """
    names = dict(flag_names or {})
    parameters = set(parameters)

    def flag(match):
        name, value = match.group(1), match.group(2)
        if name not in parameters:
            return match.group(0)
        text = f"--{names.get(name, name)}"
        if value is not None:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            text += f"={value}"
        return text

    return _QUOTED_PARAMETER.sub(flag, message)


# ------------------------------------------------------------------- checks
# A check takes a value and returns what is wrong with it (the rest of a
# sentence after the parameter's name), or None.
def finite(value):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return f"must be a finite number; got {value}"
    return None


def positive(value):
    if isinstance(value, float):
        if not math.isfinite(value) or value <= 0:
            return f"must be a finite positive number; got {value}"
    elif value < 1:
        return f"must be a positive integer; got {value}"
    return None


def non_negative(value):
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0:
            return f"must be a finite non-negative number; got {value}"
    elif value < 0:
        return f"must be a non-negative integer; got {value}"
    return None


def names(values):
    """A non-empty list of non-blank names (e.g. layers)."""
    if not values or any(not str(v).strip() for v in values):
        return f"must be layer names; got {', '.join(map(str, values)) or 'none'}"
    return None


def permutation_count(value):
    """A number of label permutations B: a positive integer, 0 for off."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return f"must be a number of permutations B >= 1 (0: off); got {value!r}"
    return None


def in_unit_interval(low_open=False, high_open=True):
    """A check for a number in [0, 1) (or the interval the flags say)."""

    def check(value):
        low_bad = value <= 0 if low_open else value < 0
        high_bad = value >= 1 if high_open else value > 1
        if not math.isfinite(value) or low_bad or high_bad:
            interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
            return f"must be in {interval}; got {value}"
        return None

    return check


# ----------------------------------------------------------------- settings
def setting(default, help: str, *, choices: Sequence | None = None, check: Callable | None = None,
            flag: bool = True, role: str | None = None, item: type | None = None,
            default_factory: Callable | None = None, flag_name: str | None = None):
    """A dataclass field with everything a setting needs, defined once.

    Args:
        default: the default value (None: unset).
        help: the flag's help text (a sentence or two; mention the paper's
            value where it has one).
        choices: the allowed values (an absl enum flag; checked by
            `check_settings`).
        check: value -> problem or None (see `finite`, `positive`, ...);
            None values are not checked (None means "unset").
        flag: whether command lines define a flag for it.
        role: a free label read by the users of the dataclass (e.g.
            "identity": defines a training run; "local": a knob that
            changes only speed or where data are read).
        item: for tuple settings, the type of an item (int, float or str):
            the flag is a comma-separated list.
        default_factory: instead of `default`, for mutable defaults.
        flag_name: the flag's name where it differs from the field's (a
            flag name users already know, e.g. ``bootstrap_resamples`` for
            ``n_resamples``).

    Returns:
        A `dataclasses.field`.
    """
    metadata = {"help": help, "choices": tuple(choices) if choices else None, "check": check,
                "flag": flag, "role": role, "item": item, "flag_name": flag_name}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def group(cls):
    """A dataclass field holding a nested group of settings (a dataclass of `setting` fields).

    The group's settings are checked with the others (`check_settings`) and
    get flags like them (`define_flags`, named by each field's `flag_name`
    or name); its default is ``cls()``.

    Args:
        cls: the group's dataclass.

    Returns:
        A `dataclasses.field`.
    """
    return dataclasses.field(default_factory=cls, metadata={"group": cls})


def settings_of(cls, role: str | None = None, flags_only: bool = False) -> list:
    """The `setting` fields of a dataclass (optionally of one role), in order; groups not included."""
    fields = [f for f in dataclasses.fields(cls) if "help" in f.metadata]
    if role is not None:
        fields = [f for f in fields if f.metadata["role"] == role]
    if flags_only:
        fields = [f for f in fields if f.metadata["flag"]]
    return fields


def groups_of(cls) -> list:
    """The `group` fields of a dataclass, in order."""
    return [f for f in dataclasses.fields(cls) if "group" in f.metadata]


def setting_paths(cls, flags_only: bool = False, prefix: str = "") -> list:
    """(path, field, owner dataclass) of every setting, groups expanded where they stand.

    A top-level setting's path is its name, a group's setting's path is
    ``group.name`` (``ablation.layers``).
    """
    paths = []
    for field in dataclasses.fields(cls):
        if "group" in field.metadata:
            paths += setting_paths(field.metadata["group"], flags_only, f"{prefix}{field.name}.")
        elif "help" in field.metadata and (field.metadata["flag"] or not flags_only):
            paths.append((prefix + field.name, field, cls))
    return paths


def _flag_of(field) -> str:
    return field.metadata["flag_name"] or field.name


def flag_names(cls) -> dict:
    """Parameter -> flag name, for the settings whose flag is named otherwise than
    their parameter (the mapping `ParameterError.for_flags` takes): renamed
    flags, and every setting of a group (path ``ablation.layers`` -> flag
    ``ablation_layers``)."""
    return {path: _flag_of(field) for path, field, _ in setting_paths(cls) if _flag_of(field) != path}


def check_settings(instance, names: Sequence[str] | None = None, error=None) -> None:
    """Checks every `setting` field of `instance` (choices and check), groups included.

    Args:
        instance: a dataclass instance.
        names: only these fields (default: all).
        error: the `ParameterError` subclass to raise (default: ParameterError).

    Raises:
        ParameterError: naming the first bad field (a group's by its path).
    """
    error = error or ParameterError
    for field in dataclasses.fields(type(instance)):
        if names is not None and field.name not in names:
            continue
        value = getattr(instance, field.name)
        if "group" in field.metadata:
            try:
                check_settings(value, error=error)
            except ParameterError as bad:
                raise error(f"{field.name}.{bad.parameter}", bad.problem) from None
            continue
        if "help" not in field.metadata or value is None:
            continue
        choices = field.metadata["choices"]
        if choices is not None and value not in choices:
            raise error(
                field.name, f"must be one of {', '.join(map(str, choices))}; got {value!r}"
            )
        check = field.metadata["check"]
        if check is not None:
            problem = check(value)
            if problem:
                raise error(field.name, problem)


def _base_type(cls, field):
    """The field's type without Optional: bool, int, float, str or tuple."""
    hint = typing.get_type_hints(cls)[field.name]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        arguments = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = arguments[0]
    origin = typing.get_origin(hint)
    return origin or hint


def _flag_default(value):
    if isinstance(value, tuple):
        return [str(v) for v in value]
    return value


def define_flags(cls, names: Sequence[str] | None = None, *, exclude: Sequence[str] = (),
                 help_overrides: Mapping[str, str] | None = None, flag_values=None,
                 module_name: str | None = None) -> list:
    """Defines one absl flag per `setting` field of `cls` (with ``flag=True``), groups included.

    The flag has the field's name (or `flag_name`), default, help and type
    (boolean, enum for choices, integer, float, string, or a comma-separated
    list for tuples).

    Args:
        cls: the dataclass.
        names: only these fields (default: all with ``flag=True``); a
            group's name stands for all its settings.
        exclude: fields to leave out (a command defines them itself).
        help_overrides: field (path) -> help text to use instead.
        flag_values: absl `FlagValues` (default: `absl.flags.FLAGS`).
        module_name: the module the flags belong to in ``--help`` (default:
            the caller's, as absl attributes flags defined there).

    Returns:
        The names of the flags defined.
    """
    import inspect
    import sys

    from absl import flags

    flag_values = flag_values if flag_values is not None else flags.FLAGS
    if module_name is None:
        module_name = inspect.currentframe().f_back.f_globals.get("__name__", "")
        if module_name == "__main__":  # absl's name for the program's own module
            module_name = sys.argv[0]
    where = {"flag_values": flag_values, "module_name": module_name}
    overrides = dict(help_overrides or {})
    defined = []
    for path, field, owner in setting_paths(cls, flags_only=True):
        top = path.split(".", 1)[0]
        if (names is not None and path not in names and top not in names) or path in exclude or top in exclude:
            continue
        name = _flag_of(field)
        if name in defined:
            raise ValueError(f"{path}: flag --{name} is defined twice in {cls.__name__}")
        kind = _base_type(owner, field)
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        text = overrides.get(path, field.metadata["help"])
        choices = field.metadata["choices"]
        if kind is bool:
            flags.DEFINE_boolean(name, default, text, **where)
        elif choices is not None:
            flags.DEFINE_enum(name, default, [str(c) for c in choices], text, **where)
        elif kind is int:
            flags.DEFINE_integer(name, default, text, **where)
        elif kind is float:
            flags.DEFINE_float(name, default, text, **where)
        elif kind in (tuple, list):
            flags.DEFINE_list(name, _flag_default(default), text, **where)
        else:
            flags.DEFINE_string(name, default, text, **where)
        defined.append(name)
    return defined


def values_from_flags(cls, flag_values, names: Sequence[str], error=None) -> dict:
    """The fields' values as parsed flags give them (lists -> typed tuples).

    Args:
        cls: the dataclass.
        flag_values: parsed absl `FlagValues`.
        names: the fields to read; a group's name gives the group, made
            from the flags of all its settings.
        error: the `ParameterError` subclass to raise (default: ParameterError).

    Raises:
        ParameterError: a list item that is not of the field's item type
            (a group's setting named by its path).
    """
    error = error or ParameterError
    values = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in names:
        field = fields[name]
        if "group" in field.metadata:
            group_cls = field.metadata["group"]
            inner = [f.name for f in settings_of(group_cls, flags_only=True)] + [f.name for f in groups_of(group_cls)]
            try:
                values[name] = group_cls(**values_from_flags(group_cls, flag_values, inner, error))
            except ParameterError as bad:
                raise error(f"{name}.{bad.parameter}", bad.problem) from None
            continue
        value = flag_values[_flag_of(field)].value
        if isinstance(value, list):
            item = field.metadata["item"] or str
            parsed = []
            for text in value:
                text = text.strip()
                if not text:
                    continue
                try:
                    parsed.append(item(text))
                except ValueError:
                    kind = {int: "integers", float: "numbers"}.get(item, item.__name__)
                    raise error(name, f"must be comma-separated {kind}; got {','.join(value)}") from None
            value = tuple(parsed)
        values[name] = value
    return values

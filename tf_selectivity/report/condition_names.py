"""Which runs form one experimental condition, and the condition's name.

A condition is every identity field of the runs' training configurations
(`TrainConfig.IDENTITY_FIELDS`: model, activation, leaky slope, dataset,
epochs, training-set size, selectivity index, optimizer settings, ...)
except alpha and seed, which vary within it. Runs that differ in any other
identity field are separate conditions: they are never averaged, tested or
drawn together. A user who wants to pool runs that differ in some fields
names them (`pool_over`, the analysis' ``--pool_over``); model, activation
and leaky slope can never be pooled (their layers and their alpha = 0
baselines differ).

A condition's name is the name the report has always given it (the model,
and the activation for leaky ReLU: "ResNet20", "ResNet20, leaky ReLU
(negative slope 0.5)"), followed by ``field=value`` for every field that
differs from another condition of the same model and activation ("ResNet20,
dataset=cifar10_sample"). When all runs share everything but alpha and seed,
names are the report's names of old.

A window of alpha (``alpha_window``) is a field of the condition, yet an
alpha = 0 run has no window: the sweep trains the alpha = 0 runs once, as
the baseline of every window. So a condition regularized in a window that
has no alpha = 0 runs of its own shares those of the condition that
differs from it only in the window (the whole-run one): their rows appear
in both conditions' tables, marked in ``baseline_shared_from``
(`insert_condition`), and its tests against alpha = 0 use them.

Runs recorded before a field existed count as trained with the field's
legacy value (`training.config.with_legacy_defaults`); a field a run does
not record at all (an imported model says nothing of its training) is
``none``.

Needs neither pandas nor matplotlib at import (the command line checks
``--pool_over`` before anything heavy loads).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

from tf_selectivity.training.config import TrainConfig, with_legacy_defaults

__all__ = [
    "CONDITION",
    "SHARED_FROM",
    "run_count",
    "shared_copies",
    "own_rows",
    "VARYING_FIELDS",
    "TITLE_FIELDS",
    "POOLABLE_FIELDS",
    "Conditions",
    "condition_identity",
    "name_conditions",
    "pool_over_problem",
    "value_text",
]

# The column of every table that names the run's condition.
CONDITION = "condition"
# The column of the copies of baseline rows a condition shares: the condition
# the runs belong to ("" on a condition's own rows). Present only when some
# condition shares another's baseline.
SHARED_FROM = "baseline_shared_from"
# What varies within a condition.
VARYING_FIELDS = ("alpha", "seed")
# What the report's condition titles have always named; never pooled.
TITLE_FIELDS = ("model", "activation", "leaky_slope")
# The fields `pool_over` may name.
POOLABLE_FIELDS = tuple(f for f in TrainConfig.IDENTITY_FIELDS if f not in VARYING_FIELDS + TITLE_FIELDS)
# How a condition names `alpha_window` for runs regularized over the whole run.
WHOLE_RUN_WINDOW = "0:end"
# The fields that define a condition, in the order names list them.
CONDITION_FIELDS = tuple(f for f in TrainConfig.IDENTITY_FIELDS if f not in VARYING_FIELDS)


def shared_copies(frame):
    """Which rows of `frame` are copies of shared baseline rows (`SHARED_FROM`
    names a condition; empty or missing, as a CSV reads "", on own rows), as
    a boolean Series; all False without the column."""
    import pandas as pd

    if SHARED_FROM not in frame.columns:
        return pd.Series(False, index=frame.index)
    return frame[SHARED_FROM].fillna("").astype(str) != ""


def own_rows(frame):
    """`frame` without the copies of shared baseline rows: each run's rows once,
    in its own condition."""
    return frame[~shared_copies(frame)]


def run_count(frame) -> int:
    """How many runs a table of one row per run holds: its rows, less the copies
    of shared baseline runs (`SHARED_FROM`)."""
    return int((~shared_copies(frame)).sum())


def pool_over_problem(fields: Sequence[str]) -> str | None:
    """Why `fields` cannot be pooled over (a sentence), or None when they can."""
    unknown = [f for f in fields if f not in POOLABLE_FIELDS]
    if not unknown:
        return None
    never = [f for f in unknown if f in TITLE_FIELDS + VARYING_FIELDS]
    text = f"names no identity field of the runs that can be pooled: {', '.join(unknown)}"
    if never:
        text += (" (alpha and seed vary within every condition; model, activation and leaky_slope are never "
                 "pooled)")
    return text + f"; the fields are {', '.join(POOLABLE_FIELDS)}"


def value_text(value) -> str:
    """A recorded identity value as condition names and tables write it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    return str(value)


def condition_identity(identity: Mapping, pool_over: Sequence[str] = ()) -> dict:
    """The fields of a run's identity that define its condition (`CONDITION_FIELDS`
    but those pooled over), legacy values filled in, each as `value_text`."""
    complete = with_legacy_defaults({name: identity.get(name) for name in TrainConfig.IDENTITY_FIELDS})
    if complete.get("alpha_window") is None:
        # The regularizer over the whole run: named as the window it is, not "none".
        complete["alpha_window"] = WHOLE_RUN_WINDOW
    return {name: value_text(complete[name]) for name in CONDITION_FIELDS if name not in pool_over}


@dataclasses.dataclass
class Conditions:
    """The conditions of a set of runs.

    Attributes:
        of: run key (e.g. its directory) -> its condition's name.
        rows: one dict per condition, in order of name: ``condition``,
            ``runs``, ``alphas`` (text) and every field of
            `CONDITION_FIELDS` (as text; a pooled field lists the values of
            its runs, joined by " | "), then ``pooled_over`` and
            ``baseline_from`` (the condition whose alpha = 0 runs it
            shares, or "").
        separating: the fields whose values differ between conditions.
        pooled: the fields pooled over.
        shared: run key -> the names of the other conditions whose baseline
            the run also is (runs of no other condition are absent).
    """

    of: dict
    rows: list
    separating: tuple
    pooled: tuple
    shared: dict = dataclasses.field(default_factory=dict)

    def table(self):
        """`rows` as a DataFrame (the analysis' ``conditions`` table)."""
        import pandas as pd

        return pd.DataFrame(self.rows, columns=["condition", "runs", "alphas", *CONDITION_FIELDS, "pooled_over",
                                                "baseline_from"])


def name_conditions(identities: Mapping[str, tuple], pool_over: Sequence[str] = ()) -> Conditions:
    """The condition of every run and the conditions' names.

    Args:
        identities: run key -> (its identity fields as recorded, a mapping;
            its alpha).
        pool_over: fields whose differences do not separate conditions
            (`POOLABLE_FIELDS`).

    Returns:
        `Conditions`.

    Raises:
        ValueError: `pool_over` names a field that cannot be pooled.
    """
    from tf_selectivity.plots.style import condition_label

    pool_over = tuple(pool_over)
    problem = pool_over_problem(pool_over)
    if problem:
        raise ValueError(f"pool_over {problem}")
    keyed, members = {}, {}
    for run, (identity, _) in identities.items():
        fields = condition_identity(identity, pool_over)
        key = tuple(fields.values())
        keyed[run] = key
        members.setdefault(key, (fields, []))[1].append(run)
    keys = list(members)
    # Fields named in a condition's name: those that differ among the
    # conditions of its model and activation.
    by_title = {}
    for key in keys:
        fields = members[key][0]
        by_title.setdefault(tuple(fields[f] for f in TITLE_FIELDS), []).append(fields)
    names = {}
    for key in keys:
        fields = members[key][0]
        siblings = by_title[tuple(fields[f] for f in TITLE_FIELDS)]
        differing = [f for f in fields if f not in TITLE_FIELDS and len({s[f] for s in siblings}) > 1]
        title = condition_label({"model": fields["model"], "activation": fields["activation"],
                                 "leaky_slope": float(fields["leaky_slope"])})
        names[key] = title + "".join(f", {f}={fields[f]}" for f in differing)
    separating = tuple(f for f in CONDITION_FIELDS if f not in pool_over
                       and len({members[k][0][f] for k in keys}) > 1)
    lenders = _baseline_lenders(members, identities)
    shared = {}
    for key, lender in lenders.items():
        for run in members[lender][1]:
            if float(identities[run][1]) == 0.0:
                shared.setdefault(run, []).append(names[key])
    rows = []
    for key in sorted(keys, key=lambda k: names[k]):
        fields, runs = members[key]
        alphas = sorted({float(identities[run][1]) for run in runs})
        row = {"condition": names[key], "runs": len(runs), "alphas": ", ".join(f"{a:g}" for a in alphas)}
        for name in CONDITION_FIELDS:
            if name in fields:
                row[name] = fields[name]
            else:
                values = {value_text(with_legacy_defaults(dict(identities[run][0])).get(name)) for run in runs}
                row[name] = " | ".join(sorted(values))
        row["pooled_over"] = ",".join(pool_over)
        row["baseline_from"] = names[lenders[key]] if key in lenders else ""
        rows.append(row)
    return Conditions(of={run: names[key] for run, key in keyed.items()}, rows=rows, separating=separating,
                      pooled=pool_over, shared={run: tuple(sorted(n)) for run, n in shared.items()})


def _baseline_lenders(members: Mapping, identities: Mapping) -> dict:
    """Condition key -> the key of the condition whose alpha = 0 runs it shares.

    A condition shares when it is regularized in a window of alpha, has no
    alpha = 0 run of its own, and a condition with the same fields but the
    window (the whole run) has alpha = 0 runs.
    """
    def has_baseline(key):
        return any(float(identities[run][1]) == 0.0 for run in members[key][1])

    lenders = {}
    for key, (fields, _) in members.items():
        if fields.get("alpha_window", WHOLE_RUN_WINDOW) == WHOLE_RUN_WINDOW or has_baseline(key):
            continue
        whole_run = tuple(WHOLE_RUN_WINDOW if name == "alpha_window" else value for name, value in fields.items())
        if whole_run in members and has_baseline(whole_run):
            lenders[key] = whole_run
    return lenders

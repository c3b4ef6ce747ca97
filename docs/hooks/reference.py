"""MkDocs hook: the reference pages generated from the code at build time.

A page marks where generated Markdown goes with an HTML comment:

* ``<!-- cli-reference: COMMAND -->``: the flags of ``tf-selectivity COMMAND``
  (train, sweep, analyze), read from the absl flags the command defines
  (most derived from the settings dataclasses, `core.settings.define_flags`),
  grouped by the dataclass or analysis stage they belong to; for sweep also
  its presets.
* ``<!-- api-exports -->``: a table of what ``import tf_selectivity`` exports
  (``tf_selectivity.__all__``), each name linked to its documentation.

Flags are read in a subprocess per command: the commands define some flags
of the same names (``--dataset``), which one absl registry cannot hold twice.
Run this file (``python docs/hooks/reference.py train``) to print one
command's reference.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMANDS = ("train", "sweep", "analyze")

# The settings dataclasses whose fields become each command's flags, with the
# heading their flags are listed under; a group of settings (an analysis
# stage's) gets a heading of its own. Flags of no dataclass are the command's own.
SECTIONS = {
    "train": [("tf_selectivity.training.config", "TrainConfig", "Training settings (`TrainConfig`)")],
    "sweep": [
        ("tf_selectivity.sweeps.options", "PlanOptions", "Which runs (`PlanOptions`)"),
        ("tf_selectivity.sweeps.options", "SweepOptions", "How trials run (`SweepOptions`)"),
        ("tf_selectivity.training.config", "TrainConfig", "Training settings of every run (`TrainConfig`)"),
    ],
    "analyze": [("tf_selectivity.analysis.options", "AnalysisOptions", "General (`AnalysisOptions`)")],
}

# Runs in a fresh interpreter: defines one command's flags as the command
# does, and prints them with the setting (dataclass, group) each comes from.
_READ_FLAGS = r"""
import dataclasses, importlib, json, sys
from absl import flags
from tf_selectivity.core import cli
from tf_selectivity.core.settings import setting_paths

command, sections = sys.argv[1], json.loads(sys.argv[2])
module = importlib.import_module(f"tf_selectivity.{command}")
if command in ("train", "sweep"):  # analyze defines its flags on import
    module.define_flags()
FLAGS = flags.FLAGS
section_of = {}
for module_name, class_name, title in sections:
    cls = getattr(importlib.import_module(module_name), class_name)
    for path, field, owner in setting_paths(cls, flags_only=True):
        name = field.metadata["flag_name"] or field.name
        if "." in path:
            group = path.split(".")[0]
            doc = (owner.__doc__ or "").strip().splitlines()[0] if owner.__doc__ else ""
            section_of.setdefault(name, (f"Stage `{group}` (`{owner.__name__}`)", doc, len(section_of)))
        else:
            section_of.setdefault(name, (title, "", len(section_of)))
rows = []
for module_name, defined in FLAGS.flags_by_module_dict().items():
    if not module_name.startswith("tf_selectivity"):
        continue
    for flag in defined:
        enum = getattr(flag.parser, "enum_values", None)
        default = flag.default
        if isinstance(default, (list, tuple)):
            default = ",".join(str(v) for v in default)
        section, doc, position = section_of.get(flag.name, ("The command's own flags", "", -1))
        rows.append({"name": flag.name, "type": flag.flag_type(), "default": default, "help": flag.help,
                     "position": position,
                     "enum": list(enum) if enum else None, "section": section, "section_doc": doc,
                     "boolean": bool(flag.boolean)})
doc = module.__doc__ or ""
presets = {name: description for name, (_, description) in cli.presets().items()} if command == "sweep" else {}
print(json.dumps({"rows": rows, "doc": doc, "presets": presets, "environment": cli.ENVIRONMENT}))
"""


def read_flags(command: str) -> dict:
    """The flags `command` defines (a subprocess imports this checkout's package)."""
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run(
        [sys.executable, "-c", _READ_FLAGS, command, json.dumps(SECTIONS[command])],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"reading the flags of {command} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _cell(text) -> str:
    """Text for a Markdown table cell: one line, pipes escaped, and angle brackets
    (``<class>``, ``<layer>`` in help texts) shown, not read as HTML."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _default(row) -> str:
    value = row["default"]
    if value is None or value == "":
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"`{value}`"


def _kind(row) -> str:
    if row["enum"]:
        return "choice"
    if "list" in row["type"]:
        return "list"
    return {"bool": "boolean", "int": "integer", "float": "number", "str": "text",
            "string": "text"}.get(row["type"], row["type"])


def _help(row) -> str:
    """The flag's help; an enum's choices first, instead of the ``<a|b>: `` absl puts there."""
    text = row["help"]
    if row["enum"]:
        text = re.sub(r"^<[^>]*>:\s*", "", text)
        text = "One of " + ", ".join(f"`{value}`" for value in row["enum"]) + ". " + text
    return text


def render_command(command: str) -> str:
    """Markdown: the command's description (its docstring), then its flags by section."""
    found = read_flags(command)
    order = ["The command's own flags"] + [title for _, _, title in SECTIONS[command]]
    sections = {}
    for row in sorted(found["rows"], key=lambda row: row["position"]):
        sections.setdefault(row["section"], []).append(row)
    names = sorted(sections, key=lambda s: (order.index(s) if s in order else len(order), ""))
    # The command's docstring is its --help text: Markdown-compatible prose
    # with indented example commands, shown folded under the command's heading.
    doc = "\n".join(f"    {line}" if line.strip() else "" for line in found["doc"].strip().splitlines())
    lines = [f'??? note "tf-selectivity {command} --help: what the command does"', "", doc, ""]
    lines += [f"Usage: `tf-selectivity {command} [--flag=value ...]` (or `python -m tf_selectivity.{command}`); "
             f"`tf-selectivity {command} --help` prints this list, `--helpfull` adds absl's own flags "
             "(`--flagfile=FILE` reads flags from a file; flags after it override it).", ""]
    environment = ", ".join(f"`{name}={value}`" for name, value in found["environment"].items())
    lines += [f"The command sets {environment} for its own process unless they are already set "
              "(TensorFlow's start-up logging and its oneDNN CPU kernels).", ""]
    if found["presets"]:
        lines += ["**Presets.** `--preset=NAME` reads the flags of a preset shipped with the package; "
                  "flags after it override them.", "", "| preset | what it runs |", "|---|---|"]
        lines += [f"| `{name}` | {_cell(text)} |" for name, text in found["presets"].items()]
        lines.append("")
    for name in names:
        rows = sections[name]
        lines += [f"### {name}", ""]
        if rows[0]["section_doc"]:
            lines += [rows[0]["section_doc"], ""]
        lines += ["| flag | type | default | what it does |", "|---|---|---|---|"]
        for row in rows:
            flag = f"`--[no]{row['name']}`" if row["boolean"] else f"`--{row['name']}`"
            lines.append(f"| {flag} | {_cell(_kind(row))} | {_default(row)} | {_cell(_help(row))} |")
        lines.append("")
    return "\n".join(lines)


# Runs in a fresh interpreter: where each top-level name is defined, and the
# first paragraph of its docstring. The names are imported to be found (the
# package's exports are lazy), which starts Keras: kept out of the build's
# process and its log.
_READ_EXPORTS = r"""
import importlib, inspect, json
import tf_selectivity
rows = []
for name in tf_selectivity.__all__:
    value = getattr(tf_selectivity, name)
    if inspect.ismodule(value):
        path, kind = value.__name__, "module"
    else:
        path, kind = f"{value.__module__}.{value.__qualname__}", "class" if inspect.isclass(value) else "function"
    rows.append({"name": name, "path": path, "kind": kind, "doc": (inspect.getdoc(value) or "").split("\n\n")[0]})
print(json.dumps(rows))
"""


def render_exports() -> str:
    """Markdown: a table of ``tf_selectivity.__all__``, each name linked to its reference entry.

    Each name links to the documentation of the module that defines it,
    which a reference page must render: a name documented nowhere fails the
    strict build.
    """
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", _READ_EXPORTS], capture_output=True, text=True, env=env,
                            cwd=ROOT, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"reading tf_selectivity.__all__ failed:\n{result.stderr[-3000:]}")
    lines = ["| name | kind | what it is |", "|---|---|---|"]
    for row in json.loads(result.stdout.strip().splitlines()[-1]):
        lines.append(f"| [`{row['name']}`][{row['path']}] | {row['kind']} | {_cell(row['doc'])} |")
    return "\n".join(lines)


_MARK = re.compile(r"<!--\s*(cli-reference:\s*(\w+)|api-exports)\s*-->")


def on_page_markdown(markdown, page, config, files, **kwargs):
    def replace(match):
        if match.group(2):
            if match.group(2) not in COMMANDS:
                raise ValueError(f"{page.file.src_uri}: no command {match.group(2)!r}")
            return render_command(match.group(2))
        return render_exports()

    return _MARK.sub(replace, markdown)


if __name__ == "__main__":
    print(render_command(sys.argv[1]) if len(sys.argv) > 1 else render_exports())

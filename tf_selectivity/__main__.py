"""tf-selectivity: class selectivity in Keras networks, from the command line.

    tf-selectivity train --model=resnet20 --alpha=-1 --seed=0 --output_dir=runs/r20
    tf-selectivity sweep --preset=smoke_resnet20_suppress
    tf-selectivity analyze --runs=sweeps/smoke/resnet20 --output_dir=analysis/smoke

(``python -m tf_selectivity COMMAND`` and ``python -m tf_selectivity.COMMAND``
are the same.) ``tf-selectivity COMMAND --help`` lists a command's flags.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["main"]

PROGRAM = "tf-selectivity"
USAGE_ERROR = 2

# Command -> what it does, in the order a study uses them.
COMMANDS = {
    "train": "train one network (or several seeds) at a chosen alpha",
    "sweep": "train alpha x seeds (x leaky slopes) with keras-tuner, on one machine or many; --preset=NAME",
    "analyze": "analyse saved runs: selectivity, precision, dead units, similarity, ablation, robustness, "
               "unit pages; tables, figures and report.md",
}


def usage() -> str:
    lines = [f"usage: {PROGRAM} COMMAND [flags]", "", "commands:"]
    lines += [f"  {name:<8} {text}" for name, text in COMMANDS.items()]
    lines += ["", f"'{PROGRAM} COMMAND --help' lists the command's flags (and, for sweep, its presets).", ""]
    return (__doc__ or "").strip() + "\n\n" + "\n".join(lines)


def main(argv=None) -> None:
    """Runs ``tf-selectivity COMMAND [flags]``; exits with the command's status."""
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "-help", "help"):
        print(usage())
        sys.exit(0 if len(argv) >= 2 else USAGE_ERROR)
    name = argv[1]
    if name not in COMMANDS:
        print(f"{PROGRAM}: error: unknown command {name!r}; choose one of {', '.join(COMMANDS)} "
              f"('{PROGRAM} --help' says what each does)", file=sys.stderr)
        sys.exit(USAGE_ERROR)
    command = f"{PROGRAM} {name}"
    sys.argv = [command, *argv[2:]]
    importlib.import_module(f"tf_selectivity.{name}").run(command=command)


if __name__ == "__main__":
    main()

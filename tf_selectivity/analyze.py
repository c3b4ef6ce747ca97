"""Analyse trained runs: test-set selectivity, precision, dead units, CCA, report.

    python -m tf_selectivity.analyze --runs=sweeps/resnet20_suppress --output_dir=analysis/resnet20

`--runs` takes run directories, directories holding runs (a sweep's output)
or globs, comma-separated. Every completed run (a directory with
summary.json) is loaded from its SavedModel (or model.keras) -- no Python
model code needed -- and evaluated on its dataset's test set, streaming
batches. Results go to OUTPUT_DIR as tidy tables (runs, layers, units; CCA
distances and ratios) in CSV and Parquet, the paper's figures (PNG and PDF)
under figures/, and report.md, the page to open first. Runs that diverged
during training are listed in diverged.csv and left out of everything else.
Analysing again into the same OUTPUT_DIR replaces the earlier outputs as a
whole (the per-run cache/ is reused).

Bad input (a flag value, a path, an output directory holding other files)
gives one line on stderr and exit status 2, and nothing is written.
"""

from __future__ import annotations

import os

from tf_selectivity.core import cli  # noqa: F401  (quiet TensorFlow logging first)

from absl import app, flags

from tf_selectivity.analysis.options import AnalysisOptions
from tf_selectivity.core.settings import define_flags, flag_names, groups_of, settings_of, values_from_flags

COMMAND = "python -m tf_selectivity.analyze"

flags.DEFINE_list("runs", None, "Run directories, sweep directories or globs (comma-separated).")
flags.DEFINE_string("output_dir", None, "Directory for tables, figures and report.md (created).")
define_flags(AnalysisOptions)
flags.DEFINE_integer(
    "verbose", 1,
    "1: progress bars (plain lines when not on a terminal), 0: silent, 3: also TensorFlow's start-up messages.",
)

FLAGS = flags.FLAGS
# Options whose flag has another name than the Python parameter.
FLAG_NAMES = flag_names(AnalysisOptions)


def _options() -> AnalysisOptions:
    """`AnalysisOptions` from the flags, validated; raises ParameterError."""
    names = [f.name for f in settings_of(AnalysisOptions, flags_only=True) + groups_of(AnalysisOptions)]
    return AnalysisOptions(**values_from_flags(AnalysisOptions, FLAGS, names)).validate()


def _check_data_flags() -> None:
    from tf_selectivity.data.sources import check_dataset, needs_tensorflow

    if FLAGS.dataset is not None:
        if FLAGS.data_dir is not None and not needs_tensorflow(FLAGS.dataset):
            raise cli.UsageError(
                f"--data_dir only applies to --dataset=cifar10 (a tensorflow-datasets directory); "
                f"--dataset is {FLAGS.dataset}"
            )
        check_dataset(FLAGS.dataset, FLAGS.data_dir)
    elif FLAGS.data_dir is not None:
        check_dataset("cifar10", FLAGS.data_dir)


def main(argv):
    cli.quiet_logging()
    if len(argv) > 1:
        cli.fail(COMMAND, f"unexpected arguments: {' '.join(argv[1:])}")
    from tf_selectivity.data.sources import DatasetUnavailableError

    # Everything that can be refused is checked before a backend starts and
    # before anything is written: flags, data, output directory, the runs.
    try:
        if not FLAGS.runs or not any(p.strip() for p in FLAGS.runs):
            raise cli.UsageError("--runs is required (run directories, sweep directories or globs)")
        if not FLAGS.output_dir:
            raise cli.UsageError("--output_dir is required")
        cli.check_verbose(FLAGS.verbose)
        options = _options()
        _check_data_flags()
        from tf_selectivity.analysis.outputs import output_dir_problem
        from tf_selectivity.analysis.pipeline import check_stages, find_runs

        problem = output_dir_problem(FLAGS.output_dir)
        if problem:
            raise cli.UsageError(f"--output_dir {problem}")
        records, _, _ = find_runs(FLAGS.runs)
        check_stages(records, options)  # layers, units, corrupted sets: every stage's check
    except (cli.UsageError, ValueError, DatasetUnavailableError) as error:
        cli.fail(COMMAND, error, FLAG_NAMES)
    cli.start_backend(FLAGS.verbose)
    from tf_selectivity.analysis.pipeline import analyze

    try:
        result = analyze(FLAGS.runs, FLAGS.output_dir, options, verbose=min(FLAGS.verbose, 1))
    except (cli.UsageError, ValueError) as error:
        cli.fail(COMMAND, error, FLAG_NAMES)
    for path, message in result.errors:
        print(f"{COMMAND}: could not analyse {path}: {message}")
    if result.diverged is not None and len(result.diverged):
        print(
            f"{len(result.diverged)} run(s) diverged during training and are left out of every table, mean and "
            f"figure: see {os.path.join(os.path.abspath(FLAGS.output_dir), 'diverged.csv')}"
        )
    print(f"Analysed {len(result.runs)} run(s); report: {result.report}")
    return 0


def run(command: str = COMMAND):
    """Runs the command on `sys.argv`; `command` names it in its messages."""
    global COMMAND
    COMMAND = command
    app.run(main, flags_parser=cli.flags_parser(command, __doc__))


if __name__ == "__main__":
    run()

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

Bad input (a flag value, a path, an output directory holding other files,
an analysis that these runs cannot give, another analysis writing into
OUTPUT_DIR) gives one line on stderr and exit status 2, and nothing is
written; so does a full disk, with the earlier analysis in OUTPUT_DIR
intact. Ctrl-C (or SIGTERM) stops with one line (exit status 130, or 143):
the same command resumes, computing only the runs not yet analysed.
"""

from __future__ import annotations

import os
import sys

from tf_selectivity.core import cli  # noqa: F401  (quiet TensorFlow logging first)

from absl import app, flags

from tf_selectivity.analysis.options import AnalysisOptions
from tf_selectivity.core.settings import define_flags, flag_names, groups_of, settings_of, values_from_flags
from tf_selectivity.report.condition_names import run_count

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
# Flags the command had and no longer has: what became of each.
RETIRED_FLAGS = {
    "cca_methods": "was renamed --similarity (the measures of Figure 3: pwcca, svcca, linear_cka, debiased_cka, "
                   "procrustes)",
    "baseline_alpha": "was removed: the unregularized runs are alpha = 0 by the loss' definition "
                      "(CE - alpha * mean SI), and every comparison (t-tests, Figure 3) is made against alpha = 0",
}
# Settings whose flags ask for the similarity stage's comparisons: given
# with --cca=auto, an analysis these runs cannot give is refused rather
# than left out without a word.
SIMILARITY_REQUESTS = ("similarity.measures", "similarity.maps", "similarity.alphas")


def _options() -> AnalysisOptions:
    """`AnalysisOptions` from the flags, validated; raises ParameterError."""
    names = [f.name for f in settings_of(AnalysisOptions, flags_only=True) + groups_of(AnalysisOptions)]
    return AnalysisOptions(**values_from_flags(AnalysisOptions, FLAGS, names)).validate()


def _similarity_request():
    """The setting path of the first flag that asks for similarity comparisons while --cca is auto, or None."""
    if FLAGS["cca"].present:
        return None
    for path in SIMILARITY_REQUESTS:
        flag = FLAGS[FLAG_NAMES.get(path, path)]
        if flag.present and flag.value:
            return path
    return None


def _check_stages(records, options):
    """`pipeline.check_stages`, a refusal of similarity named by the flag that asked for it."""
    from tf_selectivity.analysis.pipeline import check_stages
    from tf_selectivity.core.settings import ParameterError

    try:
        check_stages(records, options)
    except ParameterError as error:
        request = _similarity_request()
        if error.parameter == "similarity.enabled" and request:
            raise ParameterError(request, error.problem) from None
        raise


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
    from tf_selectivity.core.signals import exit_status, stop_on_signals

    stop_on_signals()
    try:
        return _main(argv)
    except KeyboardInterrupt as interruption:  # Ctrl-C or SIGTERM; the analysis has cleaned up
        print(f"{COMMAND}: {interrupted_message(FLAGS.output_dir)}", file=sys.stderr, flush=True)
        sys.exit(exit_status(interruption))


def interrupted_message(output_dir) -> str:
    """What an interrupted analysis says: what it left, and how to go on."""
    from tf_selectivity.analysis.outputs import unfinished_state

    if not output_dir:
        return "interrupted; nothing was written"
    state = unfinished_state(output_dir)
    if state == "nothing was written":
        return "interrupted; nothing was written"
    return f"interrupted; {state}: run the same command to resume"


def _main(argv):
    cli.quiet_logging()
    if len(argv) > 1:
        cli.fail(COMMAND, f"unexpected arguments: {' '.join(argv[1:])}")
    from tf_selectivity.analysis.outputs import AnalysisLockedError
    from tf_selectivity.core.files import NoSpaceError
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
        if _similarity_request():
            options.similarity.enabled = "true"
        _check_data_flags()
        from tf_selectivity.analysis.outputs import check_unlocked, output_dir_problem
        from tf_selectivity.analysis.pipeline import find_runs

        problem = output_dir_problem(FLAGS.output_dir)
        if problem:
            raise cli.UsageError(f"--output_dir {problem}")
        check_unlocked(FLAGS.output_dir)
        records, _, _ = find_runs(FLAGS.runs)
        _check_stages(records, options)  # layers, units, corrupted sets, comparisons: every stage's check
    except (cli.UsageError, ValueError, DatasetUnavailableError, AnalysisLockedError) as error:
        cli.fail(COMMAND, error, FLAG_NAMES)
    cli.start_backend(FLAGS.verbose)
    from tf_selectivity.analysis.pipeline import analyze

    try:
        result = analyze(FLAGS.runs, FLAGS.output_dir, options, verbose=min(FLAGS.verbose, 1))
    except (cli.UsageError, ValueError, AnalysisLockedError, NoSpaceError) as error:
        cli.fail(COMMAND, error, FLAG_NAMES)
    for path, message in result.errors:
        print(f"{COMMAND}: could not analyse {path}: {message}")
    if result.diverged is not None and len(result.diverged):
        print(
            f"{len(result.diverged)} run(s) diverged during training and are left out of every table, mean and "
            f"figure: see {os.path.join(os.path.abspath(FLAGS.output_dir), 'diverged.csv')}"
        )
    print(f"Analysed {run_count(result.runs)} run(s); report: {result.report}")
    return 0


def run(command: str = COMMAND):
    """Runs the command on `sys.argv`; `command` names it in its messages."""
    global COMMAND
    COMMAND = command
    app.run(main, flags_parser=cli.flags_parser(command, __doc__, retired=RETIRED_FLAGS))


if __name__ == "__main__":
    run()

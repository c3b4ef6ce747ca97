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

from tf_selectivity import cli  # noqa: F401  (quiet TensorFlow logging first)

from absl import app, flags

COMMAND = "python -m tf_selectivity.analyze"

flags.DEFINE_list("runs", None, "Run directories, sweep directories or globs (comma-separated).")
flags.DEFINE_string("output_dir", None, "Directory for tables, figures and report.md (created).")
flags.DEFINE_string("dataset", None, "Test data to use instead of each run's own (e.g. imagefolder:PATH).")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets directory for --dataset=cifar10.")
flags.DEFINE_integer("batch_size", 500, "Test images per batch.")
flags.DEFINE_integer(
    "precision_top_n", 1000,
    "N of the precision metric: the N test images that drive a unit hardest (paper A.5: 1000, "
    "the test images per class of CIFAR-10); capped at the test images per class.",
)
flags.DEFINE_enum(
    "selectivity_index", "eq1", ["eq1", "bounded"],
    "Index in every reported SI: eq1 = the paper's eq. 1 (guarded near its pole for negative responses), "
    "bounded = divide by |mu_max| + |mu_rest|; identical for ReLU networks. Whatever the runs were trained with.",
)
flags.DEFINE_integer("max_test_samples", None, "Use only the first N test images (quick looks).")
flags.DEFINE_enum(
    "cca", "auto", ["auto", "true", "false"],
    "Figure 3 CCA analysis; auto: when a model has alpha=0 runs and >= 2 replicates at another alpha.",
)
flags.DEFINE_list("cca_methods", ["pwcca"], "CCA methods: pwcca (the paper's), svcca, or both.")
flags.DEFINE_enum(
    "cca_pwcca_variant", "svcca", ["svcca", "textbook", "both"],
    "PWCCA as google/svcca's compute_pwcca computes it (svcca: the paper's), as Morcos et al. define it "
    "(textbook), or both from the same factors; tables say which in their pwcca_variant column, figures "
    "and report show svcca unless only textbook was computed.",
)
flags.DEFINE_enum(
    "cca_spatial", "average", ["average", "positions"],
    "Conv layers in CCA: units averaged over positions, or positions as datapoints (subsampled).",
)
flags.DEFINE_integer(
    "cca_max_datapoints", 10000, "Datapoints kept per layer with --cca_spatial=positions."
)
flags.DEFINE_list("cca_alphas", None, "Treated alphas compared with the baseline (default: all).")
flags.DEFINE_boolean(
    "cca_same_seed_pairs", False,
    "Also compare runs that share a seed (the paper's 20 x 20 = 400 to-baseline pairs). Off by default: "
    "a seed fixes initial weights, batch order and augmentation, so such runs are not independent "
    "replicates and bias the CCA distance ratio down.",
)
flags.DEFINE_float("baseline_alpha", 0.0, "Alpha of the unregularized baseline runs.")
flags.DEFINE_boolean("figures", True, "Draw the paper's figures (PNG and PDF).")
flags.DEFINE_integer("bootstrap_resamples", 10000, "Bootstrap resamples per 95% confidence interval.")
flags.DEFINE_boolean(
    "skip_bad_images", False,
    "imagefolder: leave out test images that cannot be decoded instead of stopping (automatic for runs "
    "trained with --skip_bad_images).",
)
flags.DEFINE_integer(
    "verbose", 1,
    "1: progress bars (plain lines when not on a terminal), 0: silent, 3: also TensorFlow's start-up messages.",
)

FLAGS = flags.FLAGS


def _options():
    """`AnalysisOptions` from the flags, validated; raises UsageError/ValueError."""
    from tf_selectivity.analysis.pipeline import AnalysisOptions

    cca_alphas = None
    if FLAGS.cca_alphas:
        cca_alphas = tuple(cli.parse_float_list(",".join(FLAGS.cca_alphas), "cca_alphas"))
    return AnalysisOptions(
        dataset=FLAGS.dataset,
        data_dir=FLAGS.data_dir,
        batch_size=FLAGS.batch_size,
        precision_top_n=FLAGS.precision_top_n,
        max_test_samples=FLAGS.max_test_samples,
        cca=FLAGS.cca,
        cca_methods=tuple(m.strip().lower() for m in FLAGS.cca_methods if m.strip()),
        cca_pwcca_variant=FLAGS.cca_pwcca_variant,
        cca_spatial=FLAGS.cca_spatial,
        cca_max_datapoints=FLAGS.cca_max_datapoints,
        cca_alphas=cca_alphas,
        cca_same_seed_pairs=FLAGS.cca_same_seed_pairs,
        baseline_alpha=FLAGS.baseline_alpha,
        selectivity_index=FLAGS.selectivity_index,
        figures=FLAGS.figures,
        n_resamples=FLAGS.bootstrap_resamples,
        skip_bad_images=FLAGS.skip_bad_images,
    ).validate()


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
        from tf_selectivity.analysis.pipeline import find_runs

        problem = output_dir_problem(FLAGS.output_dir)
        if problem:
            raise cli.UsageError(f"--output_dir {problem}")
        find_runs(FLAGS.runs)
    except (cli.UsageError, ValueError, DatasetUnavailableError) as error:
        cli.fail(COMMAND, str(error))
    cli.start_backend(FLAGS.verbose)
    from tf_selectivity.analysis.pipeline import analyze

    try:
        result = analyze(FLAGS.runs, FLAGS.output_dir, options, verbose=min(FLAGS.verbose, 1))
    except (cli.UsageError, ValueError) as error:
        cli.fail(COMMAND, str(error))
    for path, message in result.errors:
        print(f"{COMMAND}: could not analyse {path}: {message}")
    if result.diverged is not None and len(result.diverged):
        print(
            f"{len(result.diverged)} run(s) diverged during training and are left out of every table, mean and "
            f"figure: see {os.path.join(os.path.abspath(FLAGS.output_dir), 'diverged.csv')}"
        )
    print(f"Analysed {len(result.runs)} run(s); report: {result.report}")
    return 0


if __name__ == "__main__":
    app.run(main, flags_parser=cli.flags_parser(COMMAND, __doc__))

"""Train a sweep: alpha values x seeds (x leaky slopes), on keras-tuner.

    python -m tf_selectivity.sweep --model=resnet20 --alphas=0,-0.1,-1,-10 \\
        --seeds=0-19 --output_dir=sweeps/resnet20_suppress

    python -m tf_selectivity.sweep --preset=smoke_resnet20_suppress

Each trial is one training run (the flags of ``python -m tf_selectivity.train``
apply to every run) in ``OUTPUT_DIR/runs/<run name>``. On JAX, a worker
trains up to ``--pack_replicates`` seeds of one alpha together as one
program; each keeps its own trial, run directory and row of trials.csv. Rerunning the same
command resumes: finished trials are kept, the one cut short resumes from
its checkpoints. A different grid on the same directory adds its new
points; different training settings are refused.

``--mode=search`` answers "how far can selectivity fall for free?": the
most negative alpha in ``--search_bounds`` whose mean validation accuracy
stays within ``--search_margin`` of alpha = 0, by bisection on log |alpha|.
It chooses its own alphas: an ``--alphas`` list read from a ``--flagfile``
is ignored (given on the command line it is refused); ``--alphas=`` after
the flagfile clears it, as an empty value clears any list a flagfile sets.

A trial whose run diverges (non-finite loss) is recorded as diverged
(``DIVERGED`` in trials.csv) and the sweep goes on.

Distributed (keras-tuner's chief/worker mode): run the same command once
with ``KERASTUNER_TUNER_ID=chief`` and once per GPU with a distinct
``KERASTUNER_TUNER_ID``, all with ``KERASTUNER_ORACLE_IP`` and
``KERASTUNER_ORACLE_PORT`` of the chief, on a shared ``--output_dir``.

Exit status: 0 when every trial of the command finished (completed or
diverged), 1 when some failed (rerun to retry them) or the chief was
unreachable, 2 on bad input (flags, paths, the data, a directory of another
sweep), found before anything is written.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from tf_selectivity.core import cli  # noqa: F401  (sets quiet TensorFlow logging first)

from absl import app, flags

COMMAND = "python -m tf_selectivity.sweep"
RUNTIME_ERROR = 1
INTERRUPTED = 130  # the shell's code for Ctrl-C

__all__ = ["define_flags", "parse_alphas", "parse_seeds", "parse_leaky_slopes", "main", "run"]


def define_flags():
    """Defines the sweep's flags: the training flags, those of `PlanOptions`
    and `SweepOptions`, and the command's own."""
    from tf_selectivity import train as train_cli
    from tf_selectivity.core.settings import define_flags as define_setting_flags
    from tf_selectivity.sweeps.options import PlanOptions, SweepOptions

    train_cli.define_training_flags()
    define_setting_flags(PlanOptions)
    define_setting_flags(SweepOptions)
    flags.DEFINE_string("output_dir", None, "Sweep directory (created; rerun the command to resume).")
    flags.DEFINE_integer(
        "verbose", 2,
        "Training output per run: 2 one line per epoch, 1 progress bar (one line per epoch when not on a "
        "terminal), 0 none, 3 as 2 plus TensorFlow's start-up messages.",
    )
    flags.DEFINE_boolean("dry_run", False, "Print the sweep (plan, settings) and exit without writing.")
    flags.DEFINE_boolean(
        "aggregate_only", False, "Only rewrite OUTPUT_DIR/trials.csv and trials.parquet from the directory."
    )


def _unique(values, name, key=lambda v: v):
    seen = {}
    for value in values:
        if key(value) in seen:
            raise cli.UsageError(f"--{name}: {value!r} appears twice")
        seen[key(value)] = value
    return values


def parse_alphas(text: str) -> list:
    """"0,-1,-1e1" -> [0.0, -1.0, -10.0]; rejects non-numbers and repeats."""
    values = cli.parse_float_list(text or "", "alphas")
    return _unique([v + 0.0 for v in values], "alphas")


def parse_seeds(text: str) -> list:
    """"0,1,5-7" -> [0, 1, 5, 6, 7]; rejects negatives and repeats."""
    return cli.parse_seeds(text, "seeds")


def parse_leaky_slopes(text: str) -> list:
    values = cli.parse_float_list(text or "", "leaky_slopes")
    return _unique([v + 0.0 for v in values], "leaky_slopes")


def parse_alpha_windows(text: str, epochs: int) -> list:
    """"0:1,1:5,5:end" -> the windows as `TrainConfig` spells them (None:
    the whole run); rejects malformed windows and repeats (0:end and 0:EPOCHS
    are one window)."""
    from tf_selectivity.training.config import TrainConfig

    windows = []
    for item in text.split(","):
        if not item.strip():
            raise cli.UsageError(f"--alpha_windows has an empty item: {text!r}")
        windows.append(TrainConfig(alpha_window=item.strip(), epochs=epochs).alpha_window)
    return _unique(windows, "alpha_windows")


def _list_text(text):
    """A list flag's text, or None when unset or cleared (``--name=``)."""
    return text if text and text.strip() else None


def _options(cls, FLAGS):
    """`cls` (`PlanOptions`, `SweepOptions`) from its flags, checked; raises `cli.UsageError`."""
    from tf_selectivity.core.settings import ParameterError, check_settings, flag_names, settings_of, values_from_flags

    names = [f.name for f in settings_of(cls, flags_only=True)]
    try:
        options = cls(**values_from_flags(cls, FLAGS, names))
        check_settings(options)
    except ParameterError as error:
        raise cli.UsageError(error.for_flags(flag_names(cls))) from None
    return options


def build_spec(FLAGS):
    """Validates the flags and builds the `SweepSpec`; raises `cli.UsageError`.

    Needs no backend: every check here runs before Keras is imported.
    """
    from tf_selectivity import train as train_cli
    from tf_selectivity.data.sources import DatasetUnavailableError
    from tf_selectivity.sweeps import plans
    from tf_selectivity.sweeps.options import PlanOptions, SweepOptions
    from tf_selectivity.sweeps.runner import SweepSpec
    from tf_selectivity.training.config import ConfigError

    if not FLAGS.output_dir:
        raise cli.UsageError("--output_dir is required (the sweep directory)")
    cli.check_verbose(FLAGS.verbose)
    wanted = _options(PlanOptions, FLAGS)
    seeds = parse_seeds(wanted.seeds)
    slopes_text = _list_text(wanted.leaky_slopes)
    if slopes_text is not None:
        slopes = parse_leaky_slopes(slopes_text)
        if "leaky_slope" in cli.EXPLICIT_FLAGS and [FLAGS.leaky_slope] != slopes:
            raise cli.UsageError("give either --leaky_slope or --leaky_slopes, not both")
    else:
        slopes = [FLAGS.leaky_slope + 0.0]
    windows_text = _list_text(wanted.alpha_windows)
    if windows_text is not None:
        windows = parse_alpha_windows(windows_text, FLAGS.epochs)
        if "alpha_window" in cli.EXPLICIT_FLAGS:
            raise cli.UsageError("give either --alpha_window or --alpha_windows, not both")
    else:
        windows = [FLAGS.alpha_window]
    alphas_text = _list_text(wanted.alphas)
    if wanted.mode == "grid":
        if alphas_text is None:
            raise cli.UsageError("--alphas is required in grid mode (e.g. --alphas=0,-0.1,-1,-10)")
        plan = plans.GridPlan(parse_alphas(alphas_text), seeds, slopes, windows)
    else:
        if alphas_text is not None and "alphas" in cli.EXPLICIT_FLAGS:
            raise cli.UsageError(
                "--alphas is for --mode=grid; --mode=search chooses alphas within --search_bounds"
            )
        if alphas_text is not None:
            print(
                f"[sweep] --mode=search: ignoring the flagfile's --alphas={alphas_text} "
                "(the search chooses alphas within --search_bounds)",
                flush=True,
            )
        if windows != [None]:
            raise cli.UsageError(
                "--mode=search compares alphas with alpha = 0 over the whole run; give --alpha_window(s) "
                "with --mode=grid"
            )
        if len(slopes) != 1:
            raise cli.UsageError(
                f"--mode=search takes one leaky slope, got --leaky_slopes={slopes_text}; clear the list "
                "with --leaky_slopes= and give --leaky_slope=S"
            )
        bounds = cli.parse_float_list(wanted.search_bounds, "search_bounds")
        if len(bounds) != 2:
            raise cli.UsageError("--search_bounds takes two alphas: weakest,strongest (e.g. -0.1,-100)")
        try:
            plan = plans.MarginSearchPlan(
                seeds, bounds[0], bounds[1], wanted.search_margin, wanted.search_resolution, slopes[0]
            )
        except ValueError as error:
            raise cli.UsageError(f"--search_*: {error}") from None
    pack_replicates = train_cli.pack_replicates_setting(FLAGS)
    options = _options(SweepOptions, FLAGS)
    try:
        base = train_cli.config_from_flags(0.0, seeds[0], FLAGS.output_dir)
        for slope in slopes:
            base.leaky_slope = slope
            base.alpha_window = None
            base.validate()
        base.leaky_slope = slopes[0]
        # Each window as `train` checks it, with a regularizing alpha.
        regularizing = [a for a in getattr(plan, "alphas", ()) if a != 0.0]
        for window in windows:
            if window is not None:
                if not regularizing:
                    raise cli.UsageError(
                        "--alpha_window(s) need a non-zero alpha in --alphas: with alpha = 0 there is no "
                        "regularizer to switch"
                    )
                dataclasses.replace(base, alpha=regularizing[0], alpha_window=window).validate()
        train_cli.check_data_settings(base)
    except (ConfigError, DatasetUnavailableError) as error:
        raise cli.UsageError(cli.error_message(error)) from None
    return SweepSpec(
        base_config=base,
        output_dir=FLAGS.output_dir,
        plan=plan,
        options=options,
        verbose=min(FLAGS.verbose, 2),
        pack_replicates=pack_replicates,
    )


def check_before_writing(spec, role, load_data: bool = True) -> None:
    """The sweep directory and the data, checked before anything is written.

    The local runner and the chief check that the directory is empty, holds
    this sweep, or can be created; the local runner and workers (which
    train) load the data once, so that an unreadable image is reported now
    instead of failing every trial (the decoded images are cached for the
    trials).

    Raises:
        cli.UsageError: naming the problem.
    """
    from tf_selectivity import train as train_cli
    from tf_selectivity.data.sources import DatasetUnavailableError, needs_tensorflow
    from tf_selectivity.sweeps.runner import SweepConflictError, check_sweep_dir
    from tf_selectivity.core.files import writable_dir_problem
    from tf_selectivity.models.user_models import is_model_spec

    if role.kind != "worker":
        problem = writable_dir_problem(spec.output_dir)
        if problem:
            raise cli.UsageError(f"--output_dir {problem}")
        try:
            check_sweep_dir(spec)
        except SweepConflictError as error:
            raise cli.UsageError(cli.error_message(error)) from None
    if load_data and role.kind != "chief" and not needs_tensorflow(spec.base_config.dataset):
        try:
            data = train_cli.load_data(spec.base_config, flags.FLAGS.verbose)
        except DatasetUnavailableError as error:
            raise cli.UsageError(cli.error_message(error)) from None
        if is_model_spec(spec.base_config.model):
            _check_user_model(spec.base_config, data)
    elif role.kind != "chief" and is_model_spec(spec.base_config.model) and needs_tensorflow(spec.base_config.dataset):
        # CIFAR-10 from tensorflow-datasets is loaded by each trial; its
        # shape is known, so the model function is checked now all the same.
        from tf_selectivity.training.loop import DatasetShape

        _check_user_model(spec.base_config, DatasetShape(image_shape=(32, 32, 3), num_classes=10))


def _check_user_model(config, data) -> None:
    """A user's model function built once before the first trial: one that
    fails would fail every trial."""
    from tf_selectivity.training.config import ConfigError
    from tf_selectivity.training.loop import check_model

    try:
        check_model(config, data)
    except ConfigError as error:
        raise cli.UsageError(cli.error_message(error)) from None


def _print_report(report, spec) -> None:
    paths = spec.paths
    if report.role == "worker":
        statuses = [status for _, status in report.trials_run]
        print(
            f"[sweep] worker done: ran {len(statuses)} trial(s) ({statuses.count('COMPLETED')} completed); "
            "the chief ended the sweep"
        )
        return
    total = f"/{report.total}" if report.total is not None else ""
    print(f"[sweep] {report.completed}{total} trials complete in {paths.root}")
    if report.diverged:
        listed = "; ".join(report.diverged[:5]) + (f"; and {len(report.diverged) - 5} more" if len(report.diverged) > 5 else "")
        print(
            f"[sweep] {len(report.diverged)} of them diverged (status DIVERGED in trials.csv; the analysis lists "
            f"them apart and leaves them out of its means): {listed}"
        )
    if report.search_result is not None:
        result = report.search_result
        print(f"[sweep] search: {result['message']} (details: {paths.search_result})")
    if report.tables:
        print(f"[sweep] table of all trials: {', '.join(report.tables)}")
    print(f"[sweep] TensorBoard: tensorboard --logdir={paths.root}")
    print(f"[sweep] analysis: python -m tf_selectivity.analyze --runs={paths.root} --output_dir=<analysis dir>")


def main(argv):
    cli.quiet_logging()
    if len(argv) > 1:
        cli.fail(COMMAND, f"unexpected arguments: {' '.join(argv[1:])}")
    FLAGS = flags.FLAGS
    from tf_selectivity.sweeps import distributed

    if FLAGS.aggregate_only:
        from tf_selectivity.sweeps.layout import SweepPaths

        if not FLAGS.output_dir:
            cli.fail(COMMAND, "--output_dir is required")
        if not os.path.isdir(SweepPaths(FLAGS.output_dir).project):
            cli.fail(COMMAND, f"{FLAGS.output_dir} holds no sweep (no {SweepPaths(FLAGS.output_dir).project})")
        cli.start_backend(FLAGS.verbose)
        from tf_selectivity.sweeps.aggregate import write_trials_table

        for path in write_trials_table(FLAGS.output_dir):
            print(f"[sweep] wrote {path}")
        return 0
    if ":" in (FLAGS.model or ""):
        # A user's model spec is checked by importing its module, which
        # imports Keras: start the backend first (quietly).
        cli.start_backend(FLAGS.verbose)
    try:
        spec = build_spec(FLAGS)
        role = distributed.role_from_environment()
        check_before_writing(spec, role, load_data=not FLAGS.dry_run)
    except (cli.UsageError, ValueError) as error:
        cli.fail(COMMAND, error)
    from tf_selectivity.sweeps import runner

    if FLAGS.dry_run:
        print(runner.describe_spec(spec))
        return 0
    cli.start_backend(FLAGS.verbose)
    try:
        report = runner.run_sweep(spec, role)
    except KeyboardInterrupt:
        print(
            f"{COMMAND}: interrupted; run the same command again to resume (finished trials are kept, "
            "the interrupted one resumes from its last epoch)",
            file=sys.stderr,
        )
        sys.exit(INTERRUPTED)
    except (runner.SweepConflictError, runner.SweepLockedError) as error:
        cli.fail(COMMAND, error)
    except (distributed.ChiefUnreachableError, OSError) as error:
        _runtime_failure(str(error))
    except _grpc_error() as error:
        _runtime_failure(
            f"lost the chief at {role.address} ({error.code().name}); the run directories keep their "
            "checkpoints: restart the chief and this worker with the same command to continue"
        )
    _print_report(report, spec)
    if report.stop_reason:
        _runtime_failure(f"the sweep stopped early: {report.stop_reason}; fix the cause and rerun the command")
    if report.failed:
        _runtime_failure(
            f"{len(report.failed)} trials failed ({'; '.join(report.failed[:3])}); see the 'error' column of "
            "trials.csv, then rerun the same command to retry them"
        )
    return 0


def _grpc_error():
    try:
        import grpc
    except ImportError:  # keras-tuner without gRPC: no distributed mode
        return ()
    return grpc.RpcError


def _runtime_failure(message: str) -> None:
    print(f"{COMMAND}: error: {message}", file=sys.stderr)
    sys.exit(RUNTIME_ERROR)


def run(command: str = COMMAND):
    """Runs the command on `sys.argv`; `command` names it in its messages."""
    global COMMAND
    COMMAND = command
    define_flags()
    app.run(main, flags_parser=cli.flags_parser(command, __doc__, with_presets=True))


if __name__ == "__main__":
    run()

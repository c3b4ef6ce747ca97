"""Train a sweep: alpha values x seeds (x leaky slopes), on keras-tuner.

    python -m tf_selectivity.sweep --model=resnet20 --alphas=0,-0.1,-1,-10 \
        --seeds=0-19 --output_dir=sweeps/resnet20_suppress

    python -m tf_selectivity.sweep --flagfile=experiments/smoke/resnet20_suppress.flags

Each trial is one training run (the flags of ``python -m tf_selectivity.train``
apply to every run) in ``OUTPUT_DIR/runs/<run name>``. Rerunning the same
command resumes: finished trials are kept, the one cut short resumes from
its checkpoints. A different grid on the same directory adds its new
points; different training settings are refused.

``--mode=search`` answers "how far can selectivity fall for free?": the
most negative alpha in ``--search_bounds`` whose mean validation accuracy
stays within ``--search_margin`` of alpha = 0, by bisection on log |alpha|.

Distributed (keras-tuner's chief/worker mode): run the same command once
with ``KERASTUNER_TUNER_ID=chief`` and once per GPU with a distinct
``KERASTUNER_TUNER_ID``, all with ``KERASTUNER_ORACLE_IP`` and
``KERASTUNER_ORACLE_PORT`` of the chief, on a shared ``--output_dir``.

Exit status: 0 when every trial of the command completed, 1 when some
failed (rerun to retry them) or the chief was unreachable, 2 on bad input.
"""

from __future__ import annotations

import os
import re
import sys

from tf_selectivity import cli  # noqa: F401  (sets quiet TensorFlow logging first)

from absl import app, flags

COMMAND = "python -m tf_selectivity.sweep"
RUNTIME_ERROR = 1
INTERRUPTED = 130  # the shell's code for Ctrl-C

__all__ = ["define_flags", "parse_alphas", "parse_seeds", "parse_leaky_slopes", "main", "run"]


def define_flags():
    """Defines the sweep's flags: the training flags and the grid/search ones."""
    from tf_selectivity import train as train_cli

    train_cli.define_training_flags()
    flags.DEFINE_string(
        "alphas", None,
        "Grid of regularization scales, comma-separated (e.g. 0,-0.1,-1,-10); include 0 as the baseline.",
    )
    flags.DEFINE_string("seeds", "0", "Replicate seeds: comma-separated and/or ranges (e.g. 0-19).")
    flags.DEFINE_string(
        "leaky_slopes", None,
        "Several leaky-ReLU negative slopes as one more grid axis (with --activation=leaky_relu).",
    )
    flags.DEFINE_string("output_dir", None, "Sweep directory (created; rerun the command to resume).")
    flags.DEFINE_enum(
        "mode", "grid", ["grid", "search"],
        "grid: every alpha x seed; search: strongest alpha within --search_margin of alpha = 0.",
    )
    flags.DEFINE_string(
        "search_bounds", "-0.1,-100",
        "Search mode: weakest,strongest alpha searched (same sign; negative suppresses selectivity).",
    )
    flags.DEFINE_float(
        "search_margin", 0.01,
        "Search mode: allowed drop of mean validation accuracy from alpha = 0 (0.01 = 1 point).",
    )
    flags.DEFINE_float(
        "search_resolution", 2.0,
        "Search mode: stop when the failing and the passing |alpha| are at most this factor apart.",
    )
    flags.DEFINE_integer("max_retries", 2, "Further attempts of a trial that fails or loses its worker.")
    flags.DEFINE_integer(
        "max_consecutive_failures", 3, "Stop the sweep after this many failed trials in a row."
    )
    flags.DEFINE_float(
        "worker_timeout", 300.0,
        "Chief: seconds without a heartbeat after which a worker's trial goes to another worker.",
    )
    flags.DEFINE_float(
        "chief_timeout", 600.0, "Worker: seconds to wait for an unreachable chief before giving up."
    )
    flags.DEFINE_integer("verbose", 2, "Training output per run: 2 one line per epoch, 1 progress bar, 0 none.")
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
    seeds = []
    for item in filter(None, (t.strip() for t in (text or "").split(","))):
        match = re.fullmatch(r"(\d+)-(\d+)", item)
        if match:
            first, last = int(match.group(1)), int(match.group(2))
            if first > last:
                raise cli.UsageError(f"--seeds: range {item!r} is empty (write FIRST-LAST, FIRST <= LAST)")
            seeds.extend(range(first, last + 1))
            continue
        try:
            seed = int(item)
        except ValueError:
            raise cli.UsageError(f"--seeds: {item!r} is not an integer") from None
        if seed < 0:
            raise cli.UsageError(f"--seeds: {seed} is negative; seeds are non-negative integers")
        seeds.append(seed)
    if not seeds:
        raise cli.UsageError("--seeds is empty")
    return _unique(seeds, "seeds")


def parse_leaky_slopes(text: str) -> list:
    values = cli.parse_float_list(text or "", "leaky_slopes")
    return _unique([v + 0.0 for v in values], "leaky_slopes")


def build_spec(FLAGS):
    """Validates the flags and builds the `SweepSpec`; raises `cli.UsageError`."""
    from tf_selectivity import train as train_cli
    from tf_selectivity.models import MODELS
    from tf_selectivity.sweep import plans
    from tf_selectivity.sweep.runner import SweepSpec
    from tf_selectivity.training import ConfigError

    if not FLAGS.output_dir:
        raise cli.UsageError("--output_dir is required")
    seeds = parse_seeds(FLAGS.seeds)
    if FLAGS["leaky_slopes"].present:
        slopes = parse_leaky_slopes(FLAGS.leaky_slopes)
        if FLAGS["leaky_slope"].present and [FLAGS.leaky_slope] != slopes:
            raise cli.UsageError("give either --leaky_slope or --leaky_slopes, not both")
    else:
        slopes = [FLAGS.leaky_slope + 0.0]
    if FLAGS.mode == "grid":
        if not FLAGS.alphas:
            raise cli.UsageError("--alphas is required in grid mode (e.g. --alphas=0,-0.1,-1,-10)")
        plan = plans.GridPlan(parse_alphas(FLAGS.alphas), seeds, slopes)
    else:
        if FLAGS["alphas"].present:
            raise cli.UsageError("--alphas is for --mode=grid; --mode=search chooses alphas within --search_bounds")
        if len(slopes) != 1:
            raise cli.UsageError("--mode=search takes one leaky slope")
        bounds = cli.parse_float_list(FLAGS.search_bounds, "search_bounds")
        if len(bounds) != 2:
            raise cli.UsageError("--search_bounds takes two alphas: weakest,strongest (e.g. -0.1,-100)")
        try:
            plan = plans.MarginSearchPlan(
                seeds, bounds[0], bounds[1], FLAGS.search_margin, FLAGS.search_resolution, slopes[0]
            )
        except ValueError as error:
            raise cli.UsageError(f"--search_*: {error}") from None
    if FLAGS.max_retries < 0:
        raise cli.UsageError("--max_retries must be >= 0")
    if FLAGS.max_consecutive_failures < 1:
        raise cli.UsageError("--max_consecutive_failures must be >= 1")
    for name in ("worker_timeout", "chief_timeout"):
        if not FLAGS[name].value > 0:
            raise cli.UsageError(f"--{name} must be positive")
    try:
        base = train_cli.config_from_flags(0.0, seeds[0], FLAGS.output_dir)
        for slope in slopes:
            base.leaky_slope = slope
            base.validate(known_models=MODELS)
    except ConfigError as error:
        raise cli.UsageError(str(error)) from None
    base.leaky_slope = slopes[0]
    return SweepSpec(
        base_config=base,
        output_dir=FLAGS.output_dir,
        plan=plan,
        max_retries=FLAGS.max_retries,
        max_consecutive_failures=FLAGS.max_consecutive_failures,
        worker_timeout=FLAGS.worker_timeout,
        chief_timeout=FLAGS.chief_timeout,
        verbose=FLAGS.verbose,
    )


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
    from tf_selectivity.sweep import distributed, runner

    if FLAGS.aggregate_only:
        if not FLAGS.output_dir:
            cli.fail(COMMAND, "--output_dir is required")
        from tf_selectivity.sweep.aggregate import write_trials_table
        from tf_selectivity.sweep.layout import SweepPaths

        if not os.path.isdir(SweepPaths(FLAGS.output_dir).project):
            cli.fail(COMMAND, f"{FLAGS.output_dir} holds no sweep (no {SweepPaths(FLAGS.output_dir).project})")
        for path in write_trials_table(FLAGS.output_dir):
            print(f"[sweep] wrote {path}")
        return 0
    try:
        spec = build_spec(FLAGS)
        role = distributed.role_from_environment()
    except (cli.UsageError, ValueError) as error:
        cli.fail(COMMAND, str(error))
    if FLAGS.dry_run:
        print(runner.describe_spec(spec))
        return 0
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
        cli.fail(COMMAND, str(error))
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


def run():
    define_flags()
    app.run(main, flags_parser=cli.flags_parser(COMMAND))

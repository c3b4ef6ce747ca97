"""Train one network at one alpha under the paper's protocol.

    python -m tf_selectivity.train --model=resnet20 --alpha=-1 --seed=0 \\
        --dataset=cifar10 --output_dir=runs/resnet20_a-1_s0

Defaults are the protocol of Leavitt & Morcos (appendix A.1): 200 epochs,
batch 256, SGD with momentum 0.9 and weight decay 1e-4, learning rate 0.1
(ResNets) or 0.01 (VGG16) divided by 10 at epochs 100 and 150, 45k/5k
train/validation split, the epoch with the best validation accuracy evaluated
on the test set. Running the same command again resumes an interrupted run;
a finished run is left alone. A run whose loss becomes non-finite stops and
is recorded as diverged (summary.json: "status": "diverged").

Several seeds of one configuration (the paper's replicates) in one command:

    python -m tf_selectivity.train --model=resnet20 --alpha=-1 --seeds=0-7 \\
        --output_dir=runs/resnet20_a-1

writes ``runs/resnet20_a-1/seed0`` ... ``seed7`` (or, with a ``{seed}``
placeholder, ``--output_dir=runs/resnet20_a-1_s{seed}``), each a run
directory exactly like a single run of that seed. On JAX with a GPU or TPU
and the data on the device, up to --pack_replicates seeds (auto: 8) train
together as one program; on a CPU (auto) and on TensorFlow they train one
after another.

Bad input (a flag value, a path, the data, a user's model function that
fails, a damaged checkpoint) gives one line on stderr and exit status 2, and
nothing is written; so does a full disk, with the last epoch's checkpoint
intact. Ctrl-C stops with one line saying after which epoch (exit status
130): the same command resumes.
"""

from __future__ import annotations

import sys

from tf_selectivity.core import cli  # noqa: F401  (sets quiet TensorFlow logging first)

from absl import app, flags

COMMAND = "python -m tf_selectivity.train"

# Flags of their own in each command (train: one alpha, one seed or
# several, one run directory; sweep: grids of them).
_COMMAND_FIELDS = ("alpha", "seed", "output_dir")


def define_training_flags():
    """Defines the training flags (shared with the sweep command): one per
    `TrainConfig` field, from its definition."""
    from tf_selectivity.core.settings import define_flags
    from tf_selectivity.training.config import TrainConfig
    from tf_selectivity.training.packing import DEFAULT_PACK_REPLICATES

    define_flags(TrainConfig, exclude=_COMMAND_FIELDS)
    flags.DEFINE_string(
        "pack_replicates", "auto",
        "JAX, data on the device: train up to this many seeds of one configuration together as one "
        "program (jax.vmap; each seed still writes its own run directory); 1: one run at a time; "
        f"auto: {DEFAULT_PACK_REPLICATES} on a GPU/TPU, 1 on a CPU (packed steps are slower there). "
        "TensorFlow always trains one run at a time.",
    )


def config_from_flags(alpha: float, seed: int, output_dir: str):
    """A `TrainConfig` from the training flags, with the given alpha/seed/dir.

    Raises:
        ConfigValueError: a flag value that is not of its field's type.
    """
    from tf_selectivity.core.settings import settings_of, values_from_flags
    from tf_selectivity.training.config import ConfigValueError, TrainConfig

    names = [f.name for f in settings_of(TrainConfig, flags_only=True) if f.name not in _COMMAND_FIELDS]
    values = values_from_flags(TrainConfig, flags.FLAGS, names, error=ConfigValueError)
    return TrainConfig(**values, alpha=alpha, seed=seed, output_dir=output_dir)


def define_flags():
    """Defines the command's flags: the training flags, one seed or several, the run directory."""
    define_training_flags()
    from tf_selectivity.core.settings import define_flags as define_setting_flags
    from tf_selectivity.training.config import TrainConfig

    define_setting_flags(TrainConfig, names=("alpha", "seed"))
    flags.DEFINE_string(
        "seeds", None,
        "Several seeds instead of --seed: comma-separated and/or ranges (e.g. 0-7), one run directory "
        "each (see --output_dir); packed on JAX (--pack_replicates).",
    )
    flags.DEFINE_string(
        "output_dir", None,
        "Run directory (created; rerun the command to resume). With --seeds: the parent of one "
        "directory per seed (DIR/seed3), or a path with {seed} in it (runs/a-1_s{seed}).",
    )
    flags.DEFINE_integer(
        "verbose", 1,
        "1: progress bar (one line per epoch when not on a terminal), 2: one line per epoch, 0: silent, "
        "3: as 2, plus TensorFlow's start-up messages.",
    )


def check_data_settings(config) -> None:
    """The checks of a training configuration's data that need no backend.

    The dataset spec and an image folder's layout, and `--data_dir`. The
    field values are `TrainConfig.validate`'s (`prepare_runs`). Creates
    nothing.

    Raises:
        DatasetUnavailableError, cli.UsageError: naming the problem.
    """
    from tf_selectivity.data.sources import check_dataset, needs_tensorflow

    if config.data_dir is not None and not needs_tensorflow(config.dataset):
        raise cli.UsageError(
            f"--data_dir only applies to --dataset=cifar10 (a tensorflow-datasets directory); "
            f"--dataset is {config.dataset}"
        )
    check_dataset(config.dataset, config.data_dir)


def load_data(config, verbose: int = 1):
    """The run's `DatasetSplits` (decoded images; names an unreadable file).

    `verbose` > 0 shows the progress of decoding an image folder.
    """
    from tf_selectivity.data.sources import load_config_dataset

    return load_config_dataset(config, verbose=verbose)


INTERRUPTED = 130  # the shell's code for Ctrl-C


def main(argv):
    from tf_selectivity.core.signals import stop_on_signals

    stop_on_signals(sigterm=False)  # SIGTERM ends the process as it always did; a kept checkpoint resumes
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # Ctrl-C: the checkpoint of the last finished epoch is intact (each
        # epoch's files are renamed into place only once all are written).
        print(f"{COMMAND}: {interrupted_message(flags.FLAGS)}", file=sys.stderr, flush=True)
        sys.exit(INTERRUPTED)


def interrupted_message(FLAGS) -> str:
    """What an interrupted command says: after which epoch its run stopped."""
    from tf_selectivity.training.run_dir import RunPaths

    if FLAGS.seeds is not None or not FLAGS.output_dir:
        return "interrupted; run the same command to resume (each run resumes after its last finished epoch)"
    paths = RunPaths(FLAGS.output_dir)
    try:
        from tf_selectivity.core.files import read_json

        done = int(read_json(paths.state)["epochs_done"])
    except (OSError, ValueError, KeyError, TypeError):
        done = 0
    if paths.is_complete():
        return f"interrupted; the run in {paths.root} is complete"
    if not done:
        return "interrupted before the first epoch ended; run the same command to start again"
    return f"interrupted after epoch {done}; run the same command to resume"


def _main(argv):
    cli.quiet_logging()
    if len(argv) > 1:
        cli.fail(COMMAND, f"unexpected arguments: {' '.join(argv[1:])}")
    FLAGS = flags.FLAGS
    from tf_selectivity.core.files import DamagedFileError
    from tf_selectivity.data.sources import DatasetUnavailableError, needs_tensorflow
    from tf_selectivity.training.config import ConfigError
    from tf_selectivity.training.prepare import prepare_runs, refuse_locked
    from tf_selectivity.training.run_dir import RunLockedError

    # Everything that can be refused is checked before a backend starts and
    # before anything is written: flags, the run directory, then the data.
    try:
        if not FLAGS.output_dir:
            raise cli.UsageError("--output_dir is required (the run directory)")
        cli.check_verbose(FLAGS.verbose)
        pack_replicates_setting(FLAGS)
        if ":" in (FLAGS.model or ""):
            # Checking a user's model spec imports the user's module, which
            # imports Keras: start the backend first, keeping its start-up
            # lines off the console.
            cli.start_backend(FLAGS.verbose)
        if FLAGS.seeds is not None:
            return _train_seeds(FLAGS)
        config = config_from_flags(FLAGS.alpha, FLAGS.seed, FLAGS.output_dir)
        (prepared,) = prepare_runs([config])
        check_data_settings(config)
        refuse_locked([prepared])
    except (cli.UsageError, ConfigError, DamagedFileError, DatasetUnavailableError, RunLockedError) as error:
        cli.fail(COMMAND, error)
    data = None
    if not prepared.finished:
        if needs_tensorflow(config.dataset):
            cli.start_backend(FLAGS.verbose)
        try:
            data = load_data(config, FLAGS.verbose)
        except DatasetUnavailableError as error:
            cli.fail(COMMAND, error)
    cli.start_backend(FLAGS.verbose)
    from tf_selectivity.core.files import NoSpaceError
    from tf_selectivity.training import train

    try:
        train(prepared, verbose=cli.progress_verbosity(FLAGS.verbose), data=data)
    except (cli.UsageError, ConfigError, DamagedFileError, DatasetUnavailableError, RunLockedError,
            NoSpaceError) as error:
        cli.fail(COMMAND, error)
    return 0


def pack_replicates_setting(FLAGS):
    """`--pack_replicates` as a number of seeds, or None for auto; raises cli.UsageError."""
    from tf_selectivity.training.packing import parse_pack_replicates

    try:
        return parse_pack_replicates(FLAGS.pack_replicates)
    except ValueError as error:
        raise cli.UsageError(cli.error_message(error)) from None


def _train_seeds(FLAGS):
    """`--seeds`: one run directory per seed, trained in packs on JAX.

    Raises:
        cli.UsageError, ConfigError, DamagedFileError, DatasetUnavailableError,
            RunLockedError: bad input, found before anything is written.
    """
    from tf_selectivity.core.files import DamagedFileError
    from tf_selectivity.data.sources import DatasetUnavailableError, needs_tensorflow
    from tf_selectivity.training.config import ConfigError
    from tf_selectivity.training.packing import check_replicate_configs, seed_run_dir, split_into_packs
    from tf_selectivity.training.prepare import prepare_runs, refuse_locked
    from tf_selectivity.training.run_dir import RunLockedError

    if "seed" in cli.EXPLICIT_FLAGS:
        raise cli.UsageError("give either --seed or --seeds, not both")
    seeds = cli.parse_seeds(FLAGS.seeds)
    configs = [config_from_flags(FLAGS.alpha, seed, seed_run_dir(FLAGS.output_dir, seed)) for seed in seeds]
    runs = prepare_runs(configs)
    check_replicate_configs(configs)
    check_data_settings(configs[0])
    refuse_locked(runs)
    unfinished = [run for run in runs if not run.finished]
    data = None
    if unfinished:
        if needs_tensorflow(configs[0].dataset):
            cli.start_backend(FLAGS.verbose)
        data = load_data(configs[0], FLAGS.verbose)
    cli.start_backend(FLAGS.verbose)
    from tf_selectivity.training.replicates import PackTooLargeError, resolve_pack_replicates, train_replicates

    verbose = cli.progress_verbosity(FLAGS.verbose)
    setting = pack_replicates_setting(FLAGS)
    limit = resolve_pack_replicates(setting)
    if verbose and setting is None and limit == 1 and len(unfinished) > 1:
        import keras

        if keras.backend.backend() == "jax":
            print(
                "Seeds train one after another: on a CPU a packed program is slower than single runs "
                "(--pack_replicates=N packs them all the same)."
            )
    from tf_selectivity.core.files import NoSpaceError

    summaries = []
    by_seed = dict(zip(seeds, runs))
    try:
        for pack in split_into_packs(seeds, limit):
            summaries += train_replicates([by_seed[seed] for seed in pack], verbose=verbose, data=data)
    except (cli.UsageError, ConfigError, DamagedFileError, DatasetUnavailableError, RunLockedError,
            PackTooLargeError, NoSpaceError) as error:
        cli.fail(COMMAND, error)
    if verbose:
        diverged = [summary.seed for summary in summaries if summary.diverged]
        note = f"; diverged: seed{'s' if len(diverged) > 1 else ''} {', '.join(map(str, diverged))}" if diverged else ""
        print(f"{len(summaries)} runs finished ({len(summaries) - len(diverged)} completed{note}).")
    return 0


def run(command: str = COMMAND):
    """Runs the command on `sys.argv`; `command` names it in its messages."""
    global COMMAND
    COMMAND = command
    define_flags()
    app.run(main, flags_parser=cli.flags_parser(command, __doc__))


if __name__ == "__main__":
    run()

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

Bad input (a flag value, a path, the data) gives one line on stderr and exit
status 2, and nothing is written.
"""

from __future__ import annotations

from tf_selectivity import cli  # noqa: F401  (sets quiet TensorFlow logging first)

from absl import app, flags

COMMAND = "python -m tf_selectivity.train"

_MODEL_NAMES = (
    "resnet8", "resnet20", "resnet32", "resnet44", "resnet56", "vgg16", "resnet18", "resnet50",
)


def define_training_flags():
    """Defines the training flags (shared with the sweep command)."""
    from tf_selectivity.data.sources import DATASET_HELP
    from tf_selectivity.training.packing import DEFAULT_PACK_REPLICATES

    flags.DEFINE_string(
        "model", "resnet20",
        f"Network: one of {', '.join(_MODEL_NAMES)} (paper: resnet20, vgg16 on CIFAR-10; "
        "resnet18, resnet50 on Tiny ImageNet), or module.path:function, a function of yours "
        "that builds a Keras model from num_classes and input_shape (probes are inserted "
        "after its activations that follow convolutions).",
    )
    flags.DEFINE_string(
        "activation", "relu", "Unit non-linearity: relu or leaky_relu (paper sec. 4.4)."
    )
    flags.DEFINE_float(
        "leaky_slope", 0.0, "Negative slope of leaky_relu (paper fig. A10: 0.01 to 0.5)."
    )
    flags.DEFINE_enum(
        "selectivity_index", "eq1", ["eq1", "bounded"],
        "Index in the loss and summary: eq1 = the paper's eq. 1, (mu_max - mu_rest) / (mu_max + mu_rest), "
        "guarded near its pole for negative (leaky) responses; bounded = divide by |mu_max| + |mu_rest| "
        "(same for ReLU, in [0, 1] for leaky units). See tf_selectivity/selectivity.py.",
    )
    flags.DEFINE_string("dataset", "cifar10", f"Data: {DATASET_HELP}.")
    flags.DEFINE_string(
        "data_dir", None, "tensorflow-datasets data directory for --dataset=cifar10."
    )
    flags.DEFINE_integer("epochs", 200, "Training epochs (paper: 200).")
    flags.DEFINE_integer("batch_size", 256, "Training batch size (paper: 256).")
    flags.DEFINE_float(
        "learning_rate", None, "Initial learning rate (default: 0.1 for ResNets, 0.01 for VGG16)."
    )
    flags.DEFINE_float("momentum", 0.9, "SGD momentum (paper: 0.9).")
    flags.DEFINE_float(
        "weight_decay", 1e-4, "L2 weight decay added to the gradient, as PyTorch's SGD (paper: 1e-4)."
    )
    flags.DEFINE_list(
        "lr_milestones", ["100", "150"], "Epochs at which the learning rate is multiplied by --lr_decay."
    )
    flags.DEFINE_float("lr_decay", 0.1, "Learning-rate factor at each milestone (paper: 0.1).")
    flags.DEFINE_float(
        "validation_fraction", 0.1, "Share of the training images held out for validation (45k/5k)."
    )
    flags.DEFINE_integer("split_seed", 0, "Seed of the train/validation split (same for all runs).")
    flags.DEFINE_integer(
        "max_train_samples", None,
        "Train on the first N images of the (seeded, shuffled) training split only: quick runs.",
    )
    flags.DEFINE_boolean("augment", True, "Pad-4 random crop and horizontal flip of training images.")
    flags.DEFINE_boolean(
        "skip_bad_images", False,
        "imagefolder: leave out image files that cannot be decoded (listed in the run's config.json) "
        "instead of stopping with an error that names them.",
    )
    flags.DEFINE_enum(
        "jit_compile", "auto", ["auto", "true", "false"],
        "XLA-compile the train step; auto: on GPU/TPU (and always on JAX), off on a TensorFlow CPU.",
    )
    flags.DEFINE_enum(
        "precision", "float32", ["float32", "mixed_bfloat16"],
        "Compute precision; mixed_bfloat16 is faster on recent GPUs/TPUs (paper: float32).",
    )
    flags.DEFINE_integer("eval_batch_size", 500, "Batch size for validation and test passes.")
    flags.DEFINE_enum(
        "data_on_device", "auto", ["auto", "true", "false"],
        "JAX: keep the training and validation splits on the accelerator and run whole epochs "
        "as compiled programs (auto: when they fit in half its free memory). TensorFlow keeps tf.data.",
    )
    flags.DEFINE_string(
        "pack_replicates", "auto",
        "JAX, data on the device: train up to this many seeds of one configuration together as one "
        "program (jax.vmap; each seed still writes its own run directory); 1: one run at a time; "
        f"auto: {DEFAULT_PACK_REPLICATES} on a GPU/TPU, 1 on a CPU (packed steps are slower there). "
        "TensorFlow always trains one run at a time.",
    )


def config_from_flags(alpha: float, seed: int, output_dir: str):
    """A `TrainConfig` from the training flags, with the given alpha/seed/dir."""
    from tf_selectivity.training import TrainConfig

    FLAGS = flags.FLAGS
    try:
        milestones = [int(m) for m in FLAGS.lr_milestones]
    except ValueError:
        raise cli.UsageError(
            f"--lr_milestones must be integers; got {','.join(FLAGS.lr_milestones)}"
        ) from None
    return TrainConfig(
        model=FLAGS.model,
        alpha=alpha,
        seed=seed,
        activation=FLAGS.activation,
        leaky_slope=FLAGS.leaky_slope,
        selectivity_index=FLAGS.selectivity_index,
        dataset=FLAGS.dataset,
        data_dir=FLAGS.data_dir,
        epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate,
        momentum=FLAGS.momentum,
        weight_decay=FLAGS.weight_decay,
        lr_milestones=tuple(milestones),
        lr_decay=FLAGS.lr_decay,
        validation_fraction=FLAGS.validation_fraction,
        split_seed=FLAGS.split_seed,
        max_train_samples=FLAGS.max_train_samples,
        augment=FLAGS.augment,
        skip_bad_images=FLAGS.skip_bad_images,
        jit_compile=FLAGS.jit_compile,
        precision=FLAGS.precision,
        eval_batch_size=FLAGS.eval_batch_size,
        data_on_device=FLAGS.data_on_device,
        output_dir=output_dir,
    )


def _define_flags():
    define_training_flags()
    flags.DEFINE_float(
        "alpha", 0.0, "Selectivity regularizer scale: < 0 suppresses class selectivity, > 0 promotes it."
    )
    flags.DEFINE_integer("seed", 0, "Random seed of initialization, shuffling and augmentation.")
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


def check_training_config(config) -> None:
    """The checks of a training configuration that need no backend.

    Field values (`TrainConfig.validate` with the known model names), the
    dataset spec and an image folder's layout, and `--data_dir`. Creates
    nothing.

    Raises:
        ConfigError, DatasetUnavailableError, cli.UsageError: naming the problem.
    """
    from tf_selectivity.data.sources import check_dataset, needs_tensorflow

    config.validate(known_models=_MODEL_NAMES)
    if config.data_dir is not None and not needs_tensorflow(config.dataset):
        raise cli.UsageError(
            f"--data_dir only applies to --dataset=cifar10 (a tensorflow-datasets directory); "
            f"--dataset is {config.dataset}"
        )
    check_dataset(config.dataset, config.data_dir)


def load_data(config):
    """The run's `DatasetSplits` (decoded images; names an unreadable file)."""
    from tf_selectivity.data.sources import load_config_dataset

    return load_config_dataset(config)


def main(argv):
    cli.quiet_logging()
    if len(argv) > 1:
        cli.fail(COMMAND, f"unexpected arguments: {' '.join(argv[1:])}")
    FLAGS = flags.FLAGS
    from tf_selectivity.data.sources import DatasetUnavailableError, needs_tensorflow
    from tf_selectivity.training.config import ConfigError
    from tf_selectivity.training.run_dir import RunLockedError, RunPaths, check_run_dir

    # Everything that can be refused is checked before a backend starts and
    # before anything is written: flags, the run directory, then the data.
    try:
        if not FLAGS.output_dir:
            raise cli.UsageError("--output_dir is required (the run directory)")
        cli.check_verbose(FLAGS.verbose)
        pack_replicates_setting(FLAGS)
        if FLAGS.seeds is not None:
            return _train_seeds(FLAGS)
        config = config_from_flags(FLAGS.alpha, FLAGS.seed, FLAGS.output_dir)
        if ":" in config.model:
            # Checking a user's model spec imports the user's module, which
            # imports Keras: start the backend first, keeping its start-up
            # lines off the console.
            cli.start_backend(FLAGS.verbose)
        check_training_config(config)
        check_run_dir(config)
    except (cli.UsageError, ConfigError, DatasetUnavailableError) as error:
        cli.fail(COMMAND, str(error))
    paths = RunPaths(config.output_dir)
    data = None
    if not paths.is_complete():
        if paths.is_locked():
            cli.fail(COMMAND, f"another process is training in {paths.root}; wait for it or use another --output_dir")
        if needs_tensorflow(config.dataset):
            cli.start_backend(FLAGS.verbose)
        try:
            data = load_data(config)
        except DatasetUnavailableError as error:
            cli.fail(COMMAND, str(error))
    cli.start_backend(FLAGS.verbose)
    from tf_selectivity.training import train

    try:
        train(config, verbose=cli.progress_verbosity(FLAGS.verbose), data=data)
    except (cli.UsageError, ConfigError, DatasetUnavailableError, RunLockedError) as error:
        cli.fail(COMMAND, str(error))
    return 0


def pack_replicates_setting(FLAGS):
    """`--pack_replicates` as a number of seeds, or None for auto; raises cli.UsageError."""
    from tf_selectivity.training.packing import parse_pack_replicates

    try:
        return parse_pack_replicates(FLAGS.pack_replicates)
    except ValueError as error:
        raise cli.UsageError(str(error)) from None


def _train_seeds(FLAGS):
    """`--seeds`: one run directory per seed, trained in packs on JAX.

    Raises:
        cli.UsageError, ConfigError, DatasetUnavailableError: bad input,
            found before anything is written.
    """
    from tf_selectivity.data.sources import DatasetUnavailableError, needs_tensorflow
    from tf_selectivity.training.config import ConfigError
    from tf_selectivity.training.packing import check_replicate_configs, seed_run_dir, split_into_packs
    from tf_selectivity.training.run_dir import RunLockedError, RunPaths, check_run_dir

    if "seed" in cli.EXPLICIT_FLAGS:
        raise cli.UsageError("give either --seed or --seeds, not both")
    seeds = cli.parse_seeds(FLAGS.seeds)
    configs = [config_from_flags(FLAGS.alpha, seed, seed_run_dir(FLAGS.output_dir, seed)) for seed in seeds]
    check_training_config(configs[0])
    check_replicate_configs(configs)
    for config in configs:
        config.validate(known_models=_MODEL_NAMES)
        check_run_dir(config)
    unfinished = [config for config in configs if not RunPaths(config.output_dir).is_complete()]
    for config in unfinished:
        if RunPaths(config.output_dir).is_locked():
            raise cli.UsageError(
                f"another process is training in {RunPaths(config.output_dir).root}; wait for it or use "
                "another --output_dir"
            )
    data = None
    if unfinished:
        if needs_tensorflow(configs[0].dataset):
            cli.start_backend(FLAGS.verbose)
        data = load_data(configs[0])
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
    summaries = []
    by_seed = dict(zip(seeds, configs))
    try:
        for pack in split_into_packs(seeds, limit):
            summaries += train_replicates([by_seed[seed] for seed in pack], verbose=verbose, data=data)
    except (cli.UsageError, ConfigError, DatasetUnavailableError, RunLockedError, PackTooLargeError) as error:
        cli.fail(COMMAND, str(error))
    if verbose:
        diverged = [s["seed"] for s in summaries if s.get("status") == "diverged"]
        note = f"; diverged: seed{'s' if len(diverged) > 1 else ''} {', '.join(map(str, diverged))}" if diverged else ""
        print(f"{len(summaries)} runs finished ({len(summaries) - len(diverged)} completed{note}).")
    return 0


def run():
    _define_flags()
    app.run(main, flags_parser=cli.flags_parser(COMMAND, __doc__))


if __name__ == "__main__":
    run()

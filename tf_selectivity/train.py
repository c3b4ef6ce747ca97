"""Train one network at one alpha under the paper's protocol.

    python -m tf_selectivity.train --model=resnet20 --alpha=-1 --seed=0 \
        --dataset=cifar10 --output_dir=runs/resnet20_a-1_s0

Defaults are the protocol of Leavitt & Morcos (appendix A.1): 200 epochs,
batch 256, SGD with momentum 0.9 and weight decay 1e-4, learning rate 0.1
(ResNets) or 0.01 (VGG16) divided by 10 at epochs 100 and 150, 45k/5k
train/validation split, the epoch with the best validation accuracy evaluated
on the test set. Running the same command again resumes an interrupted run.
"""

from __future__ import annotations

import sys

from tf_selectivity import cli  # noqa: F401  (sets quiet TensorFlow logging first)

from absl import app, flags

COMMAND = "python -m tf_selectivity.train"

_MODEL_NAMES = ("resnet8", "resnet20", "resnet32", "resnet44", "resnet56", "vgg16")


def define_training_flags():
    """Defines the training flags (shared with the sweep command)."""
    from tf_selectivity.data.sources import DATASET_HELP

    flags.DEFINE_string(
        "model", "resnet20", f"Network: one of {', '.join(_MODEL_NAMES)} (paper: resnet20, vgg16)."
    )
    flags.DEFINE_string(
        "activation", "relu", "Unit non-linearity: relu or leaky_relu (paper sec. 4.4)."
    )
    flags.DEFINE_float(
        "leaky_slope", 0.0, "Negative slope of leaky_relu (paper fig. A10: 0.01 to 0.5)."
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
    flags.DEFINE_string("output_dir", None, "Run directory (created; rerun the command to resume).")
    flags.DEFINE_integer("verbose", 1, "1: progress bar, 2: one line per epoch, 0: silent.")


def main(argv):
    cli.quiet_logging()
    if len(argv) > 1:
        cli.fail(COMMAND, f"unexpected arguments: {' '.join(argv[1:])}")
    FLAGS = flags.FLAGS
    if not FLAGS.output_dir:
        cli.fail(COMMAND, "--output_dir is required")
    from tf_selectivity.data import DatasetUnavailableError
    from tf_selectivity.training import ConfigError, RunLockedError, train

    try:
        config = config_from_flags(FLAGS.alpha, FLAGS.seed, FLAGS.output_dir)
        train(config, verbose=FLAGS.verbose)
    except (cli.UsageError, ConfigError, DatasetUnavailableError, RunLockedError) as error:
        cli.fail(COMMAND, str(error))
    return 0


def run():
    _define_flags()
    app.run(main, flags_parser=cli.flags_parser(COMMAND))


if __name__ == "__main__":
    run()

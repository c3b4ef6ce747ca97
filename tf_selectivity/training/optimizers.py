"""The paper's optimizer (`TorchSGD`, defined in `tf_selectivity.optimizers`)
and its step learning-rate schedule."""

from __future__ import annotations

import keras

# Defined on the bottom floor so that `models` can register it; re-exported
# here, where the README's examples and older code import it from.
from tf_selectivity.optimizers import TorchSGD

__all__ = ["TorchSGD", "step_schedule", "make_optimizer"]


def step_schedule(base_rate, milestones, decay, steps_per_epoch):
    """Learning rate x `decay` at each epoch in `milestones` (paper: 100, 150).

    Returns:
        A `keras.optimizers.schedules.PiecewiseConstantDecay` over optimizer
        steps, or the float `base_rate` when there are no milestones. Being a
        function of the optimizer's step counter, it resumes exactly from a
        checkpoint.
    """
    if not milestones:
        return float(base_rate)
    # PiecewiseConstantDecay switches *after* a boundary (step <= b keeps the
    # old value); the first step of epoch m is step m * steps_per_epoch.
    boundaries = [int(m) * int(steps_per_epoch) - 1 for m in milestones]
    values = [float(base_rate) * float(decay) ** i for i in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def make_optimizer(config, steps_per_epoch) -> TorchSGD:
    """The optimizer of a `TrainConfig`."""
    schedule = step_schedule(
        config.learning_rate, config.lr_milestones, config.lr_decay, steps_per_epoch
    )
    return TorchSGD(
        learning_rate=schedule,
        momentum=config.momentum,
        weight_decay_l2=config.weight_decay,
    )

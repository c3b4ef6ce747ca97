"""The paper's optimizer, `TorchSGD` (PyTorch's SGD as a Keras optimizer), and
its step learning-rate schedule."""

from __future__ import annotations

import keras
from keras import ops

from tf_selectivity.core.compat import optimizer_variable_index

__all__ = ["TorchSGD", "step_schedule", "make_optimizer"]


@keras.saving.register_keras_serializable(package="tf_selectivity")
class TorchSGD(keras.optimizers.Optimizer):
    """SGD with momentum and L2 weight decay exactly as `torch.optim.SGD`.

    The paper trained with PyTorch's SGD (momentum 0.9, weight decay 1e-4).
    Keras' `SGD` differs in two ways that matter over 200 epochs: its
    `weight_decay` is decoupled (applied outside the momentum), and its
    momentum buffer stores learning-rate-scaled steps, so a learning-rate
    drop takes effect gradually. This optimizer follows PyTorch::

        g   = gradient + weight_decay * w        (coupled L2, all parameters)
        buf = momentum * buf + g
        w   = w - learning_rate * buf            (or g + momentum * buf, Nesterov)

    Args:
        learning_rate: float or `keras.optimizers.schedules.LearningRateSchedule`.
        momentum: momentum factor in [0, 1).
        weight_decay_l2: L2 coefficient added to the gradient (PyTorch's
            `weight_decay`); named differently from Keras' decoupled
            `weight_decay` on purpose.
        nesterov: Nesterov momentum.
        **kwargs: base optimizer arguments (`name`, `clipnorm`, ...).
    """

    def __init__(self, learning_rate=0.1, momentum=0.9, weight_decay_l2=0.0, nesterov=False, **kwargs):
        kwargs.pop("weight_decay", None)
        super().__init__(learning_rate=learning_rate, **kwargs)
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"momentum must be in [0, 1); got {momentum}.")
        self.momentum = float(momentum)
        self.weight_decay_l2 = float(weight_decay_l2)
        self.nesterov = bool(nesterov)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentum_buffers = []
        if self.momentum:
            self.momentum_buffers = self.add_optimizer_variables(variables, "momentum")

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        step = ops.cast(gradient, variable.dtype)
        if self.weight_decay_l2:
            step = step + ops.cast(self.weight_decay_l2, variable.dtype) * variable
        if self.momentum:
            buffer = self.momentum_buffers[optimizer_variable_index(self, variable)]
            momentum = ops.cast(self.momentum, variable.dtype)
            self.assign(buffer, momentum * buffer + step)
            step = step + momentum * buffer if self.nesterov else buffer
        self.assign_sub(variable, learning_rate * step)

    def get_config(self):
        config = super().get_config()
        config.pop("weight_decay", None)
        config.update(
            {
                "momentum": self.momentum,
                "weight_decay_l2": self.weight_decay_l2,
                "nesterov": self.nesterov,
            }
        )
        return config


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
    """The optimizer of a `TrainConfig` (its learning rate under its
    `lr_scaling` rule: `TrainConfig.scaled_learning_rate`)."""
    schedule = step_schedule(
        config.scaled_learning_rate, config.lr_milestones, config.lr_decay, steps_per_epoch
    )
    return TorchSGD(
        learning_rate=schedule,
        momentum=config.momentum,
        weight_decay_l2=config.weight_decay,
    )

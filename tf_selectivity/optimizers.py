"""The paper's optimizer, `TorchSGD`: PyTorch's SGD as a Keras optimizer.

On the bottom floor (beside `layers`) so that `tf_selectivity.models` can
register it when it recompiles a loaded model without importing `training`.
`tf_selectivity.training` re-exports it, with the learning-rate schedule.
"""

from __future__ import annotations

import keras
from keras import ops

from tf_selectivity.compat import optimizer_variable_index

__all__ = ["TorchSGD"]


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

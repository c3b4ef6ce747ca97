"""`SelectivityModel`'s steps on JAX, in the shape of Keras' `JAXTrainer`."""

from __future__ import annotations

import contextlib

import jax
import keras
from keras import ops

__all__ = ["JAXSteps"]


class JAXSteps:
    """Stateless `train_step` / `test_step` for a `SelectivityModel` on JAX.

    As Keras' own JAX trainer: the steps take and return the state as lists
    of arrays, ``(trainable, non_trainable, optimizer, metrics)`` for training
    and ``(trainable, non_trainable, metrics)`` for testing, so that Keras
    (or `tf_selectivity.training.device_loop`) can `jax.jit` and `jax.vmap`
    them. The forward pass passes the labels to the probes; the model
    supplies `compute_loss`, `compute_metrics`, `loss_tracker` and, for the
    test step's split selectivity, `recording_split_responses` /
    `update_split_selectivity`.
    """

    def compute_loss_and_updates(
        self,
        trainable_variables,
        non_trainable_variables,
        metrics_variables,
        x,
        y,
        sample_weight,
        training=False,
        optimizer_variables=None,
        selectivity_gate=None,
    ):
        """Stateless forward pass and loss, differentiable with `jax.grad`.

        `selectivity_gate` (the train step's, `SelectivityModel.selectivity_gate`)
        reaches the probes with the labels.

        Returns:
            ``(loss, (unscaled_loss, y_pred, non_trainable_variables,
            metrics_variables))``: in training the loss is multiplied by the
            optimizer's loss scale (a `LossScaleOptimizer` under
            mixed_float16; 1 otherwise) and `stateless_apply` divides the
            gradients by it, as in Keras' JAX trainer.
        """
        loss, aux, _ = self._forward_and_loss(
            trainable_variables, non_trainable_variables, metrics_variables, x, y, sample_weight,
            training=training, optimizer_variables=optimizer_variables,
            selectivity_gate=selectivity_gate,
        )
        return loss, aux

    def _forward_and_loss(self, trainable_variables, non_trainable_variables, metrics_variables,
                          x, y, sample_weight, training, optimizer_variables=None, record=False,
                          selectivity_gate=None):
        """`compute_loss_and_updates`, plus the probes' unit responses of the
        forward pass when `record` (split selectivity; else None)."""
        mapping = [
            *zip(self.trainable_variables, trainable_variables),
            *zip(self.non_trainable_variables, non_trainable_variables),
            *zip(self.metrics_variables, metrics_variables),
        ]
        # One scope for the forward pass and the loss, so that `self.losses`
        # in `compute_loss` reads this pass's `add_loss` terms (and the
        # regularizers the current weights).
        recording = self.recording_split_responses() if record else contextlib.nullcontext()
        with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope:
            with recording as responses:
                y_pred = self(x, training=training, **self.step_context(y, selectivity_gate))
            loss = self.compute_loss(x, y, y_pred, sample_weight, training=training)
        non_trainable_variables = [scope.get_current_value(v) for v in self.non_trainable_variables]
        metrics_variables = [scope.get_current_value(v) for v in self.metrics_variables]
        unscaled_loss = loss
        if training and self.optimizer is not None:
            # The loss scale is an optimizer variable: read it from the state.
            optimizer_mapping = list(zip(self.optimizer.variables, optimizer_variables))
            with keras.StatelessScope(state_mapping=optimizer_mapping):
                loss = self.optimizer.scale_loss(loss)
        return loss, (unscaled_loss, y_pred, non_trainable_variables, metrics_variables), responses

    def _stateless_metrics(self, non_trainable_variables, metrics_variables, loss, x, y, y_pred,
                           sample_weight, responses=None, selectivity_gate=None):
        """Updates the loss tracker and `compute_metrics` on the given state,
        and the split selectivity with `responses` when given.

        The non-trainable variables are mapped too: `compute_metrics` reads
        the probes' batch selectivity of this forward pass from them.

        Returns:
            (logs, new metrics variables).
        """
        mapping = [
            *zip(self.non_trainable_variables, non_trainable_variables),
            *zip(self.metrics_variables, metrics_variables),
        ]
        with keras.StatelessScope(state_mapping=mapping) as scope:
            self.loss_tracker.update_state(loss, sample_weight=ops.shape(y_pred)[0])
            logs = self.compute_metrics(x, y, y_pred, sample_weight, selectivity_gate=selectivity_gate)
            if responses is not None:
                logs.update(self.update_split_selectivity(y, responses))
        return logs, [scope.get_current_value(v) for v in self.metrics_variables]

    def _stateless_selectivity_gate(self, optimizer_variables):
        """The window's gate at the step counter held in `optimizer_variables`
        (so it is traced, per replicate under `vmap`); None without a window."""
        if self.selectivity_window is None:
            return None
        mapping = list(zip(self.optimizer.variables, optimizer_variables))
        with keras.StatelessScope(state_mapping=mapping):
            return self.selectivity_gate(self.optimizer.iterations.value)

    def train_step(self, state, data):
        trainable_variables, non_trainable_variables, optimizer_variables, metrics_variables = state
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        gate = self._stateless_selectivity_gate(optimizer_variables)
        grad_fn = jax.value_and_grad(self.compute_loss_and_updates, has_aux=True)
        (_, aux), grads = grad_fn(
            trainable_variables,
            non_trainable_variables,
            metrics_variables,
            x,
            y,
            sample_weight,
            training=True,
            optimizer_variables=optimizer_variables,
            selectivity_gate=gate,
        )
        unscaled_loss, y_pred, non_trainable_variables, metrics_variables = aux
        trainable_variables, optimizer_variables = self.optimizer.stateless_apply(
            optimizer_variables, grads, trainable_variables
        )
        logs, metrics_variables = self._stateless_metrics(
            non_trainable_variables, metrics_variables, unscaled_loss, x, y, y_pred, sample_weight,
            selectivity_gate=gate,
        )
        return logs, (trainable_variables, non_trainable_variables, optimizer_variables, metrics_variables)

    def test_step(self, state, data):
        trainable_variables, non_trainable_variables, metrics_variables = state
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        _, aux, responses = self._forward_and_loss(
            trainable_variables,
            non_trainable_variables,
            metrics_variables,
            x,
            y,
            sample_weight,
            training=False,
            record=True,
        )
        unscaled_loss, y_pred, non_trainable_variables, metrics_variables = aux
        logs, metrics_variables = self._stateless_metrics(
            non_trainable_variables, metrics_variables, unscaled_loss, x, y, y_pred, sample_weight,
            responses,
        )
        return logs, (trainable_variables, non_trainable_variables, metrics_variables)

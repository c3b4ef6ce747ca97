"""`SelectivityModel`'s steps on TensorFlow, in the shape of Keras' `TensorFlowTrainer`."""

from __future__ import annotations

import warnings

import keras
import tensorflow as tf

from tf_selectivity.models.probe import LABELS_ARG
from tf_selectivity.models.replicas import replicas_in_sync

__all__ = ["TensorFlowSteps"]


class TensorFlowSteps:
    """`train_step` / `test_step` for a `SelectivityModel` on TensorFlow.

    As Keras' own TensorFlow trainer, except that the forward pass passes the
    labels to the probes, and that under `tf.distribute` each replica's loss
    is its share of the global batch's (`SelectivityModel.replica_losses`). The model supplies `compute_loss`,
    `compute_metrics`, `loss_tracker` and, for the test step's split
    selectivity, `recording_split_responses` / `update_split_selectivity`.
    Keras traces the steps into a `tf.function` (graph or XLA).
    """

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        # The counter before this step's update: the window's gate (None without one).
        gate = self.selectivity_gate(self.optimizer.iterations) if self.optimizer is not None else None
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True, **self.step_context(y, gate))
            if replicas_in_sync() > 1:
                # tf.distribute: the optimizer sums the replicas' gradients
                # of `replica_loss`, their shares of the global loss.
                loss, replica_loss = self.replica_losses(y, y_pred, sample_weight)
            else:
                loss = replica_loss = self.compute_loss(x, y, y_pred, sample_weight, training=True)
            self.loss_tracker.update_state(loss, sample_weight=tf.shape(y_pred)[0])
            if self.optimizer is not None:
                # Multiplies by a LossScaleOptimizer's scale (mixed_float16);
                # apply_gradients divides it out again.
                replica_loss = self.optimizer.scale_loss(replica_loss)
        trainable_weights = self.trainable_weights
        if trainable_weights:
            gradients = tape.gradient(replica_loss, trainable_weights)
            self.optimizer.apply_gradients(zip(gradients, trainable_weights))
        else:
            warnings.warn("The model does not have any trainable weights.")
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight, selectivity_gate=gate)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with self.recording_split_responses() as responses:
            y_pred = self(x, training=False, **{LABELS_ARG: y})
        if replicas_in_sync() > 1:
            loss, _ = self.replica_losses(y, y_pred, sample_weight)
        else:
            loss = self.compute_loss(x, y, y_pred, sample_weight, training=False)
        self.loss_tracker.update_state(loss, sample_weight=tf.shape(y_pred)[0])
        logs = self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        if responses is not None:
            logs.update(self.update_split_selectivity(y, responses))
        return logs

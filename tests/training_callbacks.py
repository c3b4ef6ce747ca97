"""Callbacks the training tests use to stand in for a kill or a diverging run."""

import keras
import numpy as np


class Interrupt(keras.callbacks.Callback):
    """Stops training like a kill right after the checkpoint of `epoch` (1-based)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt


class PoisonAWeight(keras.callbacks.Callback):
    """Sets the first conv kernel to NaN before epoch `epoch` (1-based)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            kernel = next(w for w in self.model.trainable_weights if len(w.shape) == 4)
            kernel.assign(np.full(kernel.shape, np.nan, dtype="float32"))

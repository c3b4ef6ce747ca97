"""Model-building functions of a "user", for ``--model=user_model_zoo:<name>``
in the tests (this directory is on sys.path under pytest; subprocesses get
it through PYTHONPATH)."""

import keras
from keras import ops

# Keyword arguments of the last call of each function, for the tests.
CALLS = {}


@keras.saving.register_keras_serializable(package="user_model_zoo")
class ScalePixels(keras.layers.Layer):
    """A custom layer: [0, 255] -> [0, 1]. Loading model.keras needs this
    module importable."""

    def call(self, inputs):
        return ops.multiply(inputs, 1.0 / 255.0)


def small_cnn(num_classes, input_shape):
    """A small model (two fused conv-ReLUs), plain Keras."""
    CALLS["small_cnn"] = dict(num_classes=num_classes, input_shape=input_shape)
    inputs = keras.Input(input_shape)
    x = ScalePixels(name="scale")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(x)
    x = keras.layers.Conv2D(16, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x))


def configurable_cnn(num_classes, input_shape, pixel_mean, pixel_std, activation, leaky_slope):
    """Uses every optional argument."""
    CALLS["configurable_cnn"] = dict(
        num_classes=num_classes, input_shape=input_shape, pixel_mean=pixel_mean,
        pixel_std=pixel_std, activation=activation, leaky_slope=leaky_slope,
    )
    inputs = keras.Input(input_shape)
    x = keras.layers.Normalization(mean=list(pixel_mean), variance=[s**2 for s in pixel_std])(inputs)
    x = keras.layers.Conv2D(8, 3, name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    if activation == "leaky_relu":
        x = keras.layers.LeakyReLU(negative_slope=leaky_slope, name="act")(x)
    else:
        x = keras.layers.ReLU(name="act")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x))


def tiny_resnet18(num_classes, input_shape, pixel_mean, pixel_std):
    """The package's ResNet18 at width 16: a model that has probes already."""
    from tf_selectivity.models import build_imagenet_resnet

    return build_imagenet_resnet(
        18, num_classes=num_classes, input_shape=input_shape, pixel_mean=pixel_mean,
        pixel_std=pixel_std, width=16,
    )


def fixed_size(num_classes, input_shape):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(keras.layers.Flatten()(x)))


def not_a_model(num_classes, input_shape):
    return "a string"

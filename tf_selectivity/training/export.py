"""Saving trained models: a SavedModel with analysis signatures and a .keras file."""

from __future__ import annotations

import os

import keras

from tf_selectivity.core.files import replacing

__all__ = ["export_saved_model", "save_keras_model", "tensorflow_available", "export_run_models"]


def tensorflow_available() -> bool:
    """Whether TensorFlow can be imported (SavedModel export needs it)."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def export_saved_model(model, path: str) -> None:
    """Exports a `SelectivityModel` as a SavedModel with three endpoints.

    * ``serve(images) -> logits``
    * ``unit_responses(images) -> {"logits", <probe name>: (batch, units)}``
    * ``activations(images) -> {<probe name>: (batch, H, W, units)}``

    Images are float32 (batch, H, W, C) raw pixels in [0, 255]. Loading needs
    only TensorFlow (``tf.saved_model.load(path).unit_responses(x)``), no
    Python model code. The directory is written next to `path` and renamed
    into place, so an interrupted export never leaves a partial model.

    Args:
        model: a built `SelectivityModel`.
        path: target directory.
    """
    import tensorflow as tf

    signature = [tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32, name="images")]
    responses = model.unit_response_model()
    activations = model.activation_model()
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(responses)
    archive.track(activations)
    archive.add_endpoint("serve", lambda x: model(x, training=False), input_signature=signature)
    archive.add_endpoint(
        "unit_responses", lambda x: responses(x, training=False), input_signature=signature
    )
    archive.add_endpoint(
        "activations", lambda x: activations(x, training=False), input_signature=signature
    )
    with replacing(path) as tmp:
        archive.write_out(tmp, verbose=False)


def save_keras_model(model, path: str) -> None:
    """Saves the model in Keras' native format (any backend), atomically."""
    with replacing(path, suffix=".keras") as tmp:
        model.save(tmp)


def export_run_models(model, paths) -> tuple:
    """Writes a finished run's models.

    The SavedModel (when TensorFlow is installed) and ``model.keras``, under
    the run's `RunPaths`. The caller records them in the run's summary and
    writes it afterwards: its presence marks the run complete.

    Returns:
        (saved_model, keras_model): their paths relative to the run
        directory; saved_model is None without TensorFlow.
    """
    saved_model = None
    if tensorflow_available():
        export_saved_model(model, paths.saved_model)
        saved_model = os.path.relpath(paths.saved_model, paths.root)
    save_keras_model(model, paths.keras_model)
    return saved_model, os.path.relpath(paths.keras_model, paths.root)

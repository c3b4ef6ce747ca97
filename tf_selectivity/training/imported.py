"""A model trained elsewhere (e.g. a published PyTorch checkpoint) as a run directory.

`python -m tf_selectivity.analyze` reads run directories: a `summary.json`
naming the run's condition and probes, and the model (SavedModel and/or
`model.keras`). `save_as_run` writes those for a `SelectivityModel` that was
not trained by `train`, such as a ResNet whose weights came from
`tf_selectivity.models.load_torch_weights`, so that it is analysed (test
accuracy, selectivity, precision, dead units, CCA against other runs) like
our own runs.
"""

from __future__ import annotations

import os

import keras

from tf_selectivity.models.probe import all_layers
from tf_selectivity.training.export import export_run_models
from tf_selectivity.training.run_dir import RunPaths
from tf_selectivity.training.summary import RunSummary

__all__ = ["save_as_run"]


def save_as_run(model, output_dir: str, *, dataset: str, seed: int = 0, source: str | None = None) -> str:
    """Writes `model` as a completed run directory that the analysis reads.

    Args:
        model: a `SelectivityModel` (e.g. from `build_model` with weights from
            `load_torch_weights`).
        output_dir: the run directory to create; it must not hold a run yet.
        dataset: the dataset whose test split the analysis evaluates the
            model on ("cifar10", "imagefolder:PATH", ...; docs: Data).
        seed: the run's seed in the analysis tables (CCA leaves out pairs of
            runs that share one).
        source: where the weights came from (e.g. the checkpoint's path or
            URL), recorded in summary.json.

    Returns:
        The run directory's absolute path.

    Raises:
        ValueError: not a `SelectivityModel` with probes.
        FileExistsError: `output_dir` already holds a run.
    """
    from tf_selectivity.models import SelectivityModel

    if not isinstance(model, SelectivityModel) or not model.probes:
        raise ValueError(
            "save_as_run needs a SelectivityModel with SelectivityProbe layers "
            "(e.g. tf_selectivity.models.build_model('resnet20'))."
        )
    paths = RunPaths(output_dir)
    if os.path.exists(paths.summary) or os.path.exists(paths.config):
        raise FileExistsError(f"{paths.root} already holds a run; choose another directory.")
    activation, leaky_slope = _activation(model)
    os.makedirs(paths.root, exist_ok=True)
    saved_model, keras_model = export_run_models(model, paths)
    summary = RunSummary(
        model=model.name,
        alpha=model.alpha,
        seed=int(seed),
        activation=activation,
        leaky_slope=leaky_slope,
        probe_names=model.probe_names,
        dataset=dataset,
        num_classes=int(model.outputs[0].shape[-1]),
        image_shape=list(model.inputs[0].shape[1:]),
        imported=True,
        source=source,
        saved_model=saved_model,
        keras_model=keras_model,
    )
    summary.write(paths.summary)  # last: the run is complete
    return paths.root


def _activation(model) -> tuple:
    """("relu", 0.0) or ("leaky_relu", slope) from the model's layers."""
    slopes = {
        float(layer.negative_slope)
        for layer in all_layers(model)
        if isinstance(layer, keras.layers.LeakyReLU)
    }
    if not slopes:
        return "relu", 0.0
    if len(slopes) > 1:
        raise ValueError(f"the model's leaky ReLUs have different slopes: {sorted(slopes)}.")
    return "leaky_relu", slopes.pop()

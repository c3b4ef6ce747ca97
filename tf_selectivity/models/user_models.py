"""Users' own networks by name: ``--model=module.path:function``.

The training command, the sweep and `build_model` take, besides the built-in
names, a *model spec* ``module.path:function``: the module is imported (it
must be importable: on ``sys.path``, e.g. the current directory of ``python
-m tf_selectivity.train``) and the function is called to build an
uninstrumented Keras classifier, which `instrument` then probes.

The function is called with keyword arguments:

* ``num_classes`` (int) and ``input_shape`` (tuple, e.g. ``(32, 32, 3)``):
  always;
* ``pixel_mean`` and ``pixel_std`` (per-channel tuples of the training
  split, in the [0, 255] pixel scale), ``activation`` ("relu" or
  "leaky_relu") and ``leaky_slope``: only those its signature names (or all,
  with ``**kwargs``).

The model receives raw float pixels in [0, 255] (the training pipeline does
not normalize): put the preprocessing your network expects inside it (e.g.
``keras.layers.Rescaling`` or ``Normalization(mean=pixel_mean, ...)``). It
must return a Functional or Sequential model that outputs class scores
(logits, or a softmax that `instrument` removes). A model that already holds
`SelectivityProbe` layers is used as it is, with every probe set to the
run's alpha.
"""

from __future__ import annotations

import importlib
import inspect
import re

__all__ = [
    "is_model_spec",
    "load_model_function",
    "check_model_function",
    "build_user_model",
    "UserModelError",
    "OPTIONAL_ARGUMENTS",
]

_SPEC = re.compile(r"^([A-Za-z_][\w.]*):([A-Za-z_]\w*)$")

class UserModelError(ValueError):
    """A user's model function cannot build a model the toolkit can train:
    it cannot be called as documented, raises, returns no Keras model, or
    its model cannot be instrumented (no layer to probe, a sigmoid output,
    the wrong number of classes or input shape). The message names the
    function."""


# Arguments passed only to functions that name them.
OPTIONAL_ARGUMENTS = ("pixel_mean", "pixel_std", "activation", "leaky_slope")


def is_model_spec(name: str) -> bool:
    """Whether `name` is a ``module.path:function`` spec (not a built-in name)."""
    return ":" in str(name)


def load_model_function(spec: str):
    """Imports ``module.path:function`` and returns the function.

    Raises:
        ValueError: malformed spec, module not importable, no such callable.
    """
    match = _SPEC.match(str(spec))
    if not match:
        raise ValueError(
            f"model spec {spec!r} is not of the form module.path:function "
            "(e.g. my_models:build_mobilenet)"
        )
    module_name, function_name = match.groups()
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(
            f"cannot import module {module_name!r} of `model={spec!r}` ({error}); run from the "
            "directory that holds it or add that directory to PYTHONPATH"
        ) from error
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ValueError(f"module {module_name!r} has no function {function_name!r} (`model={spec!r}`)")
    return function


def _accepted_arguments(function) -> tuple:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return ()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return OPTIONAL_ARGUMENTS
    names = {p.name for p in parameters}
    return tuple(name for name in OPTIONAL_ARGUMENTS if name in names)


def _call_arguments(spec, function, *, num_classes, input_shape, activation, leaky_slope, pixel_mean, pixel_std):
    """The keyword arguments `function` is called with; checks its signature.

    Raises:
        UserModelError: a non-default activation for a function that does
            not take it, or a signature that cannot take the arguments.
    """
    accepted = _accepted_arguments(function)
    optional = {
        "pixel_mean": pixel_mean,
        "pixel_std": pixel_std,
        "activation": activation,
        "leaky_slope": leaky_slope,
    }
    for name, default in (("activation", "relu"), ("leaky_slope", 0.0)):
        if name not in accepted and optional[name] != default:
            raise UserModelError(
                f"`{name}={optional[name]!r}` was given but {spec} does not take the argument {name!r}; "
                "the network defines its own activations"
            )
    arguments = {"num_classes": int(num_classes), "input_shape": tuple(int(d) for d in input_shape)}
    arguments.update({name: optional[name] for name in accepted if optional[name] is not None})
    try:
        inspect.signature(function).bind(**arguments)
    except TypeError as error:
        raise UserModelError(
            f"{spec} cannot be called with {', '.join(sorted(arguments))} ({error}); it must "
            "take num_classes and input_shape keyword arguments"
        ) from None
    except ValueError:
        pass  # no signature to check (a builtin or C callable)
    return arguments


def check_model_function(spec: str, activation: str = "relu", leaky_slope: float = 0.0):
    """Imports ``module.path:function`` and checks that it can be called as
    `build_user_model` calls it (with the pixel statistics a run has), without
    calling it. Needs no data; does not build the model.

    Returns:
        The function.

    Raises:
        ValueError: the spec cannot be loaded.
        UserModelError: its signature cannot take the arguments, or a
            non-default activation is given for a function without one.
    """
    function = load_model_function(spec)
    _call_arguments(
        spec, function, num_classes=2, input_shape=(32, 32, 3), activation=activation,
        leaky_slope=leaky_slope, pixel_mean=(0.0, 0.0, 0.0), pixel_std=(1.0, 1.0, 1.0),
    )
    return function


def build_user_model(
    spec: str,
    *,
    num_classes: int,
    alpha: float = 0.0,
    activation: str = "relu",
    leaky_slope: float = 0.0,
    input_shape=(32, 32, 3),
    pixel_mean=None,
    pixel_std=None,
):
    """Builds ``module.path:function`` and returns it instrumented.

    Args:
        spec: the model spec.
        num_classes: number of classes.
        alpha: selectivity regularizer scale of every probe.
        activation, leaky_slope: passed to functions that take them; a
            non-default value for a function that does not is an error.
        input_shape: one image's shape.
        pixel_mean, pixel_std: training-split statistics, passed to
            functions that take them.

    Returns:
        A `SelectivityModel` (see `instrument`).

    Raises:
        ValueError: the spec cannot be loaded.
        UserModelError: the function cannot be called with the arguments
            (or does not take a requested activation), raises, returns no
            Keras model, or its model does not fit the data or cannot be
            instrumented; the message names the function.
    """
    import keras

    from tf_selectivity.models.probe import find_probes
    from tf_selectivity.models.instrumentation import instrument
    from tf_selectivity.models.selectivity_model import SelectivityModel

    function = load_model_function(spec)
    arguments = _call_arguments(
        spec, function, num_classes=num_classes, input_shape=input_shape, activation=activation,
        leaky_slope=leaky_slope, pixel_mean=pixel_mean, pixel_std=pixel_std,
    )
    try:
        model = function(**arguments)
    except Exception as error:  # the user's code: any error is theirs to fix
        detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        raise UserModelError(f"{spec} raised {detail} when called to build the model") from error
    if model is None:
        raise UserModelError(f"{spec} returned None, not a Keras model (does it end with `return model`?)")
    if not isinstance(model, keras.Model):
        raise UserModelError(f"{spec} returned {type(model).__name__}, not a Keras model")
    model_shape = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else None
    if model_shape is not None and len(model.inputs) == 1 and any(
        m is not None and m != d for m, d in zip(model_shape, arguments["input_shape"])
    ):
        raise UserModelError(
            f"{spec} built a model for inputs of shape {model_shape}, but the images have shape "
            f"{arguments['input_shape']}; use the input_shape argument"
        )
    if find_probes(model):
        if not isinstance(model, SelectivityModel):
            model = SelectivityModel(model.inputs, model.outputs, name=model.name)
        model.set_alpha(alpha)
        if model.output_shape[-1] != num_classes:
            raise UserModelError(f"{spec} returned {model.output_shape[-1]} outputs for {num_classes} classes")
        return model
    try:
        return instrument(model, alpha=alpha, num_classes=int(num_classes))
    except ValueError as error:
        raise UserModelError(f"the model of {spec} cannot be instrumented: {error}") from None

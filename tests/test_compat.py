"""Each private Keras / keras-tuner API of `tf_selectivity.compat` still
exists in the installed versions and behaves as we rely on."""

import keras
import numpy as np
import pytest
from keras import ops

from tf_selectivity import compat


# ------------------------------------------------------------------ Keras


def _require(obj, name, needed_by):
    assert hasattr(obj, name), (
        f"{type(obj).__name__}.{name} is gone from Keras {keras.__version__}: "
        f"tf_selectivity.compat.{needed_by} needs a replacement."
    )


class _Recorder(keras.layers.Layer):
    """Returns its input plus the call-context argument `extra` when given."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        compat.register_call_context_args(self, "extra")

    def call(self, inputs, extra=None):
        return inputs if extra is None else inputs + extra


@pytest.mark.core
def test_register_call_context_args_reaches_nested_layers():
    _require(keras.layers.Layer(), "_register_call_context_args", "register_call_context_args")
    inner_inputs = keras.Input((2,))
    inner = keras.Model(inner_inputs, _Recorder()(keras.layers.Identity()(inner_inputs)))
    compat.register_call_context_args(inner, "extra")
    inputs = keras.Input((2,))
    outer = keras.Model(inputs, inner(inputs))
    compat.register_call_context_args(outer, "extra")
    x = np.ones((3, 2), "float32")
    np.testing.assert_allclose(ops.convert_to_numpy(outer(x)), x)
    # Through two Functional levels, as `outer(x, extra=...)` and as the
    # stateless call of Keras' JAX trainer.
    np.testing.assert_allclose(ops.convert_to_numpy(outer(x, extra=ops.ones((3, 2)) * 2)), x + 2)
    trainable = [v.value for v in outer.trainable_variables]
    non_trainable = [v.value for v in outer.non_trainable_variables]
    out, _ = outer.stateless_call(trainable, non_trainable, x, extra=ops.ones((3, 2)) * 5)
    np.testing.assert_allclose(ops.convert_to_numpy(out), x + 5)
    with pytest.raises(RuntimeError):
        compat.register_call_context_args(outer, "late")  # already called


@pytest.mark.core
def test_optimizer_variable_index_is_the_build_order():
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    _require(optimizer, "_get_variable_index", "optimizer_variable_index")
    variables = [keras.Variable(np.zeros(shape, "float32")) for shape in [(2,), (3, 1), (4,)]]
    optimizer.build(variables)
    assert [compat.optimizer_variable_index(optimizer, v) for v in variables] == [0, 1, 2]


@pytest.mark.core
def test_run_graph_calls_every_layer_in_order_with_its_tensors():
    inputs = keras.Input((3,), name="x")
    hidden = keras.layers.Dense(4, name="a")(inputs)
    outputs = keras.layers.Add(name="b")([keras.layers.Dense(4, name="c")(inputs), hidden])
    model = keras.Model(inputs, outputs)
    _require(model, "_run_through_graph", "run_graph")
    calls = []

    def call_layer(layer, *args, **kwargs):
        calls.append(layer.name)
        result = layer(*args, **kwargs)
        return ops.multiply(result, 2.0) if layer.name == "b" else result

    new_inputs = keras.Input((3,))
    new_outputs = compat.run_graph(model, [new_inputs], call_layer)
    assert sorted(calls[:2]) == ["a", "c"] and calls[2] == "b"
    rebuilt = keras.Model(new_inputs, new_outputs)
    x = np.arange(6, dtype="float32").reshape(2, 3)
    np.testing.assert_allclose(ops.convert_to_numpy(rebuilt(x)), 2 * ops.convert_to_numpy(model(x)), rtol=1e-6)


# ------------------------------------------------------------ keras-tuner

"""Each private Keras / keras-tuner API of `tf_selectivity.core.compat` still
exists in the installed versions and behaves as we rely on."""

import keras
import numpy as np
import pytest
from keras import ops

from tf_selectivity.core import compat


# ------------------------------------------------------------- TensorFlow


def test_each_mirrored_strategy_numbers_its_collectives_apart():
    """Two strategies in one process start their collective group keys at
    different numbers (the collision itself, 4 devices then 2, is trained
    through in `multi_device_check.py`)."""
    import tensorflow as tf

    _require(tf.distribute.MirroredStrategy, "_collective_key_base", "mirrored_strategy")
    devices = [device.name for device in tf.config.list_logical_devices("CPU")][:1]
    first, second = compat.mirrored_strategy(devices), compat.mirrored_strategy(devices)
    assert first.extended._collective_key_base != second.extended._collective_key_base
    assert tf.distribute.MirroredStrategy._collective_key_base == 0  # restored for anyone else


def test_a_later_session_start_makes_tensorboard_drop_the_steps_written_again(tmp_path):
    import tensorflow as tf
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator

    for first_step, steps in ((0, (0, 3, 6, 9)), (7, (9, 12))):  # a process, then its resumption
        writer = tf.summary.create_file_writer(str(tmp_path / str(first_step)))
        _require(writer, "_resource", "write_session_start")
        compat.write_session_start(writer, first_step)
        with writer.as_default():
            for step in steps:
                tf.summary.scalar("m", float(step + first_step), step=step)
        writer.close()
    for name in ("0", "7"):  # one run, its files in the order they were written
        for path in (tmp_path / name).iterdir():
            path.rename(tmp_path / f"{name}-{path.name}")
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    shown = [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in events.Tensors("m")]
    assert shown == [(0, 0.0), (3, 3.0), (6, 6.0), (9, 16.0), (12, 19.0)]


# ------------------------------------------------------------------ Keras


def _require(obj, name, needed_by):
    assert hasattr(obj, name), (
        f"{type(obj).__name__}.{name} is gone from Keras {keras.__version__}: "
        f"tf_selectivity.core.compat.{needed_by} needs a replacement."
    )


class _Recorder(keras.layers.Layer):
    """Returns its input plus the call-context argument `extra` when given."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        compat.register_call_context_args(self, "extra")

    def call(self, inputs, extra=None):
        return inputs if extra is None else inputs + extra


@pytest.mark.backends
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


@pytest.mark.backends
def test_optimizer_variable_index_is_the_build_order():
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    _require(optimizer, "_get_variable_index", "optimizer_variable_index")
    variables = [keras.Variable(np.zeros(shape, "float32")) for shape in [(2,), (3, 1), (4,)]]
    optimizer.build(variables)
    assert [compat.optimizer_variable_index(optimizer, v) for v in variables] == [0, 1, 2]


@pytest.mark.backends
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


def test_graph_cut_is_the_tensor_and_what_skips_around_it():
    inputs = keras.Input((3,), name="x")
    a = keras.layers.Dense(4, name="a")(inputs)
    b = keras.layers.Dense(4, name="b")(a)
    c = keras.layers.Dense(4, name="c")(b)
    outputs = keras.layers.Add(name="d")([c, a])  # a skips around b
    model = keras.Model(inputs, outputs)
    for name in ("_nodes_by_depth",):
        _require(model, name, "graph_cut")
    assert hasattr(b, "_keras_history"), "graph_cut needs KerasTensor._keras_history"
    assert [t.name for t in compat.graph_cut(model, b)] == [b.name, a.name]
    assert [t.name for t in compat.graph_cut(model, c)] == [c.name, a.name]
    assert [t.name for t in compat.graph_cut(model, a)] == [a.name]
    # The rest of the network from the cut gives the model's outputs.
    rest = keras.Model(compat.graph_cut(model, b), outputs)
    x = np.arange(6, dtype="float32").reshape(2, 3)
    prefix = keras.Model(inputs, compat.graph_cut(model, b))
    np.testing.assert_allclose(ops.convert_to_numpy(rest(prefix(x))), ops.convert_to_numpy(model(x)), rtol=1e-6)


# ------------------------------------------------------------ keras-tuner


def _require_kt(obj, name, needed_by):
    import keras_tuner

    assert hasattr(obj, name), (
        f"{getattr(obj, '__name__', type(obj).__name__)}.{name} is gone from keras-tuner {keras_tuner.__version__}: "
        f"tf_selectivity.core.compat.{needed_by} needs a replacement."
    )


def _kt_classes():
    import keras_tuner

    class Oracle(keras_tuner.Oracle):
        """A one-value space; counts `populate_space` calls."""

        def __init__(self, **kwargs):
            space = keras_tuner.HyperParameters()
            space.Fixed("x", 1)
            super().__init__(objective=keras_tuner.Objective("score", "max"), hyperparameters=space, **kwargs)
            self.populated = []

        def populate_space(self, trial_id):
            self.populated.append(trial_id)
            return {"status": "RUNNING", "values": {"x": 1}}

    class Tuner(keras_tuner.Tuner):
        def run_trial(self, trial, *args, **kwargs):
            return {"score": 1.0}

    return Oracle, Tuner


_KT_WARNINGS = pytest.mark.filterwarnings(
    "ignore:currentThread:DeprecationWarning", "ignore:getName:DeprecationWarning"
)


@_KT_WARNINGS
def test_oracle_trial_writes_take_keras_tuners_own_trial_writes(tmp_path):
    import glob

    import keras_tuner

    _require_kt(keras_tuner.Oracle, "_save_trial", "OracleTrialWrites")
    Oracle, Tuner = _kt_classes()

    class Recording(compat.OracleTrialWrites, Oracle):
        def write_trial(self, trial):
            self.written.append((trial.trial_id, trial.status, dict(trial.metrics.metrics)))

    oracle = Recording()
    oracle.written = []
    Tuner(oracle, directory=str(tmp_path), project_name="p")
    trial = oracle.create_trial("t")
    oracle.update_trial(trial.trial_id, {"score": 0.5})
    assert [(i, status) for i, status, _ in oracle.written] == [(trial.trial_id, "RUNNING")] * 2, (
        "keras-tuner's create_trial/update_trial no longer write trial records through Oracle._save_trial: "
        "tf_selectivity.core.compat.OracleTrialWrites needs a replacement."
    )
    assert "score" in oracle.written[-1][2]
    assert not glob.glob(str(tmp_path / "p" / "trial_*" / "trial.json"))  # keras-tuner wrote none itself


@_KT_WARNINGS
def test_keras_tuners_own_retries_and_failure_stop_are_off_with_its_public_parameters(tmp_path):
    """`SweepOracle` leaves retries and the failure stop to the sweep's scheduler
    and switches keras-tuner's off with ``max_retries_per_trial=0`` and
    ``max_consecutive_failed_trials=None``: then keras-tuner's own `end_trial`
    queues nothing to re-run and never stops the search."""
    Oracle, Tuner = _kt_classes()
    oracle = Oracle(max_retries_per_trial=0, max_consecutive_failed_trials=None)
    Tuner(oracle, directory=str(tmp_path), project_name="p")
    for _ in range(5):  # more failures in a row than keras-tuner's default limit (3)
        trial = oracle.create_trial("t")
        trial.status, trial.message = "INVALID", "boom"
        oracle.end_trial(trial)
        assert oracle.trials[trial.trial_id].status == "FAILED", (
            "keras-tuner retries a trial with max_retries_per_trial=0: the sweep's SweepOracle must switch "
            "its retries off another way"
        )
    assert oracle.get_state()["retry_queue"] == [] and len(oracle.populated) == 5, (
        "keras-tuner re-ran a failed trial instead of asking populate_space"
    )


@_KT_WARNINGS
def test_tuner_state_file_is_the_file_keras_tuner_reloads_from(tmp_path):
    import os

    import keras_tuner

    _require_kt(keras_tuner.Tuner, "_get_tuner_fname", "tuner_state_file")
    Oracle, Tuner = _kt_classes()

    class Counting(Oracle):
        reloads = 0

        def reload(self):
            Counting.reloads += 1
            super().reload()

    tuner = Tuner(Counting(), directory=str(tmp_path), project_name="p")
    tuner.save()
    path = compat.tuner_state_file(tuner)
    assert os.path.exists(path) and os.path.dirname(path) == tuner.project_dir
    Tuner(Counting(), directory=str(tmp_path), project_name="p")
    assert Counting.reloads == 1
    os.remove(path)
    Tuner(Counting(), directory=str(tmp_path), project_name="p")
    assert Counting.reloads == 1, "keras-tuner reloads from another file than compat.tuner_state_file says"


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker_env(monkeypatch, port):
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", str(port))


@_KT_WARNINGS
def test_oracle_client_timeout_bounds_a_workers_wait_for_an_absent_chief(tmp_path, monkeypatch):
    import time

    import grpc
    from keras_tuner.src.distribute import oracle_client

    _require_kt(oracle_client, "TIMEOUT", "set_oracle_client_timeout")
    Oracle, Tuner = _kt_classes()
    _worker_env(monkeypatch, _free_port())  # nobody listens there
    client = Tuner(Oracle(), directory=str(tmp_path), project_name="p").oracle  # keras-tuner's gRPC client
    original = oracle_client.TIMEOUT
    compat.set_oracle_client_timeout(0.5)
    try:
        start = time.monotonic()
        with pytest.raises(grpc.RpcError) as error:
            client.get_space()
        assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - start < 10, "keras-tuner's client no longer reads oracle_client.TIMEOUT per call"
    finally:
        compat.set_oracle_client_timeout(original)


@_KT_WARNINGS
def test_add_oracle_service_serves_an_oracle_to_keras_tuners_client(tmp_path, monkeypatch):
    from concurrent import futures

    import grpc

    from keras_tuner.src.distribute import oracle_client

    Oracle, Tuner = _kt_classes()
    original = oracle_client.TIMEOUT
    chief_oracle = Oracle()
    Tuner(chief_oracle, directory=str(tmp_path / "chief"), project_name="p")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    compat.add_oracle_service(server, chief_oracle)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        _worker_env(monkeypatch, port)
        client = Tuner(Oracle(), directory=str(tmp_path / "worker"), project_name="p").oracle
        compat.set_oracle_client_timeout(30)
        trial = client.create_trial("tuner0")
        assert trial.hyperparameters.values == {"x": 1}
        assert list(chief_oracle.trials) == [trial.trial_id] and chief_oracle.populated == [trial.trial_id]
    finally:
        compat.set_oracle_client_timeout(original)
        server.stop(grace=None)

"""The few private TensorFlow, Keras and keras-tuner APIs we use, in one place.

Everything else in the package uses public APIs only. What is here has no
public equivalent in the versions we support (setup.cfg pins them); each
entry says why it is needed, and `tests/test_compat.py` checks each one
against the installed libraries, so that an upgrade that removes or changes
one fails with a message naming it instead of somewhere deep in training.

Import this module lazily (inside functions) from modules that must not
load Keras at import time.
"""

from __future__ import annotations

__all__ = [
    "register_call_context_args",
    "optimizer_variable_index",
    "run_graph",
    "graph_cut",
    "OracleTrialWrites",
    "tuner_state_file",
    "set_oracle_client_timeout",
    "add_oracle_service",
    "mirrored_strategy",
    "write_session_start",
]


# ---------------------------------------------------------------------------
# TensorFlow
# ---------------------------------------------------------------------------

# Collective group keys each strategy may use: far more than one strategy's
# all-reduces ever need (TensorFlow's own tests step by the same amount).
_COLLECTIVE_KEYS_PER_STRATEGY = 100_000
_strategies_made = 0


def mirrored_strategy(devices: list):
    """A `tf.distribute.MirroredStrategy` over `devices` whose collective
    operations cannot collide with another strategy's in this process.

    Every MirroredStrategy numbers its collective groups from 1, and the
    runtime keeps a group's size by its number, so a second strategy over a
    different number of devices (``--devices=4``, then ``--devices=2``, in
    one Python session) fails in its first all-reduce ("joining a group with
    size 2, but that group has size 4"). The strategy reads where its
    numbering starts from the private class attribute
    ``MirroredStrategy._collective_key_base`` when it is built, the way
    TensorFlow's own multi-strategy tests separate theirs; there is no
    argument for it.
    """
    global _strategies_made
    import tensorflow as tf

    cls = tf.distribute.MirroredStrategy
    saved = cls._collective_key_base
    cls._collective_key_base = _strategies_made * _COLLECTIVE_KEYS_PER_STRATEGY
    try:
        strategy = cls(list(devices))
    finally:
        cls._collective_key_base = saved
    _strategies_made += 1
    return strategy


def write_session_start(writer, step: int) -> None:
    """Writes TensorBoard's restart event at `step` through a `tf.summary` writer.

    When TensorBoard reads a ``SessionLog(status=START)`` event at step S
    in a run's event files after an earlier one (a restart), it drops that
    run's events at S and after read before it (``purge_orphaned_data``):
    how a run resumed from a checkpoint replaces what a killed process wrote
    for the steps it trains again.
    `tf.summary` writers write summaries only; the raw op ``ImportEvent``
    writes a whole event, given the writer's private resource handle
    ``ResourceSummaryWriter._resource``.
    """
    import time

    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    event = event_pb2.Event(step=int(step), wall_time=time.time(),
                            session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START))
    tf.raw_ops.ImportEvent(writer=writer._resource, event=event.SerializeToString())


# ---------------------------------------------------------------------------
# Keras
# ---------------------------------------------------------------------------


def register_call_context_args(layer, *names) -> None:
    """Makes Keras pass the keyword arguments `names` down to nested layers.

    A *call-context argument* given to an outer layer's call (e.g.
    ``model(x, selectivity_labels=y)``) reaches every nested layer that
    registered it, the way `training` does. `SelectivityModel` and
    `SelectivityProbe` register the batch labels this way. Keras 3 has it only
    as the private ``Layer._register_call_context_args`` (documented in its
    docstring, no public alias).

    Args:
        layer: a `keras.layers.Layer` (or model) that has not been called yet.
        *names: argument names.

    Raises:
        RuntimeError: the layer was already called (raised by Keras).
    """
    layer._register_call_context_args(*names)


def optimizer_variable_index(optimizer, variable) -> int:
    """Index of `variable` among the variables `optimizer.build` was given.

    The slot variables an optimizer creates with `add_optimizer_variables`
    are in that order; Keras' own optimizers find a variable's slot with the
    private ``_get_variable_index``, which also maps TensorFlow's distributed
    variables to their key.
    """
    return optimizer._get_variable_index(variable)


def run_graph(model, inputs, call_layer):
    """A Functional model's graph run on `inputs`, calling `call_layer` per layer.

    ``call_layer(layer, *args, **kwargs)`` is called in graph order with each
    layer and the tensors (and call arguments) of its call, and returns its
    outputs; the model's outputs on those are returned. This is the walk
    Keras' public `keras.models.clone_model(..., call_function=...)` does,
    without the model it then builds: `instrument` flattens nested models
    into the one graph it builds, and `clone_model` refuses to build a
    Functional from a nested model's intermediate inputs ("Output ... is not
    connected to `inputs`"). Keras 3 has the walk only as the private
    ``Function._run_through_graph``.

    Args:
        model: a Functional `keras.Model`.
        inputs: tensors for its inputs, flat (in `keras.tree.flatten` order).
        call_layer: (layer, *args, **kwargs) -> outputs.

    Returns:
        The outputs, structured as the model's.
    """
    return model._run_through_graph(inputs, operation_fn=lambda operation: operation, call_fn=call_layer)


def graph_cut(model, tensor) -> list:
    """The tensors of `model`'s graph that the rest of it needs from `tensor`'s prefix.

    The prefix is the node that computes `tensor` and every node it depends
    on; the cut is every tensor a prefix node (or an input) produces that a
    node outside the prefix consumes: `tensor` itself, and those that skip
    around it (a residual block's input beside its first ReLU). Computing
    the cut once and running the model's other nodes from it gives the
    model's outputs. Keras 3 has no public API for a node's parents
    (``KerasTensor._keras_history``, ``Node.parent_nodes``,
    ``Function._nodes_by_depth``).

    Args:
        model: a Functional `keras.Model`.
        tensor: a symbolic tensor of `model`'s graph.

    Returns:
        The cut's symbolic tensors, in graph order (each once).
    """
    def producer(t):
        history = t._keras_history
        return history.operation._inbound_nodes[history.node_index]

    prefix, stack = set(), [producer(tensor)]
    while stack:
        node = stack.pop()
        if id(node) not in prefix:
            prefix.add(id(node))
            stack.extend(node.parent_nodes)
    cut, seen = [], set()
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if id(node) in prefix:
                continue
            for t in node.input_tensors:
                if id(t) not in seen and id(producer(t)) in prefix:
                    seen.add(id(t))
                    cut.append(t)
    return cut


# ---------------------------------------------------------------------------
# keras-tuner
# ---------------------------------------------------------------------------


class OracleTrialWrites:
    """Mixin for a `keras_tuner.Oracle` subclass that writes its own trial records.

    keras-tuner's `Oracle.create_trial` and `Oracle.update_trial` write each
    trial's ``trial.json`` in place, through the private
    ``Oracle._save_trial(trial)``: a process killed mid-write leaves a
    truncated record that no later run can reload. With this mixin first in
    the bases, those writes call the subclass' public ``write_trial(trial)``
    instead (the sweep's replaces the file atomically). keras-tuner has no
    public hook for where or how a trial record is written.
    """

    def write_trial(self, trial) -> None:
        """Writes `trial`'s record (``trial.get_state()``); the subclass defines it."""
        raise NotImplementedError(
            f"{type(self).__name__} uses OracleTrialWrites and must define write_trial(trial)"
        )

    def _save_trial(self, trial):
        self.write_trial(trial)


def tuner_state_file(tuner) -> str:
    """The file keras-tuner's `BaseTuner.save` writes and its constructor
    reloads from (``<project_dir>/<tuner_id>.json``): the private
    ``BaseTuner._get_tuner_fname``."""
    return tuner._get_tuner_fname()


def set_oracle_client_timeout(seconds: float) -> None:
    """How long a worker's calls to the chief wait (keras-tuner: 1 hour).

    keras-tuner's `OracleClient` (created by `BaseTuner` on a worker) passes
    the module constant ``keras_tuner.src.distribute.oracle_client.TIMEOUT``
    as the gRPC timeout of every call, read at each call; there is no
    argument or public setting for it.
    """
    from keras_tuner.src.distribute import oracle_client

    oracle_client.TIMEOUT = seconds


def add_oracle_service(server, oracle) -> None:
    """Adds keras-tuner's gRPC oracle service for `oracle` to a `grpc.server`.

    This is what keras-tuner's chief runs (`oracle_chief.start_server`), whose
    loop waits forever for a worker that died; keras-tuner exports neither
    its `OracleServicer` nor its protocol modules.
    """
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    protos.get_service_grpc().add_OracleServicer_to_server(oracle_chief.OracleServicer(oracle), server)

"""Batch statistics over the replicas of a data-parallel step.

Under `tf.distribute` (TensorFlow) each replica runs the step on its part
of the global batch, and the optimizer sums the replicas' gradients. A
statistic of the whole batch, such as the class means of the selectivity
index, then needs every replica's sums and counts (`sum_over_replicas`),
and each replica's loss its weight in the global one (`replica_weights`),
from its own `add_loss` terms (`own_replica_terms`).
On JAX a data-parallel step is one program over sharded arrays: it sees the
global batch, and both functions are identities. These are the only
backend-specific calls of the probes and the steps for data parallelism.
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["replicas_in_sync", "sum_over_replicas", "replica_weights", "own_replica_terms"]


def _replica_context():
    """TensorFlow's replica context of a step under a strategy with several
    replicas, else None (one device, cross-replica code, JAX)."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync <= 1:
        return None
    return context


def replicas_in_sync() -> int:
    """The replicas that run the current step together (1 outside one)."""
    context = _replica_context()
    return 1 if context is None else int(context.num_replicas_in_sync)


def sum_over_replicas(*values):
    """`values` summed over the replicas of the current step (all-reduce).

    Differentiable: the gradient of an all-reduced sum is the all-reduced
    upstream gradient, so each replica's parameters receive the gradient of
    the global statistic through their own share of the sums.

    Args:
        *values: tensors, the same shapes on every replica.

    Returns:
        A tuple of the summed tensors (the values themselves outside a
        multi-replica step).
    """
    context = _replica_context()
    if context is None:
        return values
    import tensorflow as tf

    return tuple(context.all_reduce(tf.distribute.ReduceOp.SUM, list(values)))


def replica_weights(local_batch_size):
    """How much this replica's loss terms weigh in the step's gradient.

    The optimizer sums the replicas' gradients. A per-sample mean over the
    local batch (the cross-entropy) is weighted by the replica's share of
    the global batch, ``local / global`` (exact even for an epoch's last,
    unevenly split batch); a term that is already the global batch's (the
    probes' selectivity terms) or is a per-replica estimate of one (weight
    regularizers, other `add_loss` terms, as Keras scales them) by
    ``1 / replicas``.

    Args:
        local_batch_size: this replica's number of samples (a scalar).

    Returns:
        (sample_weight, term_weight): float32 scalars, (1, 1) outside a
        multi-replica step.
    """
    context = _replica_context()
    if context is None:
        return 1.0, 1.0
    local = ops.cast(local_batch_size, "float32")
    (total,) = sum_over_replicas(local)
    return ops.divide_no_nan(local, total), 1.0 / context.num_replicas_in_sync


def own_replica_terms(terms) -> list:
    """The loss terms (`Layer.losses`) that this replica's forward pass added.

    The replicas of a `tf.distribute` step run the same layers in threads of
    their own, and a layer's `add_loss` list is the layer's, not the
    thread's: once the replicas' forward passes interleave (each all-reduce
    is a synchronization point), a layer's list holds every replica's terms.
    This replica's are those placed on its device.

    Args:
        terms: tensors (e.g. ``model.losses``).

    Returns:
        The terms of this replica (all of them outside a multi-replica step,
        and those without a device).
    """
    context = _replica_context()
    if context is None:
        return list(terms)
    device = context.replica_id_in_sync_group.device
    return [term for term in terms if not getattr(term, "device", "") or term.device == device]

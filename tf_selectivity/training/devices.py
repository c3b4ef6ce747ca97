"""Data-parallel training over several devices: `--devices` resolved.

One run's step over N devices through Keras' own engines, none of ours:

* **JAX**: `keras.distribution.DataParallel` over a one-axis `DeviceMesh`.
  The variables are created replicated inside its scope; each batch is put
  on the devices split along its first axis (`DataParallel.shard_batch`),
  so the compiled step sees the global batch and XLA's partitioner adds the
  sums over devices. Several hosts: every process calls
  `keras.distribution.initialize` (`core.cli.join_hosts`) before JAX starts;
  ``devices="all"`` then counts every host's devices.
* **TensorFlow**: `tf.distribute.MirroredStrategy` over the local GPUs (the
  logical CPU devices where there is no GPU). Not over several machines:
  Keras 3's TensorFlow trainer fails under
  `tf.distribute.MultiWorkerMirroredStrategy` (it reduces each scalar log
  along an axis it does not have), so a ``TF_CONFIG`` cluster is refused
  with that reason. The model is built
  and compiled in its scope (mirrored variables); the tf.data batches are
  split over the replicas (`DataParallel.distribute_dataset`); each replica
  runs the step on its part and the optimizer sums the replicas' gradients.
  So that the sum is one device's gradient, the steps weight each
  replica's loss (`tf_selectivity.models.replicas`) and the probes compute
  their index from the class sums and counts of every replica.

The global batch is ``TrainConfig.batch_size`` on any number of devices: a
run's result does not depend on the devices (up to float32 rounding), except
through batch normalization, whose batch statistics are each device's.

With one device nothing changes: no strategy, no distribution.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os

import keras

from tf_selectivity.training.config import ConfigValueError, TrainConfig

__all__ = ["DataParallel", "available_devices", "data_parallel"]


def _tensorflow_devices() -> list:
    """TensorFlow's logical GPUs, or its logical CPUs where there is none."""
    import tensorflow as tf

    return tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")


def available_devices(backend: str | None = None) -> list:
    """The devices `--devices=all` trains on, for the running backend.

    JAX: ``jax.devices()`` (every process' devices after
    `core.cli.join_hosts`). TensorFlow: the local logical GPUs, else the
    logical CPUs (one, unless configured otherwise before TensorFlow ran an
    op).
    """
    backend = backend or keras.backend.backend()
    if backend == "jax":
        import jax

        return list(jax.devices())
    if backend == "tensorflow":
        return _tensorflow_devices()
    raise ValueError(f"data-parallel training needs the TensorFlow or the JAX backend; got {backend!r}")


@dataclasses.dataclass
class DataParallel:
    """The devices one run trains on and the engine that spreads it.

    Attributes:
        count: the devices (replicas) of one step.
        engine: `keras.distribution.DataParallel` (JAX) or a
            `tf.distribute.Strategy` (TensorFlow); None on one device.
    """

    count: int = 1
    engine: object = None

    def scope(self):
        """The context to build, compile and train the model in (variables
        created in it are replicated on every device)."""
        return self.engine.scope() if self.engine is not None else contextlib.nullcontext()

    def distribute_dataset(self, dataset):
        """TensorFlow: a tf.data dataset of global batches, split over the
        replicas (each takes ``batch / count`` samples of every batch)."""
        if self.engine is None:
            return dataset
        return self.engine.experimental_distribute_dataset(dataset)

    def shard_batch(self, batch):
        """JAX: a global batch (NumPy arrays) placed on the devices, split
        along its first axis; a batch that does not split evenly (an
        epoch's last) is replicated instead: each device then computes it
        whole, with the same result.

        Several processes: every process holds the same global batch (the
        host pipelines are pure functions of seed, epoch and step) and
        contributes its own rows.
        """
        if self.engine is None:
            return batch
        import jax
        import numpy as np

        mesh = self.engine.device_mesh.backend_mesh

        def place(array):
            array = np.asarray(array)
            if array.ndim == 0 or array.shape[0] % self.count:
                sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
                if jax.process_count() == 1:
                    return jax.device_put(array, sharding)
                return jax.make_array_from_process_local_data(sharding, array, array.shape)
            layout = self.engine.get_data_layout(array.shape).backend_layout
            if jax.process_count() == 1:
                return jax.device_put(array, layout)
            rows = array.shape[0] // jax.process_count()
            local = array[jax.process_index() * rows:(jax.process_index() + 1) * rows]
            return jax.make_array_from_process_local_data(layout, local, array.shape)

        return jax.tree_util.tree_map(place, batch)


def _resolve_count(config: TrainConfig, devices: list) -> int:
    wanted = config.device_count
    if wanted is None:
        return len(devices)
    if wanted > len(devices):
        raise ConfigValueError(
            "devices",
            f"asks for {wanted} devices; this process sees {len(devices)} "
            f"({', '.join(sorted({_kind(device) for device in devices}))})",
        )
    return wanted


def _kind(device) -> str:
    platform = getattr(device, "platform", None) or getattr(device, "device_type", "device")
    return str(platform).lower()


def _multi_worker() -> bool:
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    except ValueError:
        return False
    return sum(len(tasks) for tasks in cluster.values()) > 1


def data_parallel(config: TrainConfig, backend: str | None = None) -> DataParallel:
    """The `DataParallel` of a run's ``devices`` setting on this machine.

    Checks the devices and the batch before anything is built: call after
    the backend started (TensorFlow's logical devices are fixed by then).

    Args:
        config: the run's `TrainConfig`.
        backend: `keras.backend.backend()` by default.

    Returns:
        A `DataParallel`; one device has no engine.

    Raises:
        ConfigValueError: more devices than this process sees (``devices``),
            or a global batch that does not split evenly over them
            (``batch_size``, ``per_device_batch_size``).
    """
    from tf_selectivity.core.cli import join_hosts

    backend = backend or keras.backend.backend()
    # The command lines joined when they started the backend; a library
    # caller may not have (once per process, before JAX lists its devices).
    join_hosts()
    if backend == "tensorflow" and _multi_worker():
        raise ConfigValueError(
            "devices",
            "cannot train over the machines TF_CONFIG names on TensorFlow: Keras 3's TensorFlow trainer fails "
            "under tf.distribute's MultiWorkerMirroredStrategy; train over several machines on JAX "
            "(KERAS_BACKEND=jax, KERAS_DISTRIBUTION_* variables; docs: Many devices), or unset TF_CONFIG to train "
            "on this machine's devices",
        )
    devices = available_devices(backend)
    count = _resolve_count(config, devices)
    config.check_device_batch(count)
    if count == 1:
        return DataParallel()
    if backend == "jax":
        mesh = keras.distribution.DeviceMesh((count,), ["batch"], devices[:count])
        return DataParallel(count, keras.distribution.DataParallel(device_mesh=mesh))
    return DataParallel(count, _tensorflow_strategy(tuple(device.name for device in devices[:count])))


@functools.cache
def _tensorflow_strategy(device_names):
    """One strategy per set of devices in a process (a sweep trains one run
    after another in one process); each new one numbers its collective
    operations apart from the others' (`compat.mirrored_strategy`)."""
    from tf_selectivity.core.compat import mirrored_strategy

    return mirrored_strategy(device_names)

"""Data-parallel training on simulated CPU devices, in a process of its own.

    python tests/multi_device_check.py DEVICES OUTPUT_DIR

The simulated devices must exist before the backend starts: JAX reads
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (set by the caller),
TensorFlow gets N logical CPUs here, before any op runs. So
`tests/test_multi_device.py` runs this script once per backend
(``KERAS_BACKEND``) and reads the JSON it prints: for each check the values
of one device and of DEVICES devices, compared there.

Checks:

* **step**: one training step of a small BN-free network (probes after two
  convolutions) on one device and on DEVICES devices, from the same weights
  and the same global batch, at alpha = 0 and alpha = -2: the loss, the
  selectivity term, the probes' batch SI and the updated weights; and what
  each device saw (its part of the batch), and the mean of the parts' SIs
  (which the global SI must not be); and the same step with batch
  normalization, whose batch statistics are each replica's on TensorFlow
  and the global batch's on JAX.
* **run**: `train` of a 2-epoch run with ``--selectivity_every=1`` on
  RUN_DEVICES (2) of them, straight, and stopped after epoch 1 (a kill) and
  resumed: their histories and summaries; and the first epoch on one
  device.
"""

import json
import os
import sys

DEVICES = int(sys.argv[1])
OUTPUT = sys.argv[2]
# The run checks train on two of the devices: a 2-epoch run, twice, is most
# of this script's time, and two replicas take the same code path as more.
RUN_DEVICES = min(2, DEVICES)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * DEVICES)

import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from training_callbacks import Interrupt  # noqa: E402
from tf_selectivity.models import SelectivityModel  # noqa: E402
from tf_selectivity.models.blocks import FusedBatchNormalization  # noqa: E402
from tf_selectivity.models.probe import SelectivityProbe  # noqa: E402
from tf_selectivity.training import TorchSGD, TrainConfig, train  # noqa: E402
from tf_selectivity.training.devices import data_parallel  # noqa: E402

CLASSES, BATCH = 3, 16


def small_network(alpha, run_eagerly=False, batch_norm=False):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inputs)
    if batch_norm:
        x = FusedBatchNormalization(name="bn")(x)
    x = SelectivityProbe(CLASSES, alpha, name="probe1")(x)
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv2")(x)
    x = SelectivityProbe(CLASSES, alpha, name="probe2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = SelectivityModel(inputs, keras.layers.Dense(CLASSES, name="logits")(x))
    model.compile(optimizer=TorchSGD(0.1, momentum=0.9, weight_decay_l2=1e-4), run_eagerly=run_eagerly)
    return model


def one_step(alpha, devices, weights, x, y, batch_norm=False):
    """The logs, probe SIs, new weights and local batch sizes of one step.

    One device, the reference, runs eagerly (op by op: no compilation,
    which is most of this check's time).
    """
    config = TrainConfig(devices=str(devices), batch_size=BATCH, output_dir="unused")
    parallel = data_parallel(config)
    with parallel.scope():
        model = small_network(alpha, run_eagerly=devices == 1, batch_norm=batch_norm)
        model.set_weights(weights)
        model.optimizer.build(model.trainable_variables)
        if keras.backend.backend() == "jax":
            import jax

            from tf_selectivity.training.device_loop import model_state, write_model_state

            batch = parallel.shard_batch((x, y))
            shards = getattr(batch[0], "addressable_shards", None)
            local = [int(shard.data.shape[0]) for shard in shards] if shards else [len(x)]
            step = model.train_step if devices == 1 else jax.jit(model.train_step)
            logs, state = step(model_state(model), batch)
            write_model_state(model, state)
        else:
            import tensorflow as tf

            dataset = parallel.distribute_dataset(tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH))
            model.make_train_function()
            model.train_function(iter(dataset))
            logs = model.get_metrics_result()
            count = model.loss_tracker.count.value  # a SyncOnReadVariable: one copy per replica
            local = [float(v.numpy()) for v in getattr(count, "values", [count])]
    return {
        "logs": {name: float(ops.convert_to_numpy(value)) for name, value in logs.items()},
        "probe_si": [float(ops.convert_to_numpy(p.batch_selectivity.value)) for p in model.probes],
        "weights": [np.asarray(w).ravel().tolist() for w in model.get_weights()],
        "local_batches": local,
    }


def parts_mean_si(weights, x, y, parts):
    """The mean over the batch's parts of each probe's SI of that part alone."""
    model = small_network(0.0)
    model.set_weights(weights)
    values = []
    for xs, ys in zip(np.split(x, parts), np.split(y, parts)):
        model(xs, training=True, selectivity_labels=ys)
        values.append([float(ops.convert_to_numpy(p.batch_selectivity.value)) for p in model.probes])
    return np.mean(values, axis=0).tolist()


def jit_compile_over_devices():
    """`--jit_compile` resolved in the run's scope: auto, and the error of true."""
    from tf_selectivity.training.config import ConfigValueError
    from tf_selectivity.training.loop import resolve_jit_compile

    with data_parallel(TrainConfig(devices=str(DEVICES), batch_size=BATCH, output_dir="unused")).scope():
        auto = resolve_jit_compile("auto")
        try:
            resolve_jit_compile("true")
            error = None
        except ConfigValueError as refused:
            error = refused.for_flags()
    return {"auto": auto, "true": error}


def step_checks():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (BATCH, 8, 8, 3)).astype("float32")
    y = np.tile(np.arange(CLASSES), BATCH)[:BATCH].astype("int32")
    rng.shuffle(y)
    keras.utils.set_random_seed(0)
    weights = small_network(0.0).get_weights()
    results = {}
    for alpha in (0.0, -2.0):
        results[str(alpha)] = {
            "one": one_step(alpha, 1, weights, x, y), "many": one_step(alpha, DEVICES, weights, x, y),
        }
    results["parts_mean_si"] = parts_mean_si(weights, x, y, DEVICES)
    results["jit_compile"] = jit_compile_over_devices()
    keras.utils.set_random_seed(0)
    weights = small_network(0.0, batch_norm=True).get_weights()
    results["batch_norm"] = {
        "one": one_step(0.0, 1, weights, x, y, batch_norm=True),
        "many": one_step(0.0, DEVICES, weights, x, y, batch_norm=True),
    }
    return results


def run_checks():
    base = dict(
        # Batches of one size each (every shape is one more compilation).
        model="user_model_zoo:small_cnn", dataset="synthetic:train=60,test=24,size=8,classes=3", epochs=2,
        batch_size=8, eval_batch_size=12, lr_milestones=(), alpha=-1.0, selectivity_every=1,
        learning_rate=0.05, lr_scaling="linear", lr_reference_batch=4,
        data_on_device="false", validation_fraction=0.2,
    )
    one_device = dict(base, epochs=1)
    train(TrainConfig(**one_device, output_dir=os.path.join(OUTPUT, "one")), verbose=0)
    straight = train(TrainConfig(**base, devices=str(RUN_DEVICES), output_dir=os.path.join(OUTPUT, "straight")),
                     verbose=0)
    config = TrainConfig(**base, devices=str(RUN_DEVICES), output_dir=os.path.join(OUTPUT, "resumed"))
    try:
        train(config, callbacks=[Interrupt(1)], verbose=0)
    except KeyboardInterrupt:
        pass
    state = os.path.join(config.output_dir, "checkpoint", "state.json")
    stopped_after = json.load(open(state))["epochs_done"]
    resumed = train(config, verbose=0)
    history = lambda run: json.load(open(os.path.join(OUTPUT, run, "checkpoint", "state.json")))["history"]
    keep = ("test_accuracy", "test_mean_selectivity", "test_layer_selectivity", "devices", "per_device_batch_size",
            "learning_rate")
    return {
        "stopped_after": stopped_after,
        "one_device_epoch": history("one")[0],
        "straight": {"summary": {k: getattr(straight, k) for k in keep}, "history": history("straight")},
        "resumed": {"summary": {k: getattr(resumed, k) for k in keep}, "history": history("resumed")},
    }


if __name__ == "__main__":
    import time

    started = time.time()
    step = step_checks()
    print(f"step checks: {time.time() - started:.1f} s", file=sys.stderr)
    started = time.time()
    run = run_checks()
    print(f"run checks: {time.time() - started:.1f} s", file=sys.stderr)
    print(json.dumps({"step": step, "run": run}))

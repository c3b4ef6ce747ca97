"""Training throughput (images/second) of the real train step, side by side.

Measures `SelectivityModel.fit` steps for a model, batch size, alphas and
backend, optionally beside the paper's network in PyTorch
(../shared/bench/torch_resnet20_reference.py). Each measurement runs in its own
process; the configurations are interleaved and repeated, and the median is
reported, so that ratios come from the same minutes of a noisy machine::

    python benchmarks/bench_train.py --model=resnet20 --batch_size=256 \
        --alphas=0,-1 --torch_reference=../shared/bench/torch_resnet20_reference.py

    KERAS_BACKEND=jax python benchmarks/bench_train.py ...   # the JAX backend

One measurement (``--worker``) times `--steps` training steps after
`--warmup` steps (compilation excluded) on random images, fed through one of
the input paths (`--inputs`, several are measured side by side):

* ``pipeline``: what training uses on this backend without the data on the
  device (tf.data ops on TensorFlow, the NumPy `ImageBatches` on JAX);
* ``pydataset``: `ImageBatches` (shuffling, pad-crop-flip augmentation in
  NumPy, a `keras.utils.PyDataset`) on any backend;
* ``arrays``: ready float32 arrays through Keras' own NumPy adapter (no
  augmentation): the cost of `fit` without our pipeline;
* ``device`` (JAX): the splits on the device, shuffling and augmentation
  inside the compiled program (`training/device_loop.py`);
  ``device_noaug``: the same without the crop and flip (what they cost);
* ``packedN`` (JAX), e.g. ``packed4``: N replicates (seeds 0..N-1) in one
  program, data on the device (`training/replicates.py`); images per second
  of all replicates together, ms per packed step. Beside ``device`` it
  answers whether packing beats N single runs one after another.

The host's ceiling: ``--model=trivial`` is a network whose compute is
negligible (average pool, one 1x1 convolution, a probe, a dense layer), so
that images per second measure the input path and the step's overhead::

    KERAS_BACKEND=jax python benchmarks/bench_train.py --model=trivial \
        --inputs=pydataset,arrays,device --alphas=-1 --steps=200 --warmup=20
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

# As the command lines set them (tf_selectivity.core.cli.ENVIRONMENT), before TensorFlow loads.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from absl import app, flags  # noqa: E402

flags.DEFINE_string(
    "model", "resnet20", "Model name, or trivial (a model of negligible compute: the host's ceiling)."
)
flags.DEFINE_integer("batch_size", 256, "Training batch size.")
flags.DEFINE_list("alphas", ["0", "-1"], "Alphas to measure (0 = no regularizer gradient).")
flags.DEFINE_integer("steps", 20, "Timed training steps per measurement.")
flags.DEFINE_integer("warmup", 5, "Untimed steps before timing (compilation, caches).")
flags.DEFINE_integer("repeats", 3, "Interleaved repetitions; the median is reported.")
flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"], "XLA for the train step.")
INPUTS = ("pipeline", "loop", "pydataset", "arrays", "device", "device_noaug")
flags.DEFINE_list(
    "inputs", ["pipeline"],
    "Input paths to measure side by side: pipeline (fit on tf.data on TensorFlow, ImageBatches on "
    "JAX), loop (the same batches through the training command's epoch loop, training/epochs.py), pydataset (ImageBatches), arrays (float32 arrays through Keras' adapter), device "
    "(JAX: data on the device, compiled epochs), packedN (JAX: N replicates in one program).",
)
flags.DEFINE_string("input", "pipeline", "Internal: input path of a --worker measurement.")
flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16"], "Compute precision.")
flags.DEFINE_string("torch_reference", None, "Path of torch_resnet20_reference.py to run beside ours.")
flags.DEFINE_string("torch_device", "cpu", "Device of the PyTorch reference (cpu or cuda).")
flags.DEFINE_list(
    "steps_per_execution", ["1"],
    "Values of compile(steps_per_execution=...) to measure side by side (fit's input paths).",
)
flags.DEFINE_boolean("worker", False, "Internal: run one measurement and print it as JSON.")
flags.DEFINE_float("alpha", 0.0, "Internal: alpha of a --worker measurement.")

FLAGS = flags.FLAGS


def build_trivial_model(alpha, input_shape=(32, 32, 3), num_classes=10):
    """A `SelectivityModel` whose compute is negligible next to its input path.

    Average pool (4x4), one 1x1 convolution (16 units, ReLU), a probe, global
    average pool and a dense layer: the train step's overhead, the
    regularizer and the input path are all that is left to time.
    """
    import keras

    from tf_selectivity.models.probe import SelectivityProbe
    from tf_selectivity.models import SelectivityModel

    inputs = keras.Input(input_shape)
    x = keras.layers.AveragePooling2D(4)(inputs)
    x = keras.layers.Conv2D(16, 1, activation="relu")(x)
    x = SelectivityProbe(num_classes=num_classes, alpha=alpha)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return SelectivityModel(inputs, keras.layers.Dense(num_classes)(x), name="trivial")


def _time_device_path(model, images, labels, batch_size, steps, warmup, augment=True):
    """Seconds of `steps` steps on the device path (after `warmup` steps)."""
    import jax

    from tf_selectivity.training.device_loop import DeviceTrainer, model_state

    trainer = DeviceTrainer(
        model, images, labels, images[:batch_size], labels[:batch_size],
        batch_size=batch_size, eval_batch_size=batch_size, seed=0, augment=augment,
    )
    state = trainer.functions.reset_metrics(model_state(model))
    plan = trainer.epoch_plan(0)
    state, logs = trainer.run_steps(state, plan, 0, warmup)
    jax.block_until_ready((state, logs))
    start = time.perf_counter()
    state, logs = trainer.run_steps(state, plan, warmup, warmup + steps)
    jax.block_until_ready((state, logs))
    return time.perf_counter() - start, trainer.compiled_loop


def benchmark_packed(model_name, batch_size, alpha, precision, replicates, steps, warmup, repeats=3) -> float:
    """Aggregate training images per second of `replicates` packed seeds.

    Synthetic CIFAR-sized data (32x32x3, 10 classes) on the device; seeds
    0 .. replicates - 1; SGD as the paper's. Times `steps` packed steps
    after `warmup` steps (which include compilation), `repeats` times, and
    takes the median. The steps run as a packed `DeviceTrainer` runs them
    (a compiled loop on accelerators, one packed step per call on CPUs).

    Returns:
        Images per second, all replicates together.
    """
    import jax
    import keras
    import numpy as np

    from tf_selectivity.models import build_model
    from tf_selectivity.training import TorchSGD
    from tf_selectivity.training.device_loop import DeviceTrainer

    keras.mixed_precision.set_dtype_policy(precision)
    rng = np.random.default_rng(0)
    count = batch_size * (warmup + steps)
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, count)
    models = []
    for seed in range(replicates):
        keras.utils.set_random_seed(seed)
        model = build_model(model_name, alpha=alpha)
        model.compile(optimizer=TorchSGD(0.1, momentum=0.9, weight_decay_l2=1e-4))
        models.append(model)
    trainer = DeviceTrainer(
        models, images, labels, images[:batch_size], labels[:batch_size], seeds=list(range(replicates)),
        batch_size=batch_size, eval_batch_size=batch_size,
    )
    state = trainer.reset_metrics(trainer.state())
    plan = trainer.epoch_plan(np.zeros(replicates) if replicates > 1 else 0)
    state, logs = trainer.run_steps(state, plan, 0, warmup)  # compiles
    jax.block_until_ready((state, logs))
    times = []
    for _ in range(max(1, int(repeats))):
        started = time.perf_counter()
        state, logs = trainer.run_steps(state, plan, warmup, warmup + steps)
        jax.block_until_ready((state, logs))
        times.append(time.perf_counter() - started)
    losses = np.asarray(logs["loss"])
    if not np.isfinite(losses).all():
        raise FloatingPointError(f"a replicate's loss is not finite: {losses}")
    return replicates * batch_size * steps / statistics.median(times)


def _time_epoch_loop(model, images, labels, batch_size, steps, warmup):
    """(seconds, timed steps) of one epoch of the training command's loop
    (`run_epochs` with this backend's host runner), timed as the fit paths
    are: from the end of step `warmup` to the end of the epoch."""
    import types

    import keras

    from tf_selectivity.training.epochs import Lane, run_epochs
    from tf_selectivity.training.host_epochs import host_runner

    config = types.SimpleNamespace(batch_size=batch_size, eval_batch_size=batch_size, seed=0, augment=True)
    data = types.SimpleNamespace(
        train_images=images, train_labels=labels,
        validation_images=images[:batch_size], validation_labels=labels[:batch_size],
    )
    runner = host_runner(model, config, data, progress=True)
    marks = {}

    class Timer(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if "start" not in marks and batch + 1 >= warmup:
                float(keras.ops.convert_to_numpy(logs["loss"]))  # waits for the step
                marks["start"], marks["first"] = time.perf_counter(), batch + 1

        def on_test_begin(self, logs=None):  # the epoch's training steps are done
            marks["end"] = time.perf_counter()

    callbacks = keras.callbacks.CallbackList([Timer()], model=model, epochs=1, steps=runner.steps_per_epoch)
    run_epochs(runner, [Lane(model, callbacks, 0)], epochs=1)
    return marks["end"] - marks["start"], runner.steps_per_epoch - marks["first"]


def measure_once(model_name, batch_size, alpha, steps, warmup, jit_compile, input_kind, precision,
                 steps_per_execution=1):
    """Images/second of `steps` train steps of our model (one process)."""
    import keras
    import numpy as np

    from tf_selectivity.data import ImageBatches
    from tf_selectivity.models import build_model
    from tf_selectivity.training import TorchSGD, resolve_jit_compile

    if input_kind.startswith("packed"):
        if keras.backend.backend() != "jax":
            raise SystemExit("--inputs=packedN needs KERAS_BACKEND=jax")
        replicates = int(input_kind[len("packed"):])
        img_per_s = benchmark_packed(
            model_name, batch_size, alpha, precision, replicates, steps, warmup, repeats=1
        )
        return {
            "framework": f"keras-{keras.backend.backend()}", "model": model_name, "alpha": alpha,
            "batch_size": batch_size, "jit_compile": True, "input": input_kind, "precision": precision,
            "steps_per_execution": 1, "img_per_s": img_per_s,
            "ms_per_step": 1e3 * replicates * batch_size / img_per_s,
        }
    keras.mixed_precision.set_dtype_policy(precision)
    keras.utils.set_random_seed(0)
    if model_name == "trivial":
        model = build_trivial_model(alpha)
    else:
        model = build_model(model_name, alpha=alpha)
    jit = resolve_jit_compile(jit_compile)
    model.compile(
        optimizer=TorchSGD(0.1, momentum=0.9, weight_decay_l2=1e-4), jit_compile=jit,
        steps_per_execution=steps_per_execution,
    )
    rng = np.random.default_rng(0)
    count = batch_size * (steps + warmup)
    images = rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=count)
    result = {
        "framework": f"keras-{keras.backend.backend()}",
        "model": model_name,
        "alpha": alpha,
        "batch_size": batch_size,
        "jit_compile": jit,
        "input": input_kind,
        "precision": precision,
        "steps_per_execution": steps_per_execution,
    }
    if input_kind.startswith("device"):
        if keras.backend.backend() != "jax":
            raise SystemExit("--inputs=device needs KERAS_BACKEND=jax")
        seconds, compiled_loop = _time_device_path(
            model, images, labels, batch_size, steps, warmup, augment=input_kind == "device"
        )
        result["compiled_loop"] = compiled_loop
    elif input_kind == "loop":
        seconds, steps = _time_epoch_loop(model, images, labels, batch_size, steps, warmup)
    else:
        if input_kind == "pipeline" and keras.backend.backend() == "tensorflow":
            from tf_selectivity.data.tf_pipeline import training_dataset

            data = training_dataset(images, labels, batch_size, seed=0, first_epoch=0, epochs=1)
            fit_args = dict(x=data, steps_per_epoch=steps + warmup)
        elif input_kind in ("pipeline", "pydataset"):
            workers = 2 if (os.cpu_count() or 1) > 2 else 1
            data = ImageBatches(images, labels, batch_size, shuffle=True, augment=True, workers=workers)
            fit_args = dict(x=data, shuffle=False)
        else:
            fit_args = dict(x=images.astype("float32"), y=labels, batch_size=batch_size, shuffle=False)

        class Timer(keras.callbacks.Callback):
            # With steps_per_execution = k, Keras calls the batch hooks once
            # per k steps, at batch indices k - 1, 2k - 1, ...
            def on_train_batch_end(self, batch, logs=None):
                if not hasattr(self, "start") and batch + 1 >= warmup:
                    # Logs are tensors until read: reading one waits for the step.
                    float(logs["loss"])
                    self.start = time.perf_counter()
                    self.first = batch + 1

            def on_train_end(self, logs=None):
                self.end = time.perf_counter()

        timer = Timer()
        model.fit(**fit_args, epochs=1, verbose=0, callbacks=[timer])
        seconds = timer.end - timer.start
        steps = steps + warmup - timer.first
    result["img_per_s"] = batch_size * steps / seconds
    result["ms_per_step"] = 1e3 * seconds / steps
    return result


def _run_worker(alpha, input_kind, steps_per_execution):
    command = [
        sys.executable, os.path.abspath(__file__), "--worker", f"--alpha={alpha}",
        f"--model={FLAGS.model}", f"--batch_size={FLAGS.batch_size}", f"--steps={FLAGS.steps}",
        f"--warmup={FLAGS.warmup}", f"--jit_compile={FLAGS.jit_compile}", f"--input={input_kind}",
        f"--precision={FLAGS.precision}", f"--steps_per_execution={steps_per_execution}",
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def _run_torch():
    command = [sys.executable, FLAGS.torch_reference, str(FLAGS.steps), str(FLAGS.batch_size), FLAGS.torch_device]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = output.strip().splitlines()[-1]
    return {"framework": "torch", "img_per_s": float(line.rsplit("img_per_s=", 1)[1]), "raw": line}


def _config_name(alpha, input_kind, steps_per_execution):
    name = f"alpha={alpha:g} input={input_kind}"
    if steps_per_execution != 1:
        name += f" spe={steps_per_execution}"
    return name


def main(argv):
    del argv
    if FLAGS.worker:
        result = measure_once(
            FLAGS.model, FLAGS.batch_size, FLAGS.alpha, FLAGS.steps, FLAGS.warmup,
            FLAGS.jit_compile, FLAGS.input, FLAGS.precision, int(FLAGS.steps_per_execution[0]),
        )
        print(json.dumps(result))
        return 0
    unknown = [i for i in FLAGS.inputs if i not in INPUTS and not (i.startswith("packed") and i[6:].isdigit())]
    if unknown:
        raise app.UsageError(f"--inputs: unknown {', '.join(unknown)}; choose from {', '.join(INPUTS)}")
    alphas = [float(a) for a in FLAGS.alphas]
    spes = [int(k) for k in FLAGS.steps_per_execution]
    configs = {
        _config_name(a, i, k): (a, i, k) for a in alphas for i in FLAGS.inputs for k in spes
    }
    names = list(configs) + (["torch"] if FLAGS.torch_reference else [])
    samples = {name: [] for name in names}
    step_ms = {name: [] for name in names}
    meta = {}
    for repeat in range(FLAGS.repeats):
        # Rotate the order every repeat: on a busy or thermally throttled
        # machine the first (or last) slot of a round is not a fair place.
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            if name == "torch":
                result = _run_torch()
                samples["torch"].append(result["img_per_s"])
                step_ms["torch"].append(1e3 * FLAGS.batch_size / result["img_per_s"])
                print(f"[{repeat + 1}/{FLAGS.repeats}] {result['raw']}", flush=True)
                continue
            result = _run_worker(*configs[name])
            meta = result
            samples[name].append(result["img_per_s"])
            step_ms[name].append(result["ms_per_step"])
            print(
                f"[{repeat + 1}/{FLAGS.repeats}] ours {name}: {result['img_per_s']:.1f} img/s, "
                f"{result['ms_per_step']:.2f} ms/step",
                flush=True,
            )
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(
        f"\n{meta['framework']} model={FLAGS.model} batch={FLAGS.batch_size} jit={meta['jit_compile']} "
        f"precision={FLAGS.precision} (median of {FLAGS.repeats})"
    )
    for name, value in medians.items():
        print(f"  {name:>36}: {value:10.1f} img/s {statistics.median(step_ms[name]):8.2f} ms/step")
    first_input = FLAGS.inputs[0]
    for alpha in alphas:
        base = medians[_config_name(alpha, first_input, spes[0])]
        for input_kind in FLAGS.inputs:
            for k in spes:
                name = _config_name(alpha, input_kind, k)
                if name != _config_name(alpha, first_input, spes[0]):
                    print(f"  {name} / {_config_name(alpha, first_input, spes[0])}: {medians[name] / base:.2f}x")
    for input_kind in FLAGS.inputs:
        for k in spes:
            base = medians.get(_config_name(0.0, input_kind, k))
            for alpha in alphas:
                if alpha != 0 and base:
                    cost = 1 - medians[_config_name(alpha, input_kind, k)] / base
                    print(f"  regularizer cost at alpha={alpha:g} ({input_kind}): {100 * cost:.1f}% of alpha=0 throughput")
    if "torch" in medians:
        for name in configs:
            print(f"  ours ({name}) / PyTorch reference: {medians[name] / medians['torch']:.2f}x")
    return 0


if __name__ == "__main__":
    app.run(main)

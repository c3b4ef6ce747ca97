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
`--warmup` steps (compilation excluded) on random images, fed either through
the real input pipeline (`ImageBatches`: shuffling, pad-crop-flip augmentation)
or as ready float32 batches (`--input=arrays`, the compute alone).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tf_selectivity  # noqa: F401,E402  (before Keras: enables TensorFlow's oneDNN kernels)
from absl import app, flags  # noqa: E402

flags.DEFINE_string("model", "resnet20", "Model name.")
flags.DEFINE_integer("batch_size", 256, "Training batch size.")
flags.DEFINE_list("alphas", ["0", "-1"], "Alphas to measure (0 = no regularizer gradient).")
flags.DEFINE_integer("steps", 20, "Timed training steps per measurement.")
flags.DEFINE_integer("warmup", 5, "Untimed steps before timing (compilation, caches).")
flags.DEFINE_integer("repeats", 3, "Interleaved repetitions; the median is reported.")
flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"], "XLA for the train step.")
flags.DEFINE_enum(
    "input", "pipeline", ["pipeline", "pydataset", "arrays"],
    "pipeline: what training uses on this backend (tf.data ops on TensorFlow, the NumPy "
    "PyDataset on JAX); pydataset: the NumPy PyDataset on any backend; arrays: ready batches.",
)
flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16"], "Compute precision.")
flags.DEFINE_string("torch_reference", None, "Path of torch_resnet20_reference.py to run beside ours.")
flags.DEFINE_string("torch_device", "cpu", "Device of the PyTorch reference (cpu or cuda).")
flags.DEFINE_boolean("worker", False, "Internal: run one measurement and print it as JSON.")
flags.DEFINE_float("alpha", 0.0, "Internal: alpha of a --worker measurement.")

FLAGS = flags.FLAGS


def measure_once(model_name, batch_size, alpha, steps, warmup, jit_compile, input_kind, precision):
    """Images/second of `steps` train steps of our model (one process)."""
    import keras
    import numpy as np

    from tf_selectivity.data import ImageBatches
    from tf_selectivity.models import build_model
    from tf_selectivity.training import TorchSGD, resolve_jit_compile

    keras.mixed_precision.set_dtype_policy(precision)
    keras.utils.set_random_seed(0)
    model = build_model(model_name, alpha=alpha)
    jit = resolve_jit_compile(jit_compile)
    model.compile(optimizer=TorchSGD(0.1, momentum=0.9, weight_decay_l2=1e-4), jit_compile=jit)
    rng = np.random.default_rng(0)
    count = batch_size * (steps + warmup)
    images = rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=count)
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
        def on_train_batch_end(self, batch, logs=None):
            if batch == warmup - 1:
                # Logs are tensors until read: reading one waits for the step.
                float(logs["loss"])
                self.start = time.perf_counter()

        def on_train_end(self, logs=None):
            self.end = time.perf_counter()

    timer = Timer()
    model.fit(**fit_args, epochs=1, verbose=0, callbacks=[timer])
    return {
        "framework": f"keras-{keras.backend.backend()}",
        "model": model_name,
        "alpha": alpha,
        "batch_size": batch_size,
        "jit_compile": jit,
        "input": input_kind,
        "precision": precision,
        "img_per_s": batch_size * steps / (timer.end - timer.start),
    }


def _run_worker(alpha):
    command = [
        sys.executable, os.path.abspath(__file__), "--worker", f"--alpha={alpha}",
        f"--model={FLAGS.model}", f"--batch_size={FLAGS.batch_size}", f"--steps={FLAGS.steps}",
        f"--warmup={FLAGS.warmup}", f"--jit_compile={FLAGS.jit_compile}", f"--input={FLAGS.input}",
        f"--precision={FLAGS.precision}",
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def _run_torch():
    command = [sys.executable, FLAGS.torch_reference, str(FLAGS.steps), str(FLAGS.batch_size), FLAGS.torch_device]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = output.strip().splitlines()[-1]
    return {"framework": "torch", "img_per_s": float(line.rsplit("img_per_s=", 1)[1]), "raw": line}


def main(argv):
    del argv
    if FLAGS.worker:
        result = measure_once(
            FLAGS.model, FLAGS.batch_size, FLAGS.alpha, FLAGS.steps, FLAGS.warmup,
            FLAGS.jit_compile, FLAGS.input, FLAGS.precision,
        )
        print(json.dumps(result))
        return 0
    alphas = [float(a) for a in FLAGS.alphas]
    samples = {f"alpha={a:g}": [] for a in alphas}
    if FLAGS.torch_reference:
        samples["torch"] = []
    meta = {}
    configs = [f"alpha={a:g}" for a in alphas] + (["torch"] if FLAGS.torch_reference else [])
    for repeat in range(FLAGS.repeats):
        # Rotate the order every repeat: on a busy or thermally throttled
        # machine the first (or last) slot of a round is not a fair place.
        shift = repeat % len(configs)
        for name in configs[shift:] + configs[:shift]:
            if name == "torch":
                result = _run_torch()
                samples["torch"].append(result["img_per_s"])
                print(f"[{repeat + 1}/{FLAGS.repeats}] {result['raw']}", flush=True)
                continue
            alpha = float(name.split("=", 1)[1])
            result = _run_worker(alpha)
            meta = result
            samples[name].append(result["img_per_s"])
            print(f"[{repeat + 1}/{FLAGS.repeats}] ours {name}: {result['img_per_s']:.1f} img/s", flush=True)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(
        f"\n{meta['framework']} model={FLAGS.model} batch={FLAGS.batch_size} jit={meta['jit_compile']} "
        f"input={FLAGS.input} precision={FLAGS.precision} (median of {FLAGS.repeats})"
    )
    for name, value in medians.items():
        print(f"  {name:>12}: {value:8.1f} img/s")
    base = medians.get("alpha=0")
    for alpha in alphas:
        if alpha != 0 and base:
            cost = 1 - medians[f"alpha={alpha:g}"] / base
            print(f"  regularizer cost at alpha={alpha:g}: {100 * cost:.1f}% of alpha=0 throughput")
    if "torch" in medians and base:
        print(f"  ours (alpha=0) / PyTorch reference: {base / medians['torch']:.2f}x")
        for alpha in alphas:
            if alpha != 0:
                print(f"  ours (alpha={alpha:g}) / PyTorch reference: {medians[f'alpha={alpha:g}'] / medians['torch']:.2f}x")
    return 0


if __name__ == "__main__":
    app.run(main)

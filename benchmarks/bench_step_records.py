"""What the records inside epochs cost: one step-resolution SI evaluation, one kept checkpoint.

Builds a run's model (ResNet20 by default, split selectivity on) and the
runner `train` would use on this backend (TensorFlow: tf.data; JAX: the data
on the device), then times, after a warm-up of each:

* one selectivity evaluation at a step (`validate_now`: the validation
  split's pass with `SplitSelectivity`, the training state left as it is),
  the cost of every `--selectivity_every_steps` record inside an epoch;
* one training step (the median of a few), for scale;
* one kept checkpoint (`StepEvents`' write of the weights and optimizer
  state) and its size on disk.

    python benchmarks/bench_step_records.py --validation_images=5000
    KERAS_BACKEND=jax python benchmarks/bench_step_records.py
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tf_selectivity  # noqa: F401,E402
from absl import app, flags  # noqa: E402

flags.DEFINE_string("model", "resnet20", "Model name (tf_selectivity.models.MODELS).")
flags.DEFINE_integer("validation_images", 1000, "Images in the validation split.")
flags.DEFINE_integer("train_images", 1280, "Images in the training split.")
flags.DEFINE_integer("batch_size", 128, "Training batch size.")
flags.DEFINE_integer("eval_batch_size", 500, "Validation batch size.")
flags.DEFINE_integer("repeats", 3, "Timed repeats of each measurement.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import keras
    import numpy as np

    from tf_selectivity.data.sources import DatasetSplits
    from tf_selectivity.training import TrainConfig
    from tf_selectivity.training.loop import build_compiled_model
    from tf_selectivity.training.step_events import StepEvents

    rng = np.random.default_rng(0)
    size = (32, 32, 3)
    data = DatasetSplits(
        "synthetic", [str(i) for i in range(10)],
        rng.integers(0, 256, (FLAGS.train_images, *size), dtype=np.uint8), rng.integers(0, 10, FLAGS.train_images),
        rng.integers(0, 256, (FLAGS.validation_images, *size), dtype=np.uint8),
        rng.integers(0, 10, FLAGS.validation_images),
        rng.integers(0, 256, (10, *size), dtype=np.uint8), rng.integers(0, 10, 10),
    )
    config = TrainConfig(model=FLAGS.model, alpha=-1.0, epochs=1, batch_size=FLAGS.batch_size,
                         eval_batch_size=FLAGS.eval_batch_size, selectivity_every_steps=1, output_dir="unused")
    model, _ = build_compiled_model(config, data)
    if keras.backend.backend() == "jax":
        from tf_selectivity.training.device_loop import DeviceTrainer

        runner = DeviceTrainer(
            model, data.train_images, data.train_labels, data.validation_images, data.validation_labels,
            batch_size=config.batch_size, eval_batch_size=config.eval_batch_size, seed=0, progress=False,
        )
        where = "device loop"
    else:
        from tf_selectivity.training.host_epochs import host_runner

        runner, where = host_runner(model, config, data, progress=False), "tf.data"

    def timed(fn):
        fn()  # warm-up: tracing and compilation
        times = []
        for _ in range(FLAGS.repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    evaluation = timed(lambda: runner.validate_now([0]))
    steps = runner.steps_per_epoch
    epoch = timed(lambda: runner.train_epochs([0], [0], None))
    with tempfile.TemporaryDirectory() as run_dir:
        events = StepEvents(model, run_dir, steps_per_epoch=steps, epochs=1, keep_checkpoints=(0.0,))
        checkpoint = timed(lambda: events.record(0))
        nbytes = sum(os.path.getsize(os.path.join(run_dir, "checkpoints", n))
                     for n in os.listdir(os.path.join(run_dir, "checkpoints")))
    print(json.dumps({
        "backend": keras.backend.backend(), "runner": where, "model": FLAGS.model,
        "validation_images": FLAGS.validation_images, "eval_batch_size": FLAGS.eval_batch_size,
        "selectivity_evaluation_s": round(evaluation, 4),
        "train_step_s": round(epoch / steps, 4), "evaluation_in_train_steps": round(evaluation / (epoch / steps), 1),
        "kept_checkpoint_s": round(checkpoint, 4), "kept_checkpoint_bytes": nbytes,
    }))


if __name__ == "__main__":
    app.run(main)

"""The GPU check: throughput beside PyTorch, then a short real training.

Run it through ``benchmarks/gpu_check.sh`` (which sets the JAX backend);
everything is printed, and the last lines are one table. See
``benchmarks/METHOD.md`` for how the figures are taken and what they mean.

Environment:
    GPU_CHECK_SMALL=1      tiny settings that run anywhere (a CPU in minutes)
    GPU_CHECK_BUDGET=450   seconds the whole check may take; a section that
                           would not fit in what is left is skipped, with a
                           message
    GPU_CHECK_DATA=PATH    the CIFAR-10 image folder (default .data/cifar10-jpeg)
    TORCH_REFERENCE=PATH   torch_resnet20_reference.py (default: looked up in
                           shared/bench/ and ../shared/bench/)
    OUT=DIR                also write the table and the run's summary here

TensorFlow is blocked from being imported (as on the GPU machine, which has
none): the check exercises the JAX path only and fails if anything needs
TensorFlow.
"""

from __future__ import annotations

import importlib.abc
import json
import os
import statistics
import subprocess
import sys
import time

START = time.time()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _NoTensorFlow(importlib.abc.MetaPathFinder):
    """Makes `import tensorflow` fail, as on a machine without it."""

    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by gpu_check)")
        return None


sys.meta_path.insert(0, _NoTensorFlow())
os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from tf_selectivity.data import ImageBatches  # noqa: E402
from tf_selectivity.models import build_model  # noqa: E402
from tf_selectivity.training import TorchSGD, TrainConfig, train  # noqa: E402
from tf_selectivity.training.device_loop import DeviceTrainer, model_state  # noqa: E402

SMALL = os.environ.get("GPU_CHECK_SMALL", "0") not in ("", "0")
BUDGET = float(os.environ.get("GPU_CHECK_BUDGET", "450"))

if SMALL:
    SETTINGS = dict(model="resnet8", batch=32, steps=4, warmup=1, repeats=1, torch_steps=3,
                    host_steps=4, epochs=2, train_batch=64, max_train=512, milestones="1")
else:
    SETTINGS = dict(model="resnet20", batch=256, steps=100, warmup=5, repeats=3, torch_steps=100,
                    host_steps=60, epochs=30, train_batch=256, max_train=None, milestones="15,23")

ROWS = []  # (section, configuration, img/s or None, ms per step or None, note)


# Seconds kept for the training section while measuring throughput.
TRAINING_RESERVE = 60 if SMALL else 180


def left() -> float:
    return BUDGET - (time.time() - START)


def fits(seconds) -> bool:
    """Whether a throughput measurement of about `seconds` leaves the training its time."""
    return left() - TRAINING_RESERVE >= seconds


def log(message):
    print(f"[{time.time() - START:6.1f} s] {message}", flush=True)


def row(section, name, img_per_s=None, note="", images_per_step=None):
    images_per_step = images_per_step or SETTINGS["batch"]
    ms = 1e3 * images_per_step / img_per_s if img_per_s else None
    ROWS.append((section, name, img_per_s, ms, note))
    shown = f"{img_per_s:,.0f} img/s, {ms:.2f} ms/step" if img_per_s else note
    log(f"{section}: {name}: {shown}")


# ------------------------------------------------------------- throughput
def _synthetic(count, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    return images, rng.integers(0, 10, count)


def _model(alpha, precision):
    keras.mixed_precision.set_dtype_policy(precision)
    keras.utils.set_random_seed(0)
    model = build_model(SETTINGS["model"], alpha=alpha)
    model.compile(optimizer=TorchSGD(0.1, momentum=0.9, weight_decay_l2=1e-4))
    return model


def measure_device(alpha, precision):
    """Images/second of the on-device epoch loop (steps after warm-up, median)."""
    batch, steps, warmup = SETTINGS["batch"], SETTINGS["steps"], SETTINGS["warmup"]
    images, labels = _synthetic(batch * (warmup + steps))
    model = _model(alpha, precision)
    trainer = DeviceTrainer(
        model, images, labels, images[:batch], labels[:batch],
        batch_size=batch, eval_batch_size=batch, seed=0,
    )
    state = trainer.functions.reset_metrics(model_state(model))
    plan = trainer.epoch_plan(0)
    state, logs = trainer.run_steps(state, plan, 0, warmup)  # compiles
    jax.block_until_ready((state, logs))
    times = []
    for _ in range(SETTINGS["repeats"]):
        started = time.perf_counter()
        state, logs = trainer.run_steps(state, plan, warmup, warmup + steps)
        jax.block_until_ready((state, logs))
        times.append(time.perf_counter() - started)
    loss = float(logs["loss"])
    if not np.isfinite(loss):
        raise FloatingPointError(f"loss is {loss}")
    return batch * steps / statistics.median(times), trainer.compiled_loop


def measure_host(alpha, precision):
    """Images/second of the streaming path: `fit` on NumPy `ImageBatches`."""
    batch, steps, warmup = SETTINGS["batch"], SETTINGS["host_steps"], SETTINGS["warmup"]
    images, labels = _synthetic(batch * (warmup + steps))
    model = _model(alpha, precision)
    marks = {}

    class Timer(keras.callbacks.Callback):
        def on_train_batch_end(self, batch_index, logs=None):
            if batch_index == warmup - 1:
                float(logs["loss"])
                marks["start"] = time.perf_counter()

        def on_train_end(self, logs=None):
            marks["end"] = time.perf_counter()

    data = ImageBatches(images, labels, batch, shuffle=True, augment=True, workers=4)
    model.fit(data, epochs=1, verbose=0, shuffle=False, callbacks=[Timer()])
    return batch * steps / (marks["end"] - marks["start"])


def measure_data_parallel(count):
    """Images/second of one run's step over `count` devices (`--devices`:
    keras.distribution.DataParallel), SETTINGS["batch"] images per device.

    The model's own `train_step`, jitted as the host path runs it, on a
    global batch already split over the devices (`DataParallel.shard_batch`):
    the step's scaling, without the input pipeline.
    """
    from tf_selectivity.training.device_loop import build_metrics
    from tf_selectivity.training.devices import data_parallel

    batch, steps, warmup = SETTINGS["batch"] * count, SETTINGS["host_steps"], SETTINGS["warmup"]
    parallel = data_parallel(TrainConfig(devices=str(count), batch_size=batch, output_dir="unused"))
    images, labels = _synthetic(batch)
    with parallel.scope():
        model = _model(-1.0, "float32")
        model.optimizer.build(model.trainable_variables)
        build_metrics(model, images[:count], labels[:count])
        step = jax.jit(model.train_step)
        state = model_state(model)
        data = parallel.shard_batch((images.astype("float32"), labels.astype("int32")))
        for _ in range(warmup):
            logs, state = step(state, data)
        jax.block_until_ready(state)
        times = []
        for _ in range(SETTINGS["repeats"]):
            started = time.perf_counter()
            for _ in range(steps):
                logs, state = step(state, data)
            jax.block_until_ready((logs, state))
            times.append(time.perf_counter() - started)
    if not np.isfinite(float(logs["loss"])):
        raise FloatingPointError(f"loss is {float(logs['loss'])}")
    return batch * steps / statistics.median(times)


def data_parallel_section():
    """One device against all of them (`--devices`), per-device batch fixed."""
    name, per_device = SETTINGS["model"], SETTINGS["batch"]
    counts = sorted({1, jax.device_count()})
    rates = {}
    for count in counts:
        label = f"{name} b{per_device}/device alpha=-1 float32 --devices={count}"
        if not fits(60):
            row("data parallel", label, note="skipped: out of time")
            continue
        rates[count] = measure_data_parallel(count)
        note = f"{rates[count] / rates[1]:.2f}x one device" if count > 1 and 1 in rates else ""
        row("data parallel", label, rates[count], note=note, images_per_step=count * per_device)
    if len(counts) == 1:
        row("data parallel", "all devices", note="one device only: no scaling row")


def measure_packed(replicates, alpha, precision):
    """Aggregate img/s of `replicates` seeds packed in one program.

    `bench_train.benchmark_packed`: the epoch functions `jax.vmap`-ed over
    the replicates, as `train --seeds` and the sweep run them (a compiled
    loop of steps on a GPU), timed as `measure_device` (steps after
    warm-up, median of the repeats).
    """
    from bench_train import benchmark_packed  # benchmarks/ is this script's directory

    return benchmark_packed(
        SETTINGS["model"], SETTINGS["batch"], alpha, precision, replicates,
        SETTINGS["steps"], SETTINGS["warmup"], repeats=SETTINGS["repeats"],
    )


def torch_reference_path():
    candidates = [os.environ.get("TORCH_REFERENCE", "")] + [
        os.path.join(ROOT, "shared", "bench", "torch_resnet20_reference.py"),
        os.path.join(ROOT, "..", "shared", "bench", "torch_resnet20_reference.py"),
    ]
    return next((c for c in candidates if c and os.path.exists(c)), None)


def measure_torch(compiled):
    """The PyTorch reference's img/s on the same device (bf16 autocast on CUDA)."""
    path = torch_reference_path()
    if path is None:
        return None, "skipped: torch_resnet20_reference.py not found (set TORCH_REFERENCE)"
    try:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            return None, "skipped: torch is not installed"
    except ValueError:
        return None, "skipped: torch is not installed"
    device = "cuda" if any(d.platform == "gpu" for d in jax.devices()) else "cpu"
    command = [sys.executable, path, str(SETTINGS["torch_steps"]), str(SETTINGS["batch"]), device,
               "1" if compiled else "0"]
    try:
        output = subprocess.run(
            command, capture_output=True, text=True, timeout=max(30, left() - TRAINING_RESERVE)
        )
    except subprocess.TimeoutExpired:
        return None, "skipped: timed out"
    if output.returncode != 0:
        last = (output.stderr.strip().splitlines() or ["?"])[-1]
        return None, f"failed: {last[:100]}"
    line = output.stdout.strip().splitlines()[-1]
    return float(line.rsplit("img_per_s=", 1)[1]), line


def throughput_section():
    name = SETTINGS["model"]
    for precision in ("float32", "mixed_bfloat16"):
        for alpha in (0.0, -1.0):
            label = f"{name} b{SETTINGS['batch']} alpha={alpha:g} {precision} single, data on device"
            if not fits(40):
                row("throughput", label, note="skipped: out of time")
                continue
            img_per_s, compiled_loop = measure_device(alpha, precision)
            row("throughput", label, img_per_s, note="" if compiled_loop else "(one step per call)")
    for replicates in (8, 20):
        for precision in ("float32", "mixed_bfloat16"):
            label = f"{name} b{SETTINGS['batch']} alpha=-1 {precision} packed N={replicates}"
            if not fits(40):
                row("throughput", label, note="skipped: out of time")
                continue
            img_per_s = measure_packed(replicates, -1.0, precision)
            row("throughput", label, img_per_s, note="all replicates; ms per packed step",
                images_per_step=replicates * SETTINGS["batch"])
    label = f"{name} b{SETTINGS['batch']} alpha=-1 float32 single, host batches (ImageBatches + fit)"
    if not fits(40):
        row("throughput", label, note="skipped: out of time")
    else:
        row("throughput", label, measure_host(-1.0, "float32"))
    keras.mixed_precision.set_dtype_policy("float32")
    for compiled in (False, True):
        label = f"PyTorch reference ResNet20 b{SETTINGS['batch']} " + ("torch.compile" if compiled else "eager")
        if not fits(90 if compiled else 30):
            row("throughput", label, note="skipped: out of time")
            continue
        img_per_s, detail = measure_torch(compiled)
        row("throughput", label, img_per_s, note="" if img_per_s else detail)


# --------------------------------------------------------------- training
def training_section():
    data_path = os.environ.get("GPU_CHECK_DATA", os.path.join(ROOT, ".data", "cifar10-jpeg"))
    if os.path.isdir(data_path):
        dataset = f"imagefolder:{data_path}"
    elif SMALL:
        dataset = "synthetic:train=600,test=200,size=32"
    else:
        row("training", "CIFAR-10", note=f"skipped: no image folder at {data_path} (carry .data)")
        return None
    if left() < TRAINING_RESERVE * 0.75:
        row("training", dataset, note="skipped: out of time")
        return None
    keras.mixed_precision.set_dtype_policy("float32")
    output_dir = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"gpu_check_run_{os.getpid()}")
    config = TrainConfig(
        model=SETTINGS["model"], alpha=0.0, seed=0, dataset=dataset, epochs=SETTINGS["epochs"],
        batch_size=SETTINGS["train_batch"], lr_milestones=tuple(int(m) for m in SETTINGS["milestones"].split(",")),
        max_train_samples=SETTINGS["max_train"], data_on_device="true", output_dir=output_dir,
    )
    log(f"training {config.model} alpha=0 for {config.epochs} epochs on {dataset}, data on device")

    class EpochTimes(keras.callbacks.Callback):
        ends = []

        def on_epoch_end(self, epoch, logs=None):
            self.ends.append(time.perf_counter())

    timer = EpochTimes()
    started = time.time()
    summary = train(config, callbacks=[timer], verbose=2)
    wall = time.time() - started
    # The first epoch includes compilation; the others are the steady state.
    first = summary.train_seconds_this_session - (timer.ends[-1] - timer.ends[0])
    per_epoch = float(np.median(np.diff(timer.ends))) if len(timer.ends) > 1 else first
    label = (
        f"{config.model} alpha=0 {config.epochs} epochs, {summary.num_train} images: "
        f"test acc {summary.test_accuracy:.4f}, mean SI {summary.test_mean_selectivity:.3f}"
    )
    note = (
        f"{summary.train_seconds_this_session:.0f} s training ({first:.0f} s first epoch with "
        f"compilation, then {per_epoch:.2f} s/epoch), {wall:.0f} s in all; "
        f"200 epochs ~ {first + 199 * per_epoch:.0f} s"
    )
    row("training", label, note=note)
    out = os.environ.get("OUT")
    if out:
        for name in ("summary.json", "history.csv"):
            source = os.path.join(output_dir, name)
            if os.path.exists(source):
                with open(source) as f, open(os.path.join(out, f"gpu_check_{name}"), "w") as g:
                    g.write(f.read())
    return summary


# ---------------------------------------------------------------- attacks
ATTACK_IMAGES = 64 if SMALL else 10_000


def attack_section():
    """PGD-10 (epsilon 8, step 2, random start, the check's batch) on ResNet20 over
    ATTACK_IMAGES images: ours (jax.jit) and, with torch installed, the same
    attack in PyTorch eager on the same device from the same weights and
    random starts (benchmarks/bench_attacks.py's network and loop)."""
    batch, epsilon, step, steps = SETTINGS["batch"], 8.0, 2.0, 10
    label = f"PGD-10 eps 8 step 2 resnet20 b{batch} over {ATTACK_IMAGES:,} images (ours, jax.jit)"
    if not fits(60):
        row("attacks", label, note="skipped: out of time")
        return
    import importlib.util

    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from bench_attacks import MEAN, STD, torch_pgd, torch_resnet20

    from tf_selectivity.analysis.stages.robustness.attacks import perturb
    from tf_selectivity.models import load_torch_weights

    keras.mixed_precision.set_dtype_policy("float32")
    keras.utils.set_random_seed(0)
    model = build_model("resnet20")
    torch = net = None
    if importlib.util.find_spec("torch") is not None:
        import torch

        net = torch_resnet20(torch)
        load_torch_weights(model, net.state_dict(), normalize_mean=MEAN, normalize_std=STD)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (ATTACK_IMAGES + batch, 32, 32, 3)).astype("float32")
    labels = np.argmax(model.predict(images, batch_size=batch, verbose=0), axis=-1)
    attack = dict(attack="pgd", steps=steps, step_size=step, random_start=True, seed=1, batch_size=batch)
    perturb(model, images[:batch], labels[:batch], epsilon, **attack)  # compile
    start = time.perf_counter()
    ours = perturb(model, images[batch:], labels[batch:], epsilon, **attack)
    seconds = time.perf_counter() - start
    row("attacks", label, ATTACK_IMAGES / seconds, images_per_step=batch, note=f"{seconds:.1f} s; ms/step = per batch of 10 steps")
    if net is None:
        row("attacks", "PGD-10 in PyTorch", note="skipped: torch is not installed")
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = net.to(device)
    draws = np.random.default_rng(1)
    starts = [draws.uniform(-epsilon, epsilon, (min(batch, ATTACK_IMAGES - b), 32, 32, 3)).astype("float32")
              for b in range(0, ATTACK_IMAGES, batch)]
    torch_pgd(torch, net, images[:batch], labels[:batch], starts[0], epsilon, step, steps, device)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    outputs = []
    start = time.perf_counter()
    for index, begin in enumerate(range(batch, ATTACK_IMAGES + batch, batch)):
        outputs.append(torch_pgd(torch, net, images[begin : begin + batch], labels[begin : begin + batch],
                                 starts[index], epsilon, step, steps, device)[0])
    torch_seconds = time.perf_counter() - start
    differing = float(np.mean(np.abs(ours - np.concatenate(outputs)) > 1e-3))
    row("attacks", f"PGD-10 in PyTorch {torch.__version__} (autograd loop) on {device}", ATTACK_IMAGES / torch_seconds,
        images_per_step=batch, note=f"{torch_seconds:.1f} s; ours {torch_seconds / seconds:.2f}x; pixels differing {100 * differing:.2f}%")


# ------------------------------------------------------------------ table
def print_table():
    torch_eager = next((r[2] for r in ROWS if "eager" in r[1] and r[2]), None)
    lines = [
        "",
        f"gpu_check ({'SMALL settings: our rows use resnet8, so the torch ratios compare nothing' if SMALL else 'full'}): jax {jax.__version__}, keras "
        f"{keras.__version__}, device {jax.devices()[0].device_kind} ({jax.devices()[0].platform}), "
        f"{time.strftime('%Y-%m-%d %H:%M')}, {time.time() - START:.0f} s",
        f"{'configuration':<82} {'img/s':>10} {'ms/step':>8} {'/torch eager':>12}  note",
    ]
    for section, name, img_per_s, ms, note in ROWS:
        ratio = f"{img_per_s / torch_eager:.2f}x" if img_per_s and torch_eager else ""
        value = f"{img_per_s:>10,.0f} {ms:>8.2f}" if img_per_s else f"{'':>10} {'':>8}"
        lines.append(f"{name[:82]:<82} {value} {ratio:>12}  {note}")
    lines.append(f"tensorflow imported: {'YES (a bug)' if 'tensorflow' in sys.modules else 'no'}")
    text = "\n".join(lines)
    print(text, flush=True)
    out = os.environ.get("OUT")
    if out:
        with open(os.path.join(out, "gpu_check_table.txt"), "w") as f:
            f.write(text + "\n")


def main(argv):
    if "--dry_run" in argv:
        print(f"settings: {json.dumps(SETTINGS)}; budget {BUDGET:.0f} s; torch reference: "
              f"{torch_reference_path()}; devices: {jax.devices()}")
        print(f"tensorflow imported: {'YES (a bug)' if 'tensorflow' in sys.modules else 'no'}")
        return 0
    log(f"devices {jax.devices()}, settings {json.dumps(SETTINGS)}")
    failures = 0
    for section in (throughput_section, data_parallel_section, attack_section, training_section):
        try:
            section()
        except Exception as error:  # noqa: BLE001  (report and go on to the next section)
            failures += 1
            row(section.__name__, "FAILED", note=f"{type(error).__name__}: {error}"[:200])
            import traceback

            traceback.print_exc()
    print_table()
    return 1 if failures or "tensorflow" in sys.modules else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Shared test helpers. Tests marked `backends` also run under KERAS_BACKEND=jax (setup.cfg, `.ci/run`)."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as the command lines set it (cli.ENVIRONMENT)

# On JAX the tests compile the same small programs again and again: a new
# model per test, a new process per command line. JAX's persistent
# compilation cache, in a directory of this session that the commands the
# tests start inherit, compiles each program once. Nothing else changes: a
# hit is the executable XLA would build again.
_JAX_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _JAX_CACHE = tempfile.mkdtemp(prefix="tf_selectivity-tests-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _JAX_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # the many small ones too

# A pass that a non-interactive shell starts in the background (`.ci/run`)
# inherits SIGINT ignored, and so would every command a test starts: Python
# turns SIGINT into KeyboardInterrupt only where it was not ignored at
# start-up, and the Ctrl-C tests send SIGINT to those commands.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def backend():
    import keras

    return keras.backend.backend()


def value_and_grad(fn, x):
    """(fn(x), d fn / dx) for a scalar function of one array, on any backend."""
    if backend() == "jax":
        import jax

        value, grad = jax.value_and_grad(fn)(x)
        return float(value), np.asarray(grad)
    import tensorflow as tf

    x = tf.Variable(x)
    with tf.GradientTape() as tape:
        value = fn(x)
    return float(value), tape.gradient(value, x).numpy()


def run_cli(module, *args, env=None, timeout=600, cwd=None):
    """Runs `python -m module args...`; returns the CompletedProcess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=cwd or REPO,
    )


def error_lines(stderr: str) -> list:
    """stderr lines that are not TensorFlow/CUDA start-up noise."""
    noise = ("WARNING: All log messages", "cudart_stub", "cuda_platform", "cuInit", "oneDNN", "cpu_feature_guard", "AVX2")
    return [line for line in stderr.splitlines() if line.strip() and not any(n in line for n in noise)]


def log_lines(text: str) -> list:
    """The lines of progress output written off a terminal (a log file, a pipe), after checking
    that it is plain text: no carriage return redrawing a bar, no ANSI code."""
    assert "\r" not in text and "\x1b" not in text, repr(text[:500])
    return text.splitlines()


def assert_redraw_matches(out, figures, options, redraw_dir) -> str:
    """Redraws the analysis in `out` from its saved tables into `redraw_dir` and
    asserts the same report (but its date line) and the same figures, byte for
    byte, as the analysis drew (`figures`: its ``{name: [paths]}``); returns the
    redrawn report's text."""
    from tf_selectivity.analysis import read_tables, redraw

    drawn = redraw(read_tables(str(out)), redraw_dir, options)

    def without_date(path):
        return [line for line in open(path, encoding="utf-8").read().splitlines() if not line.startswith("_Generated")]

    assert without_date(drawn.report) == without_date(os.path.join(out, "report.md"))
    assert list(drawn.figures) == list(figures)
    for name, paths in drawn.figures.items():
        for path, original in zip(paths, figures[name]):
            assert open(path, "rb").read() == open(original, "rb").read(), path
    return open(drawn.report, encoding="utf-8").read()


def pytest_sessionfinish(session, exitstatus):
    if _JAX_CACHE:
        shutil.rmtree(_JAX_CACHE, ignore_errors=True)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


TINY_DATASET = "synthetic:train=500,test=200,size=16"


def _train_sweep(root, alphas, epochs, batch_size):
    """resnet8 runs on TINY_DATASET, seeds 0 and 1 at each of `alphas`, under ``root/runs/a<alpha>_s<seed>``."""
    from tf_selectivity.training import TrainConfig, train

    for alpha in alphas:
        for seed in (0, 1):
            config = TrainConfig(
                model="resnet8", alpha=alpha, seed=seed, dataset=TINY_DATASET, epochs=epochs,
                batch_size=batch_size, lr_milestones=(), output_dir=str(root / "runs" / f"a{alpha:g}_s{seed}"),
            )
            train(config, verbose=0)
    return root


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """Four trained tiny runs (resnet8, alpha 0 and -10, seeds 0 and 1): a
    miniature sweep shared by the analysis and export tests."""
    return _train_sweep(tmp_path_factory.mktemp("tiny_sweep"), (0.0, -10.0), epochs=2, batch_size=64)


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory):
    """Four tiny runs trained well above chance (resnet8, alpha 0 and -1, seeds 0 and 1; about
    85% test accuracy where `tiny_runs`' are at chance): analyses whose premises hold."""
    return _train_sweep(tmp_path_factory.mktemp("trained_sweep"), (0.0, -1.0), epochs=3, batch_size=32)


# Test modules that start no Keras backend in the test process (NumPy
# measures, statistics, figures, files; processes started with the backend
# they name): their tests run once, and CI runs them in the JAX pass, beside
# the tests marked `backends`, because that pass is the shorter one (README:
# the test command).
BACKEND_FREE_MODULES = {
    "test_cca", "test_corruptions", "test_dimensionality", "test_files", "test_floors", "test_imports",
    "test_linearity", "test_model_floor", "test_plots", "test_progress", "test_pwcca_variants", "test_report",
    "test_scheduler", "test_selectivity", "test_similarity", "test_stats", "test_streaming", "test_subsets",
    "test_unit_null",
}


def pytest_collection_modifyitems(config, items):
    jax_code_elsewhere = []
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module is not None else ""
        if module in BACKEND_FREE_MODULES and item.get_closest_marker("backends") is None:
            item.add_marker(pytest.mark.backend_free)
        if item.get_closest_marker("jax_only") is not None or item.get_closest_marker("jax_pass") is not None:
            # Code TensorFlow does not have, or a whole workflow placed in the
            # shorter pass: tested in the JAX pass (which runs the tests
            # marked `backends`), not collected under TensorFlow.
            item.add_marker(pytest.mark.backends)
            if backend() != "jax":
                jax_code_elsewhere.append(item)
    if jax_code_elsewhere:
        config.hook.pytest_deselected(items=jax_code_elsewhere)
        items[:] = [item for item in items if item not in jax_code_elsewhere]

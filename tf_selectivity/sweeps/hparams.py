"""TensorBoard's HParams dashboard for a sweep.

``tensorboard --logdir=SWEEP_DIR`` shows every run's training curves (the
runs' own ``logs/train`` and ``logs/validation``) and, in the HParams tab,
one row per run: alpha, seed, model, activation, leaky_slope -> test
accuracy, test mean selectivity index, best validation accuracy.

* The experiment (the dashboard's columns and their domains) is written to
  ``SWEEP_DIR/hparams_config/`` by the process owning the oracle, and
  rewritten when a later sweep adds alphas.
* Each run gets a session: its hyperparameters and final metrics, written to
  ``RUN_DIR/logs/`` (next to ``train/`` and ``validation/``) once the run
  is complete.

`tensorboard.plugins.hparams.api` needs TensorFlow: without it (a JAX-only
install) these functions print why and write nothing; trials.csv holds the
same values.
"""

from __future__ import annotations

import glob
import os
from typing import Sequence

__all__ = ["HPARAM_NAMES", "METRICS", "write_experiment", "write_session", "session_written"]

HPARAM_NAMES = ("alpha", "seed", "model", "activation", "leaky_slope")
# (tag, display name, description) of the session metrics, written in the
# session's own run (group "").
METRICS = (
    ("test_accuracy", "test accuracy", "Test accuracy of the best-validation epoch."),
    ("test_mean_selectivity", "test mean SI", "Mean over layers of the mean class selectivity index (test set)."),
    ("val_accuracy", "val accuracy (best)", "Best validation accuracy (selects the epoch)."),
)
_SESSION_SUFFIX = ".hparams"
_warned = False


def _unavailable() -> bool:
    global _warned
    from tf_selectivity.training.export import tensorflow_available  # imports Keras: only when writing

    if tensorflow_available():
        return False
    if not _warned:
        print("[sweep] TensorFlow is not installed: no HParams dashboard (trials.csv has the same values).")
        _warned = True
    return True


def write_experiment(
    logdir: str,
    *,
    alphas: Sequence[float],
    seeds: Sequence[int],
    models: Sequence[str],
    activations: Sequence[str],
    leaky_slopes: Sequence[float],
) -> bool:
    """Writes the HParams experiment config to `logdir` (replacing an older one).

    Returns:
        Whether it was written (False without TensorFlow).
    """
    if _unavailable():
        return False
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    hparams = [
        hp.HParam("alpha", hp.RealInterval(float(min(alphas)), float(max(alphas))), display_name="alpha"),
        hp.HParam("seed", hp.IntInterval(int(min(seeds)), int(max(seeds))), display_name="seed"),
        hp.HParam("model", hp.Discrete(sorted(set(models)))),
        hp.HParam("activation", hp.Discrete(sorted(set(activations)))),
        hp.HParam("leaky_slope", hp.Discrete(sorted({float(s) for s in leaky_slopes}))),
    ]
    metrics = [hp.Metric(tag, display_name=name, description=text) for tag, name, text in METRICS]
    os.makedirs(logdir, exist_ok=True)
    # One experiment summary per sweep: TensorBoard uses the first it finds,
    # so the previous one (narrower domains) goes.
    for old in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
        os.remove(old)
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        hp.hparams_config(hparams=hparams, metrics=metrics)
    writer.close()
    return True


def session_written(run_logs: str) -> bool:
    return bool(glob.glob(os.path.join(run_logs, f"events.out.tfevents.*{_SESSION_SUFFIX}")))


def write_session(run_logs: str, session_name: str, summary) -> bool:
    """Writes one run's HParams session (hyperparameters and final metrics).

    Args:
        run_logs: the run's ``logs/`` directory.
        session_name: name of the session in the dashboard (the run name).
        summary: the run's `RunSummary`; a diverged run's session has its
            hyperparameters and no metrics.

    Returns:
        Whether it was written (False without TensorFlow or if it exists).
    """
    if session_written(run_logs) or _unavailable():
        return False
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    values = {
        "alpha": float(summary.alpha),
        "seed": int(summary.seed),
        "model": str(summary.model),
        "activation": str(summary.activation),
        "leaky_slope": float(summary.leaky_slope),
    }
    step = int(summary.best_epoch or 0)
    os.makedirs(run_logs, exist_ok=True)
    writer = tf.summary.create_file_writer(run_logs, filename_suffix=_SESSION_SUFFIX)
    with writer.as_default():
        hp.hparams(values, trial_id=session_name)
        # A diverged run has no metrics: its row stays empty.
        for tag, _, _ in METRICS:
            if getattr(summary, tag) is not None:
                tf.summary.scalar(tag, float(getattr(summary, tag)), step=step)
    writer.close()
    return True

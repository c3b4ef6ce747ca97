"""`SweepTuner`: a keras-tuner `Tuner` whose trial is one `train()` run.

`run_trial` turns the trial's hyperparameters (the sweep's settings plus
alpha, seed and leaky slope) into a `TrainConfig` for the run directory
``SWEEP_DIR/runs/<run name>`` and calls `tf_selectivity.training.train`:
checkpoints every epoch, SavedModel and ``summary.json`` at the end. The
trial reports the run's best validation accuracy (the objective), test
accuracy, test mean selectivity and best epoch; a run that diverged reports
NaN and its ``diverged_epoch`` and counts as finished (not retried).

A trial cut short (process killed, worker lost) is run again in the same
directory and `train` resumes it from its last finished epoch; a trial
whose run is already complete returns its summary without training.

A trial whose ``packed_seeds`` value lists further seeds (the oracle
reserved them for this worker) trains them together with its own
(`train_replicates`: one program on JAX, one after another on TensorFlow);
their trials, handed to this worker next, find their runs complete. Runs
another process holds locked are left out of the pack; should the pack
fail, the trial's own seed is trained alone.
"""

from __future__ import annotations

import gc
import os
import time

import keras
import keras_tuner
from keras_tuner.engine.trial import TrialStatus

from tf_selectivity.core import compat
from tf_selectivity.sweeps import hparams
from tf_selectivity.sweeps.distributed import Heartbeat
from tf_selectivity.sweeps.layout import SweepPaths, trial_run_name
from tf_selectivity.sweeps.oracle import trial_pack_seeds
from tf_selectivity.sweeps.settings import config_from_values
from tf_selectivity.training import ConfigError, RunLockedError, RunPaths, train
from tf_selectivity.core.files import write_json_atomic

__all__ = ["SweepTuner", "REPORTED_METRICS"]

REPORTED_METRICS = ("val_accuracy", "test_accuracy", "test_mean_selectivity", "best_epoch")


class SweepTuner(keras_tuner.Tuner):
    """Runs a sweep's trials with `train()`.

    Args:
        oracle: the `SweepOracle` (on a worker keras-tuner replaces it by
            its gRPC client of the chief's); the tuner tells it `use_paths`.
        sweep_dir: the sweep's output directory (shared by all workers).
        local_settings: this process' data_dir, jit_compile and
            eval_batch_size (they change speed, not results).
        verbose: passed to `train` (2: one line per epoch).
        heartbeat_interval: seconds between a worker's signs of life while
            training (distributed mode).
        idle_poll_seconds: how long a worker waits before asking again when
            every remaining trial is running elsewhere.
        pack_replicates: the most seeds of a trial's pack this process
            trains together (the first ones; the others then run in their
            own trials).
    """

    def __init__(
        self,
        oracle,
        sweep_dir: str,
        *,
        local_settings=None,
        verbose: int = 2,
        heartbeat_interval: float = 30.0,
        idle_poll_seconds: float = 2.0,
        pack_replicates: int = 1,
    ):
        self.paths = SweepPaths(sweep_dir)
        oracle.use_paths(self.paths)
        super().__init__(
            oracle=oracle,
            directory=self.paths.root,
            project_name=os.path.basename(self.paths.project),
            overwrite=False,
        )
        # On a worker keras-tuner has replaced the oracle by its gRPC client.
        self.is_worker = not isinstance(self.oracle, keras_tuner.Oracle)
        if not self.is_worker and not self.oracle.reloaded and os.path.exists(self.paths.oracle_state):
            # keras-tuner reloads the oracle only when *this* tuner id's
            # state file exists: a chief started on a directory that a
            # local run (tuner0) wrote would begin with no trials and
            # overwrite their records.
            self.oracle.reload()
        self.local_settings = dict(local_settings or {})
        self.verbose = verbose
        self.heartbeat_interval = heartbeat_interval
        self.idle_poll_seconds = idle_poll_seconds
        self.pack_replicates = max(1, int(pack_replicates))
        self.trials_run = []  # (trial_id, status) run by this process
        self._asked = self._began = False

    # ------------------------------------------------------------------ loop
    # keras-tuner's `BaseTuner.search` asks the oracle again at once when it
    # answers IDLE (every remaining trial is running on another worker);
    # its hooks make it wait `idle_poll_seconds` instead. Chiefs do not
    # search: they `serve` the oracle.

    def on_search_begin(self):
        super().on_search_begin()
        self._asked = self._began = False

    def pre_create_trial(self):
        super().pre_create_trial()
        if self._asked and not self._began:
            time.sleep(self.idle_poll_seconds)  # the last answer was IDLE
        self._asked, self._began = True, False

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        self._began = True

    def run_trial(self, trial, *args, **kwargs):
        values = trial.hyperparameters.values
        name = trial_run_name(values)
        config = config_from_values(values, self.paths.run_dir(name), self.local_settings)
        # Each run builds its model from scratch; drop the previous trial's
        # graphs and layer names (keras-tuner's own Tuner does the same).
        keras.backend.clear_session()
        gc.collect()
        seeds = trial_pack_seeds(values)[: self.pack_replicates]
        if self.is_worker:
            with Heartbeat(self.oracle, trial.trial_id, self.heartbeat_interval):
                summary = self._train_trial(config, values, seeds)
        else:
            summary = self._train_trial(config, values, seeds)
        hparams.write_session(RunPaths(config.output_dir).logs, name, summary)
        if summary.diverged:
            # A result, not a failure: the trial completes (no retry), its
            # objective is NaN and `diverged_epoch` marks it (`trial_diverged`).
            return {"val_accuracy": float("nan"), "diverged_epoch": float(summary.diverged_epoch)}
        return {metric: float(getattr(summary, metric)) for metric in REPORTED_METRICS}

    def _train_trial(self, config, values, seeds):
        """The trial's `RunSummary`, after training its pack if it has one."""
        if len(seeds) > 1:
            summary = self._train_pack(values, seeds)
            if summary is not None:
                return summary
        return self._train_once(config)

    def _train_pack(self, values, seeds):
        """Trains the runs of `seeds` (the trial's own first) together.

        Returns:
            The trial's own `RunSummary`, or None when its run was left out
            (locked by another process) or the pack failed.
        """
        from tf_selectivity.data import DatasetUnavailableError
        from tf_selectivity.training.replicates import train_replicates

        configs = []
        for seed in seeds:
            point = {**values, "seed": seed}
            name = trial_run_name(point)
            configs.append(config_from_values(point, self.paths.run_dir(name), self.local_settings))
        try:
            return train_replicates(configs, verbose=self.verbose, skip_locked=True)[0]
        except (ConfigError, DatasetUnavailableError) as error:
            raise keras_tuner.errors.FailedTrialError(f"{type(error).__name__}: {error}") from error
        except Exception as error:  # noqa: BLE001  (the trial's own run alone may still succeed)
            print(
                f"[sweep] training seeds {', '.join(map(str, seeds))} together failed "
                f"({type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}); "
                f"training seed {seeds[0]} alone",
                flush=True,
            )
            keras.backend.clear_session()
            gc.collect()
            return None

    def _train_once(self, config):
        """`train(config)`, waiting while another process trains the same run.

        Two processes meet in one run directory only when a trial was given
        to a second worker while the first still trained it (it had stopped
        reporting). The run's lock makes the second wait; then `train` finds
        the finished run and returns its summary without training again.
        """
        from tf_selectivity.data import DatasetUnavailableError

        waiting_since = None
        while True:
            try:
                return train(config, verbose=self.verbose)
            except RunLockedError:
                if waiting_since is None:
                    waiting_since = time.monotonic()
                    print(f"[sweep] {config.output_dir} is being trained by another process; waiting", flush=True)
                time.sleep(self.idle_poll_seconds)
            except (ConfigError, DatasetUnavailableError) as error:
                # Retrying cannot help: fail the trial for this session.
                raise keras_tuner.errors.FailedTrialError(f"{type(error).__name__}: {error}") from error

    def on_trial_end(self, trial):
        if trial.status != TrialStatus.COMPLETED and trial.message:
            # keras-tuner's gRPC Trial has no message field: leave it where the
            # chief (and trials.csv) can read it.
            path = self.paths.trial_error(trial.trial_id)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(f"tuner {self.tuner_id}, {time.strftime('%Y-%m-%d %H:%M:%S')}\n{trial.message}")
        self.trials_run.append((trial.trial_id, trial.status))
        if self.is_worker:
            values = trial.hyperparameters.values
            print(
                f"[worker {self.tuner_id}] trial {trial.trial_id} (alpha={values['alpha']:g}, "
                f"seed={values['seed']}): {trial.status}",
                flush=True,
            )
        super().on_trial_end(trial)

    def save(self):
        # As `BaseTuner.save`, with atomic writes (see `SweepOracle.save`).
        if not self.is_worker:
            self.oracle.save()
        write_json_atomic(compat.tuner_state_file(self), self.get_state())

    # keras-tuner's Tuner saves and reloads Keras models per trial; here each
    # run directory holds its own SavedModel and model.keras.
    def save_model(self, trial_id, model, step=0):
        pass

    def load_model(self, trial):
        values = trial.hyperparameters.values
        name = trial_run_name(values)
        return keras.saving.load_model(RunPaths(self.paths.run_dir(name)).keras_model)

"""`run_sweep`: one sweep in this process, as local runner, chief or worker.

The sweep directory is checked before anything is written: a directory
holding a sweep of other settings, or something that is not a sweep, is
refused (`SweepConflictError`). The process that owns the oracle (local or
chief) holds ``.sweep.lock`` for its lifetime, so two of them never write
the same keras-tuner project.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from typing import Optional

from tf_selectivity.sweeps import hparams, plans
from tf_selectivity.sweeps.distributed import Role
from tf_selectivity.sweeps.layout import SweepPaths, format_float
from tf_selectivity.sweeps.options import SweepOptions
from tf_selectivity.sweeps.settings import (
    LOCAL_FIELDS,
    settings_differences,
    settings_record,
    settings_to_values,
    sweep_settings,
    values_to_settings,
)
from tf_selectivity.training.config import TrainConfig
from tf_selectivity.core.files import PROBE_PREFIX, LockedError, exclusive_lock, read_json, write_json_atomic

__all__ = [
    "SweepSpec", "SweepReport", "SweepConflictError", "SweepLockedError", "check_sweep_dir", "run_sweep",
    "sweep_lock",
]

# Files a sweep directory may hold before its sweep.json exists.
_OWN_ENTRIES = {".sweep.lock"}


class SweepConflictError(ValueError):
    """The output directory holds something this sweep must not touch."""


class SweepLockedError(RuntimeError):
    """Another local runner or chief owns this sweep directory."""


@dataclasses.dataclass
class SweepSpec:
    """Everything one sweep command asks for.

    Attributes:
        base_config: a `TrainConfig` with the sweep's settings and this
            process' local knobs; its alpha, seed, leaky_slope and
            output_dir are ignored.
        output_dir: the sweep directory.
        plan: `plans.GridPlan` or `plans.MarginSearchPlan`.
        options: `SweepOptions`: retries, the failure stop, the chief's
            `worker_timeout` and the workers' `chief_timeout`.
        verbose: `train`'s verbosity (0, 1 or 2).
        heartbeat_interval: seconds between a worker's heartbeats; default
            a fifth of `options.worker_timeout`, at most 30 s.
        pack_replicates: the most seeds of one (leaky slope, alpha) a worker
            trains together (on JAX as one program; `SweepOracle`); 1: one
            run per trial; None: auto (`pack_size`).
    """

    base_config: TrainConfig
    output_dir: str
    plan: object
    options: SweepOptions = dataclasses.field(default_factory=SweepOptions)
    verbose: int = 2
    heartbeat_interval: Optional[float] = None
    pack_replicates: Optional[int] = 1

    @property
    def paths(self) -> SweepPaths:
        return SweepPaths(self.output_dir)

    @property
    def settings(self) -> dict:
        return sweep_settings(self.base_config)

    @property
    def local_settings(self) -> dict:
        return {name: getattr(self.base_config, name) for name in LOCAL_FIELDS}

    def heartbeat_seconds(self) -> float:
        if self.heartbeat_interval is not None:
            return self.heartbeat_interval
        return min(30.0, self.options.worker_timeout / 5.0)


@dataclasses.dataclass
class SweepReport:
    """What a sweep process did.

    Attributes:
        role: "local", "chief" or "worker".
        completed: finished trials (completed or diverged) of this command's plan.
        total: trials of the plan, if known (grid).
        failed: descriptions of the plan's trials that failed this session.
        diverged: descriptions of the plan's trials whose run diverged.
        stop_reason: why the oracle stopped early, if it did.
        search_result: the search plan's answer (search mode).
        tables: paths of trials.csv / trials.parquet written.
        trials_run: (trial_id, status) of the trials this process trained.
    """

    role: str
    completed: int = 0
    total: Optional[int] = None
    failed: list = dataclasses.field(default_factory=list)
    diverged: list = dataclasses.field(default_factory=list)
    stop_reason: Optional[str] = None
    search_result: Optional[dict] = None
    tables: list = dataclasses.field(default_factory=list)
    trials_run: list = dataclasses.field(default_factory=list)


def check_sweep_dir(spec: SweepSpec) -> bool:
    """Refuses a directory that holds anything but this sweep.

    Returns:
        Whether the directory already holds this sweep (``sweep.json``).

    Raises:
        SweepConflictError: with the reason and what to do.
    """
    paths = spec.paths
    if os.path.exists(paths.root) and not os.path.isdir(paths.root):
        raise SweepConflictError(f"--output_dir {paths.root} exists and is not a directory")
    if os.path.exists(paths.settings):
        try:
            recorded = read_json(paths.settings)["settings"]
        except (OSError, ValueError, KeyError) as error:
            raise SweepConflictError(f"cannot read {paths.settings}: {error}") from error
        differences = settings_differences(recorded, spec.settings)
        if differences:
            raise SweepConflictError(
                f"{paths.root} holds a sweep with other settings ({'; '.join(differences)}); "
                "choose another --output_dir, or repeat that sweep's settings to extend it"
            )
        return True
    if os.path.isdir(paths.root):
        if os.path.exists(os.path.join(paths.root, "config.json")):
            raise SweepConflictError(
                f"{paths.root} is a training run directory, not a sweep; choose another --output_dir"
            )
        foreign = sorted(n for n in set(os.listdir(paths.root)) - _OWN_ENTRIES if not n.startswith(PROBE_PREFIX))
        if foreign:
            raise SweepConflictError(
                f"{paths.root} is not empty and holds no sweep (found {', '.join(foreign[:3])}); "
                "choose another --output_dir"
            )
    return False


@contextlib.contextmanager
def sweep_lock(paths: SweepPaths):
    """Holds ``.sweep.lock`` (released on exit or death); raises `SweepLockedError`."""
    with contextlib.ExitStack() as stack:
        try:
            os.makedirs(paths.root, exist_ok=True)
            stack.enter_context(exclusive_lock(paths.lock, describe=paths.root))
        except LockedError as error:
            raise SweepLockedError(
                f"another sweep process (pid {error.owner or '?'}) owns {paths.root}; wait for it to finish, "
                "or help it by starting this command as a worker of a chief (docs: Sweeps, on many GPUs or "
                "machines)"
            ) from None
        except OSError as error:
            raise SweepConflictError(f"cannot create {paths.root} ({error.strerror or error})") from None
        yield


def pack_size(spec: SweepSpec, role: Role) -> int:
    """The most seeds this process packs (local, worker) or hands out
    together (chief).

    A local runner or a worker packs what its own device runs well
    (`resolve_pack_replicates`: "auto" is 1 on a CPU and on TensorFlow),
    and nothing when its data may not be on the device. A chief trains
    nothing and cannot see its workers' devices: with "auto" it hands out
    packs of `DEFAULT_PACK_REPLICATES` when it runs on JAX itself (its
    workers run the same command) and single trials on TensorFlow. A worker
    given a bigger pack than it packs trains the first seeds of it together
    (its own among them) and the others in their own trials.
    """
    import keras

    from tf_selectivity.training.packing import DEFAULT_PACK_REPLICATES

    setting = spec.pack_replicates
    if role.kind == "chief":
        if setting is not None:
            return setting
        return DEFAULT_PACK_REPLICATES if keras.backend.backend() == "jax" else 1
    if spec.base_config.data_on_device == "false" or spec.base_config.device_count != 1:
        return 1  # packing needs the data on one device (`training.placement`)
    from tf_selectivity.training.replicates import resolve_pack_replicates

    return resolve_pack_replicates(setting)


def _make_oracle(spec: SweepSpec, role: Role):
    from tf_selectivity.sweeps.oracle import SweepOracle

    paths = spec.paths
    return SweepOracle(
        spec.plan,
        settings_to_values(spec.settings),
        options=spec.options,
        worker_timeout=spec.options.worker_timeout if role.kind == "chief" else None,
        error_file=paths.trial_error,
        pack_replicates=pack_size(spec, role),
    )


def _make_tuner(spec: SweepSpec, role: Role):
    from tf_selectivity.sweeps.tuner import SweepTuner

    return SweepTuner(
        _make_oracle(spec, role),
        spec.paths.root,
        local_settings=spec.local_settings,
        verbose=spec.verbose,
        heartbeat_interval=spec.heartbeat_seconds(),
        pack_replicates=pack_size(spec, role),
    )


def _write_hparams_experiment(spec: SweepSpec, oracle) -> None:
    from tf_selectivity.sweeps.oracle import trial_point

    known = [trial_point(t) for t in oracle.trials.values()]
    alphas = list(spec.plan.alpha_range()) + [p.alpha for p in known]
    seeds = list(spec.plan.seeds) + [p.seed for p in known]
    slopes = list(spec.plan.leaky_slopes) + [p.leaky_slope for p in known]
    config = spec.base_config
    hparams.write_experiment(
        spec.paths.hparams_config,
        alphas=alphas,
        seeds=seeds,
        models=[config.model],
        activations=[config.activation],
        leaky_slopes=slopes,
    )


def _describe_plan(plan) -> str:
    if plan.mode == "grid":
        parts = [f"{len(plan.alphas)} alphas", f"{len(plan.seeds)} seeds"]
        if len(plan.leaky_slopes) > 1:
            parts.append(f"{len(plan.leaky_slopes)} leaky slopes")
        if plan.alpha_windows != (None,):
            parts.append(f"{len(plan.alpha_windows)} windows of training")
        return f"grid of {len(plan.points)} trials ({' x '.join(parts)})"
    return (
        f"search for the strongest alpha in [{format_float(plan.weakest)}, {format_float(plan.strongest)}] "
        f"within {plan.margin:g} validation accuracy of alpha = 0 ({len(plan.seeds)} seeds per alpha)"
    )


def _own_oracle_run(spec: SweepSpec, role: Role, report: SweepReport) -> None:
    from tf_selectivity.sweeps import aggregate
    from tf_selectivity.sweeps.distributed import serve

    paths = spec.paths
    tuner = _make_tuner(spec, role)
    oracle = tuner.oracle
    _write_hparams_experiment(spec, oracle)
    done, total = oracle.progress()
    already = f"{done}/{total}" if total is not None else str(done)
    print(f"[sweep] {paths.root}: {_describe_plan(spec.plan)}; {already} already complete", flush=True)
    if role.kind == "chief":
        print(
            f"[sweep] chief serving trials at {role.address}; start workers with the same command and "
            f"KERASTUNER_TUNER_ID=<unique id> (they take over trials of workers silent for "
            f"{spec.options.worker_timeout:g} s)",
            flush=True,
        )
        tuner.save()
        serve(oracle, role.address)
    else:
        tuner.search()
        report.trials_run = list(tuner.trials_run)
    step = oracle.plan_step()
    outcomes = oracle.outcomes()
    report.completed, report.total = oracle.progress()
    report.stop_reason = oracle.stop_reason
    by_point = oracle.trials_by_point()
    for point, outcome in outcomes.items():
        if outcome.status == plans.FAILED:
            trial = by_point[point]
            report.failed.append(f"trial {trial.trial_id} ({oracle.describe_trial(trial)})")
        elif outcome.status == plans.DIVERGED:
            trial = by_point[point]
            epoch = int(outcome.metrics.get("diverged_epoch", 0))
            report.diverged.append(f"{oracle.describe_trial(trial)} in epoch {epoch}")
    if step.result is not None:
        report.search_result = step.result
        write_json_atomic(paths.search_result, step.result)
    report.tables = aggregate.write_trials_table(paths.root)


def _check_worker_settings(spec: SweepSpec, tuner) -> None:
    space = tuner.oracle.get_space()
    chief_values = {hp.name: hp.value for hp in space.space if hasattr(hp, "value")}
    differences = settings_differences(values_to_settings(chief_values), spec.settings)
    if differences:
        raise SweepConflictError(
            f"this worker's settings differ from the chief's sweep ({'; '.join(differences)}); "
            "start every worker with the chief's command"
        )


def _worker_run(spec: SweepSpec, role: Role, report: SweepReport) -> None:
    from tf_selectivity.sweeps.distributed import set_client_timeout, wait_for_chief

    set_client_timeout(spec.options.chief_timeout)
    print(f"[worker {role.tuner_id}] waiting for the chief at {role.address}", flush=True)
    wait_for_chief(role.address, spec.options.chief_timeout)
    tuner = _make_tuner(spec, role)
    _check_worker_settings(spec, tuner)
    print(f"[worker {role.tuner_id}] connected; the chief's settings match this worker's", flush=True)
    tuner.search()
    report.trials_run = list(tuner.trials_run)


def run_sweep(spec: SweepSpec, role: Optional[Role] = None) -> SweepReport:
    """Runs the sweep `spec` in this process.

    Args:
        spec: the sweep.
        role: local, chief or worker (default: from keras-tuner's
            environment variables).

    Returns:
        A `SweepReport`.

    Raises:
        SweepConflictError: the directory or the chief holds another sweep.
        SweepLockedError: another local runner or chief owns the directory.
        distributed.ChiefUnreachableError: (worker) no chief answered.
    """
    from tf_selectivity.sweeps.distributed import role_from_environment

    role = role or role_from_environment()
    report = SweepReport(role=role.kind)
    if role.kind == "worker":
        # The chief owns the directory's settings; the worker checks its own
        # against the chief's once connected.
        _worker_run(spec, role, report)
        return report
    check_sweep_dir(spec)
    paths = spec.paths
    with sweep_lock(paths):
        if not check_sweep_dir(spec):
            write_json_atomic(paths.settings, settings_record(spec.settings))
        _own_oracle_run(spec, role, report)
    return report


def describe_spec(spec: SweepSpec) -> str:
    """A JSON description of the sweep (``--dry_run``)."""
    return json.dumps(
        {
            "output_dir": spec.paths.root,
            "plan": spec.plan.describe(),
            "settings": spec.settings,
            "local": {**spec.local_settings, "pack_replicates": spec.pack_replicates or "auto"},
        },
        indent=2,
        sort_keys=True,
    )

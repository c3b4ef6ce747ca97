"""keras-tuner's distributed mode: roles, the chief's server, heartbeats.

The roles follow keras-tuner's environment variables:

* no ``KERASTUNER_ORACLE_IP``: **local**, one process runs the oracle and
  the trials;
* ``KERASTUNER_TUNER_ID`` containing "chief": the **chief** serves the
  oracle over gRPC at ``KERASTUNER_ORACLE_IP:KERASTUNER_ORACLE_PORT`` and
  trains nothing;
* any other ``KERASTUNER_TUNER_ID``: a **worker** asks the chief for trials
  and trains them (one worker per GPU: ``CUDA_VISIBLE_DEVICES``).

keras-tuner's own chief loop (`oracle_chief.start_server`) exits only once
every worker asked for a trial after the search ended, and waits forever
for a worker that died. `serve` runs the same gRPC service
(`compat.add_oracle_service`) with a loop
that lets `SweepOracle` reclaim the trials of silent workers and stops as
soon as the oracle is finished.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from concurrent import futures
from typing import Optional

__all__ = ["Role", "role_from_environment", "wait_for_chief", "serve", "Heartbeat"]

_ENV_ID = "KERASTUNER_TUNER_ID"
_ENV_IP = "KERASTUNER_ORACLE_IP"
_ENV_PORT = "KERASTUNER_ORACLE_PORT"


class ChiefUnreachableError(RuntimeError):
    """The chief did not answer within the time allowed."""


@dataclasses.dataclass(frozen=True)
class Role:
    """This process' part in a sweep: "local", "chief" or "worker"."""

    kind: str
    tuner_id: str = "tuner0"
    address: Optional[str] = None


def role_from_environment(environ=None) -> Role:
    """Reads keras-tuner's variables; raises ValueError when they are inconsistent."""
    environ = os.environ if environ is None else environ
    ip = environ.get(_ENV_IP)
    port = environ.get(_ENV_PORT)
    tuner_id = environ.get(_ENV_ID)
    if not ip:
        if port:
            raise ValueError(f"{_ENV_PORT} is set but {_ENV_IP} is not; set both (or neither, to run locally)")
        return Role("local", tuner_id or "tuner0")
    if not port:
        raise ValueError(f"{_ENV_IP} is set but {_ENV_PORT} is not; set the chief's port")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{_ENV_PORT} must be a port number; got {port!r}")
    if not tuner_id:
        raise ValueError(
            f"{_ENV_IP} is set but {_ENV_ID} is not; use {_ENV_ID}=chief for the chief "
            "and a distinct id (tuner0, tuner1, ...) for each worker"
        )
    kind = "chief" if "chief" in tuner_id else "worker"  # keras-tuner's own rule
    return Role(kind, tuner_id, f"{ip}:{port}")


def wait_for_chief(address: str, timeout: float) -> None:
    """Blocks until the chief's gRPC server accepts connections.

    Raises:
        ChiefUnreachableError: it did not within `timeout` seconds.
    """
    import grpc

    channel = grpc.insecure_channel(address)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        raise ChiefUnreachableError(
            f"cannot reach the chief at {address} within {timeout:g} s: start the chief first "
            f"({_ENV_ID}=chief, same command and {_ENV_IP}/{_ENV_PORT}), check the address and "
            "firewall, or raise --chief_timeout"
        ) from None
    finally:
        channel.close()


def set_client_timeout(seconds: float) -> None:
    """How long a worker's calls wait for an absent chief (keras-tuner: 1 hour).

    keras-tuner's `OracleClient` reads the module constant at each call. Its
    hour-long default exists for chiefs that are slow to start (keras-tuner
    #990); a worker here first waits for the chief explicitly
    (`wait_for_chief`), so a chief that disappears later is reported after
    `--chief_timeout` instead of an hour.
    """
    from tf_selectivity.core import compat

    compat.set_oracle_client_timeout(seconds)


def serve(oracle, address: str, poll_seconds: float = 0.5) -> None:
    """Serves `oracle` to workers at `address` until it is finished.

    Raises:
        OSError: the address cannot be listened on (e.g. port in use).
    """
    import grpc

    from tf_selectivity.core import compat

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    compat.add_oracle_service(server, oracle)
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as error:  # newer grpc raises, older returns 0
        raise OSError(f"cannot listen on {address}: {error}") from None
    if not bound:
        raise OSError(f"cannot listen on {address} (port in use?)")
    server.start()
    told = False
    try:
        while True:
            time.sleep(poll_seconds)
            oracle.expire_leases()
            if oracle.finished():
                break
            # The chief waits for workers as long as trials remain (e.g. the
            # only worker died): say so once instead of looking hung.
            waiting = oracle.trials_waiting_for_a_worker()
            if waiting and not told:
                print(
                    f"[sweep] no worker connected; {waiting} trial(s) wait for one: start workers with the same "
                    f"command and KERASTUNER_TUNER_ID=<unique id>",
                    flush=True,
                )
            told = bool(waiting)
    finally:
        # Every worker was told STOPPED before `finished()` became true; the
        # grace period lets the last answer leave.
        server.stop(grace=2).wait()


class Heartbeat:
    """Tells the chief, every `interval` seconds, that a trial is still running.

    A background thread calls ``oracle.get_trial(trial_id)``, which
    `SweepOracle` takes as a sign of life; training itself can go for hours
    between the worker's other calls. Errors (the chief restarting) are
    reported once and retried on the next beat.

    Args:
        oracle: the worker's `OracleClient`.
        trial_id: the trial being trained.
        interval: seconds between beats.
    """

    def __init__(self, oracle, trial_id: str, interval: float):
        self._oracle = oracle
        self._trial_id = trial_id
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{trial_id}", daemon=True)
        self._warned = False

    def _beat(self):
        while not self._stop.wait(self._interval):
            try:
                self._oracle.get_trial(self._trial_id)
                self._warned = False
            except Exception as error:  # noqa: BLE001 -- a beat must never kill training
                if not self._warned:
                    print(f"[sweep] heartbeat to the chief failed ({type(error).__name__}); retrying", flush=True)
                    self._warned = True

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        # A beat blocked on an absent chief must not delay the worker.
        self._thread.join(timeout=1.0)
        return False

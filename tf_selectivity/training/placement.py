"""Which input pipeline a run trains from: `--data_on_device` resolved.

Three pipelines implement one contract (order and pad-crop-flip augmentation
pure functions of seed, epoch and step; the last batch of an epoch smaller):

* ``"tf.data"``: TensorFlow's ops on its C++ threads (TensorFlow backend);
* ``"host"``: NumPy batches through `keras.utils.PyDataset` (JAX backend);
* ``"device"``: the splits on the accelerator and whole epochs compiled
  (JAX backend, `tf_selectivity.training.device_loop`).

Each draws its own random numbers, so a run is an equally valid sample of
the protocol on any of them but not the same sample. The pipeline is
therefore recorded in the run's ``checkpoint/state.json`` with the first
finished epoch, and a resumed run keeps it: `--data_on_device=auto` follows
the record, an explicit value that contradicts it is refused. It is not part
of `TrainConfig.IDENTITY_FIELDS`: a sweep may mix runs trained on different
machines, as it mixes runs of the two backends.
"""

from __future__ import annotations

import os

from tf_selectivity.training.config import ConfigError
from tf_selectivity.core.files import read_json
from tf_selectivity.training.run_dir import RunPaths

__all__ = ["PIPELINES", "choose_input_pipeline", "recorded_input_pipeline"]

PIPELINES = ("tf.data", "host", "device")


def recorded_input_pipeline(paths: RunPaths, backend: str):
    """The pipeline of a run's finished epochs, or None for a fresh run.

    Runs checkpointed before the pipeline was recorded count as "host" on
    JAX and "tf.data" on TensorFlow (the only pipelines there were).
    """
    if not os.path.exists(paths.state):
        return None
    try:
        state = read_json(paths.state)
    except (OSError, ValueError):
        return None  # a damaged checkpoint is refused later (`run_dir.check_checkpoint`)
    if not isinstance(state, dict) or not state.get("epochs_done"):
        return None
    recorded = state.get("input_pipeline")
    if recorded in PIPELINES:
        return recorded
    return "tf.data" if backend == "tensorflow" else "host"


def _megabytes(count) -> str:
    return f"{count / 1e6:,.0f} MB"


def _device_fit(data):
    """(fits, message): whether the training and validation splits fit."""
    from tf_selectivity.training import device_loop

    needed = device_loop.device_data_bytes(
        data.train_images, data.train_labels, data.validation_images, data.validation_labels
    )
    free = device_loop.free_device_memory()
    import jax

    device = jax.devices()[0]
    where = f"{device.platform}:{device.id}"
    if free is None:
        return True, f"{_megabytes(needed)} on {where} (free memory unknown)"
    budget = device_loop.DEVICE_MEMORY_FRACTION * free
    message = (
        f"the splits need {_megabytes(needed)}; {_megabytes(free)} free on {where}, "
        f"of which the data may use {device_loop.DEVICE_MEMORY_FRACTION:.0%}"
    )
    return needed <= budget, message


def choose_input_pipeline(setting: str, data, paths: RunPaths, backend: str, verbose: int = 1,
                          devices: int = 1) -> str:
    """Resolves `--data_on_device` for this run on this machine.

    Args:
        setting: "auto", "true" or "false".
        data: the run's `DatasetSplits` (or `StreamSplits`: never on the device).
        paths: the run directory (for the pipeline of finished epochs).
        backend: `keras.backend.backend()`.
        verbose: print the one-line fallback message of "auto".
        devices: the devices of one step (`training.devices`): the device
            pipeline holds the data on one device, so with several the run
            trains from host batches ("auto"; "true" is refused).

    Returns:
        "tf.data", "host" or "device".

    Raises:
        ConfigError: "true" on TensorFlow, over several devices or when the
            data do not fit; a setting that contradicts the pipeline of the
            run's finished epochs.
    """
    recorded = recorded_input_pipeline(paths, backend)
    if getattr(data, "streamed", False):
        # Read from disk batch by batch: the host's tf.data pipeline on either backend.
        if setting == "true":
            raise ConfigError("`data_on_device='true'` keeps in-memory splits on the device; a stream: dataset "
                              "is read from disk while training: use `data_on_device='auto'` or 'false'")
        return "tf.data" if backend != "jax" else "host"
    if backend != "jax":
        if setting == "true":
            raise ConfigError(
                "`data_on_device='true'` needs the JAX backend (KERAS_BACKEND=jax); "
                "TensorFlow trains from its tf.data pipeline: use `data_on_device='auto'` or 'false'"
            )
        return "tf.data"
    resumed = recorded in ("host", "device")
    if resumed and setting != "auto" and (setting == "true") != (recorded == "device"):
        raise ConfigError(
            f"{paths.root} trained its finished epochs with "
            + ("the data on the device" if recorded == "device" else "host batches")
            + f"; a resumed run keeps its input pipeline (its random stream): use "
            f"`data_on_device='{'true' if recorded == 'device' else 'false'}'` or 'auto', "
            "or another `output_dir`"
        )
    wanted = recorded if resumed else None
    if setting == "false" or wanted == "host":
        return "host"
    if devices > 1:
        if setting == "true" or wanted == "device":
            reason = "the run's finished epochs trained with the data on the device, " if wanted else ""
            raise ConfigError(
                f"{reason}`data_on_device` keeps the data on one device and cannot train over {devices} "
                "(--devices): use `data_on_device='auto'` or 'false'"
                + (", or another `output_dir`" if wanted else "")
            )
        if verbose:
            print(f"Data on the device: no (it holds them on one device; {devices} devices train from host "
                  "batches, split over them).")
        return "host"
    fits, message = _device_fit(data)
    if fits:
        return "device"
    if setting == "true" or wanted == "device":
        reason = "the run's finished epochs trained with the data on the device, but " if wanted else ""
        raise ConfigError(
            f"{reason}the data do not fit on the device ({message}); "
            + ("free device memory or use another `output_dir`" if wanted else "use `data_on_device='auto'` or 'false'")
        )
    if verbose:
        print(f"Data on the device: no ({message}); training from host batches.")
    return "host"

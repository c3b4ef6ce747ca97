"""Which runs train together as packed replicates, and where each one writes.

Replicates of one configuration (the same `TrainConfig` but for the seed and
the run directory) can train as one program on JAX
(`tf_selectivity.training.replicates`). This module holds what the command
lines and the sweep decide before a backend starts: the run directory of
each seed, the packs a list of seeds is split into, and the check that a
list of configurations can be packed. It needs only the standard library.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

from tf_selectivity.training.config import ConfigError

__all__ = [
    "DEFAULT_PACK_REPLICATES",
    "AUTO",
    "parse_pack_replicates",
    "SEED_PLACEHOLDER",
    "seed_run_dir",
    "split_into_packs",
    "check_replicate_configs",
]

# Seeds trained together by "auto" on an accelerator: eight ResNet20
# replicates at batch 256 keep a few GB of activations for the backward pass
# (XLA's own estimate, benchmarks/RESULTS.md), which any training GPU holds;
# `benchmarks/gpu_check.sh` measures 8 and 20 on a GPU.
DEFAULT_PACK_REPLICATES = 8

# `--pack_replicates=auto`: DEFAULT_PACK_REPLICATES on JAX with an
# accelerator; 1 (one run at a time) on a CPU, where XLA runs the grouped
# convolutions of a packed program several times slower than the same
# convolutions run one replicate at a time, and on TensorFlow, which does not pack.
AUTO = "auto"


def parse_pack_replicates(text) -> "int | None":
    """A `pack_replicates` setting as text: "auto" -> None, "4" -> 4.

    Raises:
        ParameterError: (a ValueError) naming what is wrong with the value.
    """
    from tf_selectivity.core.settings import ParameterError

    text = str(text).strip().lower()
    if text == AUTO:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ParameterError("pack_replicates", f"must be auto or a number of seeds; got {text!r}") from None
    if value < 1:
        raise ParameterError("pack_replicates", f"must be at least 1 (or auto); got {value}")
    return value


# In `--output_dir`, replaced by each seed (``runs/a-1_s{seed}``).
SEED_PLACEHOLDER = "{seed}"


def seed_run_dir(output_dir: str, seed: int) -> str:
    """The run directory of `seed` for a command given several seeds.

    ``runs/x_s{seed}`` -> ``runs/x_s3``; a directory without the
    placeholder is the parent of one directory per seed: ``runs/x`` ->
    ``runs/x/seed3``.
    """
    if SEED_PLACEHOLDER in output_dir:
        return output_dir.replace(SEED_PLACEHOLDER, str(int(seed)))
    return os.path.join(output_dir, f"seed{int(seed)}")


def split_into_packs(seeds: Sequence[int], limit: int) -> list:
    """Consecutive packs of at most `limit` seeds, as equal in size as possible.

    ``split_into_packs(range(20), 8)`` -> packs of 7, 7 and 6 seeds rather
    than 8, 8 and 4: as many packs, each about as full as the others (two
    sizes at most, so at most two compiled programs).

    Args:
        seeds: the seeds, in order.
        limit: the most seeds in one pack (>= 1; 1 gives one pack per seed).

    Returns:
        A list of lists of seeds, in the given order.
    """
    seeds = list(seeds)
    limit = int(limit)
    if limit < 1:
        raise ValueError(f"a pack holds at least one seed; got a limit of {limit}")
    if not seeds:
        return []
    count = math.ceil(len(seeds) / limit)
    size, extra = divmod(len(seeds), count)
    packs, start = [], 0
    for index in range(count):
        stop = start + size + (1 if index < extra else 0)
        packs.append(seeds[start:stop])
        start = stop
    return packs


def check_replicate_configs(configs: Sequence) -> None:
    """Refuses configurations that cannot train as one pack.

    Replicates share everything but the seed and the run directory: the
    data, the program (model, batch sizes, precision) and the schedule.

    Raises:
        ConfigError: naming what differs, a repeated seed or a run
            directory given twice.
    """
    configs = list(configs)
    if not configs:
        raise ConfigError("no replicates to train")
    first = configs[0].to_dict()
    for config in configs[1:]:
        values = config.to_dict()
        differences = [
            f"{name}: {first[name]!r} and {values[name]!r}"
            for name in first
            if name not in ("seed", "output_dir") and first[name] != values[name]
        ]
        if differences:
            raise ConfigError(
                "replicates trained together differ only in their seed and run directory; these differ: "
                + "; ".join(differences)
            )
    seeds = [int(config.seed) for config in configs]
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise ConfigError(f"seed {repeated[0]} is given twice; each replicate needs its own seed")
    roots = [os.path.abspath(os.path.expanduser(config.output_dir)) for config in configs]
    for index, root in enumerate(roots):
        if roots.index(root) != index:
            raise ConfigError(
                f"seeds {seeds[roots.index(root)]} and {seeds[index]} would both write {root}; "
                "each replicate needs its own run directory"
            )

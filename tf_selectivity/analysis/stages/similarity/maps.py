"""Layer-by-layer similarity maps: every layer of one run against every layer of another.

Kornblith et al.'s Figure 2 and Nguyen et al.'s block structure: for a pair
of runs, the CKA of each of the first run's layers with each of the
second's. For Figure 3's question the pairs are a within-alpha pair (two
treated replicates) and a to-baseline pair (a treated and an alpha = 0
replicate) per treated alpha: if regularization only rotated the
representation, both maps would look alike; if it changed it, the
to-baseline map's diagonal is lower.

`layer_similarity_map` loads each layer of the two runs once (the layers of
both runs are in memory together: a few tens of MB for a ResNet20 on 10,000
images) and calls `tf_selectivity.measures.similarity.cka_map`. numpy and pandas only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from tf_selectivity.measures import similarity
from tf_selectivity.analysis.stages.similarity.distances import blas_thread_limit

# Measures of the maps, all similarities (1 on the diagonal of a run with itself).
MAP_MEASURES = ("debiased_cka", "linear_cka")

MAP_COLUMNS = (
    "comparison", "run_a", "run_b", "measure",
    "layer_a", "layer_index_a", "layer_b", "layer_index_b", "similarity",
)

ActivationLoader = Callable[[str, str], np.ndarray]


def layer_similarity_map(
    run_a: str,
    run_b: str,
    layers: Sequence[str],
    load_activations: ActivationLoader,
    measure: str = "debiased_cka",
) -> np.ndarray:
    """The `(layers, layers)` map of one pair of runs (a similarity per entry).

    Args:
        run_a: First run id (rows of the map).
        run_b: Second run id (columns); may equal `run_a` (a symmetric map
            with a diagonal of exactly 1).
        layers: Layer names, in network order.
        load_activations: `load_activations(run, layer)` -> `(units,
            datapoints)` array, the same datapoints for every run and layer.
        measure: "debiased_cka" or "linear_cka".

    Returns:
        `(len(layers), len(layers))` array: entry `(i, j)` compares layer
        `i` of `run_a` with layer `j` of `run_b`.

    Raises:
        ValueError: On an unknown measure, no layers, or unusable
            activations (the message names the run).
    """
    if measure not in MAP_MEASURES:
        raise ValueError(f"Unknown map measure {measure!r}; expected one of {list(MAP_MEASURES)}.")
    if not layers:
        raise ValueError("No layers given.")
    first = [load_activations(run_a, layer) for layer in layers]
    second = None if run_b == run_a else [load_activations(run_b, layer) for layer in layers]
    try:
        return similarity.cka_map(first, second, debiased=measure == "debiased_cka")
    except ValueError as error:
        raise ValueError(f"Runs {run_a!r} and {run_b!r}: {error}") from error


def map_pairs(
    treated_runs: Sequence[str],
    baseline_runs: Sequence[str],
    run_seeds: Mapping[str, object] | None = None,
) -> list[tuple[str, str, str]]:
    """The pairs mapped for one treated alpha: `(comparison, run_a, run_b)`.

    One within-alpha pair (the first two treated runs) and one to-baseline
    pair (the first treated run and the first baseline run), leaving out
    pairs that share a seed when `run_seeds` is given (as Figure 3 does).

    Returns:
        Up to two pairs, "within" before "to_baseline".
    """
    def different(a, b):
        return run_seeds is None or run_seeds[a] != run_seeds[b]

    pairs = []
    within = [(a, b) for i, a in enumerate(treated_runs) for b in treated_runs[i + 1:] if different(a, b)]
    if within:
        pairs.append(("within", *within[0]))
    to_baseline = [(a, b) for a in treated_runs for b in baseline_runs if different(a, b)]
    if to_baseline:
        pairs.append(("to_baseline", *to_baseline[0]))
    return pairs


def map_table(
    pairs: Sequence[tuple[str, str, str]],
    layers: Sequence[str],
    load_activations: ActivationLoader,
    measure: str = "debiased_cka",
    blas_threads: int | None = 1,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """The maps of several pairs as one long table (`MAP_COLUMNS`, one row per entry).

    `blas_threads` limits BLAS while computing, as `figure3_distances` does
    (many small products, which multi-threaded BLAS beside other processes
    slows down many times over); None leaves BLAS alone. `progress` is called
    with 1 after each pair.
    """
    rows = []
    for comparison, run_a, run_b in pairs:
        with blas_thread_limit(blas_threads):
            values = layer_similarity_map(run_a, run_b, layers, load_activations, measure)
        for i, layer_a in enumerate(layers):
            for j, layer_b in enumerate(layers):
                rows.append((comparison, run_a, run_b, measure, layer_a, i, layer_b, j,
                             float(values[i, j])))
        if progress is not None:
            progress(1)
    return pd.DataFrame(rows, columns=list(MAP_COLUMNS))

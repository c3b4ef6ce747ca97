"""Benchmark of the CKA layer maps of `tf_selectivity.measures.similarity`.

The case the analysis meets: all 19 x 19 layer pairs of two ResNet20 runs
on the 10,000-image test set (layers of 16/32/64 units, one datapoint per
image with the positions averaged), debiased CKA. Synthetic ReLU-like
layers that share a latent, so the map has structure. Measured side by side
in one run:

* `cka_map(..., debiased=True)`: exact debiased CKA on all datapoints, in
  feature space (each layer centred once, one `d_i x d_j` product per pair);
* `MinibatchCKAMap`: Nguyen et al.'s minibatch CKA streamed over batches of
  `--batch-size` images (memory independent of the test-set size);
* the plain implementation: two `n x n` linear Gram matrices per pair,
  U-centred (`cka_from_grams(..., debiased=True)`, Kornblith et al.'s
  Gram-space code), timed on `--plain-pairs` pairs and extrapolated to the
  361 (holding all 38 Gram matrices would take 30 GB); its values are
  checked against the exact map on those pairs;
* the Figure 3 measures from CCA factors (`distances_from_factors`:
  linear and debiased CKA and Procrustes from one product), per pair.

Usage:
    python benchmarks/bench_similarity.py [--datapoints 10000]
        [--batch-size 500] [--plain-pairs 3] [--blas-threads N]

Prints timings only; it is not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

import numpy as np

from tf_selectivity.measures.similarity import cca
from tf_selectivity.measures import similarity

# ResNet20's 19 convolutional layers: the stem and 3 stages of 6 convolutions.
RESNET20_LAYER_WIDTHS = (16,) * 7 + (32,) * 6 + (64,) * 6


def synthetic_run(rng: np.random.Generator, latent: np.ndarray) -> list[np.ndarray]:
    """19 ReLU-like `(units, datapoints)` layers of one network, drifting along depth."""
    layers = []
    state = latent
    for width in RESNET20_LAYER_WIDTHS:
        mixing = rng.standard_normal((width, state.shape[0])) / np.sqrt(state.shape[0])
        layer = np.maximum(mixing @ state + 0.5 * rng.standard_normal((width, latent.shape[1])), 0.0)
        layers.append(layer)
        state = np.vstack([latent, layer])
    return layers


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datapoints", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--plain-pairs", type=int, default=3)
    parser.add_argument("--blas-threads", type=int, default=None)
    args = parser.parse_args()
    limit = contextlib.nullcontext()
    if args.blas_threads is not None:
        import threadpoolctl

        limit = threadpoolctl.threadpool_limits(limits=args.blas_threads, user_api="blas")
    with limit:
        run(args)


def run(args) -> None:
    n = args.datapoints
    print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f} blas_threads={args.blas_threads} "
          f"datapoints={n} layers={len(RESNET20_LAYER_WIDTHS)} x {len(RESNET20_LAYER_WIDTHS)}")
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((32, n))
    first, second = synthetic_run(rng, latent), synthetic_run(rng, latent)
    pairs = len(first) * len(second)

    exact, exact_s = _timed(lambda: similarity.cka_map(first, second, debiased=True))
    print(f"exact debiased CKA map (feature space): {exact_s:.2f} s for {pairs} pairs "
          f"({1e3 * exact_s / pairs:.2f} ms/pair)")
    linear, linear_s = _timed(lambda: similarity.cka_map(first, second))
    print(f"exact linear CKA map (feature space): {linear_s:.2f} s")

    def streamed():
        cka_map = similarity.MinibatchCKAMap(len(first), len(second))
        for start in range(0, n, args.batch_size):
            cka_map.update([a[:, start:start + args.batch_size] for a in first],
                           [b[:, start:start + args.batch_size] for b in second])
        return cka_map.result()

    minibatch, minibatch_s = _timed(streamed)
    batches = -(-n // args.batch_size)
    print(f"minibatch CKA map ({batches} batches of {args.batch_size}): {minibatch_s:.2f} s; "
          f"max |minibatch - exact debiased| = {np.abs(minibatch - exact).max():.3f}")

    plain_times, plain_errors = [], []
    for k in range(args.plain_pairs):
        i, j = (k * 7) % len(first), (k * 11 + 3) % len(second)

        def plain():
            return similarity.cka_from_grams(first[i].T @ first[i], second[j].T @ second[j],
                                             debiased=True)

        value, seconds = _timed(plain)
        plain_times.append(seconds)
        plain_errors.append(abs(value - exact[i, j]))
    if plain_times:
        per_pair = float(np.median(plain_times))
        print(f"plain n x n Gram debiased CKA: {per_pair:.2f} s/pair (median of {len(plain_times)}), "
              f"{per_pair * pairs:.0f} s extrapolated to {pairs} pairs = "
              f"{per_pair * pairs / exact_s:.0f}x the exact feature-space map; "
              f"max |plain - feature space| = {max(plain_errors):.1e}")

    factors_a, factor_s = _timed(lambda: [cca.factorize(layer) for layer in first])
    factors_b = [cca.factorize(layer) for layer in second]
    measures = ["linear_cka", "debiased_cka", "procrustes"]
    _, measures_s = _timed(lambda: [similarity.distances_from_factors(a, b, measures)
                                    for a in factors_a for b in factors_b])
    print(f"Figure 3 measures from CCA factors ({', '.join(measures)} from one product): "
          f"{1e3 * measures_s / pairs:.2f} ms/pair; factorizing: {1e3 * factor_s / len(first):.1f} "
          "ms/layer")


if __name__ == "__main__":
    main()

"""Benchmark of `tf_selectivity.measures.similarity.cca` PWCCA, optionally against google/svcca.

Measures, on the same random activations in one run:

* `factorize` per (network, layer);
* our PWCCA per pair from cached factors (what the Figure 3 analysis does),
  for each variant ("svcca": google/svcca's `compute_pwcca`, the paper's;
  "textbook") and for both from one product;
* our PWCCA per pair from raw arrays (two factorizations + one comparison);
* google/svcca's `pwcca.compute_pwcca` per pair, and its agreement with our
  "svcca" variant, if a copy of its `cca_core.py` and `pwcca.py` is found in
  the folder given by `--google-svcca DIR` or the `GOOGLE_SVCCA_DIR`
  environment variable (google's code is not part of this project; where
  the first layer is the larger, google/svcca's master raises IndexError,
  so give it a copy with `acts2` in the else branch of `compute_pwcca`);

then estimates the cost of one alpha of the paper's Figure 3 (20 treated +
20 baseline ResNet20 replicates, 590 pairs x 19 layers of 16/32/64 units),
with `--figure3` runs that analysis end to end on synthetic activations
(both PWCCA variants from the same factors), and with
`--variant-differences` compares the two PWCCA variants on all pairs of 20
random and 20 ReLU-like layers.

Usage:
    python benchmarks/bench_cca.py [--google-svcca DIR] [--figure3]
        [--variant-differences] [--blas-threads N]

`--blas-threads N` limits BLAS threads for the whole run (needs
threadpoolctl; otherwise set OPENBLAS_NUM_THREADS before starting).
`figure3_distances` itself limits BLAS to one thread when threadpoolctl is
installed.

Prints timings only; it is not a test.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import itertools
import os
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from tf_selectivity.measures.similarity import cca
from tf_selectivity.analysis.stages.similarity import distances as similarity_distances

# ResNet20's 19 convolutional layers: the stem and 3 stages of 6 convolutions.
RESNET20_LAYER_WIDTHS = (16,) * 7 + (32,) * 6 + (64,) * 6


def main() -> None:
    args = _parse_args()
    print(
        f"cpus={os.cpu_count()} OPENBLAS_NUM_THREADS="
        f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')} "
        f"--blas-threads={args.blas_threads} numpy={np.__version__} "
        f"threadpoolctl={'yes' if _has_threadpoolctl() else 'no'}"
    )
    with similarity_distances.blas_thread_limit(args.blas_threads):
        _benchmark(args)


def _benchmark(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    layers = [
        _synthetic_layer(rng, args.units, args.datapoints)
        for _ in range(args.pairs + 1)
    ]
    pairs = _consecutive_pairs(layers)
    print(
        f"{args.pairs} pairs of ({args.units} units x {args.datapoints} datapoints), "
        f"median over {args.repeats} repeats"
    )

    factor_ms = _factorize_ms(layers, args.repeats)
    factors = [cca.factorize(a) for a in layers]
    factor_pairs = _consecutive_pairs(factors)
    cached_ms = {
        variant: _per_pair_ms(
            functools.partial(cca.pwcca_distance, variant=variant),
            factor_pairs,
            args.repeats,
        )
        for variant in cca.PWCCA_VARIANTS
    }
    both_ms = _per_pair_ms(cca.pwcca_variants, factor_pairs, args.repeats)
    svcca_variant = functools.partial(cca.pwcca_distance, variant="svcca")
    raw_ms = _per_pair_ms(svcca_variant, pairs, args.repeats)
    print(f"ours factorize                    {factor_ms:8.2f} ms/layer")
    for variant, ms in cached_ms.items():
        print(f"ours pwcca {variant:8s}, cached      {ms:8.2f} ms/pair")
    print(f"ours pwcca both, cached           {both_ms:8.2f} ms/pair")
    print(f"ours pwcca svcca, raw arrays      {raw_ms:8.2f} ms/pair")

    google = _import_google(args.google_svcca)
    if google is None:
        print("google/svcca: no copy given (--google-svcca DIR or GOOGLE_SVCCA_DIR)")
    else:
        google_fn = lambda a, b: float(google.compute_pwcca(a, b)[0])  # noqa: E731
        google_ms = _per_pair_ms(google_fn, pairs, args.repeats)
        print(f"google compute_pwcca              {google_ms:8.2f} ms/pair")
        cached_svcca_ms = cached_ms["svcca"]
        print(f"ratio google / ours svcca cached  {google_ms / cached_svcca_ms:6.1f}x")
        print(f"ratio google / ours svcca raw     {google_ms / raw_ms:6.1f}x")
        _print_agreement(google, pairs, factor_pairs)

    _print_figure3_estimate(rng, args)
    if args.figure3:
        _run_figure3(args)
    if args.variant_differences:
        _print_variant_differences(args)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--datapoints", type=int, default=10_000)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--google-svcca",
        default=os.environ.get("GOOGLE_SVCCA_DIR"),
        help="folder holding google/svcca's cca_core.py and pwcca.py",
    )
    parser.add_argument(
        "--figure3",
        action="store_true",
        help="also run the full Figure 3 analysis for one alpha on synthetic data",
    )
    parser.add_argument("--replicates", type=int, default=20)
    parser.add_argument(
        "--variant-differences",
        action="store_true",
        help="compare the two PWCCA variants on all pairs of 20 random layers",
    )
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="limit BLAS threads for the whole run (needs threadpoolctl)",
    )
    return parser.parse_args()


def _has_threadpoolctl() -> bool:
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        return False
    return True


def _synthetic_layer(
    rng: np.random.Generator,
    units: int,
    datapoints: int,
    latent_dims: int = 32,
    relu: bool = True,
) -> np.ndarray:
    """Relu (or not) of a random mixture of a low-dimensional latent, plus noise."""
    latent = rng.standard_normal((latent_dims, datapoints))
    mixed = rng.standard_normal((units, latent_dims)) @ latent
    mixed += 0.5 * rng.standard_normal((units, datapoints))
    if relu:
        mixed = np.maximum(mixed, 0.0)
    return mixed.astype(np.float32)


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `fn()` in milliseconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _factorize_ms(layers: list[np.ndarray], repeats: int) -> float:
    """Median milliseconds of one `cca.factorize` over `layers`."""
    return _median_ms(lambda: [cca.factorize(a) for a in layers], repeats) / len(layers)


def _consecutive_pairs(items: list) -> list[tuple]:
    """[(items[0], items[1]), (items[1], items[2]), ...]."""
    return list(zip(items[:-1], items[1:], strict=True))


def _per_pair_ms(
    fn: Callable[[object, object], float], pairs: list, repeats: int
) -> float:
    """Median milliseconds per pair of `fn(a, b)` over `pairs`."""
    return _median_ms(lambda: [fn(a, b) for a, b in pairs], repeats) / len(pairs)


def _import_google(folder: str | None):
    """google/svcca's `pwcca` module from `folder`, or None."""
    if not folder:
        return None
    if not os.path.isfile(os.path.join(folder, "pwcca.py")):
        print(f"google/svcca: no pwcca.py in {folder}")
        return None
    sys.path.insert(0, folder)  # pwcca.py imports cca_core by plain name.
    return importlib.import_module("pwcca")


def _print_agreement(google, pairs: list, factor_pairs: list) -> None:
    """Differences between google's and our results on `pairs`, both ways."""
    correlation_diffs, weight_diffs, svcca_diffs, textbook_diffs = [], [], [], []
    swapped = [(b, a) for a, b in pairs]  # First layer larger when sizes differ.
    swapped_factors = [(fb, fa) for fa, fb in factor_pairs]
    for (a, b), (fa, fb) in zip(pairs + swapped, factor_pairs + swapped_factors):
        google_similarity, google_weights, google_correlations = google.compute_pwcca(
            a, b
        )
        ours = cca.pwcca_variants(fa, fb)
        correlation_diffs.append(
            np.abs(google_correlations - ours["svcca"].canonical_correlations).max()
        )
        weight_diffs.append(np.abs(google_weights - ours["svcca"].weights).max())
        svcca_diffs.append(abs(float(google_similarity) - ours["svcca"].similarity))
        textbook_diffs.append(float(google_similarity) - ours["textbook"].similarity)
    print(f"agreement: max |canonical correlation diff| = {max(correlation_diffs):.1e}")
    print(
        f"agreement: variant 'svcca' vs google: max |similarity diff| "
        f"{max(svcca_diffs):.1e}, max |weight diff| {max(weight_diffs):.1e}"
    )
    print(
        "agreement: variant 'textbook': similarity google - ours "
        f"min {min(textbook_diffs):+.2e}, max {max(textbook_diffs):+.2e} "
        "(a different definition, see tf_selectivity/measures/similarity/cca.py)"
    )


def _print_variant_differences(args: argparse.Namespace) -> None:
    """The two PWCCA variants on all pairs of 20 random and 20 ReLU layers.

    The 20 layers of a family (16, 32 or 64 units, as ResNet20's) are random
    mixtures of one shared 32-dimensional latent plus private noise of a
    standard deviation drawn log-uniformly in [0.2, 5], so that their
    distances spread; "random" layers are Gaussian, "relu" ones the relu of
    the mixture plus a per-unit offset drawn in [-1, 1] (non-zero means,
    some units rarely active), "relu+-5" the same with offsets in [-5, 5]
    (means large against the spread, which google's weights follow). Prints
    the range of `svcca - textbook` distances, the largest relative
    difference, and how many orderings of two pairs' distances the variants
    disagree on: among all 190 pairs (17,955 orderings) and among the first
    20 pairs (190 orderings).
    """
    rng = np.random.default_rng(args.seed + 1)
    for family, offset in (("random", 0.0), ("relu", 1.0), ("relu+-5", 5.0)):
        latent = rng.standard_normal((32, args.datapoints))
        layers = []
        for _ in range(20):
            units = int(rng.choice([16, 32, 64]))
            mixed = rng.standard_normal((units, 32)) @ latent / np.sqrt(32)
            mixed += np.exp(rng.uniform(np.log(0.2), np.log(5.0))) * (
                rng.standard_normal(mixed.shape)
            )
            if offset:
                mixed = np.maximum(mixed + rng.uniform(-offset, offset, (units, 1)), 0)
            layers.append(cca.factorize(mixed))
        distances = {variant: [] for variant in cca.PWCCA_VARIANTS}
        for first, second in itertools.combinations(layers, 2):
            for variant, result in cca.pwcca_variants(first, second).items():
                distances[variant].append(result.distance)
        svcca_variant = np.asarray(distances["svcca"])
        textbook = np.asarray(distances["textbook"])
        difference = svcca_variant - textbook
        print(
            f"variants, {family} layers ({len(difference)} pairs, "
            f"{args.datapoints} datapoints): svcca - textbook distance "
            f"{difference.min():+.3f} to {difference.max():+.3f}, relative "
            f"{np.abs(difference / textbook).max():.0%} at most; distances "
            f"svcca {svcca_variant.min():.3f}-{svcca_variant.max():.3f}, "
            f"textbook {textbook.min():.3f}-{textbook.max():.3f}"
        )
        for count in (len(difference), 20):
            flips, orderings = _ordering_flips(svcca_variant[:count], textbook[:count])
            print(
                f"variants, {family} layers: {flips} of {orderings} orderings of "
                f"{count} pairs' distances flip"
            )


def _ordering_flips(first: np.ndarray, second: np.ndarray) -> tuple[int, int]:
    """(discordant, total) orderings of two rankings of the same items."""
    i, j = np.triu_indices(len(first), k=1)
    discordant = np.sign(first[i] - first[j]) != np.sign(second[i] - second[j])
    return int(discordant.sum()), len(i)


def _print_figure3_estimate(rng: np.random.Generator, args: argparse.Namespace) -> None:
    """Extrapolates one alpha of Figure 3 from per-width timings."""
    runs = 2 * args.replicates
    pairs_per_layer = args.replicates * (args.replicates - 1) // 2 + args.replicates**2
    total_s = 0.0
    for width in sorted(set(RESNET20_LAYER_WIDTHS)):
        sample = [_synthetic_layer(rng, width, args.datapoints) for _ in range(4)]
        factor_ms = _factorize_ms(sample, args.repeats)
        factors = [cca.factorize(a) for a in sample]
        pair_ms = _per_pair_ms(
            functools.partial(cca.pwcca_distance, variant="svcca"),
            _consecutive_pairs(factors),
            args.repeats,
        )
        layers = RESNET20_LAYER_WIDTHS.count(width)
        total_s += layers * (runs * factor_ms + pairs_per_layer * pair_ms) / 1e3
        print(
            f"width {width:3d}: factorize {factor_ms:6.2f} ms, pair {pair_ms:6.2f} ms"
        )
    print(
        f"Figure 3 estimate, one alpha ({args.replicates}+{args.replicates} runs, "
        f"{pairs_per_layer} pairs x {len(RESNET20_LAYER_WIDTHS)} layers, "
        f"{args.datapoints} datapoints): {total_s:.1f} s (CCA only, no loading)"
    )


def _run_figure3(args: argparse.Namespace) -> None:
    """Runs `figure3_distances` end to end on synthetic ResNet20-sized layers."""
    treated = [f"treated_{i}" for i in range(args.replicates)]
    baseline = [f"baseline_{i}" for i in range(args.replicates)]
    run_index = {run: i for i, run in enumerate(treated + baseline)}
    layers = [f"conv_{i}" for i in range(len(RESNET20_LAYER_WIDTHS))]
    load_seconds = 0.0

    def load(run: str, layer: str) -> np.ndarray:
        nonlocal load_seconds
        start = time.perf_counter()
        layer_index = layers.index(layer)
        rng = np.random.default_rng([run_index[run], layer_index])
        width = RESNET20_LAYER_WIDTHS[layer_index]
        acts = _synthetic_layer(rng, width, args.datapoints)
        load_seconds += time.perf_counter() - start
        return acts

    start = time.perf_counter()
    distances = similarity_distances.figure3_distances(
        treated, baseline, layers, load, pwcca_variant="both"
    )
    total = time.perf_counter() - start
    ratios = {
        variant: similarity_distances.mean_ratio(similarity_distances.distance_ratios(rows))
        for variant, rows in distances.groupby("pwcca_variant")
    }
    print(
        f"Figure 3 end to end, one alpha, both PWCCA variants: {len(distances)} "
        f"distances in {total:.1f} s ({load_seconds:.1f} s of it generating "
        "synthetic activations); mean ratio "
        + ", ".join(f"{variant} {ratio:.3f}" for variant, ratio in ratios.items())
    )


if __name__ == "__main__":
    main()

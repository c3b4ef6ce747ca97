"""Figure 3's distances: every treated run against its replicates and against the alpha = 0 runs.

Does regularizing against class selectivity merely rotate selectivity off the
unit axes? Section 4.2 and Appendix A.2 of the paper answer with CCA, which is
invariant to invertible linear maps. For one regularization scale `alpha_r`
with 20 replicate networks, and 20 unregularized (`alpha_0 = 0`) baseline
replicates, per layer:

* `rho(alpha_r, alpha_r)`: the distances between every pair of treated
  replicates (C(20, 2) = 190), the noise floor set by random seeds;
* `rho(alpha_r, alpha_0)`: the distances between every treated and every
  baseline replicate (20 x 20 = 400; 380 when pairs that share a seed are
  left out, see `run_seeds` in `figure3_distances`).

The *CCA distance ratio* of a layer is `mean rho(alpha_r, alpha_0) / mean
rho(alpha_r, alpha_r)`: about 1 if the treated networks are a rotation (or
other invertible map) of the unregularized ones, above 1 if the
representation really changed. Figure 3b averages it over layers.

`figure3_distances` computes the pairwise table, `distance_ratios` and
`mean_ratio` the ratios; the paired t-test over layers, with the other
statistics of Figure 3b, is `tf_selectivity.measures.stats.cca_ratio_summary`. Memory stays
bounded by one layer: each (run, layer) is loaded and factored exactly once
(`tf_selectivity.measures.similarity.cca.factorize`), the factors of all runs for that layer are
compared, and they are released before the next layer is loaded.

PWCCA comes in two variants (see `tf_selectivity.measures.similarity.cca.pwcca`): "svcca",
google/svcca's `compute_pwcca`, which the paper used and which is the default
here, and "textbook", the definition of Morcos et al.; their distances
differ by up to about 0.1 (more when unit means are large).
`pwcca_variant="both"` computes the two from the same factors (one product
per pair), and the `pwcca_variant` column says which row is which. PWCCA
is not symmetric: it weights the layer with fewer units ("svcca"; lower rank
for "textbook"), and the first network of the pair (`run_a`) on ties, i.e.
the treated network for to-baseline pairs and the earlier one in
`treated_runs` for within pairs.

Speed: with each layer factored once, a pair costs one product of the two
bases and a small SVD (`benchmarks/bench_cca.py`). These many mid-sized BLAS
calls run best on one thread: multi-threaded OpenBLAS slows them down many
times over as soon as another process competes for the cores.
`figure3_distances` therefore limits BLAS to `blas_threads=1` thread while it
runs, through `threadpoolctl` when that package is installed (otherwise set
`OPENBLAS_NUM_THREADS=1` in the environment before numpy is imported).

Other measures. `method` may also name a measure of
`tf_selectivity.measures.similarity` computed from the same factors: "linear_cka"
and "debiased_cka" (distance `1 - CKA`) and "procrustes" (the angular
Procrustes distance, rotations only, in radians), or be a sequence of
methods: each (run, layer) is then loaded and factored once for all of
them, the CKA and Procrustes measures of a pair share one product, and the
`method` column of the table says which measure each row is.

numpy, scipy and pandas only.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from tf_selectivity.measures.similarity import cca
from tf_selectivity.measures import similarity

WITHIN = "within"
TO_BASELINE = "to_baseline"

DISTANCE_COLUMNS = (
    "layer",
    "layer_index",
    "comparison",
    "run_a",
    "run_b",
    "distance",
    "method",
    "pwcca_variant",
)
RATIO_COLUMNS = ("layer", "layer_index", "within_mean", "to_baseline_mean", "ratio")

# Distance functions by method name; each accepts raw or factored activations.
# PWCCA here is the paper's variant; `figure3_distances` picks the variant
# with its `pwcca_variant` argument.
DISTANCE_FUNCTIONS: dict[str, Callable[..., float]] = {
    "pwcca": functools.partial(cca.pwcca_distance, variant="svcca"),
    "svcca": cca.svcca_distance,
    "mean_cca": cca.mean_cca_distance,
}
# Measures of `tf_selectivity.measures.similarity` computed from the CCA factors, as
# distances (`similarity.distances_from_factors`).
FACTORED_METHODS = similarity.FACTORED_MEASURES
# Every method `figure3_distances` accepts.
METHODS = (*DISTANCE_FUNCTIONS, *FACTORED_METHODS)
# `pwcca_variant` values of `figure3_distances`: a variant of
# `cca.PWCCA_VARIANTS`, or both from the same factors.
PWCCA_VARIANT_CHOICES = (*cca.PWCCA_VARIANTS, "both")

ActivationLoader = Callable[[str, str], np.ndarray]
ProgressCallback = Callable[[int, int], None]


def figure3_distances(
    treated_runs: Sequence[str],
    baseline_runs: Sequence[str],
    layers: Sequence[str],
    load_activations: ActivationLoader,
    method: str | Sequence[str] = "pwcca",
    progress: ProgressCallback | None = None,
    *,
    treated_alpha: float | None = None,
    baseline_alpha: float | None = None,
    run_seeds: Mapping[str, object] | None = None,
    pwcca_variant: str = "svcca",
    blas_threads: int | None = 1,
    procrustes_alpha: float = 1.0,
) -> pd.DataFrame:
    """CCA distances of Figure 3 for one treated alpha, layer by layer.

    Args:
        treated_runs: Run ids of the replicates at the treated alpha (>= 2).
        baseline_runs: Run ids of the baseline (alpha = 0) replicates (>= 1).
        layers: Layer names, in network order; `layer_index` is the position
            in this sequence.
        load_activations: `load_activations(run_id, layer)` returns that
            layer's `(units, datapoints)` activations; every run must use the
            same datapoints. Called exactly once per (run, layer), all calls
            for one layer before any call for the next.
        method: "pwcca" (the paper's), "svcca", "mean_cca", "linear_cka",
            "debiased_cka" or "procrustes", or a sequence of them (all from
            one factorization of each run and layer).
        progress: Optional `progress(n_done, n_total)` called after each
            compared pair, with `n_total = len(layers) * n_pairs`.
        treated_alpha: Optional alpha of the treated runs, only checked
            against `baseline_alpha`.
        baseline_alpha: Optional alpha of the baseline runs.
        run_seeds: Optional seed of each run. When given, pairs of runs with
            the same seed are left out: with our training, a seed fixes the
            initial weights, the batch order and the augmentation, so a
            treated run and the baseline run of its seed are not independent
            replicates (after a short training they are nearly identical)
            and would pull the to-baseline mean below the within-alpha noise
            floor, which only compares different seeds. 20 + 20 replicates
            with seeds 0-19 then give 190 within and 380 to-baseline pairs.
        pwcca_variant: With method "pwcca": "svcca" (google/svcca's
            `compute_pwcca`, the paper's), "textbook", or "both" (two rows
            per pair, from the same factors). Ignored by the other methods.
        blas_threads: BLAS threads while computing (see `blas_thread_limit`);
            None leaves the BLAS settings alone.
        procrustes_alpha: Partial whitening of "procrustes", in [0, 1] (1:
            rotations only, 0: CCA-like; see
            `tf_selectivity.measures.similarity.procrustes_distance`).

    Returns:
        DataFrame with columns `layer, layer_index, comparison, run_a, run_b,
        distance, method, pwcca_variant`, one row per (layer, pair) and
        PWCCA variant. `comparison` is "within" for treated-vs-treated pairs
        (`run_a` before `run_b` in `treated_runs`) and "to_baseline" for
        treated-vs-baseline pairs (`run_a` treated, `run_b` baseline).
        `pwcca_variant` is "svcca" or "textbook" for PWCCA and "" for the
        other methods.

    Raises:
        ValueError: On an unknown method or PWCCA variant, fewer than 2
            treated runs, no
            baseline run, duplicate or shared run ids, no or duplicate layers,
            equal treated and baseline alphas, or unusable activations (the
            message names the run and layer).
    """
    pair_distances = _pair_distance_function(method, pwcca_variant, procrustes_alpha)
    treated, baseline = _validated_runs(
        treated_runs, baseline_runs, treated_alpha, baseline_alpha
    )
    layer_names = _validated_layers(layers)
    pairs = list(_run_pairs(treated, baseline))
    if run_seeds is not None:
        pairs = [pair for pair in pairs if run_seeds[pair[1]] != run_seeds[pair[2]]]
        if not any(comparison == WITHIN for comparison, _, _ in pairs):
            raise ValueError("No within-alpha pair of runs with different seeds.")
        if not any(comparison == TO_BASELINE for comparison, _, _ in pairs):
            raise ValueError("No treated/baseline pair of runs with different seeds.")
    n_total = len(layer_names) * len(pairs)
    rows: list[tuple] = []
    with blas_thread_limit(blas_threads):
        for layer_index, layer in enumerate(layer_names):
            factors = _factor_layer(treated + baseline, layer, load_activations)
            for n_done, (comparison, run_a, run_b) in enumerate(pairs, 1):
                try:
                    pair_rows = pair_distances(factors[run_a], factors[run_b])
                except ValueError as error:
                    raise ValueError(
                        f"Layer {layer!r}, runs {run_a!r} and {run_b!r}: {error}"
                    ) from error
                for name, variant, distance in pair_rows:
                    rows.append(
                        (layer, layer_index, comparison, run_a, run_b)
                        + (distance, name, variant)
                    )
                if progress is not None:
                    progress(layer_index * len(pairs) + n_done, n_total)
            # Released before the next layer is loaded: at most one layer's
            # factors for all runs are alive at a time.
            del factors
    return _distances_frame(rows)


def distance_ratios(distances: pd.DataFrame) -> pd.DataFrame:
    """CCA distance ratio per layer.

    Args:
        distances: Output of `figure3_distances` (one method and PWCCA
            variant).

    Returns:
        DataFrame with columns `layer, layer_index, within_mean,
        to_baseline_mean, ratio`, one row per layer sorted by `layer_index`;
        `ratio = to_baseline_mean / within_mean` (inf if the within mean is
        0).

    Raises:
        ValueError: If columns are missing, several methods or PWCCA
            variants are mixed, or a layer lacks within or to-baseline
            distances.
    """
    _check_distances(distances)
    means = (
        distances.groupby(["layer_index", "layer", "comparison"], sort=True)["distance"]
        .mean()
        .unstack("comparison")
    )
    for comparison in (WITHIN, TO_BASELINE):
        if comparison not in means.columns or means[comparison].isna().any():
            raise ValueError(f"Every layer needs {comparison!r} distances.")
    ratios = means.reset_index().rename(
        columns={WITHIN: "within_mean", TO_BASELINE: "to_baseline_mean"}
    )
    ratios["ratio"] = ratios["to_baseline_mean"] / ratios["within_mean"]
    ratios.columns.name = None
    return ratios[list(RATIO_COLUMNS)]


def mean_ratio(ratios: pd.DataFrame) -> float:
    """CCA distance ratio averaged over layers (one point of Figure 3b).

    Args:
        ratios: Output of `distance_ratios`.

    Returns:
        The mean of the `ratio` column.

    Raises:
        ValueError: If there is no layer.
    """
    if len(ratios) == 0:
        raise ValueError("No layer ratios to average.")
    return float(ratios["ratio"].mean())


def blas_thread_limit(threads: int | None) -> contextlib.AbstractContextManager:
    """Context manager limiting BLAS (OpenBLAS, MKL, ...) to `threads` threads.

    Uses `threadpoolctl` if it is installed and does nothing otherwise (or
    when `threads` is None).

    Args:
        threads: Number of BLAS threads, or None to leave BLAS alone.

    Returns:
        The context manager.
    """
    if threads is None:
        return contextlib.nullcontext()
    try:
        import threadpoolctl  # Optional dependency.
    except ImportError:
        return contextlib.nullcontext()
    return threadpoolctl.threadpool_limits(limits=threads, user_api="blas")


def _pair_distance_function(
    method: str | Sequence[str], pwcca_variant: str, procrustes_alpha: float = 1.0
) -> Callable[..., list[tuple[str, str, float]]]:
    """`fn(a, b)` -> `[(method, pwcca_variant, distance), ...]` of one pair, or ValueError."""
    methods = [method] if isinstance(method, str) else list(method)
    if not methods or len(set(methods)) != len(methods):
        raise ValueError(f"Need one or more distinct methods, got {methods}.")
    factored = [m for m in methods if m in FACTORED_METHODS]
    single = {m: _single_method_function(m, pwcca_variant)
              for m in methods if m not in FACTORED_METHODS}

    def pair_distances(first, second):
        rows = []
        shared = (similarity.distances_from_factors(
            first, second, factored, procrustes_alpha=procrustes_alpha) if factored else {})
        for name in methods:
            if name in shared:
                rows.append((name, "", shared[name]))
            else:
                rows += [(name, variant, d) for variant, d in single[name](first, second)]
        return rows

    return pair_distances


def _single_method_function(
    method: str, pwcca_variant: str
) -> Callable[..., list[tuple[str, float]]]:
    """`fn(a, b)` -> `[(pwcca_variant, distance), ...]` of one CCA method, or ValueError."""
    distance_fn = _distance_function(method)
    if pwcca_variant not in PWCCA_VARIANT_CHOICES:
        raise ValueError(
            f"Unknown PWCCA variant {pwcca_variant!r}; expected one of "
            f"{list(PWCCA_VARIANT_CHOICES)}."
        )
    if method != "pwcca":
        return lambda first, second: [("", distance_fn(first, second))]
    variants = cca.PWCCA_VARIANTS if pwcca_variant == "both" else (pwcca_variant,)

    def pwcca_distances(first, second):
        # One call: the variants share the product of the two bases.
        results = cca.pwcca_variants(first, second, variants)
        return [(variant, result.distance) for variant, result in results.items()]

    return pwcca_distances


def _distance_function(method: str) -> Callable[..., float]:
    """The distance function of `method`, or ValueError."""
    try:
        return DISTANCE_FUNCTIONS[method]
    except KeyError:
        raise ValueError(
            f"Unknown CCA method {method!r}; "
            f"expected one of {list(METHODS)}."
        ) from None


def _validated_runs(
    treated_runs: Sequence[str],
    baseline_runs: Sequence[str],
    treated_alpha: float | None,
    baseline_alpha: float | None,
) -> tuple[list[str], list[str]]:
    """Checks the run lists and alphas; returns them as lists of strings."""
    if (
        treated_alpha is not None
        and baseline_alpha is not None
        and treated_alpha == baseline_alpha
    ):
        raise ValueError(
            f"The treated alpha equals the baseline alpha ({treated_alpha}); "
            "the ratio compares a treated alpha with a different baseline."
        )
    treated = [str(run) for run in treated_runs]
    baseline = [str(run) for run in baseline_runs]
    if len(treated) < 2:
        raise ValueError(
            f"Need at least 2 treated runs for within-alpha pairs, got {len(treated)}."
        )
    if not baseline:
        raise ValueError("Need at least 1 baseline run.")
    for name, runs in (("treated_runs", treated), ("baseline_runs", baseline)):
        if len(set(runs)) != len(runs):
            raise ValueError(f"{name} contains duplicate run ids.")
    shared = sorted(set(treated) & set(baseline))
    if shared:
        raise ValueError(f"Run ids in both treated and baseline runs: {shared}.")
    return treated, baseline


def _validated_layers(layers: Sequence[str]) -> list[str]:
    """Checks that there are layers and no duplicates."""
    names = [str(layer) for layer in layers]
    if not names:
        raise ValueError("No layers given.")
    if len(set(names)) != len(names):
        raise ValueError("layers contains duplicates.")
    return names


def _run_pairs(
    treated: list[str], baseline: list[str]
) -> Iterator[tuple[str, str, str]]:
    """(comparison, run_a, run_b) for all within and to-baseline pairs."""
    for run_a, run_b in itertools.combinations(treated, 2):
        yield WITHIN, run_a, run_b
    for run_a, run_b in itertools.product(treated, baseline):
        yield TO_BASELINE, run_a, run_b


def _factor_layer(
    runs: list[str], layer: str, load_activations: ActivationLoader
) -> dict[str, cca.FactoredActivations]:
    """Loads and factors one layer of every run, once each."""
    factors = {}
    for run in runs:
        try:
            factors[run] = cca.factorize(load_activations(run, layer))
        except ValueError as error:
            raise ValueError(f"Run {run!r}, layer {layer!r}: {error}") from error
    datapoints = {run: factor.num_datapoints for run, factor in factors.items()}
    if len(set(datapoints.values())) > 1:
        raise ValueError(
            f"Layer {layer!r}: runs have different numbers of datapoints: {datapoints}."
        )
    return factors


def _distances_frame(rows: list[tuple]) -> pd.DataFrame:
    """The distances table with its column names and dtypes."""
    frame = pd.DataFrame(rows, columns=list(DISTANCE_COLUMNS))
    return frame.astype(
        {
            "layer": str,
            "layer_index": np.int64,
            "comparison": str,
            "run_a": str,
            "run_b": str,
            "distance": np.float64,
            "method": str,
            "pwcca_variant": str,
        }
    )


def _check_distances(distances: pd.DataFrame) -> None:
    """Raises ValueError unless `distances` is a one-method distances table."""
    # `pwcca_variant` is optional: tables written before it existed lack it.
    required = [column for column in DISTANCE_COLUMNS if column != "pwcca_variant"]
    missing = [column for column in required if column not in distances.columns]
    if missing:
        raise ValueError(f"Distances table lacks columns {missing}.")
    methods = distances["method"].unique()
    if len(methods) > 1:
        raise ValueError(
            f"Distances of several methods {sorted(methods)}; select one first."
        )
    if "pwcca_variant" in distances.columns:
        variants = distances["pwcca_variant"].unique()
        if len(variants) > 1:
            raise ValueError(
                f"Distances of several PWCCA variants {sorted(variants)}; select "
                "one first (e.g. distances[distances.pwcca_variant == 'svcca'])."
            )

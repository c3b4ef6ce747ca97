"""Canonical correlation analysis between layer representations.

SVCCA (Raghu et al., 2017) and projection-weighted CCA (PWCCA, Morcos et al.,
2018, "Insights on representational similarity in neural networks with
canonical correlation"), the similarity measures behind Figure 3 of
"Selectivity considered harmful" (Leavitt & Morcos). numpy/scipy only: this
module never imports TensorFlow or Keras.

Conventions:

* Activations are arrays of shape `(units, datapoints)`: entry `(i, j)` is the
  output of unit `i` on datapoint `j`. Two layers compared with each other may
  have different numbers of units but must share the datapoints (the same
  inputs, in the same order). For convolutional layers use
  `conv_activations_to_matrix` (spatial average, or positions as datapoints).
* Every distance is `1 - similarity`, a Python float in `[0, 1]`.

The computation. Let `X` (n1 x m) and `Y` (n2 x m) be the centred
activations. The canonical correlations are the singular values of
`Qx^T Qy`, where the columns of `Qx` (m x r1) and `Qy` (m x r2) are
orthonormal bases of the row spaces of `X` and `Y` (the spans of the centred
unit vectors). This equals the textbook definition, the singular values of
`Sxx^-1/2 Sxy Syy^-1/2`, whenever the covariances are invertible, and stays
defined when they are not (dead or duplicated units). `factorize` computes
such a basis once per (network, layer) so that every pairwise comparison only
costs one (r1 x m) @ (m x r2) product and a tiny SVD:

1. Units whose activations are exactly constant ("dead" units) are dropped;
   they have no variance, no canonical variate can use them and their
   centred PWCCA projections are zero, so dropping them changes no result
   but PWCCA's "svcca" variant, which counts them and projects their
   constant values (kept, with every unit's mean, in `unit_means`).
2. The live units are centred in float64 and factored with a Householder QR
   (`X^T = Q R`, backward stable) followed by an SVD of the small `R`. This is
   the rank-revealing step: directions whose singular value is at most
   `rank_rtol * s_max` are treated as exact linear dependencies and dropped,
   with `rank_rtol = max(n, m) * eps(float64)` by default (the convention of
   `numpy.linalg.matrix_rank`). Duplicated units and units that are exact
   linear combinations of others therefore add nothing.
3. The basis is `X^T V_r S_r^-1` (the right singular vectors), with one
   Cholesky-QR pass when its measured departure from orthonormality exceeds
   1e-12 (only for ill-conditioned layers); its columns are ordered by
   decreasing singular value, so SVCCA's reduction to the top directions
   that explain 99% of the variance is the leading-column slice of the same
   basis.
4. `basis^T X^T` (rank x live units), the coordinates of every centred unit in
   the basis (`S_r V_r^T`, from the small factors), is stored for the PWCCA
   weights, which then never touch the m-long vectors again; so are the unit
   means.

PWCCA. Projection-weighted CCA weights each canonical correlation by how
much of one set's units its canonical direction accounts for. Two
computations go by that name and give different numbers, so `pwcca` takes a
required `variant`:

* `variant="textbook"`, the definition of Morcos et al. With
  `Qx^T Qy = U diag(rho) V^T`, the canonical variates of the first set are
  the (unit-norm) columns `h_i` of `Qx U`, and `rho_i` is weighted by
  `alpha_i = sum_j |<h_i, x_j>|` (normalized to sum to one), `x_j` being the
  centred units of that set: `alpha_i = sum_j |(U^T C)_ij|` with `C` the
  stored coordinates. The similarity is `sum_i alpha_i rho_i`, over the
  `min(r1, r2)` canonical pairs; when the weighted set has more dimensions,
  its surplus directions (uncorrelated with the other set, and defined only
  up to a rotation, which the absolute values in `alpha` are not invariant
  to) are left out. Tested against a computation from covariances.
* `variant="svcca"`, google/svcca's `pwcca.compute_pwcca` (with
  `cca_core.get_cca_similarity`, `epsilon=0`), the code the paper and most
  published PWCCA numbers used. It takes `u` from the SVD of the whitened
  cross-covariance `Sxx^-1/2 Sxy Syy^-1/2`, builds "directions"
  `u^T (x - mean) + mean` (without the `Sxx^-1/2` factor that makes them the
  canonical variates, and with unit `i`'s mean added to direction `i`),
  orthonormalizes them with a QR, and sums the absolute projections of the
  *uncentred* activations onto them. All of these vectors lie in the span of
  the basis and the constant vector, so we compute it in those
  `rank + 1` coordinates from the cached factors and the stored unit means,
  at about the cost of the textbook variant; the whitened cross-covariance
  is `V1 (B1^T B2) V2^T` in unit coordinates.

PWCCA is *not symmetric*: the weights come from one of the two sets.
`weight_by="smaller"` weights the smaller set, ties going to the first
argument: for "svcca" the set with fewer units, dead ones included (google's
rule), for "textbook" the one of lower rank (the same unless units are dead
or dependent). So `pwcca(X, Y) == pwcca(Y, X)` whenever the sizes differ,
and for "textbook" in general `pwcca(X, Y, weight_by="first") ==
pwcca(Y, X, weight_by="second")`. "svcca" has one weight per canonical
correlation and can only weight the set with no more units than the other.

Relation to google/svcca (`cca_core.get_cca_similarity`,
`pwcca.compute_pwcca`); how closely each point was measured to hold, and
on what, is in benchmarks/RESULTS.md, *CCA*:

* The canonical correlations, SVCCA and mean CCA are google's on
  full-rank inputs, and PWCCA `variant="svcca"` is `compute_pwcca`'s
  weights and similarity. Where the first layer has more units, google's
  master reads `acts1` where it means `acts2` (IndexError; google/svcca
  PR #9); we weight the second layer, the evident fix.
* google's PWCCA depends on the signs the SVD routine gives the singular
  vectors (flipping `u_i` changes direction `i`'s mean part, not only its
  sign). We take the signs of `numpy.linalg.svd` on the same matrix, so
  results equal google's run with the same numpy and LAPACK.
* `variant="textbook"` and `variant="svcca"` are different measures: their
  distances differ by amounts that grow with the units' means against their
  spread, in both directions, and can order pairs of layers differently.
* Degenerate inputs (dead, duplicated or dependent units), where google's
  result is decided by round-off or is NaN: we compute the same algorithm
  on the exact-rank factors, so dead units get exact zero rows in the
  whitened matrix and a direction that adds nothing to the span of the
  earlier ones gets weight 0. A constant unit still counts in "svcca" (its
  unit count, and its uncentred activations, a multiple of the constant
  vector, project onto every direction with a mean part); the textbook
  variant, SVCCA and mean CCA ignore it. No result is NaN.
* Summary statistics: google's `"mean"` drops the trailing correlations
  that hold the last 2% of their sum (`threshold=0.98`); our SVCCA and mean
  CCA average all of them (as google's SVCCA tutorial reports).

Requirements. Inputs must be finite, with more datapoints than units (with
`m <= n` the centred units span every direction and all correlations are
trivially 1; even so, results mean little unless `m` is well above
`r1 + r2`), and each layer needs at least one live unit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import scipy.linalg
import scipy.linalg.lapack

# Fraction of variance kept by SVCCA's SVD step (Raghu et al., 2017).
DEFAULT_SVCCA_VARIANCE_FRACTION = 0.99

# Largest departure of the basis from orthonormality (max |B B^T - I|) left
# uncorrected. Round-off is ~1e-15 for well-conditioned layers; this bounds
# the error it can cause in a correlation well below any reported digit.
_ORTHONORMALITY_TOLERANCE = 1e-12

WeightSide = Literal["smaller", "first", "second"]
PwccaVariant = Literal["svcca", "textbook"]
# PWCCA definitions, see `pwcca`: google/svcca's (the paper's) and the
# textbook one.
PWCCA_VARIANTS = ("svcca", "textbook")
SpatialMode = Literal["average", "positions"]
DataFormat = Literal["channels_last", "channels_first"]


@dataclasses.dataclass(frozen=True, eq=False)
class FactoredActivations:
    """One layer's activations, factored once for many CCA comparisons.

    Build it with `factorize`. All arrays are float64 and read-only. The
    activations are divided by the largest absolute value of the live units
    before factoring (a common factor that no CCA result depends on), and
    `singular_values`, `unit_coordinates` and `unit_means` refer to those
    rescaled activations.

    Attributes:
        basis: `(datapoints, rank)` array with orthonormal columns spanning the
            centred live units, ordered by decreasing singular value.
        singular_values: `(rank,)` singular values of the centred live units,
            decreasing.
        unit_coordinates: `(rank, live_units)` array, `basis.T @ X^T` for the
            centred live units `X`: each unit's coordinates in `basis`.
        live_units: `(units,)` boolean mask of the units that are not constant.
        unit_means: `(units,)` mean of every unit over the datapoints, dead
            units included (their constant value), in the rescaled units. Only
            PWCCA's "svcca" variant uses them: google/svcca projects
            uncentred activations, which lie in the span of `basis` and the
            constant vector.
    """

    basis: np.ndarray
    singular_values: np.ndarray
    unit_coordinates: np.ndarray
    live_units: np.ndarray
    unit_means: np.ndarray

    @property
    def num_datapoints(self) -> int:
        """Number of datapoints (columns of the original activations)."""
        return int(self.basis.shape[0])

    @property
    def num_units(self) -> int:
        """Number of units of the original activations, dead ones included."""
        return int(self.live_units.shape[0])

    @property
    def rank(self) -> int:
        """Dimension of the space spanned by the centred units."""
        return int(self.basis.shape[1])

    def svcca_dims(
        self, variance_fraction: float = DEFAULT_SVCCA_VARIANCE_FRACTION
    ) -> int:
        """Number of leading directions that explain `variance_fraction`.

        Args:
            variance_fraction: Fraction of the total variance, in (0, 1].

        Returns:
            The smallest `k` such that the top `k` directions explain at least
            `variance_fraction` of the variance of the centred units.
        """
        _check_variance_fraction(variance_fraction)
        variances = np.square(self.singular_values)
        explained = np.cumsum(variances) / variances.sum()
        # A relative slack keeps an exact fraction (e.g. 0.99 of a spectrum
        # built to explain exactly 0.99) from flipping with round-off.
        k = np.searchsorted(explained, variance_fraction * (1.0 - 1e-12)) + 1
        return int(min(k, self.rank))


ActivationsLike = np.ndarray | FactoredActivations


@dataclasses.dataclass(frozen=True)
class CCAResult:
    """Result of one CCA comparison.

    Attributes:
        method: "pwcca", "svcca" or "mean_cca".
        similarity: The similarity, in [0, 1].
        canonical_correlations: `(min(dims),)` canonical correlations,
            decreasing, in [0, 1] (clipped: round-off can put them a few
            1e-16 outside).
        dims: Dimensions of the two subspaces that were compared: the ranks;
            for SVCCA the numbers of kept directions; for PWCCA's "svcca"
            variant the numbers of units, dead ones included (google pairs
            every unit, and a dead unit's canonical correlation is 0).
        weights: PWCCA only: weights of the canonical directions of the
            weighted set (summing to one), aligned with
            `canonical_correlations`; None otherwise.
        weighted_side: PWCCA only: "first" or "second"; None otherwise.
        variant: PWCCA only: "svcca" or "textbook" (see `pwcca`); None
            otherwise.
    """

    method: str
    similarity: float
    canonical_correlations: np.ndarray
    dims: tuple[int, int]
    weights: np.ndarray | None = None
    weighted_side: str | None = None
    variant: str | None = None

    @property
    def distance(self) -> float:
        """The CCA distance, `1 - similarity`."""
        return 1.0 - self.similarity


def factorize(
    activations: np.ndarray, *, rank_rtol: float | None = None
) -> FactoredActivations:
    """Factors one layer's activations for repeated CCA comparisons.

    Args:
        activations: `(units, datapoints)` array, finite, with more
            datapoints than units. Any real dtype; computations use float64.
        rank_rtol: Directions whose singular value is at most
            `rank_rtol * max singular value` count as exact linear dependencies
            and are dropped. Defaults to `max(units, datapoints) * eps` of
            float64. Raise it (e.g. to 1e-6) to also discard directions that
            are only float32 round-off. Values far below the default keep
            round-off directions (and can make the factorization raise
            `numpy.linalg.LinAlgError`).

    Returns:
        The `FactoredActivations`.

    Raises:
        ValueError: If the array is not 2-D, is not finite, has no more
            datapoints than units, or has no live (non-constant) unit, or if
            `rank_rtol` is not positive.
    """
    if rank_rtol is not None and not rank_rtol > 0:
        raise ValueError(f"rank_rtol must be positive, got {rank_rtol}.")
    acts = _as_float64_matrix(activations, name="activations")
    centred, live_units, unit_means = _centred_live_units(acts)
    if rank_rtol is None:
        rank_rtol = max(centred.shape) * np.finfo(np.float64).eps
    triangular = _householder_r(centred)
    _, singular_values, unit_vectors_t = np.linalg.svd(triangular)
    rank = int(np.count_nonzero(singular_values > rank_rtol * singular_values[0]))
    if rank == 0:
        raise ValueError("The live units have no variance above rank_rtol.")
    singular_values = singular_values[:rank]
    unit_vectors_t = unit_vectors_t[:rank]
    # Rows: the right singular vectors X^T v_i / s_i, as (rank, datapoints)
    # so that every product below runs on contiguous rows.
    basis_rows = _orthonormalize_rows(
        (unit_vectors_t / singular_values[:, np.newaxis]) @ centred
    )
    # basis_rows @ X^T without another pass over the datapoints: with
    # X X^T = R^T R = V S^2 V^T, (S^-1 V_r^T X) X^T = S_r V_r^T.
    unit_coordinates = singular_values[:, np.newaxis] * unit_vectors_t
    return FactoredActivations(
        # A Fortran-ordered view: `basis[:, :k].T @ other.basis` then
        # multiplies contiguous rows without copies.
        basis=_read_only(basis_rows.T),
        singular_values=_read_only(singular_values),
        unit_coordinates=_read_only(unit_coordinates),
        live_units=_read_only(live_units),
        unit_means=_read_only(unit_means),
    )


def canonical_correlations(
    acts1: ActivationsLike, acts2: ActivationsLike
) -> np.ndarray:
    """Canonical correlations between two layers.

    Args:
        acts1: `(units1, datapoints)` array or its `FactoredActivations`.
        acts2: `(units2, datapoints)` array or its `FactoredActivations`.

    Returns:
        `(min(rank1, rank2),)` correlations, decreasing, in [0, 1].
    """
    first, second = _factor_pair(acts1, acts2)
    return _singular_values(first.basis.T @ second.basis)


def mean_cca(acts1: ActivationsLike, acts2: ActivationsLike) -> CCAResult:
    """Plain CCA similarity: the mean of all canonical correlations.

    Symmetric in its arguments and invariant to invertible affine maps of
    either layer.

    Args:
        acts1: `(units1, datapoints)` array or its `FactoredActivations`.
        acts2: `(units2, datapoints)` array or its `FactoredActivations`.

    Returns:
        A `CCAResult` with method "mean_cca".
    """
    first, second = _factor_pair(acts1, acts2)
    correlations = _singular_values(first.basis.T @ second.basis)
    return CCAResult(
        method="mean_cca",
        similarity=float(correlations.mean()),
        canonical_correlations=correlations,
        dims=(first.rank, second.rank),
    )


def svcca(
    acts1: ActivationsLike,
    acts2: ActivationsLike,
    *,
    variance_fraction: float = DEFAULT_SVCCA_VARIANCE_FRACTION,
) -> CCAResult:
    """SVCCA similarity: mean CCA after keeping each layer's top directions.

    Each layer is reduced to its leading principal directions that explain
    `variance_fraction` of its variance, then the canonical correlations of
    the reduced layers are averaged. Symmetric; invariant to rotations of
    either layer and to invertible maps that preserve the kept subspace, but
    not to arbitrary invertible maps (they can change which directions
    explain the variance).

    Args:
        acts1: `(units1, datapoints)` array or its `FactoredActivations`.
        acts2: `(units2, datapoints)` array or its `FactoredActivations`.
        variance_fraction: Fraction of variance to keep, in (0, 1].

    Returns:
        A `CCAResult` with method "svcca" and `dims` the kept dimensions.
    """
    _check_variance_fraction(variance_fraction)
    first, second = _factor_pair(acts1, acts2)
    dims1 = first.svcca_dims(variance_fraction)
    dims2 = second.svcca_dims(variance_fraction)
    correlations = _singular_values(first.basis[:, :dims1].T @ second.basis[:, :dims2])
    return CCAResult(
        method="svcca",
        similarity=float(correlations.mean()),
        canonical_correlations=correlations,
        dims=(dims1, dims2),
    )


def pwcca(
    acts1: ActivationsLike,
    acts2: ActivationsLike,
    *,
    variant: PwccaVariant,
    weight_by: WeightSide = "smaller",
) -> CCAResult:
    """Projection-weighted CCA similarity (Morcos et al., 2018).

    Not symmetric: the canonical correlations are weighted by how much of the
    units of one of the two layers each canonical direction accounts for.
    Two definitions are in use and their distances differ by up to 0.1 and
    more (see the module docstring), so `variant` has no default and every
    caller states which one it computes: "svcca" reproduces the paper's and
    most published numbers but depends on the SVD's arbitrary sign choices,
    "textbook" is a function of the activations alone but matches no
    published number; neither is a safe silent default. (The Figure 3
    analysis, `tf_selectivity.analysis.stages.similarity.distances`, uses
    "svcca" by default, the paper's.)

    * "svcca": google/svcca's `pwcca.compute_pwcca` (`epsilon=0`), the code
      behind the published PWCCA results, including "Selectivity considered
      harmful". Its weights project the *uncentred* activations onto an
      orthonormalized version of the unwhitened directions
      `u^T (x - mean) + mean`; they depend on the signs that the SVD routine
      gives the singular vectors, which we reproduce by calling
      `numpy.linalg.svd` on the same whitened cross-covariance.
    * "textbook": the definition of Morcos et al.: the canonical variates of
      the centred units, weighted by the summed absolute projections of the
      centred units onto them. Invariant to the SVD's sign choices.

    Args:
        acts1: `(units1, datapoints)` array or its `FactoredActivations`.
        acts2: `(units2, datapoints)` array or its `FactoredActivations`.
        variant: "svcca" or "textbook", see above.
        weight_by: Which layer's units define the weights: "first",
            "second", or "smaller". For "textbook", "smaller" is the layer of
            lower rank; for "svcca" it is the layer with fewer units, dead
            ones included (what google/svcca compares); both give ties to the
            first argument. The "svcca" variant has one weight per canonical
            correlation, so it can only weight a layer with at most as many
            units as the other; weighting the second of two equal layers
            runs google's other branch on the same SVD, which can differ from
            `compute_pwcca(acts2, acts1)` (the SVD of the transposed matrix
            may pick other signs).

    Returns:
        A `CCAResult` with method "pwcca", `variant`, its weights and
        weighted side.

    Raises:
        ValueError: On an unknown `variant` or `weight_by`, or, for "svcca",
            a `weight_by` naming the layer with more units; or as `factorize`
            for raw inputs.
    """
    return pwcca_variants(acts1, acts2, (variant,), weight_by=weight_by)[variant]


def pwcca_variants(
    acts1: ActivationsLike,
    acts2: ActivationsLike,
    variants: Sequence[str] = PWCCA_VARIANTS,
    *,
    weight_by: WeightSide = "smaller",
) -> dict[str, CCAResult]:
    """PWCCA of one pair under several variants, sharing the costly product.

    The `(rank1 x datapoints) @ (datapoints x rank2)` product of the two
    bases, the only step whose cost grows with the datapoints, is computed
    once for all variants.

    Args:
        acts1: `(units1, datapoints)` array or its `FactoredActivations`.
        acts2: `(units2, datapoints)` array or its `FactoredActivations`.
        variants: Variants to compute, among "svcca" and "textbook" (see
            `pwcca`); a single name is accepted too.
        weight_by: "smaller", "first" or "second", see `pwcca`.

    Returns:
        `{variant: CCAResult}` in the order of `variants`.

    Raises:
        ValueError: As `pwcca`, or if `variants` is empty.
    """
    variants = (variants,) if isinstance(variants, str) else tuple(variants)
    if not variants:
        raise ValueError("No PWCCA variant given.")
    unknown = [v for v in variants if v not in _PWCCA_IMPLEMENTATIONS]
    if unknown:
        raise ValueError(
            f"Unknown PWCCA variant(s) {unknown}; expected 'svcca' (google/svcca's "
            "compute_pwcca, the paper's) or 'textbook'."
        )
    if weight_by not in ("smaller", "first", "second"):
        raise ValueError(
            f"weight_by must be 'smaller', 'first' or 'second', got {weight_by!r}."
        )
    first, second = _factor_pair(acts1, acts2)
    product = first.basis.T @ second.basis
    return {
        variant: _PWCCA_IMPLEMENTATIONS[variant](first, second, product, weight_by)
        for variant in variants
    }


def mean_cca_distance(acts1: ActivationsLike, acts2: ActivationsLike) -> float:
    """`1 - mean_cca(acts1, acts2).similarity` (see `mean_cca`)."""
    return mean_cca(acts1, acts2).distance


def svcca_distance(
    acts1: ActivationsLike,
    acts2: ActivationsLike,
    *,
    variance_fraction: float = DEFAULT_SVCCA_VARIANCE_FRACTION,
) -> float:
    """`1 - svcca(acts1, acts2).similarity` (see `svcca`).

    Args:
        acts1: `(units1, datapoints)` array or its `FactoredActivations`.
        acts2: `(units2, datapoints)` array or its `FactoredActivations`.
        variance_fraction: Fraction of variance SVCCA keeps.

    Returns:
        The SVCCA distance, a float in [0, 1].
    """
    return svcca(acts1, acts2, variance_fraction=variance_fraction).distance


def pwcca_distance(
    acts1: ActivationsLike,
    acts2: ActivationsLike,
    *,
    variant: PwccaVariant,
    weight_by: WeightSide = "smaller",
) -> float:
    """`1 - pwcca(acts1, acts2).similarity` (see `pwcca`; not symmetric).

    Args:
        acts1: `(units1, datapoints)` array or its `FactoredActivations`.
        acts2: `(units2, datapoints)` array or its `FactoredActivations`.
        variant: "svcca" (google/svcca's `compute_pwcca`, the paper's) or
            "textbook", see `pwcca`. No default: the two differ.
        weight_by: "smaller", "first" or "second", see `pwcca`.

    Returns:
        The PWCCA distance, a float in [0, 1].
    """
    return pwcca(acts1, acts2, variant=variant, weight_by=weight_by).distance


def conv_activations_to_matrix(
    activations: np.ndarray,
    *,
    spatial: SpatialMode = "average",
    data_format: DataFormat = "channels_last",
    max_datapoints: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Turns convolutional activations into a `(units, datapoints)` matrix.

    With `spatial="average"` each channel is one unit and each input one
    datapoint (the channel averaged over positions). With
    `spatial="positions"` every (input, position) pair is a datapoint, which
    multiplies the datapoints by H*W; `max_datapoints` then bounds memory by
    gathering a seeded random subset without building the full matrix.
    Compare two networks with the same `seed` and input shapes: the subset
    depends only on those, so both get the same datapoints.

    Args:
        activations: `(N, H, W, C)` (or `(N, C, H, W)` with
            `data_format="channels_first"`) array; a dense `(N, C)` array is
            accepted too.
        spatial: "average" or "positions".
        data_format: "channels_last" or "channels_first".
        max_datapoints: Keep at most this many datapoints, drawn uniformly
            without replacement and kept in their original order. None keeps
            all.
        seed: Seed of the subsampling.

    Returns:
        float64 array of shape `(C, N)` ("average") or `(C, N*H*W)`
        ("positions"), or fewer columns when subsampled.

    Raises:
        ValueError: On an unknown mode/format, a wrong rank, or a
            non-positive `max_datapoints`.
    """
    if spatial not in ("average", "positions"):
        raise ValueError(f"spatial must be 'average' or 'positions', got {spatial!r}.")
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            "data_format must be 'channels_last' or 'channels_first', "
            f"got {data_format!r}."
        )
    if max_datapoints is not None and max_datapoints < 1:
        raise ValueError(f"max_datapoints must be positive, got {max_datapoints}.")
    acts = np.asarray(activations)
    if acts.ndim == 2:
        return _subsample_rows(acts, max_datapoints, seed).T.astype(np.float64)
    if acts.ndim != 4:
        raise ValueError(
            f"Expected (N, H, W, C) or (N, C) activations, got shape {acts.shape}."
        )
    if data_format == "channels_first":
        acts = np.moveaxis(acts, 1, -1)  # A view: nothing is copied yet.
    if spatial == "average":
        averaged = acts.mean(axis=(1, 2), dtype=np.float64)
        return np.ascontiguousarray(_subsample_rows(averaged, max_datapoints, seed).T)
    num_inputs, height, width, channels = acts.shape
    total = num_inputs * height * width
    if max_datapoints is None or max_datapoints >= total:
        rows = acts.reshape(total, channels)
    else:
        flat = _sorted_sample(total, max_datapoints, seed)
        inputs, ys, xs = np.unravel_index(flat, (num_inputs, height, width))
        rows = acts[inputs, ys, xs, :]  # Gathers only the kept positions.
    return np.ascontiguousarray(rows.T, dtype=np.float64)


def _subsample_rows(rows: np.ndarray, max_rows: int | None, seed: int) -> np.ndarray:
    """Seeded subset of the rows of `rows`, in order (all when it fits)."""
    if max_rows is None or max_rows >= rows.shape[0]:
        return rows
    return rows[_sorted_sample(rows.shape[0], max_rows, seed)]


def _sorted_sample(population: int, size: int, seed: int) -> np.ndarray:
    """`size` distinct indices below `population`, sorted, from `seed`."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(population, size=size, replace=False))


def _as_float64_matrix(array: np.ndarray, *, name: str) -> np.ndarray:
    """Validates a `(units, datapoints)` array and converts it to float64."""
    acts = np.asarray(array)
    if acts.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D (units, datapoints) array, got shape {acts.shape}."
        )
    if not (np.issubdtype(acts.dtype, np.number) or acts.dtype == np.bool_):
        raise ValueError(f"{name} must be numeric, got dtype {acts.dtype}.")
    if np.iscomplexobj(acts):
        raise ValueError(f"{name} must be real, got dtype {acts.dtype}.")
    acts = acts.astype(np.float64, copy=False)
    num_units, num_datapoints = acts.shape
    if num_units == 0:
        raise ValueError(f"{name} has no units (shape {acts.shape}).")
    if num_datapoints <= num_units:
        raise ValueError(
            f"{name} has {num_datapoints} datapoints for {num_units} units; CCA "
            "needs more datapoints than units (is the array transposed? "
            "expected (units, datapoints))."
        )
    return acts


def _centred_live_units(
    acts: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drops constant units, rescales and centres the others.

    Args:
        acts: `(units, datapoints)` float64 array.

    Returns:
        `(centred, live_units, unit_means)`: the `(live units, datapoints)`
        centred activations divided by the largest absolute activation of the
        live units (one global factor, which no CCA result depends on, that
        keeps the factorization clear of overflow and underflow), the
        `(units,)` live mask, and the `(units,)` means of all units divided by
        the same factor (a dead unit's mean is its constant value).

    Raises:
        ValueError: On NaN or infinite values, or if no unit is live.
    """
    # The row extrema find constant units and, since NaN and inf propagate
    # into them, non-finite values, in two passes over the data.
    row_max, row_min = acts.max(axis=1), acts.min(axis=1)
    if not (np.isfinite(row_max).all() and np.isfinite(row_min).all()):
        raise ValueError("activations contain NaN or infinite values.")
    live_units = row_max > row_min
    if not live_units.any():
        raise ValueError(
            f"All {acts.shape[0]} units are constant over the {acts.shape[1]} "
            "datapoints: the layer has no live unit to compare."
        )
    live = acts if live_units.all() else acts[live_units]
    scale = max(np.abs(row_max[live_units]).max(), np.abs(row_min[live_units]).max())
    centred = live / scale  # A new array: the caller's activations stay intact.
    live_means = centred.mean(axis=1)
    centred -= live_means[:, np.newaxis]
    unit_means = row_max / scale  # Exact for the constant (dead) units.
    unit_means[live_units] = live_means
    return centred, live_units, unit_means


def _householder_r(centred: np.ndarray) -> np.ndarray:
    """R factor of the Householder QR of `centred.T`.

    Args:
        centred: `(units, datapoints)` array with more datapoints than units.

    Returns:
        `(units, units)` upper-triangular `R` with `centred.T = Q R`.
    """
    # LAPACK directly: `centred.T` is already the column-major matrix it
    # wants, and numpy.linalg.qr's extra copies double the cost.
    packed, _, _, info = scipy.linalg.lapack.dgeqrf(centred.T)
    if info != 0:
        raise np.linalg.LinAlgError(f"dgeqrf failed with info={info}.")
    return np.triu(packed[: centred.shape[0]])


def _orthonormalize_rows(rows: np.ndarray) -> np.ndarray:
    """Orthonormal rows spanning `rows`, which are nearly orthonormal.

    Rows built from an accurate SVD are orthonormal up to about
    `eps * s_max / s_min`; when the measured departure exceeds
    `_ORTHONORMALITY_TOLERANCE`, one Cholesky-QR pass restores it to
    round-off. Its correction is triangular, so it keeps the span of every
    leading block of rows, which SVCCA's leading slices rely on.

    Args:
        rows: `(rank, datapoints)` array.

    Returns:
        `(rank, datapoints)` array with orthonormal rows.
    """
    gram = rows @ rows.T
    identity = np.eye(gram.shape[0])
    if np.abs(gram - identity).max() <= _ORTHONORMALITY_TOLERANCE:
        return rows
    # With the default rank_rtol the departure is below about 1e-3, so the
    # Cholesky factorization of the Gram matrix cannot fail.
    lower = np.linalg.cholesky(gram)
    correction = scipy.linalg.solve_triangular(
        lower, identity, lower=True, check_finite=False
    )
    return correction @ rows


def _read_only(array: np.ndarray) -> np.ndarray:
    """Marks `array` read-only so cached factors cannot be changed."""
    array.setflags(write=False)
    return array


def _factor_pair(
    acts1: ActivationsLike, acts2: ActivationsLike
) -> tuple[FactoredActivations, FactoredActivations]:
    """Factors raw inputs and checks that the datapoints agree."""
    first = acts1 if isinstance(acts1, FactoredActivations) else factorize(acts1)
    second = acts2 if isinstance(acts2, FactoredActivations) else factorize(acts2)
    if first.num_datapoints != second.num_datapoints:
        raise ValueError(
            "The two layers must be measured on the same datapoints, got "
            f"{first.num_datapoints} and {second.num_datapoints}."
        )
    return first, second


def _singular_values(matrix: np.ndarray) -> np.ndarray:
    """Singular values of a product of orthonormal bases, clipped to [0, 1]."""
    return np.clip(np.linalg.svd(matrix, compute_uv=False), 0.0, 1.0)


def _resolve_weighted_side(weight_by: str, rank1: int, rank2: int) -> str:
    """Maps `weight_by` to "first" or "second"."""
    if weight_by == "smaller":
        return "first" if rank1 <= rank2 else "second"
    if weight_by in ("first", "second"):
        return weight_by
    raise ValueError(
        f"weight_by must be 'smaller', 'first' or 'second', got {weight_by!r}."
    )


def _svcca_weighted_side(weight_by: str, units1: int, units2: int) -> str:
    """Weighted side of the "svcca" variant: google's rule, by unit counts."""
    if weight_by == "smaller":
        return "first" if units1 <= units2 else "second"
    mine, other = (units1, units2) if weight_by == "first" else (units2, units1)
    if mine > other:
        raise ValueError(
            f"PWCCA variant 'svcca' cannot weight the {weight_by} layer: it has "
            f"{mine} units and the other {other}, and google/svcca's weights (one "
            "per unit of the weighted layer) only pair with the canonical "
            "correlations when it has no more units than the other; use "
            "weight_by='smaller' or variant='textbook'."
        )
    return weight_by


def _check_variance_fraction(variance_fraction: float) -> None:
    """Raises ValueError unless 0 < variance_fraction <= 1."""
    if not 0.0 < variance_fraction <= 1.0:
        raise ValueError(
            f"variance_fraction must be in (0, 1], got {variance_fraction}."
        )


def _pwcca_textbook(
    first: FactoredActivations,
    second: FactoredActivations,
    product: np.ndarray,
    weight_by: str,
) -> CCAResult:
    """PWCCA of Morcos et al.: canonical variates of the centred units."""
    side = _resolve_weighted_side(weight_by, first.rank, second.rank)
    weighted, matrix = (first, product) if side == "first" else (second, product.T)
    # Thin SVD: the canonical directions of the weighted layer that have a
    # partner in the other layer, min(rank1, rank2) of them.
    left, correlations, _ = np.linalg.svd(matrix, full_matrices=False)
    projections = np.abs(left.T @ weighted.unit_coordinates).sum(axis=1)
    return _pwcca_result(correlations, projections, (first.rank, second.rank), side, "textbook")


def _pwcca_svcca(
    first: FactoredActivations,
    second: FactoredActivations,
    product: np.ndarray,
    weight_by: str,
) -> CCAResult:
    """google/svcca's `compute_pwcca` (epsilon=0) from the cached factors.

    With `X^T = B C` for the centred units (`B` = basis, `C` =
    unit_coordinates = `S V^T`), google's whitened cross-covariance
    `Sxx^-1/2 Sxy Syy^-1/2` is `V1 (B1^T B2) V2^T` in unit coordinates (its
    `pinv` gives dead units zero rows and columns). Its directions
    `coef (x - mean) + mean` and the uncentred activations it projects lie in
    the span of `B` and `e = 1/sqrt(m)`, which is orthonormal because the
    columns of `B` are centred; their coordinates there are `[C coef^T;
    sqrt(m) mean^T]` and `[C; sqrt(m) mean^T]`. A QR of the `(rank + 1) x
    units` direction coordinates then gives the same projections as google's
    QR of `datapoints x units` directions, up to the signs that the absolute
    values drop.
    """
    side = _svcca_weighted_side(weight_by, first.num_units, second.num_units)
    whitened = _whitened_cross_covariance(first, second, product)
    # The same call, on the same matrix up to round-off, as google's: the
    # directions depend on the signs LAPACK picks for the singular vectors.
    left, correlations, right_t = np.linalg.svd(whitened)
    weighted, coefficients = (first, left.T) if side == "first" else (second, right_t)
    coordinates = np.zeros((weighted.rank, weighted.num_units))
    coordinates[:, weighted.live_units] = weighted.unit_coordinates
    mean_coordinates = np.sqrt(weighted.num_datapoints) * weighted.unit_means
    # Direction i gets the mean of unit i added back, as google broadcasts it.
    directions = np.vstack([coordinates @ coefficients.T, mean_coordinates])
    activations = np.vstack([coordinates, mean_coordinates])
    projections = _projections_on_orthonormalized(directions, activations)
    return _pwcca_result(correlations, projections, (first.num_units, second.num_units), side, "svcca")


def _pwcca_result(correlations, projections, dims, side, variant) -> CCAResult:
    """PWCCA's result: the correlations (clipped to [0, 1]) averaged with
    weights proportional to the directions' summed absolute projections."""
    correlations = np.clip(correlations, 0.0, 1.0)
    weights = projections / projections.sum()
    return CCAResult(
        method="pwcca",
        similarity=float(np.clip(weights @ correlations, 0.0, 1.0)),
        canonical_correlations=correlations,
        dims=dims,
        weights=weights,
        weighted_side=side,
        variant=variant,
    )


def _whitened_cross_covariance(
    first: FactoredActivations, second: FactoredActivations, product: np.ndarray
) -> np.ndarray:
    """`Sxx^+1/2 Sxy Syy^+1/2` of all units (`+`: pseudo-inverse), from factors.

    With `X^T = B S V^T` for the centred rescaled units, `Sxx^+1/2 X` is
    `sqrt(m - 1) V B^T` whatever the scale of X, so the matrix is
    `V1 (B1^T B2) V2^T`, `(units1, units2)`, with zero rows and columns for
    dead units.
    """
    unit_vectors1 = first.unit_coordinates.T / first.singular_values
    unit_vectors2 = second.unit_coordinates.T / second.singular_values
    live_block = unit_vectors1 @ product @ unit_vectors2.T
    if first.live_units.all() and second.live_units.all():
        return live_block
    whitened = np.zeros((first.num_units, second.num_units))
    whitened[np.ix_(first.live_units, second.live_units)] = live_block
    return whitened


def _projections_on_orthonormalized(
    directions: np.ndarray, activations: np.ndarray
) -> np.ndarray:
    """Summed |projections| of `activations` on the orthonormalized directions.

    The QR of `directions` (columns, in order) gives orthonormal `q_i`; the
    result is `sum_j |<q_i, activations_j>|`. A direction that lies (to
    round-off) in the span of the earlier ones adds nothing to the span and
    gets 0: google's QR gives it an arbitrary column there, decided by
    round-off (this happens only with dead or dependent units in the
    weighted layer).

    Args:
        directions: `(dims, n)` coordinates of the n directions.
        activations: `(dims, units)` coordinates of the activations.

    Returns:
        `(n,)` non-negative projections.
    """
    dims, count = directions.shape
    q, r = np.linalg.qr(directions)
    diagonal = np.abs(np.diagonal(r))
    tolerance = max(dims, count) * np.finfo(np.float64).eps * diagonal.max()
    if count <= dims and (diagonal > tolerance).all():
        return np.abs(q.T @ activations).sum(axis=1)
    # Rank-deficient: Gram-Schmidt with re-orthogonalization, skipping the
    # dependent directions (at most `count` small steps).
    tolerance = (
        max(dims, count)
        * np.finfo(np.float64).eps
        * np.linalg.norm(directions, axis=0).max()
    )
    basis = np.zeros((dims, 0))
    projections = np.zeros(count)
    for i in range(count):
        residual = directions[:, i]
        for _ in range(2):
            residual = residual - basis @ (basis.T @ residual)
        norm = np.linalg.norm(residual)
        if basis.shape[1] == dims or norm <= tolerance:
            continue
        unit = residual / norm
        basis = np.column_stack([basis, unit])
        projections[i] = np.abs(unit @ activations).sum()
    return projections


_PWCCA_IMPLEMENTATIONS: dict[
    str,
    Callable[[FactoredActivations, FactoredActivations, np.ndarray, str], CCAResult],
] = {"svcca": _pwcca_svcca, "textbook": _pwcca_textbook}

"""Centred kernel alignment (CKA): linear, RBF, debiased and minibatch.

CKA (Kornblith et al. 2019, "Similarity of neural network representations
revisited") compares two representations of the same datapoints through
their Gram matrices `K` (of the first) and `L` (of the second):

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)),

where HSIC is the Hilbert-Schmidt independence criterion. Every function
here returns a **similarity**: 1 for identical representations (exactly 1.0
for a self-comparison, which is detected, not left to round-off), about 0
for independent ones. A distance for the Figure 3 ratios is `1 - CKA`.

* `linear_cka` (linear kernel `K = X^T X`, the biased HSIC
  `tr(H K H L) / (n - 1)^2`) lies in [0, 1] and is invariant to orthogonal
  transforms of either representation's units, to isotropic scaling and to
  adding a constant to a unit; it is *not* invariant to other invertible
  linear maps (that is CCA's invariance, `tf_selectivity.measures.similarity.cca`). It is RV
  coefficient of the centred representations.
* `rbf_cka` (Gaussian kernel of width `threshold x median distance`) has
  the same invariances (the median makes it scale-free), but is not a
  function of the covariances; it needs the `n x n` Gram matrices.
* `debiased_cka` uses the unbiased HSIC estimator (Song et al. 2007, in
  the U-centred form of Szekely & Rizzo 2014), whose bias does not grow
  with the number of units against datapoints, as the biased one's does
  (Kornblith et al.'s Appendix; Nguyen et al. 2021). Same invariances; it
  lies in [-1, 1]: the cross term can be negative (the representations'
  dependence estimated below zero), and is returned as computed.
* `minibatch_cka` and `MinibatchCKA` (Nguyen et al. 2021, "Do wide and deep
  networks learn the same things?") average the unbiased HSIC over batches
  of datapoints, in memory independent of their number; with one batch it
  equals `debiased_cka`. `MinibatchCKAMap` does the same for every pair of
  two lists of layers, the layer-by-layer map of Nguyen et al.'s Figure 1.

Conventions, as in `tf_selectivity.measures.similarity.cca`: activations are `(units,
datapoints)` arrays (transpose the `(examples, features)` arrays of other
CKA code), computed in float64; the two representations share the
datapoints (same inputs, same order) and may differ in their number of
units, in either direction (more units than datapoints is fine). Convolutional
activations are flattened by `tf_selectivity.measures.similarity.cca.conv_activations_to_matrix`
(one datapoint per image with the positions averaged, or one per position).

Feature space or Gram space. The linear and debiased linear HSIC have two
formulas: from the `units x units` products `X Y^T` (cost `n d1 d2`, memory
`d1 d2`) and from the `n x n` Gram matrices (cost `n^2 (d1 + d2)`, memory
`n^2`). `space="auto"` takes the cheaper one, which is the feature-space
formula whenever the layers have fewer units than there are datapoints: the
`10,000 x 10,000` Gram matrix of a test set (800 MB) is never built for a
layer of a few hundred units. Both give the same numbers to round-off
(tested).

Guards (`tf_selectivity.core.settings.ParameterError`, naming the parameter): NaN
or infinite inputs; different numbers of datapoints; fewer than 4 datapoints
for the unbiased HSIC (it divides by `n (n - 3)`; libraries that do not check
return NaN); a representation with no variance (a constant layer), whose CKA
is 0/0; a threshold that is not a positive finite number; an RBF median
distance of 0 (more than half the pairs of datapoints coincide).

The unbiased HSIC of a representation with itself is never negative: it is
`sum_ij K~_ij^2 / (n (n - 3))` for the U-centred Gram matrix `K~` (Szekely &
Rizzo's inner product), and the feature-space formula computes the same
number. Round-off can take the feature-space value a few units in the last
place below zero when `K~` is 0 or nearly so; no square root of a negative
number is taken: a self term that is at most `1e-11` of the terms it is
computed from (zero to round-off, e.g. a representation whose Gram matrix is
a sum `a_i + a_j`) raises ParameterError, since CKA is then undefined, and
any other self term is positive and used as is. Minibatch sums of per-batch
self terms are sums of non-negative numbers and are guarded the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from tf_selectivity.core.settings import ParameterError
from tf_selectivity.measures.similarity import _inputs

Space = Literal["auto", "features", "gram"]
SPACES = ("auto", "features", "gram")

# A self term of the unbiased HSIC at most this fraction of the terms it is
# computed from is zero to round-off (the formulas cancel to about n * eps).
_SELF_TERM_RTOL = 1e-11

__all__ = [
    "linear_cka",
    "debiased_cka",
    "rbf_cka",
    "cka_from_grams",
    "hsic",
    "linear_gram",
    "rbf_gram",
    "center_gram",
    "cka_map",
    "minibatch_cka",
    "MinibatchCKA",
    "MinibatchCKAMap",
]


def linear_cka(x, y, *, debiased: bool = False, space: Space = "auto") -> float:
    """Linear CKA of two representations (a similarity).

    Invariant to orthogonal transforms of the units of either
    representation, isotropic scaling and translation; not to other
    invertible linear maps.

    Args:
        x: `(units1, datapoints)` activations of the first representation.
        y: `(units2, datapoints)` activations of the second, on the same
            datapoints.
        debiased: Use the unbiased HSIC estimator (see `debiased_cka`).
        space: "features" (from `units x units` products), "gram" (from the
            `n x n` Gram matrices) or "auto" (the cheaper: features when the
            layers have fewer units than datapoints).

    Returns:
        The similarity, in [0, 1] (biased) or [-1, 1] (debiased); exactly
        1.0 when `x` and `y` are equal.

    Raises:
        ParameterError: See the module docstring (guards).
    """
    x, y = _pair(x, y, debiased)
    space = _resolve_space(space, x.shape[0], y.shape[0], x.shape[1])
    if _inputs.identical(x, y):
        _hsic_terms(x, None, debiased, space)  # The guards still apply.
        return 1.0
    cross, self_x, self_y = _hsic_terms(x, y, debiased, space)
    return cka_ratio(cross, self_x, self_y, debiased)


def debiased_cka(x, y, *, space: Space = "auto") -> float:
    """Debiased linear CKA: CKA with the unbiased HSIC estimator (a similarity).

    The U-statistic of Song et al. (2007), as in Kornblith et al.'s code
    (`feature_space_linear_cka(..., debiased=True)`, `cka(..., debiased=True)`).
    Same invariances as `linear_cka`. Needs at least 4 datapoints.

    Args:
        x: `(units1, datapoints)` activations.
        y: `(units2, datapoints)` activations on the same datapoints.
        space: "auto", "features" or "gram" (see `linear_cka`).

    Returns:
        The similarity, in [-1, 1] (negative when the estimated dependence is
        below zero); exactly 1.0 when `x` and `y` are equal.

    Raises:
        ParameterError: See the module docstring (guards).
    """
    return linear_cka(x, y, debiased=True, space=space)


def rbf_cka(x, y, *, threshold: float = 1.0, debiased: bool = False) -> float:
    """CKA with Gaussian (RBF) kernels (a similarity).

    The kernel width of each representation is `threshold` times its median
    distance between datapoints, as in Kornblith et al.'s `gram_rbf`: the
    Gram matrix is `exp(-d_ij^2 / (2 threshold^2 median(d^2)))`, the median
    taken over all `n x n` squared distances, the zero diagonal included.
    Invariant to orthogonal transforms, isotropic scaling (through the
    median) and translation. Builds the two `n x n` Gram matrices (8 n^2
    bytes each: use it on up to a few thousand datapoints).

    Args:
        x: `(units1, datapoints)` activations.
        y: `(units2, datapoints)` activations on the same datapoints.
        threshold: Kernel width as a multiple of the median distance, a
            positive finite number.
        debiased: Use the unbiased HSIC estimator (U-centred Gram matrices).

    Returns:
        The similarity, in [0, 1] (biased) or [-1, 1] (debiased); exactly
        1.0 when `x` and `y` are equal.

    Raises:
        ParameterError: See the module docstring (guards).
    """
    _check_threshold(threshold)
    x, y = _pair(x, y, debiased)
    same = _inputs.identical(x, y)
    gram_x = rbf_gram(x, threshold=threshold, _name="x")
    gram_y = gram_x if same else rbf_gram(y, threshold=threshold, _name="y")
    return cka_from_grams(gram_x, gram_y, debiased=debiased, _names=("x", "y"), _same=same)


def cka_from_grams(gram_x, gram_y, *, debiased: bool = False, _names=("gram_x", "gram_y"),
                   _same: bool | None = None) -> float:
    """CKA of two Gram (kernel) matrices of the same datapoints (a similarity).

    Args:
        gram_x: `(n, n)` symmetric Gram matrix of the first representation.
        gram_y: `(n, n)` symmetric Gram matrix of the second.
        debiased: Use the unbiased HSIC estimator (needs n >= 4).

    Returns:
        The similarity, in [0, 1] for positive semi-definite kernels
        (biased) or [-1, 1] (debiased); exactly 1.0 for equal matrices.

    Raises:
        ParameterError: On non-square, asymmetric, non-finite or mismatched
            matrices, n < 4 when debiased, or a Gram matrix that centres to 0.
    """
    gram_x = _gram(_names[0], gram_x)
    gram_y = _gram(_names[1], gram_y)
    if gram_x.shape != gram_y.shape:
        raise ParameterError(
            _names[1], f"must be a Gram matrix of the same {gram_x.shape[0]} datapoints; "
            f"got shape {gram_y.shape}")
    if debiased:
        _inputs.at_least_four_datapoints(_names[0], gram_x.shape[0])
    same = _inputs.identical(gram_x, gram_y) if _same is None else _same
    centred_x = center_gram(gram_x, unbiased=debiased)
    self_x = checked_self_term(_names[0], _dot(centred_x, centred_x), _dot(gram_x, gram_x))
    if same:
        return 1.0
    centred_y = center_gram(gram_y, unbiased=debiased)
    self_y = checked_self_term(_names[1], _dot(centred_y, centred_y), _dot(gram_y, gram_y))
    return cka_ratio(_dot(centred_x, centred_y), self_x, self_y, debiased)


def hsic(x, y, *, unbiased: bool = False, space: Space = "auto") -> float:
    """The linear-kernel HSIC of two representations (a dependence, not normalized).

    Biased: `tr(H K H L) / (n - 1)^2` (Gretton et al. 2005). Unbiased:
    `sum_ij K~_ij L~_ij / (n (n - 3))` with U-centred Gram matrices (Song et
    al. 2007; Szekely & Rizzo 2014), which can be negative for two different
    representations and is non-negative for a representation with itself.

    Args:
        x: `(units1, datapoints)` activations.
        y: `(units2, datapoints)` activations on the same datapoints.
        unbiased: Use the unbiased estimator (needs at least 4 datapoints).
        space: "auto", "features" or "gram" (see `linear_cka`).

    Returns:
        The HSIC estimate, a float (scales with the product of the squared
        scales of `x` and `y`).

    Raises:
        ParameterError: See the module docstring (guards).
    """
    x, y = _pair(x, y, unbiased)
    n = x.shape[1]
    space = _resolve_space(space, x.shape[0], y.shape[0], n)
    # No self-term check: an HSIC of 0 is a value, not an error (CKA's 0/0 is).
    cross = _hsic_terms(x, None if x is y else y, unbiased, space, check_self=False)[0]
    return float(cross / (n * (n - 3) if unbiased else (n - 1) ** 2))


def linear_gram(x) -> np.ndarray:
    """The `(n, n)` linear Gram matrix `X^T X` of `(units, n)` activations."""
    x = _inputs.activations("x", x)
    return x.T @ x


def rbf_gram(x, *, threshold: float = 1.0, _name: str = "x") -> np.ndarray:
    """The `(n, n)` Gaussian Gram matrix of `(units, n)` activations.

    `exp(-d_ij^2 / (2 threshold^2 m))` with `m` the median of all `n x n`
    squared distances `d_ij^2` (the zero diagonal included), Kornblith et
    al.'s `gram_rbf`. Squared distances are computed from centred
    activations (the same distances, less cancellation) and clipped at 0.

    Args:
        x: `(units, n)` activations.
        threshold: Width as a multiple of the median distance, positive.

    Returns:
        The Gram matrix, float64, ones on the diagonal.

    Raises:
        ParameterError: On bad activations or threshold, or a median squared
            distance of 0 (more than half the pairs of datapoints coincide).
    """
    _check_threshold(threshold)
    x = _inputs.centred(_inputs.activations(_name, x))
    dots = x.T @ x
    norms = np.diagonal(dots).copy()
    squared = np.maximum(norms[:, np.newaxis] + norms[np.newaxis, :] - 2.0 * dots, 0.0)
    np.fill_diagonal(squared, 0.0)
    median = float(np.median(squared))
    if not median > 0.0:
        raise ParameterError(
            _name, "has a median squared distance of 0 between its datapoints (more "
            "than half the pairs coincide): the RBF kernel width threshold x median "
            "is 0")
    squared *= -1.0 / (2.0 * threshold**2 * median)
    return np.exp(squared, out=squared)


def center_gram(gram, *, unbiased: bool = False) -> np.ndarray:
    """Centres a Gram matrix: `H K H`, or U-centres it for the unbiased HSIC.

    The U-centring is Szekely & Rizzo's (2014), as in Kornblith et al.'s
    `center_gram(..., unbiased=True)`: zero diagonal, and
    `K~_ij = K_ij - r_i - r_j` off it with `r = K 1 / (n - 2) - 1^T K 1 /
    (2 (n - 1) (n - 2))` computed on the zero-diagonal `K`.

    Args:
        gram: `(n, n)` symmetric matrix (n >= 4 when unbiased).
        unbiased: U-centre instead of centring.

    Returns:
        A new `(n, n)` float64 matrix.

    Raises:
        ParameterError: On a non-square, asymmetric or non-finite matrix,
            or n < 4 when unbiased.
    """
    gram = _gram("gram", gram).copy()
    n = gram.shape[0]
    if unbiased:
        _inputs.at_least_four_datapoints("gram", n)
        np.fill_diagonal(gram, 0.0)
        means = gram.sum(axis=0) / (n - 2)
        means -= means.sum() / (2 * (n - 1))
    else:
        means = gram.mean(axis=0)
        means -= means.mean() / 2
    gram -= means[:, np.newaxis]
    gram -= means[np.newaxis, :]
    if unbiased:
        np.fill_diagonal(gram, 0.0)
    return gram


def cka_map(first: Sequence, second: Sequence | None = None, *, debiased: bool = False
            ) -> np.ndarray:
    """Linear (or debiased) CKA of every layer of one network with every layer of another.

    The layer-by-layer map of Kornblith et al.'s Figure 2: entry `(i, j)` is
    `linear_cka(first[i], second[j], debiased=debiased)` on all datapoints.
    Each layer is centred and its self term computed once; each pair then
    costs one `units_i x units_j` product (feature space; a pair with more
    units than datapoints is done in Gram space). Memory: the layers
    themselves, no `n x n` matrix. For data that does not fit in memory,
    `MinibatchCKAMap` streams batches instead (a different estimate).

    Args:
        first: Sequence of `(units_i, datapoints)` arrays, one per layer.
        second: Sequence of `(units_j, datapoints)` arrays on the same
            datapoints, or None to compare `first` with itself (the map is
            then symmetric with a diagonal of exactly 1).
        debiased: Use the unbiased HSIC (needs at least 4 datapoints).

    Returns:
        `(len(first), len(second))` float64 array of similarities.

    Raises:
        ParameterError: As `linear_cka`, naming `first[i]` or `second[j]`.
    """
    layers_first = _prepared_layers("first", first, debiased)
    layers_second = layers_first if second is None else _prepared_layers("second", second, debiased)
    n = layers_first[0][0].shape[1]
    if layers_second[0][0].shape[1] != n:
        raise ParameterError("second", f"must be on the {n} datapoints of first; got "
                             f"{layers_second[0][0].shape[1]}")
    result = np.empty((len(layers_first), len(layers_second)))
    for i, (x_c, rows_x, self_x) in enumerate(layers_first):
        for j, (y_c, rows_y, self_y) in enumerate(layers_second):
            if second is None and j < i:
                result[i, j] = result[j, i]
                continue
            if second is None and i == j:
                result[i, j] = 1.0
                continue
            if _resolve_space("auto", x_c.shape[0], y_c.shape[0], n) == "features":
                product = x_c @ y_c.T
                cross = _dot(product, product)
                if debiased:
                    cross = debiased_terms(cross, rows_x, rows_y, n)[0]
            else:
                cross = _hsic_terms(x_c, y_c, debiased, "gram")[0]
            result[i, j] = cka_ratio(cross, self_x, self_y, debiased)
    return result


def _prepared_layers(name: str, layers: Sequence, debiased: bool) -> list:
    """`(centred, rows, self_term)` of each layer, checked."""
    if len(layers) == 0:
        raise ParameterError(name, "must hold at least one layer")
    prepared = []
    for i, layer in enumerate(layers):
        label = f"{name}[{i}]"
        acts = _inputs.activations(label, layer)
        if prepared and acts.shape[1] != prepared[0][0].shape[1]:
            raise ParameterError(label, f"must have the {prepared[0][0].shape[1]} datapoints of "
                                 f"{name}[0]; got {acts.shape[1]}")
        if debiased:
            _inputs.at_least_four_datapoints(label, acts.shape[1])
        x_c = _inputs.centred(acts)
        n = x_c.shape[1]
        rows = np.einsum("ij,ij->j", x_c, x_c)
        if _resolve_space("auto", x_c.shape[0], x_c.shape[0], n) == "features":
            product = x_c @ x_c.T
            self_term = scale = _dot(product, product)
            if debiased:
                self_term, scale = debiased_terms(self_term, rows, rows, n)
            self_term = checked_self_term(label, self_term, scale)
        else:
            try:
                self_term = _hsic_terms(x_c, None, debiased, "gram")[1]
            except ParameterError as error:
                raise ParameterError(label, error.problem) from None
        prepared.append((x_c, rows, self_term))
    return prepared


def minibatch_cka(x, y, *, batch_size: int) -> float:
    """Minibatch CKA of Nguyen et al. (2021) over consecutive batches (a similarity).

    Splits the datapoints into consecutive batches of `batch_size` (the
    last one keeps the remainder, which must have at least 4 datapoints) and
    returns `sum_b HSIC_1(K_b, L_b) / sqrt(sum_b HSIC_1(K_b, K_b) sum_b
    HSIC_1(L_b, L_b))` with the unbiased linear HSIC of each batch. Not the
    same number as `debiased_cka` on all datapoints (the HSIC of a batch
    ignores pairs across batches) unless there is one batch; it depends on
    how the datapoints are batched. Same invariances as `linear_cka`.
    Streaming over data that does not fit in memory: `MinibatchCKA`.

    Args:
        x: `(units1, datapoints)` activations.
        y: `(units2, datapoints)` activations on the same datapoints.
        batch_size: Datapoints per batch, at least 4.

    Returns:
        The similarity, in [-1, 1]; exactly 1.0 when `x` and `y` are equal.

    Raises:
        ParameterError: See the module docstring (guards); a `batch_size`
            below 4, or a last batch of fewer than 4 datapoints.
    """
    _check_batch_size(batch_size)
    x, y = _pair(x, y, True)
    n = x.shape[1]
    if n % batch_size and n % batch_size < 4:
        raise ParameterError(
            "batch_size", f"leaves a last batch of {n % batch_size} datapoints ({n} = "
            f"{n // batch_size} x {batch_size} + {n % batch_size}); the unbiased HSIC "
            "needs at least 4: choose another batch size")
    accumulator = MinibatchCKA()
    same = _inputs.identical(x, y)
    for start in range(0, n, batch_size):
        batch_x = x[:, start:start + batch_size]
        accumulator.update(batch_x, batch_x if same else y[:, start:start + batch_size])
    return accumulator.result()


class MinibatchCKA:
    """Streaming minibatch CKA of one pair of representations.

    Accumulates, batch by batch, the unbiased linear HSIC of the pair and of
    each representation with itself (three floats: memory does not grow with
    the number of batches); `result()` is Nguyen et al.'s minibatch CKA
    (see `minibatch_cka`), a similarity. Each batch's HSIC is taken in
    feature or Gram space, whichever is cheaper for its size.

    Example:

    ```python
    accumulator = MinibatchCKA()
    for batch_x, batch_y in batches:  # (units, batch) arrays
        accumulator.update(batch_x, batch_y)
    similarity = accumulator.result()
    ```
    """

    def __init__(self):
        self.cross = 0.0
        self.self_x = 0.0
        self.self_y = 0.0
        self.num_batches = 0
        self.num_datapoints = 0
        self._units: tuple[int, int] | None = None
        self._all_identical = True

    def update(self, x, y) -> None:
        """Adds one batch.

        Args:
            x: `(units1, batch)` activations of the first representation.
            y: `(units2, batch)` activations of the second on the same
                datapoints; the unit counts must stay the same from batch to
                batch.

        Raises:
            ParameterError: On bad inputs, fewer than 4 datapoints, or unit
                counts that change between batches.
        """
        x, y = _pair(x, y, True)
        units = (x.shape[0], y.shape[0])
        if self._units is not None and units != self._units:
            raise ParameterError(
                "x" if units[0] != self._units[0] else "y",
                f"must keep its number of units from batch to batch; got {units} "
                f"after {self._units}")
        self._units = units
        n = x.shape[1]
        same = _inputs.identical(x, y)
        space = _resolve_space("auto", *units, n)
        cross, self_x, self_y = _hsic_terms(x, None if same else y, True, space)
        norm = 1.0 / (n * (n - 3))
        self.cross += cross * norm
        self.self_x += self_x * norm
        self.self_y += self_y * norm
        self.num_batches += 1
        self.num_datapoints += n
        self._all_identical &= same

    def result(self) -> float:
        """The minibatch CKA of the batches seen so far, in [-1, 1].

        Raises:
            ParameterError: Before any batch, or when a representation has
                no variance within any batch (its HSIC sum is 0).
        """
        if self.num_batches == 0:
            raise ParameterError("x", "has had no batch: call update() first")
        self_x = checked_self_term("x", self.self_x, abs(self.self_x), summed=True)
        self_y = checked_self_term("y", self.self_y, abs(self.self_y), summed=True)
        if self._all_identical:
            return 1.0
        return cka_ratio(self.cross, self_x, self_y, True)


class MinibatchCKAMap:
    """Streaming minibatch CKA of every pair from two lists of layers.

    For two networks (or one network with itself) with layers `a_1..a_p` and
    `b_1..b_q`, accumulates the unbiased linear HSIC of every pair `(a_i,
    b_j)` batch by batch: per batch, each layer's U-centred `batch x batch`
    Gram matrix is built once and all `p x q` inner products come from one
    matrix product. Memory is `(p + q) batch^2` floats, independent of the
    number of batches. `result()` is the `(p, q)` map of minibatch CKA
    similarities (Nguyen et al.'s Figure 1; Kornblith et al.'s Figure 2 with
    debiased CKA), equal entry by entry to `MinibatchCKA` on the same
    batches.

    Args:
        num_first: Number of layers of the first network (p).
        num_second: Number of layers of the second network (q).
    """

    def __init__(self, num_first: int, num_second: int):
        for name, value in (("num_first", num_first), ("num_second", num_second)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ParameterError(name, f"must be a positive integer; got {value!r}")
        self.cross = np.zeros((num_first, num_second))
        self.self_first = np.zeros(num_first)
        self.self_second = np.zeros(num_second)
        self.num_batches = 0
        self.num_datapoints = 0
        self._units: tuple | None = None
        self._self_map = True

    def update(self, first: Sequence, second: Sequence | None = None) -> None:
        """Adds one batch of every layer.

        Args:
            first: `num_first` arrays of `(units_i, batch)` activations of
                the first network's layers, on the same datapoints.
            second: `num_second` arrays for the second network; None compares
                the first network with itself (needs `num_first ==
                num_second`; if every batch does, the diagonal of the map
                is exactly 1).

        Raises:
            ParameterError: On a wrong number of layers, bad activations,
                fewer than 4 datapoints, or unit counts that change between
                batches.
        """
        grams_first = self._u_centred_grams("first", first, self.self_first.shape[0])
        if second is None:
            if self.cross.shape[0] != self.cross.shape[1]:
                raise ParameterError("second", "is needed when the two lists differ in length")
            grams_second = grams_first
        else:
            grams_second = self._u_centred_grams("second", second, self.self_second.shape[0])
            if grams_second.shape[1] != grams_first.shape[1]:
                raise ParameterError(
                    "second", "must be on the datapoints of first: batches of "
                    f"{int(np.sqrt(grams_first.shape[1]))} and "
                    f"{int(np.sqrt(grams_second.shape[1]))} datapoints")
        units = (tuple(_units_of(first)), tuple(_units_of(second if second is not None else first)))
        if self._units is not None and units != self._units:
            raise ParameterError("first", "must keep its layers' unit counts from batch to batch")
        self._units = units
        n = int(round(np.sqrt(grams_first.shape[1])))
        norm = 1.0 / (n * (n - 3))
        self.cross += (grams_first @ grams_second.T) * norm
        self.self_first += np.einsum("ij,ij->i", grams_first, grams_first) * norm
        self.self_second += np.einsum("ij,ij->i", grams_second, grams_second) * norm
        self.num_batches += 1
        self.num_datapoints += n
        self._self_map &= second is None

    def result(self) -> np.ndarray:
        """The `(num_first, num_second)` minibatch CKA map, entries in [-1, 1].

        Raises:
            ParameterError: Before any batch, or when a layer has no
                variance within any batch.
        """
        if self.num_batches == 0:
            raise ParameterError("first", "has had no batch: call update() first")
        for name, terms in (("first", self.self_first), ("second", self.self_second)):
            for i, term in enumerate(terms):
                checked_self_term(f"{name}[{i}]", term, abs(term), summed=True)
        similarity = self.cross / np.sqrt(np.outer(self.self_first, self.self_second))
        similarity = np.clip(similarity, -1.0, 1.0)
        if self._self_map:  # A network with itself: each layer with itself is exactly 1.
            np.fill_diagonal(similarity, 1.0)
        return similarity

    @staticmethod
    def _u_centred_grams(name: str, layers: Sequence, expected: int) -> np.ndarray:
        """`(layers, batch^2)` flattened U-centred linear Gram matrices of one batch."""
        if len(layers) != expected:
            raise ParameterError(name, f"must hold {expected} layers; got {len(layers)}")
        grams = None
        batch = None
        for i, layer in enumerate(layers):
            acts = _inputs.activations(f"{name}[{i}]", layer)
            if batch is None:
                batch = acts.shape[1]
                _inputs.at_least_four_datapoints(name, batch)
                grams = np.empty((len(layers), batch * batch))
            elif acts.shape[1] != batch:
                raise ParameterError(
                    f"{name}[{i}]", f"must have the {batch} datapoints of {name}[0]; "
                    f"got {acts.shape[1]}")
            acts = _inputs.centred(acts)
            gram = center_gram(acts.T @ acts, unbiased=True)
            grams[i] = gram.ravel()
        return grams


def _units_of(layers: Sequence) -> list[int]:
    return [int(np.shape(layer)[0]) for layer in layers]


def _pair(x, y, unbiased: bool) -> tuple[np.ndarray, np.ndarray]:
    """Checked float64 activations of a pair."""
    same = x is y
    x = _inputs.activations("x", x)
    y = x if same else _inputs.activations("y", y)
    _inputs.same_datapoints(x, y)
    if unbiased:
        _inputs.at_least_four_datapoints("x", x.shape[1])
    return x, y


def _resolve_space(space: str, units1: int, units2: int, n: int) -> str:
    """'features' or 'gram' for `space`, choosing the cheaper one for 'auto'."""
    if space not in SPACES:
        raise ParameterError("space", f"must be one of {list(SPACES)}; got {space!r}")
    if space != "auto":
        return space
    feature_cost = units1 * units2 + units1**2 + units2**2
    gram_cost = n * (units1 + units2 + 2)
    return "features" if feature_cost <= gram_cost else "gram"


def _hsic_terms(x: np.ndarray, y: np.ndarray | None, unbiased: bool, space: str,
                check_self: bool = True) -> tuple[float, float, float]:
    """`(cross, self_x, self_y)`: `n (n - 3)` times the unbiased HSIC terms, or
    `(n - 1)^2` times the biased ones; `y=None` means `y = x`.

    Checks the self terms (a representation with no variance, or with a
    U-centred Gram of 0) and raises ParameterError naming "x" or "y".
    """
    x_c = _inputs.centred(x)
    y_c = x_c if y is None else _inputs.centred(y)
    if space == "gram":
        gram_x = x_c.T @ x_c
        gram_y = gram_x if y is None else y_c.T @ y_c
        scale_x, scale_y = _dot(gram_x, gram_x), _dot(gram_y, gram_y)
        centred_x = center_gram(gram_x, unbiased=True) if unbiased else gram_x
        centred_y = centred_x if y is None else (
            center_gram(gram_y, unbiased=True) if unbiased else gram_y)
        # Centred features already give H K H for the biased estimator.
        self_x = _dot(centred_x, centred_x)
        self_y = self_x if y is None else _dot(centred_y, centred_y)
        cross = self_x if y is None else _dot(centred_x, centred_y)
    else:
        product_xx = x_c @ x_c.T
        self_x = scale_x = _dot(product_xx, product_xx)
        if y is None:
            cross = self_y = scale_y = self_x
        else:
            product_yy = y_c @ y_c.T
            self_y = scale_y = _dot(product_yy, product_yy)
            product_xy = x_c @ y_c.T
            cross = _dot(product_xy, product_xy)
        if unbiased:
            n = x.shape[1]
            rows_x = np.einsum("ij,ij->j", x_c, x_c)
            rows_y = rows_x if y is None else np.einsum("ij,ij->j", y_c, y_c)
            cross_terms = debiased_terms(cross, rows_x, rows_y, n)
            self_x_terms = debiased_terms(self_x, rows_x, rows_x, n)
            self_y_terms = self_x_terms if y is None else debiased_terms(self_y, rows_y, rows_y, n)
            cross, self_x, self_y = cross_terms[0], self_x_terms[0], self_y_terms[0]
            scale_x, scale_y = self_x_terms[1], self_y_terms[1]
    if check_self:
        self_x = checked_self_term("x", self_x, scale_x)
        self_y = self_x if y is None else checked_self_term("y", self_y, scale_y)
    return cross, self_x, self_y


def debiased_terms(product: float, rows_x: np.ndarray, rows_y: np.ndarray, n: int
                     ) -> tuple[float, float]:
    """`n (n - 3) HSIC_1` from centred features, and the size of its terms.

    Kornblith et al.'s `_debiased_dot_product_similarity_helper`:
    `||X Y^T||_F^2 - n / (n - 2) r_x . r_y + |X|^2 |Y|^2 / ((n - 1)(n - 2))`,
    `r` the squared norms of the datapoints. Equal to `sum_ij K~_ij L~_ij`
    of the U-centred Gram matrices (tested).
    """
    middle = n / (n - 2) * float(rows_x @ rows_y)
    last = float(rows_x.sum()) * float(rows_y.sum()) / ((n - 1) * (n - 2))
    return product - middle + last, max(abs(product), abs(middle), abs(last))


def checked_self_term(name: str, value: float, scale: float, summed: bool = False) -> float:
    """The self term `value`, or ParameterError when it is 0 to round-off.

    A representation's HSIC with itself is 0 only when it has no variance
    (biased) or a U-centred Gram matrix of 0 (unbiased): CKA is then 0/0.
    """
    if value > _SELF_TERM_RTOL * scale and value > 0.0:
        return float(value)
    what = "in every batch" if summed else "over the datapoints"
    raise ParameterError(
        name, f"has no variance {what} that CKA can measure (its HSIC with itself is "
        f"{value:.3g}, 0 to round-off: a constant layer, or one whose Gram matrix "
        "centres to 0): CKA is 0/0, undefined")


def cka_ratio(cross: float, self_x: float, self_y: float, debiased: bool) -> float:
    """`cross / sqrt(self_x self_y)`, clipped to its range ([0, 1] or [-1, 1])."""
    value = cross / (np.sqrt(self_x) * np.sqrt(self_y))
    return float(np.clip(value, -1.0 if debiased else 0.0, 1.0))


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Frobenius inner product of two equal-shape arrays."""
    return float(np.dot(a.ravel(), b.ravel()))


def _gram(name: str, gram) -> np.ndarray:
    """A checked `(n, n)` symmetric finite float64 matrix."""
    gram = np.asarray(gram, dtype=np.float64)
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1] or gram.shape[0] == 0:
        raise ParameterError(name, f"must be a square (n, n) Gram matrix; got shape {gram.shape}")
    if not np.isfinite(gram).all():
        raise ParameterError(name, "contains NaN or infinite values")
    if not np.allclose(gram, gram.T, rtol=1e-10, atol=1e-12 * np.abs(gram).max()):
        raise ParameterError(name, "must be symmetric (a Gram matrix)")
    return gram


def _check_threshold(threshold) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)) \
            or not np.isfinite(threshold) or threshold <= 0:
        raise ParameterError("threshold", f"must be a positive finite number; got {threshold!r}")


def _check_batch_size(batch_size) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 4:
        raise ParameterError(
            "batch_size", f"must be an integer of at least 4 (the unbiased HSIC of a "
            f"batch divides by n (n - 3)); got {batch_size!r}")

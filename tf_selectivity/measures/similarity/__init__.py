"""Representational similarity beyond CCA: CKA and Procrustes shape metrics.

NumPy only (never imports Keras or TensorFlow), beside `tf_selectivity.measures.similarity.cca`
(SVCCA, PWCCA), with the same conventions: activations are `(units,
datapoints)` arrays, two representations share their datapoints and may
differ in width, inputs are checked (`tf_selectivity.core.settings.ParameterError`
names the bad parameter), and a self-comparison gives exactly 1 (a
similarity) or 0 (a distance).

Similarities (`cka`):

* `linear_cka`, `debiased_cka` (unbiased HSIC), `rbf_cka` (Gaussian kernel,
  width `threshold x median distance`), `cka_from_grams` (any kernel);
* `cka_map`: every layer of one network against every layer of another
  (Kornblith et al.'s Figure 2), each layer prepared once;
* `minibatch_cka`, `MinibatchCKA` and `MinibatchCKAMap` (Nguyen et al.'s
  minibatch CKA, in memory independent of the number of datapoints; the map
  compares every layer of one network with every layer of another).

Distances (`shape`):

* `procrustes_distance` (angular or Euclidean, after partial whitening
  `alpha`: 1 = rotations only, 0 = CCA-like), and its similarity
  `procrustes_similarity`.

From CCA's factors (`factored`): `cka_from_factors` and
`distances_from_factors` compute linear and debiased CKA and Procrustes from
`tf_selectivity.measures.similarity.cca.factorize`, so one factorization of a layer serves CCA
and these measures alike (the Figure 3 analysis does so).

Example::

    import numpy as np
    from tf_selectivity.measures import similarity

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 1000))            # 64 units, 1000 inputs
    y = rng.standard_normal((32, 64)) @ x + rng.standard_normal((32, 1000))
    similarity.linear_cka(x, y)                    # 0.573
    similarity.debiased_cka(x, y)                  # 0.561
    similarity.procrustes_distance(x, y, alpha=1.0)  # 0.846 (radians)
"""

from tf_selectivity.measures.similarity.cka import (
    MinibatchCKA,
    MinibatchCKAMap,
    center_gram,
    cka_from_grams,
    cka_map,
    debiased_cka,
    hsic,
    linear_cka,
    linear_gram,
    minibatch_cka,
    rbf_cka,
    rbf_gram,
)
from tf_selectivity.measures.similarity.factored import (
    FACTORED_MEASURES,
    cka_from_factors,
    distances_from_factors,
)
from tf_selectivity.measures.similarity.shape import (
    SHAPE_METRICS,
    procrustes_distance,
    procrustes_similarity,
)

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
    "procrustes_distance",
    "procrustes_similarity",
    "SHAPE_METRICS",
    "cka_from_factors",
    "distances_from_factors",
    "FACTORED_MEASURES",
]

"""`SplitSelectivity`: each probe's selectivity over a whole evaluation split.

The per-batch SI that training logs (``selectivity/<probe>``) is a noisy
estimate from one batch. The index the analysis reports is computed from
class-conditional mean responses over a whole split. This metric accumulates
what that needs, per probe, while Keras' validation pass runs (no extra
forward pass): the class sums of the unit responses and the class counts,
in float32 metric variables, so that they reset with the other metrics,
live in the JAX metrics state (jittable, `jax.vmap`-able over packed
replicates) and follow `tf.distribute`'s metric aggregation. Its result
applies the analysis' own index code (`selectivity_from_class_sums`, the
`keras.ops` twin of `ClassSelectivityAccumulator.selectivity`).
"""

from __future__ import annotations

import keras
from keras import ops

from tf_selectivity.measures.selectivity import (
    DEFAULT_SELECTIVITY_INDEX,
    selectivity_from_class_sums,
    validate_index,
)

__all__ = ["SplitSelectivity", "SPLIT_LOG_PREFIX", "SPLIT_MEAN_LOG"]

# Log names: f"{SPLIT_LOG_PREFIX}{probe name}" per probe, and the eq. 3 mean.
SPLIT_LOG_PREFIX = "split_selectivity/"
SPLIT_MEAN_LOG = "split_mean_selectivity"


class SplitSelectivity(keras.metrics.Metric):
    """Dataset-level class selectivity of each probe over the batches seen.

    Created empty; `configure` gives it its probes and creates the state:
    per probe a (num_classes, units) float32 sum of the unit responses per
    class, and one (num_classes,) float32 count of samples per class (the
    labels are the same for every probe). Memory is O(num_classes x units),
    independent of the number of samples. Counts are exact up to 2^24
    samples per class; the sums carry float32 rounding (relative ~1e-7 per
    addition).

    `update_state(labels, responses)` adds a batch; `result()` is a dict:
    ``split_selectivity/<probe>`` (the mean over the probe's units of the
    index, dead units counted as 0, as `EvaluationResult.layer_selectivity`)
    and ``split_mean_selectivity`` (eq. 3: the mean over probes). Sample
    weights are not used: as in the analysis, every sample counts once.

    Args:
        name: metric name.
    """

    def __init__(self, name="split_selectivity", dtype="float32"):
        super().__init__(name=name, dtype=dtype)
        self.probe_names: list = []
        self.num_classes = 0
        self.index = DEFAULT_SELECTIVITY_INDEX
        self.class_sums: list = []
        self.class_counts = None

    @property
    def configured(self) -> bool:
        return self.class_counts is not None

    def configure(self, probe_names, units, num_classes, index=DEFAULT_SELECTIVITY_INDEX) -> None:
        """Creates the state for the given probes (once; later calls must
        name the same probes and sizes, and may change `index`).

        Args:
            probe_names: the probes' names, in network order.
            units: the number of units of each probe.
            num_classes: number of classes of the labels.
            index: "eq1" (the paper's, default) or "bounded".

        Raises:
            ValueError: no probes, mismatched lengths, or a second call with
                other probes.
        """
        self.index = validate_index(index, "index")
        probe_names, units = [str(n) for n in probe_names], [int(u) for u in units]
        if not probe_names or len(probe_names) != len(units):
            raise ValueError(
                f"probe_names and units must be non-empty lists of one length; got "
                f"{len(probe_names)} names and {len(units)} unit counts."
            )
        spec = (probe_names, units, int(num_classes))
        if self.configured:
            current = (self.probe_names, [int(v.shape[1]) for v in self.class_sums], self.num_classes)
            if spec != current:
                raise ValueError(f"{self.name} already holds state for {current}; got {spec}.")
            return
        self.probe_names, self.num_classes = probe_names, int(num_classes)
        self.class_counts = self.add_variable(
            shape=(self.num_classes,), initializer="zeros", name="class_counts", aggregation="sum"
        )
        self.class_sums = [
            self.add_variable(
                shape=(self.num_classes, width), initializer="zeros",
                name=f"class_sums_{position}", aggregation="sum",
            )
            for position, width in enumerate(units)
        ]

    def update_state(self, labels, responses):
        """Adds one batch.

        Args:
            labels: integer class labels (batch,) or (batch, 1).
            responses: dict probe name -> (batch, units) unit responses
                (each unit's mean over positions; cast to float32).

        Raises:
            ValueError: not configured, or a probe's responses are missing.
        """
        if not self.configured:
            raise ValueError(f"{self.name} has no probes; call configure() first.")
        missing = [name for name in self.probe_names if name not in responses]
        if missing:
            raise ValueError(
                f"No unit responses recorded for probe(s) {', '.join(missing)} in this forward "
                "pass: each probe must be called once per pass, with the labels."
            )
        labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
        one_hot = ops.one_hot(labels, self.num_classes, dtype="float32")  # (batch, K)
        self.class_counts.assign_add(ops.sum(one_hot, axis=0))
        for name, sums in zip(self.probe_names, self.class_sums):
            batch_sums = ops.matmul(ops.transpose(one_hot), ops.cast(responses[name], "float32"))
            sums.assign_add(batch_sums)

    def result(self):
        if not self.configured:
            return {}
        layer_means = [
            ops.mean(selectivity_from_class_sums(sums, self.class_counts, self.index))
            for sums in self.class_sums
        ]
        logs = {f"{SPLIT_LOG_PREFIX}{name}": value for name, value in zip(self.probe_names, layer_means)}
        logs[SPLIT_MEAN_LOG] = ops.mean(ops.stack(layer_means))
        return logs

    def reset_state(self):
        for variable in self.variables:
            variable.assign(ops.zeros(variable.shape, dtype=variable.dtype))

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}

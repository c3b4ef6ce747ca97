"""`SelectivityModel`: a Functional model whose train step feeds labels to its probes."""

from __future__ import annotations

import contextlib

import keras
from keras import ops

from tf_selectivity.core.compat import register_call_context_args
from tf_selectivity.models.probe import (
    GATE_ARG,
    LABELS_ARG,
    UnitResponses,
    find_probes,
    recording_unit_responses,
    representable_coefficient,
)
from tf_selectivity.models.replicas import own_replica_terms, replica_weights, replicas_in_sync
from tf_selectivity.models.split_selectivity import SplitSelectivity
from tf_selectivity.models.steps import BackendSteps
from tf_selectivity.measures.selectivity import DEFAULT_SELECTIVITY_INDEX, validate_index

__all__ = ["SelectivityModel", "VectorMean"]


@keras.saving.register_keras_serializable(package="tf_selectivity")
class VectorMean(keras.metrics.Metric):
    """Running (weighted) mean of a fixed-length vector, one value per entry.

    One metric for all probes (two variables) instead of one `Mean` per probe.

    Args:
        length: number of entries.
        name: metric name.
    """

    def __init__(self, length, name="vector_mean", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.length = int(length)
        self.total = self.add_variable(shape=(self.length,), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, values, sample_weight=1.0):
        weight = ops.cast(sample_weight, self.dtype)
        self.total.assign_add(ops.cast(values, self.dtype) * weight)
        self.count.assign_add(weight)

    def result(self):
        return self.total / ops.maximum(self.count, 1e-12)

    def reset_state(self):
        self.total.assign(ops.zeros((self.length,), dtype=self.dtype))
        self.count.assign(ops.zeros((), dtype=self.dtype))

    def get_config(self):
        return {"length": self.length, "name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="tf_selectivity")
class SelectivityModel(BackendSteps, keras.Model):
    """Functional classifier trained with ``loss = CE - alpha * mu_SI`` (eqs. 2-3).

    Build it like any Functional model, with `SelectivityProbe` layers where
    selectivity should be measured and regularized::

        inputs = keras.Input((32, 32, 3))
        x = keras.layers.Conv2D(16, 3, activation="relu")(inputs)
        x = SelectivityProbe(num_classes=10, alpha=-1.0)(x)
        ...
        model = SelectivityModel(inputs, logits)
        model.compile(optimizer="sgd")
        model.fit(images, labels)

    Its train and test steps pass the batch labels to every probe (the
    `selectivity_labels` call-context argument); `compute_loss` is the
    softmax cross-entropy of the logits (integer labels) plus every
    `add_loss` term. Probes created with ``share=None`` get ``share = 1 / L``
    so that their loss terms add up to ``-alpha * mu_SI``. The steps
    (`tf_selectivity.models.steps`, one module per backend, as Keras' own
    trainers) run on the TensorFlow (XLA or graph) and JAX backends, scale
    the loss for a `LossScaleOptimizer` (mixed_float16) as Keras does, and
    report, per batch-size-weighted epoch mean:

    * ``loss``: the total (cross-entropy + regularizer + any other layer losses),
    * ``cross_entropy``, ``accuracy``,
    * ``selectivity_term``: the regularizer, ``-alpha * mu_SI``,
    * ``batch_selectivity``: mu_SI computed per batch (eq. 3 on the batch),
    * ``selectivity/<probe name>``: each probe's mean batch SI,

    and the metrics given to `compile(metrics=..., weighted_metrics=...)`,
    which are updated with ``(labels, logits)`` (use ``from_logits=True``
    where a metric has it). With ``compile(split_selectivity=True)`` the test
    step (validation in `fit`, `evaluate`) also reports each probe's index
    over the whole split, ``split_selectivity/<probe name>``, and their mean
    ``split_mean_selectivity`` (see `compile`).

    **Sample weights** (``fit(..., sample_weight=...)`` or ``class_weight``)
    weight the cross-entropy as Keras' losses do: ``sum_i w_i CE_i / N``
    over the N samples of the batch. The selectivity term does not use them:
    the class selectivity index is a statistic of class-conditional mean
    activations over the batch, computed from every sample with equal
    weight. (Class weights would not change it anyway: a weight that is
    constant within each class leaves each class mean unchanged.) A sample
    with weight 0 therefore still counts in the selectivity term; leave it
    out of the batch to exclude it. `weighted_metrics` get the weights,
    the built-in `accuracy` does not.

    Inference (`predict`, `__call__` without labels, exported signatures) is the
    plain network: probes are identities.

    Args:
        *args: as for a Functional `keras.Model` (`inputs`, `outputs`). The
            outputs must be logits (no softmax).
        **kwargs: as for a Functional `keras.Model` (`name`, ...).

    Raises:
        RuntimeError: the Keras backend is neither TensorFlow nor JAX.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        register_call_context_args(self, LABELS_ARG, GATE_ARG)
        probes = self.probes
        for probe in probes:
            if probe.share is None:
                probe.share = 1.0 / len(probes)
        self.cross_entropy_tracker = keras.metrics.Mean(name="cross_entropy")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.layer_selectivity_tracker = VectorMean(max(len(probes), 1), name="layer_selectivity")
        # Holds no state until `compile(split_selectivity=True)` configures it.
        self.split_selectivity_tracker = SplitSelectivity(name="split_selectivity")
        self.split_selectivity = False
        # The regularizer's window of training steps (`set_selectivity_window`);
        # None: every step. Its tracker exists only while a window is set.
        self.selectivity_window = None
        self.windowed_selectivity_tracker = None

    # ----------------------------------------------------------------- probes
    @property
    def probes(self) -> list:
        """The model's `SelectivityProbe` layers, in depth order."""
        return find_probes(self)

    @property
    def probe_names(self) -> list:
        return [probe.name for probe in self.probes]

    @property
    def alpha(self) -> float:
        """The network-level regularizer scale (all probes share one alpha)."""
        alphas = {probe.alpha for probe in self.probes}
        if len(alphas) > 1:
            raise ValueError(f"Probes have different alphas: {sorted(alphas)}.")
        return alphas.pop() if alphas else 0.0

    def set_alpha(self, alpha: float) -> None:
        """Sets alpha on every probe. Call before `compile`/`fit` traces the steps."""
        for probe in self.probes:
            probe.alpha = float(alpha)
        self.train_function = None
        self.test_function = None

    def set_selectivity_window(self, start_step=0, end_step=None) -> None:
        """Applies the regularizer only in training steps ``start_step <= step < end_step``.

        The step is the optimizer's iteration counter before the step's
        update (0 for the first batch), read inside the compiled train step:
        the switch needs no retrace and no host round trip, works in a
        `jax.lax.fori_loop` and under `jax.vmap` (packed replicates: each
        replicate's counter is in its own optimizer state), and a resumed
        run continues where its restored counter stands. Outside the window
        every probe's loss term is multiplied by 0 (the run trains as with
        alpha = 0 there); the probes still measure their batch selectivity.
        The train step's ``selectivity_term`` log is the mean of the term
        actually applied; the test step's is the term at full alpha (the
        regularized objective, as without a window). Call before `compile`
        / `fit` traces the steps, like `set_alpha`.

        Args:
            start_step: first step with the regularizer (>= 0).
            end_step: first step without it again; None: to the end.
                ``start_step == end_step`` is an empty window (never on).
                ``set_selectivity_window(0, None)`` removes the window.

        Raises:
            ValueError: negative steps, or `end_step` before `start_step`.
        """
        start_step = int(start_step)
        end_step = None if end_step is None else int(end_step)
        if start_step < 0 or (end_step is not None and end_step < start_step):
            raise ValueError(
                f"A selectivity window needs 0 <= start_step <= end_step; got {start_step}, {end_step}."
            )
        if start_step == 0 and end_step is None:
            self.selectivity_window = None
        else:
            self.selectivity_window = (start_step, end_step)
            if self.windowed_selectivity_tracker is None:
                self.windowed_selectivity_tracker = VectorMean(
                    max(len(self.probes), 1), name="windowed_selectivity"
                )
        self.train_function = None
        self.test_function = None

    def selectivity_gate(self, step):
        """The regularizer's gate at optimizer step `step` (a scalar tensor):
        1.0 inside `selectivity_window`, 0.0 outside; None without a window,
        False (a Python constant: no term at all) for an empty one."""
        if self.selectivity_window is None:
            return None
        start, end = self.selectivity_window
        if start == end:
            # Never open: the step is the alpha = 0 step itself (a zeroed
            # term would still change how XLA rounds the gradient).
            return False
        inside = ops.greater_equal(step, start)
        if end is not None:
            inside = ops.logical_and(inside, ops.less(step, end))
        return ops.cast(inside, "float32")

    def step_context(self, labels, gate=None) -> dict:
        """The call-context arguments of a step's forward pass: the labels,
        and the gate when there is one."""
        context = {LABELS_ARG: labels}
        if gate is not None and gate is not True:
            context[GATE_ARG] = gate
        return context

    @property
    def selectivity_index(self) -> str:
        """The selectivity index all probes regularize ("eq1" or "bounded")."""
        indices = {probe.index for probe in self.probes}
        if len(indices) > 1:
            raise ValueError(f"Probes use different selectivity indices: {sorted(indices)}.")
        return indices.pop() if indices else DEFAULT_SELECTIVITY_INDEX

    def set_selectivity_index(self, index: str) -> None:
        """Sets the index ("eq1" or "bounded") on every probe, like `set_alpha`."""
        validate_index(index, "index")
        for probe in self.probes:
            probe.index = index
        self.split_selectivity_tracker.index = index
        self.train_function = None
        self.test_function = None

    def activation_model(self) -> keras.Model:
        """Inputs -> dict of every probe's full activations (batch, ..., units).

        Shares this model's layers and weights; used for analysis and export.
        """
        outputs = {probe.name: probe.output for probe in self.probes}
        return keras.Model(self._single_input(), outputs, name=f"{self.name}_activations")

    def unit_response_model(self) -> keras.Model:
        """Inputs -> {"logits": (batch, classes), probe name: (batch, units)}.

        Unit responses are the probes' activations averaged over positions
        (what the selectivity index and CCA's averaged form use).
        """
        outputs = {"logits": self.outputs[0]}
        for probe in self.probes:
            outputs[probe.name] = UnitResponses(name=f"{probe.name}_units")(probe.output)
        return keras.Model(self._single_input(), outputs, name=f"{self.name}_unit_responses")

    def _single_input(self):
        # A bare tensor (not a one-element list), so that the derived models
        # take the same arguments as this one.
        return self.inputs[0] if len(self.inputs) == 1 else self.inputs

    # ---------------------------------------------------------------- compile
    def compile(self, optimizer="sgd", metrics=None, weighted_metrics=None,
                split_selectivity=False, **kwargs):
        """Configures the optimizer and extra metrics; the loss is fixed (eq. 2).

        Args:
            optimizer: as for `keras.Model.compile`.
            metrics: extra metrics, updated with ``(labels, logits)`` in the
                train and test steps (logged beside the built-in ones).
                ``"accuracy"`` is always logged and is not added twice.
            weighted_metrics: extra metrics that also get the sample weights.
            split_selectivity: also measure selectivity over whole splits in
                the test step: each evaluation (`evaluate`, `fit`'s
                validation, a device loop's validation) accumulates, per
                probe, the class sums of the unit responses of the forward
                pass it runs anyway, and the class counts, in float32 metric
                variables (reset with the other metrics), and logs
                ``split_selectivity/<probe name>`` (the mean over the probe's
                units of the dataset-level index, the one the analysis
                reports, in the probes' `selectivity_index`) and
                ``split_mean_selectivity`` (eq. 3), ``val_``-prefixed in
                `fit`. Sample weights are not used. Not logged by the train
                step (a batch is not a split). Fixed when the steps are
                traced: compile again to change it.
            **kwargs: other `keras.Model.compile` arguments (`jit_compile`,
                `steps_per_execution`, ...); `loss` and `loss_weights` are
                refused.

        Raises:
            ValueError: `loss` given; `split_selectivity` for a model without
                probes (and, from the first test step, with a probe called
                more than once per pass); or (TensorFlow with oneDNN on) a
                layer whose weight gradient oneDNN gets wrong (see
                `tf_selectivity.models.onednn`).
        """
        from tf_selectivity.models.onednn import check_onednn_gradients

        check_onednn_gradients(self)
        for reserved in ("loss", "loss_weights"):
            if kwargs.get(reserved) is not None:
                raise ValueError(
                    f"SelectivityModel computes its own loss "
                    f"(cross-entropy - alpha * mu_SI); do not pass `{reserved}`."
                )
            kwargs.pop(reserved, None)
        if isinstance(metrics, (list, tuple)):
            # The built-in accuracy is the same value; keep one column.
            metrics = [m for m in metrics if not (isinstance(m, str) and m.lower() in ("accuracy", "acc"))]
        if split_selectivity:
            self._configure_split_selectivity()
        super().compile(
            optimizer=optimizer,
            metrics=metrics or None,
            weighted_metrics=weighted_metrics or None,
            **kwargs,
        )
        self.split_selectivity = bool(split_selectivity)

    def _configure_split_selectivity(self) -> None:
        probes = self.probes
        if not probes:
            raise ValueError("split_selectivity needs a model with SelectivityProbe layers.")
        units, num_classes = [], {probe.num_classes for probe in probes}
        for probe in probes:
            try:
                units.append(int(probe.output.shape[-1]))
            except (AttributeError, ValueError) as error:
                raise ValueError(
                    f"split_selectivity needs each probe's output shape; probe "
                    f"{probe.name!r}: {error}"
                ) from error
        if len(num_classes) > 1:
            raise ValueError(f"Probes have different num_classes: {sorted(num_classes)}.")
        self.split_selectivity_tracker.configure(
            [probe.name for probe in probes], units, num_classes.pop(), self.selectivity_index
        )

    def get_compile_config(self):
        """Keras' compile config, plus ``split_selectivity`` when it is on."""
        config = super().get_compile_config()
        if config and self.split_selectivity:
            config["split_selectivity"] = True
        return config

    def compile_from_config(self, config):
        """Recompiles a loaded model (optimizer state included) from its config."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built and self.optimizer is not None:
            self.optimizer.build(self.trainable_variables)

    # ---------------------------------------------------------------- metrics
    @property
    def loss_tracker(self) -> keras.metrics.Mean:
        """The running mean of the total loss (logged as ``loss``).

        Keras' own loss tracker, which `compile` creates and `metrics` lists
        first under the name ``loss``; the steps update it as Keras' trainers
        do.

        Raises:
            RuntimeError: the model is not compiled.
        """
        for metric in super().metrics:
            if metric.name == "loss":
                return metric
        raise RuntimeError(f"Compile {self.name!r} before training or evaluating it.")

    def _builtin_trackers(self) -> list:
        trackers = [self.cross_entropy_tracker, self.accuracy_tracker, self.layer_selectivity_tracker]
        if self.windowed_selectivity_tracker is not None:
            trackers.append(self.windowed_selectivity_tracker)
        return trackers

    @property
    def metrics(self):
        """Keras' metrics (the loss tracker, the metrics of `compile`, ...)
        with the built-in trackers right after the loss, the order of the
        logs (and of `evaluate`'s list)."""
        inherited = super().metrics
        loss = [metric for metric in inherited if metric.name == "loss"][:1]
        first = loss + self._builtin_trackers()
        return first + [metric for metric in inherited if not any(metric is m for m in first)]

    def _other_metrics(self) -> list:
        """The metrics beyond the built-in logs: those of `compile` and any
        a user attached (their results go into the logs as Keras logs them).
        Not the split selectivity: the test step logs it when it is on."""
        builtin = [self.loss_tracker, *self._builtin_trackers(), self.split_selectivity_tracker]
        return [metric for metric in self.metrics if not any(metric is m for m in builtin)]

    # ------------------------------------------------------------ loss terms
    def _cross_entropy(self, labels, logits, sample_weight=None, divisor=None):
        """Mean softmax cross-entropy; with weights ``sum_i w_i CE_i / N``
        (Keras' "sum_over_batch_size" reduction). With a `divisor`, the sum
        over the batch divided by it (0 for an empty batch: a replica's
        share of an epoch's last batch may be empty under tf.distribute)."""
        logits = ops.cast(logits, "float32")
        labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
        per_sample = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        if sample_weight is not None:
            per_sample = per_sample * ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
        if divisor is not None:
            return ops.divide_no_nan(ops.sum(per_sample), ops.cast(divisor, "float32"))
        return ops.mean(per_sample)

    def added_losses(self):
        """The sum of the forward pass' `add_loss` terms (the probes'
        selectivity terms, weight regularizers, ...), float32; under
        `tf.distribute`, those of this replica's pass."""
        total = ops.convert_to_tensor(0.0, dtype="float32")
        for term in own_replica_terms(self.losses):
            total = total + ops.cast(ops.sum(term), "float32")
        return total

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The total loss (eq. 2): cross-entropy plus every `add_loss` term.

        The probes' terms (``-alpha * share * SI`` each), weight regularizers
        and any other layer loss of the forward pass just run, as Keras'
        `compute_loss` adds `self.losses`; the steps call this after the
        forward pass that gave the probes the labels.

        Args:
            x: the inputs (unused).
            y: integer labels (batch,) or (batch, 1).
            y_pred: the logits (batch, classes).
            sample_weight: optional (batch,) weights of the cross-entropy.
            training: unused (the terms are those of the forward pass).

        Returns:
            float32 scalar.
        """
        del x, training
        total = self._cross_entropy(y, y_pred, sample_weight)
        for term in self.losses:
            total = total + ops.cast(ops.sum(term), "float32")
        return total

    def replica_losses(self, y, y_pred, sample_weight=None):
        """The loss of one replica's part of a data-parallel step (tf.distribute).

        Returns:
            (loss, replica_loss): the loss as `compute_loss` defines it on
            this replica's samples (its cross-entropy and the global
            batch's selectivity terms; what the loss tracker averages,
            weighted by the samples, over the replicas), and this replica's
            share of the global loss, whose gradients summed over the
            replicas (as the optimizer sums them) are one device's
            (`tf_selectivity.models.replicas.replica_weights`).
        """
        local = ops.shape(y_pred)[0]
        sample_share, term_share = replica_weights(local)
        cross_entropy = self._cross_entropy(y, y_pred, sample_weight, divisor=local)
        added = self.added_losses()
        return cross_entropy + added, cross_entropy * sample_share + added * term_share

    def compute_metrics(self, x, y, y_pred, sample_weight=None, selectivity_gate=None):
        """Updates the built-in trackers and the metrics of `compile`.

        Call after the forward pass (the probes' batch selectivity is read
        from their variables) and after updating `loss_tracker`.

        Args:
            selectivity_gate: the train step's gate (`selectivity_gate`),
                when a window is set: ``selectivity_term`` is then the mean
                of the gated term. None: the term at full alpha.

        Returns:
            The logs: ``loss``, ``cross_entropy``, ``accuracy``,
            ``selectivity_term``, ``batch_selectivity``,
            ``selectivity/<probe>`` and the other metrics' results.

        Raises:
            ValueError: a metric of `compile` has the name of a built-in log.
        """
        batch_size = ops.cast(ops.shape(y_pred)[0], "float32")
        # A replica's share of a last batch may be empty (its mean: 0).
        divisor = batch_size if replicas_in_sync() > 1 else None
        cross_entropy = self._cross_entropy(y, y_pred, sample_weight, divisor=divisor)
        self.cross_entropy_tracker.update_state(cross_entropy, sample_weight=batch_size)
        self.accuracy_tracker.update_state(y, y_pred)
        probes = self.probes
        if probes:
            layer_si = ops.stack([probe.batch_selectivity.value for probe in probes])
            self.layer_selectivity_tracker.update_state(layer_si, sample_weight=batch_size)
            if selectivity_gate is not None:
                gated_si = layer_si * ops.cast(selectivity_gate, "float32")
                self.windowed_selectivity_tracker.update_state(gated_si, sample_weight=batch_size)
        # Keras' own hook updates the metrics of `compile(metrics=...)` with
        # (labels, logits, sample_weight); its return value is rebuilt below.
        super().compute_metrics(x, y, y_pred, sample_weight)
        return self._logs(gated=selectivity_gate is not None)

    def get_metrics_result(self):
        """The logs of the steps, from the metrics' state (Keras' hook for
        the logs of an epoch, `fit` and `evaluate`): `metrics_logs` with the
        regularizer at full alpha."""
        return self.metrics_logs()

    def metrics_logs(self, gated=False):
        """The logs of the steps, from the metrics' state.

        Read outside a step, so that under `tf.distribute` every metric
        combines the replicas' state (sums over their samples; the split
        selectivity from every replica's class sums) where a step's logs are
        one replica's.

        Args:
            gated: training steps under a window of training
                (`set_selectivity_window`): ``selectivity_term`` is the term
                applied, as the train step logs it.
        """
        logs = self._logs(gated=gated and self.windowed_selectivity_tracker is not None)
        if self.split_selectivity:
            logs.update(self.split_selectivity_tracker.result())
        return logs

    def recording_split_responses(self):
        """The context the steps run the forward pass in: records the probes'
        unit responses (`tf_selectivity.models.probe.recording_unit_responses`)
        when split selectivity is on, else records nothing (yields None)."""
        if self.split_selectivity:
            return recording_unit_responses()
        return contextlib.nullcontext()

    def update_split_selectivity(self, labels, responses) -> dict:
        """Adds a batch's recorded responses to the split selectivity.

        Returns:
            Its logs: ``split_selectivity/<probe>`` and
            ``split_mean_selectivity`` over the batches so far.
        """
        self.split_selectivity_tracker.update_state(labels, responses)
        return self.split_selectivity_tracker.result()

    def _logs(self, gated=False):
        """Epoch-mean logs; the regularizer is recovered from the per-layer means
        (it is linear in them), which avoids one more tracker per step; with
        `gated`, from the means of the gated SI (a window of training)."""
        logs = {
            "loss": self.loss_tracker.result(),
            "cross_entropy": self.cross_entropy_tracker.result(),
            "accuracy": self.accuracy_tracker.result(),
        }
        probes = self.probes
        if probes:
            layer_si = self.layer_selectivity_tracker.result()
            weights = ops.convert_to_tensor(
                [
                    representable_coefficient(probe.alpha * (probe.share if probe.share is not None else 1.0), "float32")
                    for probe in probes
                ],
                dtype="float32",
            )
            shares = ops.convert_to_tensor(
                [probe.share if probe.share is not None else 1.0 for probe in probes],
                dtype="float32",
            )
            term_si = self.windowed_selectivity_tracker.result() if gated else layer_si
            term = 0.0 - ops.sum(weights * term_si)
            # A zero term (alpha = 0, steps outside a window) logs 0, not -0:
            # graph rewriting may turn `0.0 - x` into `-x`.
            logs["selectivity_term"] = ops.where(ops.equal(term, 0.0), ops.zeros_like(term), term)
            logs["batch_selectivity"] = ops.sum(shares * layer_si) / ops.sum(shares)
            for index, probe in enumerate(probes):
                logs[f"selectivity/{probe.name}"] = layer_si[index]
        for metric in self._other_metrics():
            result = metric.result()
            results = result if isinstance(result, dict) else {metric.name: result}
            for name, value in results.items():
                if name in logs:
                    raise ValueError(
                        f"The metric name {name!r} is already one of SelectivityModel's logs "
                        f"({', '.join(k for k in logs if '/' not in k)}); give the metric another "
                        f"name (e.g. keras.metrics.SparseCategoricalAccuracy(name='weighted_{name}'))."
                    )
                logs[name] = value
        return logs

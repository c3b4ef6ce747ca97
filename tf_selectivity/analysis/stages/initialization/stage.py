"""The initialization stage (on by default, ``--initialization``): how much of each unit's selectivity the training made.

A unit of an untrained network already responds differently to different
classes (their images differ), so its SI is not 0, and a label-permutation
null calls many such units "selective above chance". Per run, the same
network at initialization (`network.initial_model`: the run's architecture,
classes and seed, untrained) and the trained network are measured on the
same class-balanced test images (``initialization.max_samples``), with the
analysis' index: per layer, both mean SIs, their difference, the 95th
percentile of the untrained units' SI and the share of trained units above
it (selective beyond what initialization gives). Cached per run; table
``initialization``; a sentence per condition among the headline results
and a section (`section`). Imported models (trained elsewhere) have no
initialization to rebuild and are left out of this stage.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tf_selectivity.analysis.stage import RunResult, Stage
from tf_selectivity.analysis.stages.initialization.options import InitializationOptions

__all__ = ["InitializationStage"]

# The percentile of the untrained units' SI a trained unit must exceed to count as beyond initialization.
PERCENTILE = 95

COLUMNS = ("layer", "layer_index", "num_units", "trained_mean_selectivity", "initial_mean_selectivity",
           "selectivity_from_training", f"initial_selectivity_q{PERCENTILE}",
           f"above_initial_q{PERCENTILE}_fraction", "trained_dead_fraction", "initial_dead_fraction",
           "trained_accuracy", "initial_accuracy", "num_test_samples")


class InitializationStage(Stage):
    """See the module docstring."""

    name = "initialization"
    options_class = InitializationOptions
    requires = ("selectivity",)
    reads = ("selectivity",)

    def enabled(self, options):
        return options.initialization.enabled

    def cache_key(self, options):
        return (options.initialization.max_samples, options.selectivity_index)

    def compute(self, run):
        import keras

        from tf_selectivity.analysis.stages.initialization.network import initial_model
        from tf_selectivity.measures.unit_statistics import evaluate_responses

        if run.record.summary.imported:
            return None
        options = run.options
        data = run.subset(options.initialization.max_samples or None)
        untrained = initial_model(run.record).unit_response_model()

        def respond_untrained(images):
            outputs = untrained.predict_on_batch(images)
            return {name: keras.ops.convert_to_numpy(value) for name, value in outputs.items()}

        layers = run.record.probe_names
        measured = {}
        for which, respond in (("trained", run.response_function()), ("initial", respond_untrained)):
            measured[which] = evaluate_responses(
                respond, _batches(data.images, data.labels, options.batch_size), num_classes=data.num_classes,
                layer_names=layers, num_samples=len(data.labels), selectivity_index=options.selectivity_index)
        rows = []
        for index, name in enumerate(layers):
            trained = measured["trained"].layers[name].unit_table()
            initial = measured["initial"].layers[name].unit_table()
            threshold = float(np.percentile(initial["selectivity"], PERCENTILE))
            rows.append({
                "layer": name, "layer_index": index, "num_units": len(trained["selectivity"]),
                "trained_mean_selectivity": float(np.mean(trained["selectivity"])),
                "initial_mean_selectivity": float(np.mean(initial["selectivity"])),
                "selectivity_from_training": float(np.mean(trained["selectivity"]) - np.mean(initial["selectivity"])),
                f"initial_selectivity_q{PERCENTILE}": threshold,
                f"above_initial_q{PERCENTILE}_fraction": float(np.mean(trained["selectivity"] > threshold)),
                "trained_dead_fraction": float(np.mean(trained["dead"])),
                "initial_dead_fraction": float(np.mean(initial["dead"])),
                "trained_accuracy": measured["trained"].accuracy, "initial_accuracy": measured["initial"].accuracy,
                "num_test_samples": measured["trained"].num_samples,
            })
        return RunResult(tables={"initialization": run.with_condition(pd.DataFrame(rows, columns=list(COLUMNS)))})

    def combine(self, results, context):
        if not results:
            return {}
        frame = pd.concat([r.tables["initialization"] for r in results.values()], ignore_index=True)
        return self.restore({"initialization": context.with_condition_names(frame)}, context)

    def restore(self, tables, context):
        return None if tables.get("initialization") is None else {"initialization": tables["initialization"]}

    def headlines(self, tables, context):
        from tf_selectivity.analysis.stages.initialization.section import initialization_headlines

        if "initialization" not in tables:  # no run to rebuild: imported models only
            return []
        return initialization_headlines(tables["initialization"])

    def section(self, tables, context):
        from tf_selectivity.analysis.stages.initialization.section import initialization_section

        if "initialization" not in tables:
            return None
        runs = context.tables.get("selectivity", {}).get("runs")
        return initialization_section(tables["initialization"], runs, context.options)


def _batches(images, labels, batch_size):
    for start in range(0, len(labels), batch_size):
        yield images[start:start + batch_size].astype(np.float32), labels[start:start + batch_size]

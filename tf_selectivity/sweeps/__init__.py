"""Sweeps of training runs on keras-tuner: grids, margin searches, resume, workers.

The paper's results are sweeps: alpha values x 20 seeds x networks. This
package runs one as a keras-tuner search whose trials are `train()` runs:

* `GridPlan` / `MarginSearchPlan`: which (leaky slope, alpha, seed) points;
* `Scheduler`: the one owner of the trials: who trains which point (leases
  for workers that die, packs), retries and the failure stop; a plain class;
* `SweepOracle`: keras-tuner `Oracle` handing those points out as trials,
  once each, over restarts, as the scheduler decides (keras-tuner's own
  retries are off: it is the transport);
* `SweepOptions` / `PlanOptions`: the sweep's settings (retry limits,
  timeouts; the plan's flags), from which the command makes its flags;
* `SweepTuner`: keras-tuner `Tuner` whose `run_trial` trains one run;
* `run_sweep(SweepSpec)`: the whole sweep in this process (local, chief or
  worker, from keras-tuner's environment variables);
* `collect_trials` / `write_trials_table`: ``trials.csv`` and Parquet.

Command line: ``python -m tf_selectivity.sweep`` (`tf_selectivity.sweep`).
Modules load on first use: importing this package does not import Keras.
"""

import importlib

_EXPORTS = {
    "GridPlan": "tf_selectivity.sweeps.plans",
    "MarginSearchPlan": "tf_selectivity.sweeps.plans",
    "Point": "tf_selectivity.sweeps.plans",
    "Scheduler": "tf_selectivity.sweeps.scheduler",
    "SweepOptions": "tf_selectivity.sweeps.options",
    "PlanOptions": "tf_selectivity.sweeps.options",
    "SweepOracle": "tf_selectivity.sweeps.oracle",
    "SweepTuner": "tf_selectivity.sweeps.tuner",
    "SweepSpec": "tf_selectivity.sweeps.runner",
    "SweepReport": "tf_selectivity.sweeps.runner",
    "SweepConflictError": "tf_selectivity.sweeps.runner",
    "SweepLockedError": "tf_selectivity.sweeps.runner",
    "run_sweep": "tf_selectivity.sweeps.runner",
    "collect_trials": "tf_selectivity.sweeps.aggregate",
    "write_trials_table": "tf_selectivity.sweeps.aggregate",
    "SweepPaths": "tf_selectivity.sweeps.layout",
    "run_name": "tf_selectivity.sweeps.layout",
    "format_float": "tf_selectivity.sweeps.layout",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tf_selectivity.sweeps' has no attribute {name!r}")

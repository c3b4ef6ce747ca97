"""The initialization stage: the selectivity the training made, against the same network untrained.

    options.py   `InitializationOptions` (``--initialization``, ``--initialization_max_samples``)
    network.py   the run's network at initialization, built from its configuration and seed
    stage.py     `InitializationStage`: per run and layer, SI untrained beside SI trained (same images)
    section.py   the report's sentence per condition and its section
"""

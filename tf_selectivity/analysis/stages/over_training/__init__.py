"""The over-training stage: the networks as they were at their kept checkpoints (``--over_training``).

    options.py   `OverTrainingOptions` (``--over_training``, ``--over_training_*``)
    stage.py     `OverTrainingStage`: check, per-run measures (cached), tables, figures, claims, section
    measure.py   the measures of one network state: SI, selective fraction, ablation, nonlinearity
    tables.py    one run's tables over its checkpoints; the tables across runs
    claims.py    the four claims of Ranadive et al. (2023) and their tests
    figures.py   each network measure vs epoch (log axis), per alpha, one figure per condition
    section.py   the report section
"""

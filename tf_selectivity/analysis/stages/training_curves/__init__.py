"""The training-curves stage: selectivity while training (runs trained with ``--selectivity_every``).

    options.py   `TrainingCurvesOptions` (``--training_curves``)
    stage.py     `TrainingCurvesStage`: per-run curves, tables, figures, section
    curves.py    reading history.csv and selectivity_steps.csv into tidy tables; means over seeds; half-rise epochs
    figures.py   SI vs epoch per alpha beside validation accuracy vs epoch (symmetric-log epochs with steps)
"""

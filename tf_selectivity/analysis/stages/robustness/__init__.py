"""The robustness stage: accuracy and dimensionality under corruptions and attacks.

    options.py   `RobustnessOptions` (``--robustness``, ``--corruptions``, ...)
    stage.py     `RobustnessStage`: per-run evaluation (cached), tables across runs
    evaluate.py  `evaluate_robustness`: one model under every perturbation
    attacks.py   FGSM and PGD (L-infinity and L2) in pixel space
    claims.py    the follow-up paper's claims tested across runs
    figures.py   accuracy and dimensionality vs alpha and vs selectivity
    section.py   the report section
"""

"""The ablation stage: ablation curves and single-unit importance.

``stage.py`` (the `Stage`), ``options.py`` (its settings), ``ablate.py``
(curves, single-unit importance and its correlation with SI, for a model in
memory), ``network.py`` (the ablated network: suffix or whole),
``tables.py`` (the tables across runs and the selective-first test),
``figures.py`` and ``section.py`` (its report section).
"""

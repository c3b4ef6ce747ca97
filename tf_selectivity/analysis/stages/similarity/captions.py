"""Captions of the similarity stage's figures in the report (`SimilarityStage.captions`).

Keyed by the start of the figure's name (the model name follows it in the
file name); the report gives each figure the caption of the longest start
of its name.
"""

__all__ = ["FIGURE_CAPTIONS"]

FIGURE_CAPTIONS = {
    "fig3_cca": (
        "Figure 3. CCA distance per layer between replicates and to α = 0 "
        "networks (a), and the layer-averaged distance ratio vs α (b; ▲ / ▼: "
        "distance to α = 0 networks significantly larger / smaller than between "
        "replicates); one series per activation where runs of several were analysed."
    ),
}

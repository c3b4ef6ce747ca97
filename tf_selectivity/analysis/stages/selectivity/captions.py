"""Captions of the selectivity stage's figures in the report (`SelectivityStage.captions`).

Keyed by the start of the figure's name (the model name follows it in the
file name); the report gives each figure the caption of the longest start
of its name.
"""

__all__ = ["FIGURE_CAPTIONS"]

FIGURE_CAPTIONS = {
    "fig1_selectivity": (
        "Figure 1. Mean class selectivity index per layer (a) and averaged "
        "over layers (b) when regularizing against selectivity (α ≤ 0)."
    ),
    "figA1_selectivity_promote": (
        "Figure A1. Mean class selectivity index per layer (a) and averaged "
        "over layers (b) when regularizing for selectivity (α ≥ 0)."
    ),
    "fig2_accuracy_suppress": (
        "Figure 2. Test accuracy vs α (a), its distribution for a subset of "
        "α (b) and vs mean class selectivity (c), α ≤ 0. ▲ / ▼: accuracy "
        "significantly higher / lower than at α = 0."
    ),
    "fig4_accuracy_promote": (
        "Figure 4. Test accuracy vs α (a), its distribution (b) and vs mean "
        "class selectivity (c), α ≥ 0. ▲ / ▼: accuracy significantly higher / "
        "lower than at α = 0."
    ),
    "fig5_promote_vs_suppress": (
        "Figure 5. Test accuracy vs |α| when promoting vs suppressing "
        "selectivity (a; ▲ / ▼: promoting significantly better / worse than "
        "suppressing at the same |α|, rank-sum test) and vs mean "
        "class selectivity (b)."
    ),
    "figA7_precision_suppress": (
        "Figure A7. Precision (alternative selectivity metric, Appendix A.5) "
        "per layer (a) and averaged over layers (b), α ≤ 0."
    ),
    "figA8_precision_promote": (
        "Figure A8. Precision per layer (a) and averaged over layers (b), α ≥ 0."
    ),
    "figA9_dead_units": (
        "Figure A9. Dead units per layer (a), selectivity of live units vs α "
        "(b), and test accuracy vs that selectivity (c; ▲ / ▼: accuracy "
        "significantly higher / lower than at α = 0)."
    ),
    "figA10_leaky_relu": (
        "Figure A10. Leaky-ReLU networks: test accuracy vs α per negative "
        "slope (a) and mean class selectivity vs α for one slope (b; ▲ / ▼: "
        "significantly higher / lower than at α = 0)."
    ),
    "figA12_model_comparison": (
        "Figure A12. Test accuracy (a) and mean class selectivity (b) vs α "
        "for each model."
    ),
}

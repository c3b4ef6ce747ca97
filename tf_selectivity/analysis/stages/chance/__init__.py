"""The chance stage: did each network learn? Its test accuracy against guessing, the premise of every claim.

    stage.py     `ChanceStage`: per run, the exact binomial test of its test accuracy against chance
                 (table ``chance``), the `TRAINED` premise per condition, and its warnings
"""

"""The selectivity stage: every run's test-set SI, precision, dead units and label-permutation null."""

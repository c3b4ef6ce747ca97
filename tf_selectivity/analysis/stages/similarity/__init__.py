"""The similarity stage: Figure 3 (CCA, CKA, Procrustes) and layer-by-layer similarity maps."""

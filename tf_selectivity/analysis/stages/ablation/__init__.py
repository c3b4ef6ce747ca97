"""The ablation stage: ablation curves and single-unit importance (compute and report in `analysis.ablation`, `analysis.ablation_stage`)."""

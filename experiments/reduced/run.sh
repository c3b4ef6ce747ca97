#!/usr/bin/env bash
# Regenerates results/reduced/: the reduced reproduction of the paper's ResNet20 experiments.
#
#   experiments/reduced/run.sh [DATASET]
#
# DATASET defaults to cifar10 (tensorflow-datasets, downloads once); offline, pass a folder copy,
# e.g. imagefolder:/data/cifar10-jpeg. Trains the 12 runs of resnet20.flags into sweeps/reduced/resnet20
# (resumable: rerun after an interruption), analyses them into analysis/reduced/resnet20 (both PWCCA
# variants), writes the claims table, and copies the report, figures and tables (no models, no cache)
# into results/reduced/.
set -euo pipefail
cd "$(dirname "$0")/../.."
dataset=${1:-cifar10}
python -m tf_selectivity.sweep --flagfile=experiments/reduced/resnet20.flags --dataset="$dataset"
python -m tf_selectivity.analyze --runs=sweeps/reduced/resnet20 --output_dir=analysis/reduced/resnet20 \
    --cca_pwcca_variant=both --similarity=pwcca,svcca,linear_cka,debiased_cka,procrustes --dataset="$dataset"
out=results/reduced
rm -rf "$out" && mkdir -p "$out/figures"
cp analysis/reduced/resnet20/report.md "$out/"
cp analysis/reduced/resnet20/*.csv "$out/"
cp analysis/reduced/resnet20/figures/*.png analysis/reduced/resnet20/figures/*.pdf "$out/figures/"
python experiments/reduced/claims.py analysis/reduced/resnet20 "$out"
echo "Wrote $out"

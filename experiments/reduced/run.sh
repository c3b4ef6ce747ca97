#!/usr/bin/env bash
# Regenerates results/reduced/: the reduced reproduction of the paper's ResNet20 experiments.
#
#   experiments/reduced/run.sh [DATASET] [STEP ...]
#
# DATASET defaults to cifar10 (tensorflow-datasets, downloads once); offline, pass a folder copy,
# e.g. imagefolder:/path/to/cifar10-jpeg. STEPs (default: all, in this order):
#
#   train       the 12 runs of the reduced_resnet20 preset into sweeps/reduced/resnet20 (resumable: rerun after an
#               interruption). The runs committed in results/reduced/trained/ (model.keras, summary, config,
#               history; no checkpoints) and the sweep's sweep.json are copied in first; the sweep skips
#               finished runs.
#   main        analysis/reduced/resnet20: the paper's tables and figures, Figure 3 under every similarity
#               measure, the label-permutation null of every unit (B = 1000), SI over training; the
#               claims table (the analysis's claims.csv, and the paper's claims beside ours: paper_claims.md).
#   ablation    analysis/reduced/ablation: ablation curves and single-unit importance, on 4 layers (the
#               stem and each stage's output) and 1,000 test images (100 per class), by zeroing units
#               (ablation/) and by their mean response (ablation/mean/): the full 19 layers x 10k images
#               would take hours per run on a 2-core CPU.
#   robustness  analysis/reduced/robustness: the generated CIFAR-10-C corruptions at severities 1-5, FGSM
#               and PGD-10 at epsilon 0-8/255, dimensionality, on 1,000 test images (100 per class).
#   units       analysis/reduced/units: unit galleries and their HTML page, on the same 4 layers as the
#               ablation (every layer's galleries would take several times the space).
#   windows     the window experiment (preset reduced_resnet20_windows: alpha = -10 only in epochs 0-2 or 4-6,
#               and alpha = 0, 3 seeds, selectivity every 4 steps through epoch 2, kept checkpoints) into
#               sweeps/reduced/windows, analysed with the train step's whole-run alpha = -10 runs (analysis/reduced/windows:
#               --over_training on the last block of each stage, 500 test images per checkpoint); tables,
#               figures and report into results/reduced/windows/ (not run by default: run the train step first).
#
# How long each step took on a 2-core CPU, and the sizes: benchmarks/RESULTS.md, "Reduced reproduction".
#
# Each step copies its report, figures and tables (no models, no caches) into results/reduced/ (main),
# results/reduced/ablation/, results/reduced/robustness/ or results/reduced/galleries/ (with the page,
# galleries/units/index.html). The last three hold only their own tables and figures (publish.sh): the
# paper's figures and the shared tables are main's, and their reports link to results/reduced/figures/.
set -euo pipefail
cd "$(dirname "$0")/../.."
dataset=${1:-cifar10}
shift || true
steps=${*:-train main ablation robustness units}
windows_sweep=sweeps/reduced/windows
sweep=sweeps/reduced/resnet20
out=results/reduced

analyze() {  # analyze OUTPUT_DIR FLAGS...
    local dir=$1
    shift
    python -m tf_selectivity.analyze --runs="$sweep" --output_dir="$dir" --dataset="$dataset" "$@"
}

publish() {  # publish ANALYSIS_DIR DESTINATION OWN_PREFIX...: see publish.sh
    experiments/reduced/publish.sh "$@"
}

# The ablation step's analysis, by zeroing units and (mode=mean) by their mean response.
ablation_flags=(--cca=false --selectivity_null=1000 --ablation --unit_ablation --ablation_max_samples=1000
    --ablation_layers=probe_stem,probe_s1b3_out,probe_s2b3_out,probe_s3b3_out)
ablation_tables=(ablation unit_importance importance_correlations si_vs_importance)

for step in $steps; do
    case $step in
    train)
        if [ -d "$out/trained" ]; then
            mkdir -p "$sweep/runs"
            # The sweep's settings file first: the sweep resumes only a directory it made.
            [ -e "$sweep/sweep.json" ] || cp "$out/trained/sweep.json" "$sweep/"
            for run in "$out"/trained/*/; do  # (sweep.json is not a directory)
                name=$(basename "$run")
                [ -e "$sweep/runs/$name/summary.json" ] || { rm -rf "$sweep/runs/$name"; cp -r "$run" "$sweep/runs/$name"; }
            done
        fi
        python -m tf_selectivity.sweep --preset=reduced_resnet20 --dataset="$dataset"
        ;;
    main)
        analyze analysis/reduced/resnet20 --cca_pwcca_variant=both \
            --similarity=pwcca,svcca,linear_cka,debiased_cka,procrustes --similarity_maps \
            --selectivity_null=1000
        # Keep the committed trained runs and the other steps' folders; replace the rest.
        find "$out" -maxdepth 1 -type f ! -name README.md -delete
        rm -rf "$out/figures"
        mkdir -p "$out/figures"
        cp analysis/reduced/resnet20/report.md analysis/reduced/resnet20/*.csv "$out/"
        cp analysis/reduced/resnet20/figures/*.png analysis/reduced/resnet20/figures/*.pdf "$out/figures/"
        python experiments/reduced/claims.py analysis/reduced/resnet20 "$out"
        ;;
    ablation)
        analyze analysis/reduced/ablation "${ablation_flags[@]}"
        publish analysis/reduced/ablation "$out/ablation" "${ablation_tables[@]}"
        # Mean-ablation beside zero-ablation: zeroing a unit with a large class-independent mean response
        # also shifts what the next batch norm sees, which replacing it by its mean does not.
        analyze analysis/reduced/ablation_mean "${ablation_flags[@]}" --ablation_mode=mean
        publish analysis/reduced/ablation_mean "$out/ablation/mean" "${ablation_tables[@]}"
        ;;
    robustness)
        analyze analysis/reduced/robustness --cca=false --robustness=corruptions:generated,fgsm,pgd \
            --robustness_max_samples=1000
        publish analysis/reduced/robustness "$out/robustness" robustness dimensionality figR_
        ;;
    units)
        analyze analysis/reduced/units --cca=false --selectivity_null=1000 --units_page \
            --gallery_layers=probe_stem,probe_s1b3_out,probe_s2b3_out,probe_s3b3_out
        publish analysis/reduced/units "$out/galleries" unit_gallery
        ;;
    windows)
        python -m tf_selectivity.sweep --preset=reduced_resnet20_windows --dataset="$dataset" \
            --output_dir="$windows_sweep"
        python -m tf_selectivity.analyze --dataset="$dataset" --output_dir=analysis/reduced/windows \
            --runs="$windows_sweep,$sweep/runs/resnet20_relu_alpha-10_seed*" \
            --cca=false --over_training --over_training_max_samples=500 \
            --over_training_layers=probe_s1b3_out,probe_s2b3_out,probe_s3b3_out
        python experiments/reduced/windows.py analysis/reduced/windows "$windows_sweep" "$out/windows"
        ;;
    *)
        echo "$0: unknown step '$step' (train, main, ablation, robustness, units or windows)" >&2
        exit 2
        ;;
    esac
done
echo "Wrote $out"

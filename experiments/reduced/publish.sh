#!/usr/bin/env bash
# Copies one analysis step's outputs into results/reduced/ (called by run.sh).
#
#   experiments/reduced/publish.sh ANALYSIS_DIR DESTINATION OWN_PREFIX [OWN_PREFIX ...]
#
# For the steps after main: DESTINATION (replaced) gets the report, runs.csv, errors.csv and the tables
# and figures whose names start with an OWN prefix. The paper's figures and the shared tables (layers,
# units, SI over training) are the main step's, already in results/reduced/, so they are not copied
# twice (several MB per step); the report's links to them are rewritten to point at
# results/reduced/figures/ (relative). The unit page (ANALYSIS_DIR/units) is copied whole. Run from the
# repository root.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 ANALYSIS_DIR DESTINATION OWN_PREFIX [OWN_PREFIX ...]" >&2
    exit 2
fi
from=$1 to=$2
shift 2
own=("$@")

mine() {  # mine NAME: whether a file of this step is copied
    local prefix
    for prefix in "${own[@]}"; do [[ $1 == "$prefix"* ]] && return 0; done
    return 1
}

rm -rf "$to"
mkdir -p "$to/figures"
cp "$from/report.md" "$to/"
for table in "$from"/*.csv; do
    name=$(basename "$table")
    if [ "$name" = runs.csv ] || [ "$name" = errors.csv ] || mine "$name"; then cp "$table" "$to/"; fi
done
for figure in "$from"/figures/*.png "$from"/figures/*.pdf; do
    [ -e "$figure" ] || continue
    name=$(basename "$figure")
    if mine "$name"; then cp "$figure" "$to/figures/"; fi
done
main_figures=$(realpath -m --relative-to="$to" results/reduced/figures)
for figure in "$from"/figures/*.png "$from"/figures/*.pdf; do  # links to figures left to main's copy
    [ -e "$figure" ] || continue
    name=$(basename "$figure")
    [ -e "$to/figures/$name" ] || sed -i "s#](figures/$name)#]($main_figures/$name)#g" "$to/report.md"
done
rmdir "$to/figures" 2> /dev/null || true
if [ -d "$from/units" ]; then cp -r "$from/units" "$to/units"; fi

#!/usr/bin/env bash
# The GPU check of the accelerator path, in one command (JAX, no TensorFlow).
#
# On the lent GPU machine, from the repository root, after
# ../shared/tools/device-prep.sh --data (carry .whl and .data):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
#     && export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1 \
#     && bash benchmarks/gpu_check.sh
# Anywhere, in minutes, with tiny settings (a CPU will do):
#   GPU_CHECK_SMALL=1 bash benchmarks/gpu_check.sh
#
# Prints ResNet20 (batch 256) training throughput with the data on the device
# (alpha 0 and -1, float32 and mixed_bfloat16; 8 and 20 packed replicates at
# alpha -1), the streaming host path, and the PyTorch reference (eager and
# torch.compile) on the same device; data-parallel scaling of one run's step
# from 1 to all GPUs (--devices, per-device batch 256); PGD-10 on ResNet20 over 10,000 images beside
# the same attack in PyTorch eager; then trains ResNet20 for 30 epochs on
# the CIFAR-10 image folder (.data/cifar10-jpeg) and prints its test accuracy
# and mean selectivity. The last lines are one table. Environment variables:
# see benchmarks/gpu_check.py; method: benchmarks/METHOD.md.
set -uo pipefail
cd "$(dirname "$0")/.."
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
python3 -c 'import jax, keras' 2>/dev/null || { echo "gpu_check: needs jax and keras (see the header of $0)" >&2; exit 2; }
exec python3 benchmarks/gpu_check.py "$@"

#!/usr/bin/env bash
# Speed benchmark, everything in one run: actopo (workers 2 and 1) vs the GUDHI-based Python
# reference on the same Fashion-MNIST images and graphs, peak RSS, the AlexNet-CIFAR figures, and
# model graphs exported from PyTorch (ResNet-18 and VGG-11-BN in CIFAR shape, resnet18 at 224).
# Criterion micro-benchmarks: cargo bench (topology core and Parquet writer).
#   scripts/bench.sh [--images 10000] [--ref-images 20] [--alexnet 4] [--models 4]
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
scripts/setup.sh
if [ ! -f models/ccff.safetensors ]; then
  "$PYTHON" scripts/train_ccff.py --epochs 3 --out models
fi
[ $# -eq 0 ] && set -- --alexnet 4 --models 4
"$PYTHON" scripts/bench.py "$@"

#!/usr/bin/env bash
# Speed benchmark, everything in one run: actopo (workers 2 and 1) vs the GUDHI-based Python
# reference on the same Fashion-MNIST images and graphs, peak RSS, the AlexNet-CIFAR figures, and
# model graphs exported from PyTorch (ResNet-18 and VGG-11-BN in CIFAR shape, resnet18 at 224).
# Criterion micro-benchmarks: cargo bench (topology core and Parquet writer).
# Also CCFF trained on normalised inputs (trained here once if absent).
#   scripts/bench.sh [--bin PATH] [--images 10000] [--ref-images 20] [--alexnet 4] [--models 4]
#                    [--model-names resnet18-cifar,vgg11-bn-cifar,resnet18-224]
# --bin PATH (or ACTOPO_BIN=PATH) times another build: run once per binary, side by side, to
# compare an old and a new one on the same machine in the same session.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
scripts/setup.sh
if [ ! -f models/ccff.safetensors ]; then
  "$PYTHON" scripts/train_ccff.py --epochs 3 --out models
fi
if [ ! -f models/ccff-normalised.safetensors ]; then
  "$PYTHON" scripts/train_ccff.py --epochs 3 --out models --normalise
fi
"$PYTHON" scripts/bench.py "$@"

#!/usr/bin/env bash
# The main job on Fashion-MNIST: set up, train CCFF if no weights are there yet, run actopo over the
# 10,000-image test split, and print a Polars summary.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
scripts/setup.sh
if [ ! -f models/ccff.safetensors ]; then
  echo "demo: training CCFF on Fashion-MNIST's training split (scripts/train_ccff.py)"
  "$PYTHON" scripts/train_ccff.py --epochs 3 --out models
fi
echo "demo: actopo run config/fashion-mnist.toml"
start=$(date +%s%N)
# --overwrite: the demo recomputes everything each time (a plain rerun would resume and skip).
target/release/actopo run config/fashion-mnist.toml --overwrite "$@"
end=$(date +%s%N)
echo "demo: actopo wall time $(( (end - start) / 1000000 )) ms"
"$PYTHON" scripts/demo_report.py --out out/fashion-mnist

#!/usr/bin/env bash
# Remote-shard throughput: the demo-sized run from local Parquet files vs the same files on a local
# S3 server (moto), median of 3 each (docs/remote-shards.md).
#   scripts/bench_s3.sh [--shards 10] [--per-shard 1000] [--repeats 3]
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
scripts/setup.sh
if [ ! -f models/ccff.safetensors ]; then
  "$PYTHON" scripts/train_ccff.py --epochs 3 --out models
fi
"$PYTHON" scripts/bench_s3.py "$@"

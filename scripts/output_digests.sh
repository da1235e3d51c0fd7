#!/usr/bin/env bash
# Fingerprints of what actopo writes, for refactors that must not change a byte:
#   scripts/output_digests.sh [BIN] [OUT_ROOT] > digests.txt
# Runs BIN (default target/release/actopo) on the demo (10,000 Fashion-MNIST test images), an attack
# run (100 images x 7 variants) and a subgraph run (300 images) with both analyses, then prints the
# sha256 of every Parquet file and of each manifest (with OUT_ROOT replaced so two roots compare).
# Compare two builds with `diff`: it must print nothing. About a minute on 2 cores.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
BIN=$(realpath "${1:-target/release/actopo}")
OUT=$(realpath -m "${2:-$(mktemp -d)}")
mkdir -p "$OUT"
quiet() { "$@" >/dev/null 2>&1 || { echo "output_digests: failed: $*" >&2; exit 1; }; }
quiet "$BIN" run config/fashion-mnist.toml --set "output.dir=\"$OUT/demo\""
quiet "$BIN" run config/fashion-mnist-attacks.toml --set data.limit=100 --set "output.dir=\"$OUT/attacks\""
quiet "$BIN" run config/fashion-mnist-subgraphs.toml --set data.limit=300 --set "output.dir=\"$OUT/subgraphs\""
quiet "$BIN" analyze subgraphs "$OUT/subgraphs" --min-fraction 0.2
quiet "$BIN" analyze uncertainty "$OUT/subgraphs"
cd "$OUT"
find . -name '*.parquet' -type f | sort | xargs sha256sum
for m in $(find . -name 'manifest*.json' -type f | sort); do
  echo "$(sed "s#$OUT#OUT#g" "$m" | sha256sum | cut -d' ' -f1)  $m (paths normalised)"
done

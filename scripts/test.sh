#!/usr/bin/env bash
# Runs every test: Rust unit, property and integration tests, then the GUDHI cross-check.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
scripts/setup.sh
echo "== cargo test"
cargo test --release
echo "== GUDHI cross-check on real conv nets"
"$PYTHON" tests/python/gudhi_crosscheck.py --bin target/release/actopo --samples 3
echo "== end-to-end: actopo run on real images vs PyTorch + GUDHI"
"$PYTHON" tests/python/e2e_gudhi.py --bin target/release/actopo --samples 16
echo "== attacks: FGSM and PGD vs the same attacks in PyTorch"
"$PYTHON" scripts/crosscheck_attacks.py --bin target/release/actopo --samples 64

#!/usr/bin/env bash
# The paper's experiment re-run end to end: actopo runs (test images with attacks and their
# matched-noise controls, training images for the fit), analyze subgraphs/uncertainty, the
# bag-of-edges SVC, and docs/reproduction.md with its figures. Long: not part of scripts/test.sh.
#
#   scripts/reproduce_paper.sh [--quick] [SETTING ...] [more options: scripts/reproduce_paper.py --help]
#
# SETTING is DATASET:NET:SPEC (default fashion-mnist:ccff-relu:models/ccff.toml). The actopo binary
# is $ACTOPO, else target/release/actopo.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
exec "$PYTHON" scripts/reproduce_paper.py "$@"

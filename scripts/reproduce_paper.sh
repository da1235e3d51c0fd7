#!/usr/bin/env bash
# The paper's experiment re-run end to end: actopo runs (test images with attacks and their
# matched-noise controls, training images for the fit), analyze subgraphs/uncertainty, the
# bag-of-edges SVC, and docs/reproduction.md with its figures. Long: not part of scripts/test.sh
# (its smoke version is: tests/python/reproduce_smoke.py).
#
#   scripts/reproduce_paper.sh                  everything: installs MNIST (scripts/setup_mnist.sh),
#                                               trains the paper's nets that are missing
#                                               (scripts/train_paper_nets.py --all), then runs every
#                                               dataset (MNIST, Fashion-MNIST) x net (CCFF, CFF, FFF)
#                                               x activation (ReLU, sigmoid) at threshold 0, per-op
#                                               percentile 90 and the reference code's percentile 90
#   scripts/reproduce_paper.sh all [OPTION ...]  the same with options, e.g. `all --reuse` to take the
#                                               settings an earlier invocation finished as they are
#   scripts/reproduce_paper.sh [--quick] SETTING ... [options: scripts/reproduce_paper.py --help]
#
# SETTING is DATASET:NET:SPEC, e.g. fashion-mnist:ccff-relu:models/paper/ccff-relu-fashion.toml.
# The actopo binary is $ACTOPO, else target/release/actopo.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
if [ $# -gt 0 ] && [ "$1" != all ]; then
  exec "$PYTHON" scripts/reproduce_paper.py "$@"
fi
[ $# -gt 0 ] && shift
scripts/setup.sh --mnist
"$PYTHON" scripts/train_paper_nets.py --all
settings=()
for dataset in mnist fashion; do
  name=$([ "$dataset" = fashion ] && echo fashion-mnist || echo mnist)
  for net in ccff cff fff; do
    for act in relu sigmoid; do
      settings+=("$name:$net-$act:models/paper/$net-$act-$dataset.toml")
    done
  done
done
exec "$PYTHON" scripts/reproduce_paper.py "${settings[@]}" "$@"

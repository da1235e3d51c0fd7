#!/usr/bin/env bash
# Runs every test: Rust unit, property and integration tests, then the GUDHI cross-check.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
scripts/setup.sh --browser --azurite
echo "== lints: clippy with warnings as errors; docs/maintaining.md's source tree is current"
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --release --all-targets --quiet -- -D warnings
else
  echo "test.sh: cargo clippy is not installed (rustup component add clippy); the lint step FAILS" >&2
  exit 1
fi
"$PYTHON" scripts/source_tree.py --check
echo "== cargo test"
cargo test --release
echo "== crash consistency: kill -9, aborts between renames, full disk; reruns equal a reference"
scripts/crash_check.sh 4 400
echo "== GUDHI cross-check on real conv nets"
"$PYTHON" tests/python/gudhi_crosscheck.py --bin target/release/actopo --samples 3
echo "== edge thresholds (percentile 90, 0, a fixed weight) vs the same cut in Python + GUDHI"
"$PYTHON" tests/python/threshold_crosscheck.py --bin target/release/actopo --samples 4
"$PYTHON" tests/python/reference_threshold_check.py --bin target/release/actopo --samples 20  # reference_percentile vs the reference code's cuts
"$PYTHON" scripts/reference_defects.py --bin target/release/actopo --samples 5  # the reference's graph, corrected, vs actopo diagrams
echo "== end-to-end: actopo run on real images vs PyTorch + GUDHI"
"$PYTHON" tests/python/e2e_gudhi.py --bin target/release/actopo --samples 16
echo "== model graphs (residual, batch norm, depthwise, cat, adaptive pool): actopo vs hooks + unfold + GUDHI"
"$PYTHON" tests/python/model_graph_crosscheck.py --bin target/release/actopo --samples 8
echo "== exporter: torchvision resnet18, vgg11_bn, mobilenet_v2, densenet121 and a custom module; actopo validate vs PyTorch"
"$PYTHON" tests/python/export_check.py --bin target/release/actopo
target/release/actopo validate models/fmnist-resnet.toml
echo "== attacks: FGSM and PGD vs the same attacks in PyTorch"
"$PYTHON" scripts/crosscheck_attacks.py --bin target/release/actopo --samples 64
"$PYTHON" tests/python/features_crosscheck.py --bin target/release/actopo --limit 50  # actopo features vs GUDHI representations
"$PYTHON" tests/python/distances_crosscheck.py --bin target/release/actopo --limit 30  # actopo distances vs GUDHI, hera and POT
"$PYTHON" tests/python/s3_check.py --bin target/release/actopo --azurite .tools/azurite/node_modules/.bin/azurite-blob  # s3:// and http:// shards on a local moto server vs the same files on disk
echo "== subgraph analysis: actopo analyze vs the Polars reimplementation"
tmp_out="$(mktemp -d)"
tmp_fit="$(mktemp -d)"
trap 'rm -rf "$tmp_out" "$tmp_fit"' EXIT
target/release/actopo run config/fashion-mnist-subgraphs.toml --set data.limit=300 --set "output.dir=\"$tmp_out\""
target/release/actopo analyze subgraphs "$tmp_out" --min-fraction 0.2
target/release/actopo analyze uncertainty "$tmp_out"
"$PYTHON" scripts/paper_comparison.py "$tmp_out" --min-fraction 0.2 --check
echo "== subgraph analysis fitted on the training split (--fit) vs the Polars reimplementation"
target/release/actopo run config/fashion-mnist-subgraphs.toml --set data.limit=300 --set 'attacks=[]' \
  --set 'data.shards=["/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"]' --set "output.dir=\"$tmp_fit\""
target/release/actopo analyze subgraphs "$tmp_out" --fit "$tmp_fit" --min-fraction 0.2
target/release/actopo analyze uncertainty "$tmp_out" --fit "$tmp_fit"
"$PYTHON" scripts/paper_comparison.py "$tmp_out" --fit "$tmp_fit" --min-fraction 0.2 --check
echo "== the paper's reproduction, smoke version (scripts/reproduce_paper.sh on 32 images, PGD, SVC take 3)"
"$PYTHON" tests/python/reproduce_smoke.py --bin target/release/actopo
echo "== actopo report in headless Chromium: no console error, every figure rendered"
"$PYTHON" tests/python/report_browser.py --bin target/release/actopo
echo "== the Slurm template as a 4-task array on a private single-node Slurm vs one process (root: installs slurm-wlm, munge)"
if [ "$(id -u)" = 0 ]; then scripts/cluster/slurm_check.sh; else sudo scripts/cluster/slurm_check.sh; fi
echo "== the README's Polars and pandas examples on that run"
"$PYTHON" tests/python/readme_examples.py "$tmp_out"

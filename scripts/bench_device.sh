#!/usr/bin/env bash
# The forward pass and the gradient attacks on a GPU machine (scripts/bench_device.py), in two steps:
#   scripts/bench_device.sh pack   here: builds actopo and examples/forward_timing, strips and
#                                  compresses them with the Fashion-MNIST test images into .device/
#   scripts/bench_device.sh run    on the GPU machine, from a copy of the repository holding .device/:
#                                  unpacks them and runs scripts/bench_device.py [ARGS] with that
#                                  machine's python3 and its torch's libtorch
#                                  (as root, unless Debian's dataset-fashion-mnist is installed there)
# The binaries must be built against the GPU machine's libtorch version (libtorch has no stable
# ABI: a 2.13 build fails on 2.11 with "incoherent element sizes in bytes"). docs/maintaining.md
# has the steps for another version; with LIBTORCH set, pack builds against it, in
# CARGO_TARGET_DIR, with the cargo --config given in BENCH_CARGO_CONFIG (the torch-sys patch).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
case "${1:-}" in
  pack)
    if [ -z "${LIBTORCH:-}" ]; then
      source scripts/env.sh
    fi
    cargo build --release ${BENCH_CARGO_CONFIG:+--config "$BENCH_CARGO_CONFIG"} --bin actopo --example forward_timing
    mkdir -p .device
    target="${CARGO_TARGET_DIR:-target}"
    for bin in "$target/release/actopo" "$target/release/examples/forward_timing"; do
      strip -o ".device/$(basename "$bin")" "$bin"
      xz -f -T0 ".device/$(basename "$bin")"
    done
    cp /usr/share/datasets/fashion-mnist/t10k-*-idx*-ubyte.gz .device/
    du -sh .device
    ;;
  run)
    shift
    for bin in actopo forward_timing; do
      xz -dkf ".device/$bin.xz"
    done
    # The configs name the Debian package's path.
    mkdir -p /usr/share/datasets/fashion-mnist
    cp --update=none .device/t10k-*-idx*-ubyte.gz /usr/share/datasets/fashion-mnist/
    LD_LIBRARY_PATH="$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
    export LD_LIBRARY_PATH
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
    .device/actopo --version
    PYTHONUNBUFFERED=1 python3 scripts/bench_device.py --bin .device/actopo --timing .device/forward_timing "$@"
    ;;
  *)
    echo "usage: scripts/bench_device.sh pack | run [scripts/bench_device.py arguments]" >&2
    exit 2
    ;;
esac

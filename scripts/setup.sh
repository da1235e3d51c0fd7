#!/usr/bin/env bash
# One-time (idempotent) set-up on a fresh machine: Debian data, the Python venv, the release build.
# `scripts/setup.sh --mnist` also installs MNIST (scripts/setup_mnist.sh; opt-in, not by default).
# `scripts/setup.sh --browser` also installs Debian's chromium (for tests/python/report_browser.py).
# `scripts/setup.sh --azurite` also installs Azurite, Microsoft's Azure Storage emulator, from npm
# into .tools/azurite/ (for the az:// check in tests/python/s3_check.py). Flags combine.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
AZURITE_VERSION=3.35.0
flags=" $* "

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
  echo "setup: installing Debian package dataset-fashion-mnist"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

if [[ "$flags" == *" --browser "* ]] && ! command -v chromium >/dev/null; then
  echo "setup: installing Debian package chromium (the report's browser test)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

if [ ! -x "$PYTHON" ]; then
  echo "setup: creating $VENV"
  python3 -m venv "$VENV"
fi
if ! "$PYTHON" -c "import torch, torchvision, gudhi, numpy, pyarrow, safetensors, polars, pandas, PIL, sklearn, ot, moto, boto3, azure.storage.blob; assert torch.__version__.startswith('2.13.0') and torchvision.__version__.startswith('0.28.0')" 2>/dev/null; then
  echo "setup: installing Python packages (torch 2.13.0 is large; a few minutes on first run)"
  "$PYTHON" -m pip install -q --upgrade pip
  "$PYTHON" -m pip install -q -r scripts/requirements.txt
fi

if [[ "$flags" == *" --azurite "* ]] && [ ! -x .tools/azurite/node_modules/.bin/azurite-blob ]; then
  echo "setup: installing Azurite $AZURITE_VERSION from npm into .tools/azurite/"
  npm install --silent --no-audit --no-fund --prefix .tools/azurite "azurite@$AZURITE_VERSION" >/dev/null
fi

if [[ "$flags" == *" --mnist "* ]]; then
  scripts/setup_mnist.sh
fi

echo "setup: cargo build --release"
cargo build --release --quiet
echo "setup: done (binary: target/release/actopo)"

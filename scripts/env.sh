# Sourced by the other scripts: where the venv and libtorch are.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="$VENV/bin/python"
# tch finds libtorch in the venv's torch wheel.
export LIBTORCH_USE_PYTORCH=1
export PATH="$VENV/bin:$PATH"
export VIRTUAL_ENV="$VENV"

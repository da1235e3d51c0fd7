#!/usr/bin/env bash
# Runs scripts/cluster/slurm-array.sh on a real (single-node) Slurm and checks that the union of the
# array tasks' outputs equals one `actopo run` of the same config.
#
#   sudo scripts/cluster/slurm_check.sh        (as root; Debian 12; needs target/release/actopo and .venv)
#
# What it does:
#   1. installs slurm-wlm and munge from Debian with apt-get (skipped when already installed);
#   2. starts a private munged, slurmctld and slurmd on 127.0.0.1, all configured, keyed, logged and
#      spooled inside one temporary folder (/etc/slurm and /etc/munge are not used, so a machine's own
#      Slurm, if any, is left alone);
#   3. splits the Fashion-MNIST test set into 8 npz shards and submits slurm-array.sh as a 4-task array
#      (`sbatch --array=0-3 --wait`), so every task gets two shards;
#   4. checks every task completed with exit code 0, then runs actopo once over the same shards and
#      compares: the same output files, each Parquet table equal row by row (floats bit for bit),
#      each file byte-identical, and the four per-task manifests together covering every shard once.
# On exit (success, failure or Ctrl-C) it cancels its jobs, stops the daemons it started (by pid) and
# removes its temporary folder; KEEP_TMP=1 keeps the folder for a look after a failure.
set -euo pipefail
source "$(dirname "$0")/../env.sh"
cd "$ROOT"

TASKS=4          # array size (the brief: a 4-task array)
SHARDS=8         # demo shards: two per task
# Fit a small machine (2 cores, a few GB): these override the template's #SBATCH lines, which stay
# sized for real nodes. 1 CPU per task -> two tasks run at a time on 2 cores.
SBATCH_CPUS="${SBATCH_CPUS:-1}"
SBATCH_MEM="${SBATCH_MEM:-2G}"
WAIT_LIMIT_S="${WAIT_LIMIT_S:-1800}"   # the whole array must finish within this

tmp=""
pids=()          # daemons we started, newest last
job_id=""
made_policy=0    # 1 while a policy-rc.d we created is in place

log() { echo "slurm_check: $*"; }
die() { log "FAIL: $*"; exit 1; }

cleanup() {
  local rc=$?
  set +e
  [ -n "$job_id" ] && cancel_jobs
  [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ "$rc" -ne 0 ] && [ -n "$tmp" ] && print_log_tails
  # Stop in reverse order (slurmd, slurmctld, munged) so none loses the one it talks to first.
  local i
  for (( i=${#pids[@]}-1; i>=0; i-- )); do stop_pid "${pids[i]}"; done
  if [ -n "$tmp" ]; then
    if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $tmp"; else rm -rf -- "$tmp"; fi
  fi
  [ "$rc" -eq 0 ] && log "PASS" || log "exit $rc"
  exit "$rc"
}

# An interrupted check cancels its array and waits (30 s at most) until the tasks are gone, so no
# actopo or slurmstepd outlives the daemons or writes into a folder being removed (slurmstepd is
# not a child of slurmd, so stopping slurmd alone would not end the tasks).
cancel_jobs() {
  local n left
  timeout 10 scancel "$job_id" 2>/dev/null
  for n in $(seq 60); do
    left=$(timeout 5 squeue -h -j "$job_id" -t PD,R,CG,CF,S,RQ -o %T 2>/dev/null | wc -l)
    [ "$left" = 0 ] && break
    sleep 0.5
  done
  [ "$left" = 0 ] || log "array $job_id still has $left task(s) after scancel"
  return 0
}

# SIGTERM first, SIGKILL after 10 s: a slurmd that hangs must not keep the check from ending.
stop_pid() {
  local pid=$1 n
  kill "$pid" 2>/dev/null || return 0
  for n in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}

print_log_tails() {
  local f
  for f in "$tmp"/log/*.log "$tmp"/log/*.out "$tmp"/jobs/*.log; do
    [ -f "$f" ] || continue
    echo "---- tail ${f#"$tmp"/} ----"
    tail -n 15 "$f"
  done
}

install_slurm() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
     && command -v munged >/dev/null; then
    log "slurm and munge already installed: $(slurmctld -V)"
    return
  fi
  # policy-rc.d 101 keeps the packages' postinst from starting system-wide daemons (we start our
  # own); Debian's container images already have one, so only create (and remove) it when absent.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge)
  log "apt-get install slurm-wlm munge"
  # Stale package lists are the usual reason an install fails on a fresh machine: update once, retry.
  if ! "${apt[@]}" > "$tmp/log/apt.log" 2>&1; then
    apt-get update -q >> "$tmp/log/apt.log" 2>&1 || true
    "${apt[@]}" >> "$tmp/log/apt.log" 2>&1 || { tail -n 20 "$tmp/log/apt.log"; die "apt-get install failed"; }
  fi
  if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; made_policy=0; fi
  log "installed $(slurmctld -V)"
}

start_munge() {
  mkdir -p "$tmp/munge"
  # munged insists that everyone may traverse its socket's folder; the key itself stays 0400.
  chmod 755 "$tmp/munge"
  # A fresh key per run: this munged serves only this check's daemons.
  dd if=/dev/urandom of="$tmp/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$tmp/munge/munge.key"
  munged --foreground --socket="$tmp/munge/munge.socket" --key-file="$tmp/munge/munge.key" \
    --pid-file="$tmp/munge/munged.pid" --seed-file="$tmp/munge/munged.seed" \
    --log-file="$tmp/log/munged.log" > "$tmp/log/munged.out" 2>&1 &
  pids+=($!)
  local n
  for n in $(seq 50); do
    [ -S "$tmp/munge/munge.socket" ] && break
    sleep 0.2
  done
  munge -n -S "$tmp/munge/munge.socket" | unmunge -S "$tmp/munge/munge.socket" > /dev/null \
    || die "munged does not answer (log: $tmp/log/munged.log)"
  log "munged up"
}

# Two TCP ports nobody listens on, so a machine's own Slurm (6817/6818) cannot clash with ours.
free_ports() {
  "$PYTHON" - <<'EOF'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

write_slurm_conf() {
  local node ctl_port d_port hw mem_mb
  node=actopo-check
  read -r ctl_port d_port < <(free_ports)
  # The node's layout as slurmd itself finds it (a mismatch drains the node or logs warnings).
  hw=$(slurmd -C | head -n 1 | tr ' ' '\n' \
    | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=' | tr '\n' ' ')
  # RealMemory must not exceed what slurmd finds, or the node is drained; 90% leaves slack.
  mem_mb=$(slurmd -C | head -n 1 | grep -oE 'RealMemory=[0-9]+' | awk -F= '{ printf "%d", $2 * 0.9 }')
  mkdir -p "$tmp/etc" "$tmp/state" "$tmp/spool"
  cat > "$tmp/etc/slurm.conf" <<EOF
# Single-node Slurm for scripts/cluster/slurm_check.sh: everything lives under $tmp.
ClusterName=actopocheck
# slurmctld only runs on the host named here, so it is this machine's own short name.
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmctldPort=$ctl_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$tmp/munge/munge.socket
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/state/slurmctld.pid
SlurmdPidFile=$tmp/spool/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups: a container usually cannot delegate them, and the check needs no enforcement.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
PlugStackConfig=$tmp/etc/plugstack.conf
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
# Keep finished jobs visible to scontrol long enough to read their exit codes.
MinJobAge=3600
NodeName=$node NodeHostname=$(hostname) NodeAddr=127.0.0.1 ${hw}RealMemory=$mem_mb State=UNKNOWN
PartitionName=check Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
  # An empty plugin stack: the machine's /etc/slurm/plugstack.conf is not ours to load.
  : > "$tmp/etc/plugstack.conf"
  cat > "$tmp/etc/cgroup.conf" <<'EOF'
# Nothing is constrained (see ProctrackType/TaskPlugin in slurm.conf).
CgroupAutomount=no
ConstrainCores=no
ConstrainRAMSpace=no
EOF
  export SLURM_CONF="$tmp/etc/slurm.conf"
  echo "$node"
}

start_slurm() {
  local node=$1 state
  slurmctld -D -i -f "$SLURM_CONF" > "$tmp/log/slurmctld.out" 2>&1 &
  pids+=($!)
  slurmd -D -f "$SLURM_CONF" -N "$node" > "$tmp/log/slurmd.out" 2>&1 &
  pids+=($!)
  # Bounded by the clock, not by tries: a client call can itself hang for seconds while the
  # controller is not up yet.
  local deadline=$(( $(date +%s) + 60 ))
  state=""
  while [ "$(date +%s)" -lt "$deadline" ]; do
    kill -0 "${pids[1]}" 2>/dev/null || die "slurmctld exited (log: slurmctld.out below)"
    kill -0 "${pids[2]}" 2>/dev/null || die "slurmd exited (log: slurmd.out below)"
    state=$(timeout 5 sinfo -h -n "$node" -o %T 2>/dev/null || true)
    [ "$state" = idle ] && break
    sleep 0.5
  done
  [ "$state" = idle ] || die "node $node not idle after 60 s (state: '${state:-none}')"
  log "slurmctld and slurmd up; node $node idle"
}

# 8 npz shards of the Fashion-MNIST test split (1,250 images each, labels as `y`).
make_shards() {
  mkdir -p "$tmp/shards"
  "$PYTHON" - "$tmp/shards" "$SHARDS" <<'EOF'
import gzip, sys
import numpy as np
out, n = sys.argv[1], int(sys.argv[2])
base = "/usr/share/datasets/fashion-mnist/"
with gzip.open(base + "t10k-images-idx3-ubyte.gz") as f:
    x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
with gzip.open(base + "t10k-labels-idx1-ubyte.gz") as f:
    y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
assert len(x) == len(y) == 10000
for i, (xs, ys) in enumerate(zip(np.array_split(x, n), np.array_split(y, n))):
    np.savez(f"{out}/fmnist-test-{i:02d}.npz", x=xs, y=ys)
EOF
  log "wrote $SHARDS shards to $tmp/shards"
}

write_config() {
  cat > "$tmp/check.toml" <<EOF
# The demo's config over the split shards (scripts/cluster/slurm_check.sh).
[model]
spec = "$ROOT/models/ccff.toml"
device = "cpu"

[data]
shards = ["$tmp/shards/*.npz"]
mean = [0.0]
std = [1.0]

[pipeline]
batch_size = 128

[graph]
scopes = ["network"]
include_input = true

[output]
dir = "$tmp/out-slurm"
diagrams = true
summary = true
EOF
}

run_array() {
  mkdir -p "$tmp/jobs"
  log "sbatch --array=0-$((TASKS - 1)) --wait scripts/cluster/slurm-array.sh (cpus-per-task=$SBATCH_CPUS, mem=$SBATCH_MEM)"
  local start rc=0
  start=$(date +%s)
  # --parsable prints the job id before --wait blocks; read it from the output file as it appears,
  # so cleanup can scancel the array if we are interrupted.
  timeout "$WAIT_LIMIT_S" sbatch --parsable --wait --array=0-$((TASKS - 1)) \
    --cpus-per-task="$SBATCH_CPUS" --mem="$SBATCH_MEM" --time=00:30:00 \
    --output="$tmp/jobs/actopo-%A_%a.log" \
    scripts/cluster/slurm-array.sh "$tmp/check.toml" > "$tmp/jobs/sbatch.out" 2>&1 &
  local sb=$!
  local n
  for n in $(seq 100); do
    job_id=$(grep -m1 -oE '^[0-9]+' "$tmp/jobs/sbatch.out" || true)
    [ -n "$job_id" ] && break
    kill -0 "$sb" 2>/dev/null || break
    sleep 0.1
  done
  wait "$sb" || rc=$?
  [ -n "$job_id" ] || { cat "$tmp/jobs/sbatch.out"; die "sbatch gave no job id"; }
  log "array job $job_id finished in $(( $(date +%s) - start )) s (sbatch exit $rc)"
  [ "$rc" -eq 0 ] || { cat "$tmp/jobs/sbatch.out"; die "sbatch --wait exited $rc"; }
}

# Every array task, from the controller's record: COMPLETED with exit code 0:0.
check_tasks() {
  local count
  scontrol -o show job "$job_id" | awk '{
    line = "  "
    for (i = 1; i <= NF; i++)
      if ($i ~ /^(ArrayJobId|ArrayTaskId|JobState|ExitCode|RunTime)=/) line = line " " $i
    print line }'
  count=$(scontrol -o show job "$job_id" | grep -c 'JobState=COMPLETED .* ExitCode=0:0' || true)
  [ "$count" -eq "$TASKS" ] || die "$count of $TASKS array tasks completed with exit code 0"
  log "all $TASKS array tasks COMPLETED, exit code 0"
}

run_single() {
  log "single-process actopo run of the same config"
  local start
  start=$(date +%s)
  # No SLURM_* variables: this is the one-process reference (they would make it a shard worker).
  env -u SLURM_ARRAY_TASK_ID -u SLURM_ARRAY_TASK_MIN -u SLURM_ARRAY_TASK_COUNT \
    target/release/actopo run "$tmp/check.toml" --set "output.dir=$tmp/out-single" \
    > "$tmp/log/single.log" 2>&1 || { tail -n 20 "$tmp/log/single.log"; die "single run failed"; }
  log "single run took $(( $(date +%s) - start )) s"
}

compare_outputs() {
  "$PYTHON" - "$tmp/out-slurm" "$tmp/out-single" "$TASKS" "$SHARDS" <<'EOF'
import json, pathlib, sys
import polars as pl
from polars.testing import assert_frame_equal

slurm, single = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
tasks, shards = int(sys.argv[3]), int(sys.argv[4])

def data_files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet"))

a, b = data_files(slurm), data_files(single)
assert a == b, f"output files differ:\n slurm only: {sorted(set(a) - set(b))}\n single only: {sorted(set(b) - set(a))}"
assert a, "no Parquet outputs"
assert not [r for r in a if r.startswith("failures/")], "some samples failed"

# Each file was written by one task: equal in order, column for column, floats bit for bit
# (check_exact; NaN == NaN would still pass, but actopo writes none).
rows = {}
for rel in a:
    x, y = pl.read_parquet(slurm / rel), pl.read_parquet(single / rel)
    assert_frame_equal(x, y, check_exact=True)
    kind = rel.split("/")[0]
    rows.setdefault(kind, []).append(x)
# Beyond the tables: actopo's outputs do not depend on the worker count or on how shards are split
# among processes, so each file must be the same byte for byte (footers included).
import hashlib
digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()
differ = [r for r in a if digest(slurm / r) != digest(single / r)]
assert not differ, f"tables equal but files differ in bytes: {differ}"
print(f"  {len(a)} of {len(a)} Parquet files byte-identical")
# The union, sorted by shard and index, against the single run's tables likewise.
for kind, frames in rows.items():
    u = pl.concat(frames)
    s = pl.concat([pl.read_parquet(single / r) for r in a if r.startswith(kind + "/")])
    keys = ["shard", "index"]
    assert_frame_equal(u.sort(keys, maintain_order=True), s.sort(keys, maintain_order=True), check_exact=True)
    print(f"  {kind}: {len(u)} rows in {len(frames)} files, equal")

# The per-task manifests: one per task, together every shard once, all done.
mans = sorted(slurm.glob("manifest-*-of-*.json"))
assert len(mans) == tasks, f"expected {tasks} task manifests, found {[m.name for m in mans]}"
names = []
for m in mans:
    for s in json.loads(m.read_text())["shards"]:
        assert s["status"] == "done", (m.name, s["name"], s["status"])
        names.append(s["name"])
one = [s["name"] for s in json.loads((single / "manifest.json").read_text())["shards"]]
assert sorted(names) == sorted(one) and len(one) == shards, (names, one)
print(f"  manifests: {len(mans)} task manifests cover the {len(one)} shards once each, all done")
EOF
  log "union of the $TASKS tasks' outputs equals the single-process run"
}

main() {
  [ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and starts Slurm daemons)"
  [ -x target/release/actopo ] || die "no target/release/actopo: run scripts/setup.sh first"
  [ -x "$PYTHON" ] || die "no $PYTHON: run scripts/setup.sh first"
  local t0 node
  t0=$(date +%s)
  tmp=$(mktemp -d -t actopo-slurm-check.XXXXXX)   # $TMPDIR if set, else /tmp
  chmod 755 "$tmp"
  mkdir -p "$tmp/log"
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  install_slurm
  start_munge
  node=$(write_slurm_conf)
  export SLURM_CONF="$tmp/etc/slurm.conf"
  start_slurm "$node"
  make_shards
  write_config
  run_array
  check_tasks
  run_single
  compare_outputs
  echo "---- job log tails ----"
  local f
  for f in "$tmp"/jobs/actopo-*.log; do echo "== ${f##*/}"; tail -n 4 "$f"; done
  echo "---- slurmctld.log tail ----"
  tail -n 8 "$tmp/log/slurmctld.log"
  log "total $(( $(date +%s) - t0 )) s"
}

# `exit` on main's line: bash has read this line before main runs, so an edit to the file during a
# run cannot make it execute a stray fragment afterwards.
main "$@"; exit

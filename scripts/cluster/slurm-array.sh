#!/usr/bin/env bash
# Slurm job array: N tasks share one actopo run. Each task takes every N-th shard of the sorted
# shard list (actopo reads SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT), writes its own files and
# its own manifest (manifest-IIIII-of-NNNNN.json) into the shared output.dir, and skips shards it
# already finished, so a requeued or resubmitted task resumes where it stopped.
#
#   sbatch --array=0-15 scripts/cluster/slurm-array.sh config/my-sweep.toml
#
# Set up once on the shared filesystem with scripts/setup.sh (it builds target/release/actopo).
# scripts/cluster/slurm_check.sh runs this file as a 4-task array on a throwaway single-node Slurm
# and checks the union of the tasks' outputs against one process (docs/cluster.md).
#SBATCH --job-name=actopo
#SBATCH --cpus-per-task=8
#SBATCH --mem=8G
#SBATCH --time=08:00:00
#SBATCH --requeue
#SBATCH --signal=B:TERM@120
#SBATCH --output=actopo-%A_%a.log
set -euo pipefail
config="${1:?usage: sbatch --array=0-N scripts/cluster/slurm-array.sh CONFIG}"
cd "${SLURM_SUBMIT_DIR:-.}"
# --signal above sends SIGTERM two minutes before the time limit: actopo stops cleanly (exit 130),
# keeping every finished shard; resubmitting the same array finishes the rest.
exec target/release/actopo run "$config" --set "pipeline.workers=${SLURM_CPUS_PER_TASK:-0}"

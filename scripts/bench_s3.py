"""Throughput of remote shards: the demo-sized run (10,000 Fashion-MNIST test images as 10 Parquet
shards of 1,000) from local disk and from a local S3 server (moto on 127.0.0.1), side by side:
runs alternate local / S3, median of `--repeats` each.

    scripts/bench_s3.sh [--shards 10] [--per-shard 1000] [--repeats 3]
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests/python"))
from s3_check import BUCKET, client, must, run, s3_env, start_moto, upload, write_shards  # noqa: E402


def timed(bin_, shards, out, env=None):
    start = time.perf_counter()
    must(run(bin_, shards, out, env, extra=("--set", "pipeline.workers=0")), f"run into {out}")
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=str(ROOT / "target/release/actopo"))
    ap.add_argument("--shards", type=int, default=10)
    ap.add_argument("--per-shard", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="actopo-bench-s3-") as tmp:
        tmp = Path(tmp)
        moto, endpoint = start_moto(tmp, "moto")
        try:
            local = write_shards(tmp / "shards", args.shards, args.per_shard, row_group=250)
            s3 = client(endpoint)
            s3.create_bucket(Bucket=BUCKET)
            upload(s3, local, "bench")
            local_args = [str(p) for p in local]
            remote_args = [f"s3://{BUCKET}/bench/*.parquet"]
            times = {"local": [], "s3": []}
            for i in range(args.repeats):
                times["local"].append(timed(args.bin, local_args, tmp / f"local-{i}"))
                times["s3"].append(timed(args.bin, remote_args, tmp / f"s3-{i}", s3_env(endpoint)))
                print(f"  round {i + 1}: local {times['local'][-1]:.2f} s, s3 {times['s3'][-1]:.2f} s", flush=True)
        finally:
            moto.terminate()
            moto.wait()
    n = args.shards * args.per_shard
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{n} images in {args.shards} Parquet shards, median of {args.repeats}:")
    for k in ("local", "s3"):
        print(f"  {k:5s}  {med[k]:7.2f} s  {n / med[k]:8.0f} images/s  (runs: {', '.join(f'{t:.2f}' for t in times[k])})")
    print(f"  s3 / local: {med['s3'] / med['local']:.3f} (target: at most 1.10)")


if __name__ == "__main__":
    main()

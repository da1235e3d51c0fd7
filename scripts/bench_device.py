"""What a GPU changes: the forward pass and the gradient attacks on the CPU and on CUDA, side by
side on one machine, then whole `actopo run` jobs with `model.device` set to each.

(a) `examples/forward_timing` (forward pass and attacks alone, no topology) for the demo CCFF
    (batch 128, iterative attacks cut to 10 steps) and ResNet-18 in its CIFAR form (batch 32,
    3 steps; exported here with seeded random weights, as scripts/bench.py does), on each device;
(b) `actopo run` of the demo (CCFF, network scope, Fashion-MNIST test split) with 2 workers and
    with one per core, on each device;
(c) `actopo run` of config/fashion-mnist-attacks.toml (seven attacks per image) on its first
    --attack-images images (default 128), all cores, on each device;
(d) `actopo run` of ResNet-18 (CIFAR form) on --models random inputs, all cores, on each device.

Needs torch, torchvision, safetensors, numpy and pyarrow (no GUDHI). Runs where a GPU is: the
figures in docs/performance.md came from it on a lent GPU machine, with the binaries built on the
CPU machine (scripts/bench_device.sh there packs them).

Usage: python scripts/bench_device.py [--bin PATH] [--timing PATH] [--devices cpu,cuda]
                                      [--images 10000] [--attack-images 128] [--models 32]
"""

import argparse
import os
import subprocess
import tempfile
from pathlib import Path

import bench

ROOT = bench.ROOT


def forward_timing(timing, spec, device, batch, repeats, steps):
    cmd = [timing, str(spec), device, str(batch), str(repeats), str(steps)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{out.stderr}")
    print(out.stdout, end="", flush=True)


def run_line(what, images, wall, rss):
    return f"{what}: {images} inputs in {wall:.2f} s = {images / wall:8.1f} inputs/s, peak RSS {rss:.0f} MB"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=bench.BIN)
    ap.add_argument("--timing", default=str(ROOT / "target/release/examples/forward_timing"))
    ap.add_argument("--devices", default="cpu,cuda")
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--attack-images", type=int, default=128)
    ap.add_argument("--models", type=int, default=32)
    args = ap.parse_args()
    bench.BIN = str(Path(args.bin).resolve())
    devices = args.devices.split(",")
    cores = os.cpu_count()
    print(f"machine: {cores} cores; actopo {bench.BIN}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        name, build, shape = bench.MODELS[0]
        bench.export_model(tmp, name, build, shape, args.models)
        for device in devices:
            forward_timing(args.timing, ROOT / "models/ccff.toml", device, 128, 5, 10)
            # One repeat on the CPU: ResNet-18's attacks take about a minute there.
            forward_timing(args.timing, tmp / f"{name}.toml", device, 32, 3 if device != "cpu" else 1, 3)
        demo = ROOT / "config/fashion-mnist.toml"
        attacks = ROOT / "config/fashion-mnist-attacks.toml"
        for device in devices:
            on = ("--set", f'model.device="{device}"')
            for workers in sorted({2, cores}):
                wall, rss, _ = bench.actopo_run(demo, tmp / f"demo-{device}-{workers}", args.images, workers, on)
                print(run_line(f"demo {device} workers={workers}", args.images, wall, rss), flush=True)
            wall, rss, _ = bench.actopo_run(attacks, tmp / f"attacks-{device}", args.attack_images, cores, on)
            print(run_line(f"attacks (7 per image) {device} workers={cores}", args.attack_images, wall, rss), flush=True)
            wall, rss, edges = bench.exported_model(tmp, name, build, shape, args.models, cores, device)
            print(run_line(f"{name} {device} workers={cores}", args.models, wall, rss)
                  + f", {wall / args.models:.3f} s/input, {edges / 1e6:.0f} M edges/input", flush=True)


if __name__ == "__main__":
    main()

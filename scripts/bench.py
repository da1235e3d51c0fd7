"""Side-by-side speed benchmark: actopo vs the GUDHI-based Python reference, on this machine.

(a) `actopo run` over the first N Fashion-MNIST test images (default: the whole 10,000-image test
    split, the target's measure) with the demo CCFF model (network scope), with
    pipeline.workers = 2 and = 1: wall time of the whole process (start-up included), inputs/s,
    peak RSS; then the same with 2 workers for a CCFF trained on normalised inputs
    (models/ccff-normalised, `scripts/train_ccff.py --normalise`; skipped when absent);
(b) the vectorised Python reference from the cross-check tests (torch hooks for activations, torch
    unfold for the graph, GUDHI SimplexTree for persistence) on the first M of the same images, one
    process with one torch thread (as actopo's forward: src/forward/mod.rs): inputs/s, and a check
    that its summaries equal actopo's (H0 total persistence within the f32-rounding tolerance of
    tests/python/tolerance.py: 1e-5 of each birth or death + 5e-6 of the diagram's largest value,
    propagated to the sum);
(c) the paper's AlexNet-for-CIFAR shape with seeded random weights on random 32x32x3 inputs,
    1 and 2 workers: edges per input, seconds per input, edges per second, peak RSS;
(d) model graphs exported from PyTorch by scripts/export_torch.py with seeded
    random weights: ResNet-18 in its CIFAR form (3x3 stem, no max-pool, 3x32x32), VGG-11-BN in its
    CIFAR form (torchvision's features, then a 512 -> 10 classifier), and torchvision's resnet18 at
    3x224x224: edges per input, seconds per input with 1 and 2 workers, peak RSS.
Everything runs in one invocation so the ratios compare like with like. To compare two builds,
run it once per binary in the same session (--bin, or the environment variable ACTOPO_BIN).

Usage: python scripts/bench.py [--bin PATH] [--images 10000] [--ref-images 20] [--alexnet 4]
                               [--models 4] [--model-names resnet18-cifar,...]
(--alexnet 0 or --models 0 skips that part.)
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "python"))

BIN = os.environ.get("ACTOPO_BIN", str(ROOT / "target/release/actopo"))
# The normalised CCFF (scripts/train_ccff.py --normalise) and the mean and std it was trained with.
NORMALISED = ROOT / "models/ccff-normalised.toml"
NORMALISED_STATS = ("[0.2860]", "[0.3530]")


def timed(cmd):
    """Runs cmd; returns (wall seconds, peak RSS in MB, stderr). The peak is the child's own
    high-water mark (VmHWM in /proc), read every 10 ms while it runs: wait4's ru_maxrss would also
    count this Python process (torch imported, about 0.5 GB), whose memory the child holds until
    its exec."""
    with tempfile.TemporaryFile(mode="w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True)
        peak_kb = 0
        while proc.poll() is None:
            peak_kb = max(peak_kb, high_water_kb(proc.pid))
            time.sleep(0.01)
        wall = time.perf_counter() - start
        err.seek(0)
        text = err.read()
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{text}")
    return wall, peak_kb / 1024, text


def high_water_kb(pid):
    """A running process's peak resident set so far (0 once it has exited)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def actopo_run(config, out, images, workers, extra=()):
    cmd = [BIN, "run", str(config), "--overwrite", "--set", f"data.limit={images}", "--set", f"pipeline.workers={workers}",
           "--set", f'output.dir="{out}"', "--set", "output.diagrams=true", *extra]
    return timed(cmd)


def reference(images, labels_out):
    """The Python + GUDHI reference on CCFF: returns (seconds, per-image (h0_total_persistence, its
    tolerance))."""
    import gudhi_crosscheck as gc  # GUDHI: imported here so scripts/bench_device.py runs without it
    import tolerance as tol
    x, _ = gc.fashion("t10k", images)
    _, _, layers = gc.net_ccff()
    model = nn.Sequential(*[m for _, m, _ in layers]).eval()
    model.load_state_dict(load_file(str(ROOT / "models/ccff.safetensors")))
    ops = gc.graph_ops(layers)
    offsets = gc.unit_offsets(layers, [1, 28, 28])
    totals = []
    start = time.perf_counter()
    captured = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, key=key: captured.__setitem__(key, inp[0].detach()))
             for key, m in ops]
    for i in range(images):
        # Forward in the same zero-padded 32-sample chunks as actopo (libtorch rounds by batch size).
        if i % 32 == 0:
            chunk = x[i:i + 32]
            chunk = torch.cat([chunk, torch.zeros(32 - len(chunk), *chunk.shape[1:])])
            with torch.no_grad():
                model(chunk)
        per_op = [gc.op_edges(m, captured[key][i % 32], s, d, "all") for (key, m), (s, d) in zip(ops, offsets)]
        src, dst, wt = (np.concatenate(p) for p in zip(*per_op))
        finite, essential, _, _ = gc.gudhi_diagram(src, dst, wt, False)
        scale = tol.diagram_scale(finite + [(b, None) for b in essential])
        totals.append((gc.summary_of(finite)[0], tol.summary_tolerances(finite, scale)[0]))
    for h in hooks:
        h.remove()
    return time.perf_counter() - start, totals


ALEXNET = [
    ("conv2d", dict(out_channels=64, kernel_size=11)), ("relu", {}),
    ("max_pool2d", dict(kernel_size=2, stride=1)),
    ("conv2d", dict(out_channels=192, kernel_size=5)), ("relu", {}),
    ("max_pool2d", dict(kernel_size=2, stride=2)),
    ("conv2d", dict(out_channels=384, kernel_size=3)), ("relu", {}),
    ("conv2d", dict(out_channels=256, kernel_size=3)), ("relu", {}),
    ("conv2d", dict(out_channels=256, kernel_size=3)), ("relu", {}),
    ("max_pool2d", dict(kernel_size=2, stride=2)),
    ("flatten", {}),
    ("linear", dict(out_features=4096)), ("relu", {}),
    ("linear", dict(out_features=4096)), ("relu", {}),
    ("linear", dict(out_features=10)),
]


def export_alexnet(folder):
    """The AlexNet-CIFAR spec and its seeded random weights, written once per bench."""
    torch.manual_seed(0)
    mods, lines = [], ["format_version = 1", 'name = "alexnet-cifar"', "input_shape = [3, 32, 32]", 'weights = "alexnet.safetensors"']
    c, shape = 3, (3, 32, 32)
    for op, kw in ALEXNET:
        lines.append("[[layers]]")
        lines.append(f'op = "{op}"')
        for k, v in kw.items():
            lines.append(f"{k} = {v}")
        if op == "conv2d":
            mods.append(nn.Conv2d(c, kw["out_channels"], kw["kernel_size"]))
            c = kw["out_channels"]
        elif op == "linear":
            mods.append(nn.LazyLinear(kw["out_features"]))
        elif op == "relu":
            mods.append(nn.ReLU())
        elif op == "max_pool2d":
            mods.append(nn.MaxPool2d(kw["kernel_size"], kw.get("stride")))
        elif op == "flatten":
            mods.append(nn.Flatten())
    model = nn.Sequential(*mods)
    model(torch.zeros(1, 3, 32, 32))  # materialise lazy layers
    (folder / "alexnet.toml").write_text("\n".join(lines) + "\n")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "alexnet.safetensors"))


def alexnet(folder, n_images, workers):
    """One AlexNet-CIFAR run (`export_alexnet` first) on `n_images` seeded random images."""
    rng = np.random.default_rng(0)
    np.savez(folder / "cifar-like.npz", x=rng.integers(0, 256, size=(n_images, 3, 32, 32), dtype=np.uint8))
    (folder / "alexnet-run.toml").write_text(
        f'[model]\nspec = "alexnet.toml"\ndevice = "cpu"\n[data]\nshards = ["cifar-like.npz"]\n'
        f'[pipeline]\nbatch_size = 8\n[output]\ndiagrams = false\n')
    out = folder / f"alexnet-out-{workers}"
    wall, rss, err = timed([BIN, "run", str(folder / "alexnet-run.toml"), "--overwrite", "--set", f"pipeline.workers={workers}",
                            "--set", f'output.dir="{out}"'])
    rows = pq.read_table(out / "summary/cifar-like.parquet").to_pylist()
    inspect = subprocess.run([BIN, "inspect", str(folder / "alexnet.toml")], capture_output=True, text=True).stdout
    bound = [l for l in inspect.splitlines() if l.startswith("network scope")][0]
    return wall, rss, np.mean([r["n_edges"] for r in rows]), bound


def ccff_runs(config, tmp, images):
    """The demo CCFF with 2 and 1 workers, then the normalised CCFF with 2 (when trained): returns
    {workers: (wall, rss)} of the demo."""
    results = {}
    for workers in (2, 1):
        wall, rss, _ = actopo_run(config, tmp / f"w{workers}", images, workers)
        results[workers] = (wall, rss)
        print(f"actopo  workers={workers}: {images} inputs in {wall:.2f} s = {images / wall:7.1f} inputs/s, peak RSS {rss:.0f} MB")
    if NORMALISED.exists():
        mean, std = NORMALISED_STATS
        extra = ("--set", f'model.spec="{NORMALISED}"', "--set", f"data.mean={mean}", "--set", f"data.std={std}")
        wall, rss, _ = actopo_run(config, tmp / "normalised", images, 2, extra)
        print(f"actopo  normalised CCFF workers=2: {images} inputs in {wall:.2f} s = {images / wall:7.1f} inputs/s, peak RSS {rss:.0f} MB")
    else:
        print(f"normalised CCFF: skipped ({NORMALISED} absent; scripts/train_ccff.py --normalise makes it)")
    return results


def resnet18_cifar():
    import torchvision
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model


def vgg11_bn_cifar():
    import torchvision
    features = torchvision.models.vgg11_bn(weights=None).features
    return nn.Sequential(features, nn.Flatten(), nn.Linear(512, 10))


def resnet18_224():
    import torchvision
    return torchvision.models.resnet18(weights=None)


MODELS = [("resnet18-cifar", resnet18_cifar, (3, 32, 32)), ("vgg11-bn-cifar", vgg11_bn_cifar, (3, 32, 32)),
          ("resnet18-224", resnet18_224, (3, 224, 224))]


def exported_model(folder, name, build, shape, n_images, workers, device="cpu"):
    """Exports `build()` (once) and times `actopo run` of it on random uint8 inputs."""
    export_model(folder, name, build, shape, n_images)
    run = folder / f"{name}-run.toml"
    run.write_text(f'[model]\nspec = "{name}.toml"\ndevice = "{device}"\n[data]\nshards = ["{name}-inputs.npz"]\n'
                   f'[pipeline]\nbatch_size = 32\n[output]\ndiagrams = false\n')
    out = folder / f"{name}-out-{workers}-{device}"
    wall, rss, _ = timed([BIN, "run", str(run), "--overwrite", "--set", f"pipeline.workers={workers}",
                          "--set", f'output.dir="{out}"'])
    rows = pq.read_table(out / f"summary/{name}-inputs.parquet").to_pylist()
    return wall, rss, np.mean([r["n_edges"] for r in rows])


def export_model(folder, name, build, shape, n_images):
    """Exports `build()` to folder/name.toml (seeded random weights, batch-norm statistics from a few
    random batches so that they are not the identity) and n_images random uint8 inputs, unless
    there already."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from export_torch import export
    spec = folder / f"{name}.toml"
    if not spec.exists():
        torch.manual_seed(0)
        model = build().train()
        with torch.no_grad():
            for _ in range(3):
                model(torch.rand(8, *shape))
        export(model.eval(), shape, folder / name, name=name)
        rng = np.random.default_rng(0)
        np.savez(folder / f"{name}-inputs.npz", x=rng.integers(0, 256, size=(n_images, *shape), dtype=np.uint8))


def at_least(what, value, goal, unit):
    """A line saying whether `value` reaches `goal`."""
    return f"target {what}: {'met' if value >= goal else 'not met'} ({value:.0f} {unit}, {100 * value / goal:.0f}% of it)"


def at_most(what, value, goal, unit):
    """A line saying whether `value` stays within `goal`."""
    return f"target {what}: {'met' if value <= goal else 'not met'} ({value:.2f} {unit})"


def main():
    global BIN
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=BIN, help="the actopo binary to time (default: $ACTOPO_BIN or target/release/actopo)")
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--ref-images", type=int, default=20)
    ap.add_argument("--alexnet", type=int, default=4, help="AlexNet-CIFAR inputs to time (0 = skip)")
    ap.add_argument("--models", type=int, default=4, help="inputs per exported model graph to time (0 = skip)")
    ap.add_argument("--model-names", default=",".join(name for name, _, _ in MODELS),
                    help="which exported models to time (comma-separated)")
    args = ap.parse_args()
    import tolerance as tol  # needs GUDHI
    BIN = str(Path(args.bin).resolve())
    torch.set_num_threads(1)  # the reference's forward on one thread, as actopo's
    config = ROOT / "config/fashion-mnist.toml"
    print(f"machine: {os.cpu_count()} cores; actopo {BIN}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        results = ccff_runs(config, tmp, args.images)
        ref_s, ref_totals = reference(args.ref_images, None)
        ref_rate = args.ref_images / ref_s
        print(f"reference (torch unfold + GUDHI, 1 process): {args.ref_images} inputs in {ref_s:.2f} s = {ref_rate:.2f} inputs/s")
        rows = pq.read_table(tmp / "w2/summary/t10k-images-idx3-ubyte.parquet").to_pylist()
        ours = [r["h0_total_persistence"] for r in rows if r["scope"] == "network"][: args.ref_images]
        agree = sum(tol.close(a, b, t) for a, (b, t) in zip(ours, ref_totals))
        print(f"reference check: h0_total_persistence equal on {agree}/{args.ref_images} inputs ({tol.STATED})")
        rate2 = args.images / results[2][0]
        print(f"ratio actopo (2 workers) / reference: {rate2 / ref_rate:.0f}x;  workers 2 vs 1: {results[1][0] / results[2][0]:.2f}x")
        print(at_least("CCFF demo >= 2,000 inputs/s (2 workers)", rate2, 2000, "inputs/s"))
        if args.alexnet:
            export_alexnet(tmp)
            for workers in (1, 2):
                wall, rss, edges, bound = alexnet(tmp, args.alexnet, workers)
                rate = edges * args.alexnet / wall / 1e6
                print(f"AlexNet-CIFAR workers={workers}: {args.alexnet} inputs in {wall:.1f} s = {wall / args.alexnet:.2f} s/input "
                      f"(incl. start-up), mean {edges / 1e6:.1f} M edges/input ({bound}) = {rate:.0f} M edges/s, "
                      f"peak RSS {rss / 1024:.2f} GB")
            print(at_least("AlexNet-CIFAR >= 300 M edges/s (2 workers)", rate, 300, "M edges/s"))
            # The same with 4x the inputs: the difference is the rate once started, without what
            # every run pays once (libtorch, the weights, the dense layers' index, the first
            # batch, and at the end one worker waiting for the other's last input).
            long_wall, _, long_edges, _ = alexnet(tmp, 4 * args.alexnet, 2)
            extra_edges = long_edges * 4 * args.alexnet - edges * args.alexnet
            steady = extra_edges / (long_wall - wall) / 1e6
            fixed = wall - edges * args.alexnet / (steady * 1e6)
            print(f"AlexNet-CIFAR workers=2, {4 * args.alexnet} inputs: {long_wall:.1f} s; once started "
                  f"(the {3 * args.alexnet} extra inputs): {steady:.0f} M edges/s, so a fixed {fixed:.1f} s per run")
        names = args.model_names.split(",") if args.models else []
        for name, build, shape in [m for m in MODELS if m[0] in names]:
            for workers in (1, 2):
                wall, rss, edges = exported_model(tmp, name, build, shape, args.models, workers)
                print(f"{name} workers={workers}: {args.models} inputs in {wall:.1f} s = {wall / args.models:.2f} s/input "
                      f"(incl. start-up), mean {edges / 1e6:.1f} M edges/input = {edges * args.models / wall / 1e6:.0f} M edges/s, "
                      f"peak RSS {rss / 1024:.2f} GB")
            if name == "resnet18-cifar":
                print(at_most("ResNet-18 (CIFAR) <= 1.5 s/input (2 workers, start-up included)", wall / args.models, 1.5, "s/input"))
                print(at_most("ResNet-18 (CIFAR) peak RSS <= 4 GB", rss / 1024, 4.0, "GB"))


if __name__ == "__main__":
    main()

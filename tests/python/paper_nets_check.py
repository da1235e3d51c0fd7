"""Checks the paper's networks under models/paper/ (scripts/train_paper_nets.py) against PyTorch.

For each spec NET-ACT-DATASET.toml whose dataset is installed (Fashion-MNIST always; MNIST once
scripts/setup_mnist.sh has run):
- the spec is exactly what scripts/train_paper_nets.py writes for that net (no stale spec);
- the PyTorch net built by that script loads the weights strictly (same tensor names and shapes);
- `actopo validate` passes on a temporary config over the dataset's test split (it also compares
  actopo's forward pass with the reference outputs beside the spec);
- `actopo run` on the first 64 test images gives, for every image, `pred` equal to PyTorch's argmax
  and `label` equal to the IDX label (exact: both are integers).
Missing weights fail the check (train them with scripts/train_paper_nets.py).

Usage: python tests/python/paper_nets_check.py [--bin target/release/actopo] [--images 64]
Exit status 0 when every check passes, 1 otherwise.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import train_paper_nets as paper  # noqa: E402
from train_ccff import load  # noqa: E402

CONFIG = """[model]
spec = "{spec}"
device = "cpu"

[data]
shards = ["{shard}"]
format = "auto"
mean = [0.0]
std = [1.0]
limit = {limit}

[pipeline]
batch_size = 32

[graph]
scopes = ["network"]
include_input = true

[output]
dir = "{out}"
diagrams = false
summary = true
"""


def test_shard(folder):
    raw = folder / "t10k-images-idx3-ubyte"
    return raw if raw.exists() else raw.with_name(raw.name + ".gz")


def installed(dataset):
    return test_shard(paper.DATASETS[dataset]).exists()


def torch_predictions(dataset, net, act, weights, images):
    model = paper.build(net, act)
    model.load_state_dict(load_file(str(weights)), strict=True)
    model.eval()
    x, y = load("t10k", paper.DATASETS[dataset])
    with torch.no_grad():
        return model(x[:images]).argmax(1).tolist(), y[:images].tolist()


def actopo(bin_path, *args):
    proc = subprocess.run([str(bin_path), *args], capture_output=True, text=True)
    return proc.returncode, proc.stdout + proc.stderr


def actopo_predictions(bin_path, spec, shard, images, tmp):
    config = tmp / "config.toml"
    config.write_text(CONFIG.format(spec=spec.resolve(), shard=Path(shard).resolve(), limit=images, out=tmp / "out"))
    rc, text = actopo(bin_path, "validate", str(config))
    if rc != 0:
        return None, f"actopo validate failed (status {rc}):\n{text}"
    rc, text = actopo(bin_path, "run", str(config))
    if rc != 0:
        return None, f"actopo run failed (status {rc}):\n{text}"
    rows = (pl.read_parquet(tmp / "out" / "summary" / "*.parquet")
            .filter((pl.col("variant") == "clean") & (pl.col("scope") == "network"))
            .sort("index"))
    return rows, None


def check_spec(spec, bin_path, images):
    dataset_net_act = spec.stem.split("-")
    net, act, dataset = dataset_net_act
    if spec.read_text() != paper.spec_text(dataset, net, act):
        return f"{spec.name}: differs from what scripts/train_paper_nets.py writes; rerun it"
    weights = spec.with_suffix(".safetensors")
    if not weights.exists():
        return f"{spec.name}: no {weights.name}; run scripts/train_paper_nets.py --dataset {dataset} --net {net} --act {act}"
    want, labels = torch_predictions(dataset, net, act, weights, images)
    with tempfile.TemporaryDirectory(prefix="paper-nets-") as tmp:
        rows, error = actopo_predictions(bin_path, spec, test_shard(paper.DATASETS[dataset]), images, Path(tmp))
    if error:
        return f"{spec.name}: {error}"
    if rows["index"].to_list() != list(range(images)):
        return f"{spec.name}: actopo wrote indices {rows['index'].to_list()[:5]}..., expected 0..{images - 1}"
    got = rows["pred"].to_list()
    wrong = [i for i in range(images) if got[i] != want[i]]
    if wrong:
        return f"{spec.name}: pred differs from PyTorch's argmax on images {wrong} (actopo {[got[i] for i in wrong]}, PyTorch {[want[i] for i in wrong]})"
    if rows["label"].to_list() != labels:
        return f"{spec.name}: labels differ from the IDX labels"
    agree = sum(p == t for p, t in zip(want, labels))
    print(f"ok  {spec.stem}: pred = PyTorch argmax on {images}/{images} images ({agree} correct)")
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "actopo"))
    ap.add_argument("--images", type=int, default=64)
    args = ap.parse_args()
    if not Path(args.bin).exists():
        sys.exit(f"paper_nets_check: no actopo binary at {args.bin}; run cargo build --release or give --bin")
    torch.set_num_threads(1)
    specs = sorted(paper.OUT.glob("*.toml"))
    expected = {f"{paper.name_of(d, n, a)}.toml" for d in paper.DATASETS for n in paper.NETS for a in paper.ACTIVATIONS}
    failures = [f"missing spec models/paper/{name}" for name in sorted(expected - {s.name for s in specs})]
    failures += [f"unexpected spec models/paper/{s.name}" for s in specs if s.name not in expected]
    checked = 0
    for spec in specs:
        if spec.name not in expected:
            continue
        dataset = spec.stem.split("-")[2]
        if not installed(dataset):
            print(f"skip {spec.stem}: {dataset} not installed ({paper.DATASET_SETUP[dataset]})")
            continue
        error = check_spec(spec, Path(args.bin), args.images)
        checked += 1
        if error:
            failures.append(error)
            print(f"FAIL {error}")
    print(f"paper_nets_check: {checked} nets checked, {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

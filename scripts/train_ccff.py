"""Train the paper's CCFF net on Fashion-MNIST's training split and save it as an actopo model.

CCFF: conv 1->3 k5, ReLU, conv 3->3 k3, ReLU, flatten, linear 1452->256, ReLU, linear 256->10, no
bias (Gebhart et al. 2019). Inputs are raw pixels in [0, 1]. Writes models/ccff.toml and
models/ccff.safetensors (nn.Sequential state-dict names, so the spec needs no layer names), and
prints the test accuracy PyTorch gets.

--normalise trains on (pixel - MEAN) / STD instead (Fashion-MNIST's training-set mean and std),
as most published models are, and writes NAME.toml and NAME.safetensors (default name
ccff-normalised); a config runs it with data.mean = [MEAN], data.std = [STD]. Such a net's
activations are spread differently, which changes how fast the persistence passes are
(scripts/bench.py times both).

Usage: python scripts/train_ccff.py [--epochs 3] [--out models] [--normalise [--name NAME]]
"""

import argparse
import gzip
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

DATA = Path("/usr/share/datasets/fashion-mnist")
# Fashion-MNIST's training-split pixel mean and std (in [0, 1]), for --normalise.
MEAN, STD = 0.2860, 0.3530

SPEC = """format_version = 1
name = "ccff"
input_shape = [1, 28, 28]
weights = "ccff.safetensors"

[[layers]]
op = "conv2d"
out_channels = 3
kernel_size = 5
bias = false

[[layers]]
op = "relu"

[[layers]]
op = "conv2d"
out_channels = 3
kernel_size = 3
bias = false

[[layers]]
op = "relu"

[[layers]]
op = "flatten"

[[layers]]
op = "linear"
out_features = 256
bias = false

[[layers]]
op = "relu"

[[layers]]
op = "linear"
out_features = 10
bias = false
"""


def ccff():
    return nn.Sequential(
        nn.Conv2d(1, 3, 5, bias=False), nn.ReLU(),
        nn.Conv2d(3, 3, 3, bias=False), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(1452, 256, bias=False), nn.ReLU(),
        nn.Linear(256, 10, bias=False),
    )


def read_idx(path):
    """An IDX file's bytes: `path` + ".gz" when that exists, else `path` as is (raw)."""
    gz = path.with_name(path.name + ".gz")
    return gzip.open(gz, "rb").read() if gz.exists() else path.read_bytes()


def load(split, data=DATA):
    images = read_idx(Path(data) / f"{split}-images-idx3-ubyte")
    labels = read_idx(Path(data) / f"{split}-labels-idx1-ubyte")
    x = np.frombuffer(images, dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28).astype(np.float32) / 255.0
    y = np.frombuffer(labels, dtype=np.uint8, offset=8).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
    return (pred == y).float().mean().item(), pred


def train(model, train_split, test_split, epochs, lr, optimizer=torch.optim.Adam, batch_size=128):
    """`optimizer` (Adam) on cross-entropy, batches of `batch_size`; prints the test accuracy after
    each epoch."""
    (xtr, ytr), (xte, yte) = train_split, test_split
    opt = optimizer(model.parameters(), lr=lr)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad()
            F.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
            opt.step()
        acc, _ = accuracy(model, xte, yte)
        print(f"epoch {epoch + 1}: test accuracy {acc:.4f}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default="models")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--normalise", action="store_true", help=f"train on (x - {MEAN}) / {STD}")
    ap.add_argument("--name", help="file names (default ccff, or ccff-normalised)")
    args = ap.parse_args()
    name = args.name or ("ccff-normalised" if args.normalise else "ccff")
    torch.manual_seed(args.seed)
    xtr, ytr = load("train")
    xte, yte = load("t10k")
    if args.normalise:
        xtr, xte = (xtr - MEAN) / STD, (xte - MEAN) / STD
    model = ccff()
    train(model, (xtr, ytr), (xte, yte), args.epochs, lr=1e-3)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = SPEC.replace('name = "ccff"', f'name = "{name}"').replace("ccff.safetensors", f"{name}.safetensors")
    (out / f"{name}.toml").write_text(spec)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / f"{name}.safetensors"))
    print(f"saved {out / f'{name}.toml'} and {out / f'{name}.safetensors'}")


if __name__ == "__main__":
    main()

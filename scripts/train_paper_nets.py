"""Train the paper's networks (Gebhart, Schrater and Hylton 2019) on MNIST and Fashion-MNIST and save
each as an actopo model under models/paper/.

Networks (sizes from the reference code, tgebhart/pt_activation, pt_activation/models/), no biases:
  ccff: conv 1->3 k5, act, conv 3->3 k3, act, flatten, linear 1452->256, act, linear 256->10
  cff:  conv 1->5 k5, act, flatten, linear 2880->50, act, linear 50->10
  fff:  flatten, linear 784->256, act, linear 256->50, act, linear 50->10
with act = ReLU or sigmoid. Inputs are raw pixels in [0, 1]. Batches of 64, 10 epochs, seed 1, as
the reference code (each net seeded on its own, so the order of training does not matter). ReLU
nets: SGD without momentum, lr 0.01, as the reference code. Sigmoid nets: Adam, lr 0.001, because
with the reference's SGD the sigmoid CCFF stayed at chance (0.10 to 0.11 test accuracy on MNIST
after each of 7 epochs, docs/paper-networks.md).

For each (dataset, net, act), NAME = NET-ACT-DATASET, it writes models/paper/NAME.toml (format 1,
committed), NAME.safetensors (nn.Sequential state-dict names), NAME.reference.safetensors (the
first 8 test images and PyTorch's outputs, for `actopo validate`) and NAME.train.json (test
accuracy, epochs, seconds). Nets whose weights exist are skipped (their spec is still rewritten).

Usage:
  python scripts/train_paper_nets.py --all
  python scripts/train_paper_nets.py --dataset fashion --net cff --act sigmoid
  python scripts/train_paper_nets.py --dataset mnist --net fff          (both activations)
MNIST comes from scripts/setup_mnist.sh (data/mnist/); Fashion-MNIST from Debian's
dataset-fashion-mnist (/usr/share/datasets/fashion-mnist/).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_ccff import accuracy, load, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "models" / "paper"
DATASETS = {
    "mnist": ROOT / "data" / "mnist",
    "fashion": Path("/usr/share/datasets/fashion-mnist"),
}
DATASET_SETUP = {
    "mnist": "run scripts/setup_mnist.sh",
    "fashion": "run scripts/setup.sh (Debian package dataset-fashion-mnist)",
}
ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid}
# Each net as ("conv", out_channels, kernel) / ("linear", out_features) / ("act",) / ("flatten",).
NETS = {
    "ccff": [("conv", 3, 5), ("act",), ("conv", 3, 3), ("act",), ("flatten",),
             ("linear", 256), ("act",), ("linear", 10)],
    "cff": [("conv", 5, 5), ("act",), ("flatten",), ("linear", 50), ("act",), ("linear", 10)],
    "fff": [("flatten",), ("linear", 256), ("act",), ("linear", 50), ("act",), ("linear", 10)],
}
INPUT_SHAPE = (1, 28, 28)
BATCH, EPOCHS, SEED = 64, 10, 1
# activation -> (optimiser name, class, learning rate)
OPTIMISERS = {"relu": ("sgd", torch.optim.SGD, 0.01), "sigmoid": ("adam", torch.optim.Adam, 0.001)}
REFERENCE_IMAGES = 8


def shown(path):
    """`path` relative to the source tree when it lies in it (shorter messages)."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def name_of(dataset, net, act):
    return f"{net}-{act}-{dataset}"


def build(net, act):
    """The PyTorch module of one paper net (nn.Sequential, so state-dict names are "0.weight", ...)."""
    modules, channels, features = [], INPUT_SHAPE[0], None
    side = INPUT_SHAPE[1]
    for layer in NETS[net]:
        if layer[0] == "conv":
            modules.append(nn.Conv2d(channels, layer[1], layer[2], bias=False))
            channels, side = layer[1], side - layer[2] + 1
        elif layer[0] == "flatten":
            modules.append(nn.Flatten())
            features = channels * side * side
        elif layer[0] == "linear":
            modules.append(nn.Linear(features, layer[1], bias=False))
            features = layer[1]
        else:
            modules.append(ACTIVATIONS[act]())
    return nn.Sequential(*modules)


def spec_text(dataset, net, act):
    """The format-1 spec; layer names default to positions, which match nn.Sequential's."""
    name = name_of(dataset, net, act)
    lines = [f"# The paper's {net.upper()} net with {act}, trained on {dataset} by",
             "# scripts/train_paper_nets.py (docs/paper-networks.md). No biases, as in the reference code.",
             "format_version = 1", f'name = "{name}"', "input_shape = [1, 28, 28]",
             f'weights = "{name}.safetensors"']
    for layer in NETS[net]:
        lines += ["", "[[layers]]"]
        if layer[0] == "conv":
            lines += ['op = "conv2d"', f"out_channels = {layer[1]}", f"kernel_size = {layer[2]}",
                      "bias = false"]
        elif layer[0] == "linear":
            lines += ['op = "linear"', f"out_features = {layer[1]}", "bias = false"]
        else:
            lines.append(f'op = "{act if layer[0] == "act" else "flatten"}"')
    return "\n".join(lines) + "\n"


def write_atomic(path, write):
    """Writes via a temporary file beside `path`, so a killed run leaves no half-written file."""
    tmp = path.with_name(path.name + ".partial")
    write(tmp)
    os.replace(tmp, path)


def data_folder(dataset):
    folder = DATASETS[dataset]
    images = folder / "t10k-images-idx3-ubyte"
    if not (images.exists() or images.with_name(images.name + ".gz").exists()):
        sys.exit(f"train_paper_nets: {dataset}: no {images}[.gz]; {DATASET_SETUP[dataset]}")
    return folder


def train_one(dataset, net, act, splits, epochs):
    name = name_of(dataset, net, act)
    spec = OUT / f"{name}.toml"
    write_atomic(spec, lambda p: p.write_text(spec_text(dataset, net, act)))
    weights = OUT / f"{name}.safetensors"
    if weights.exists():
        print(f"{name}: {shown(weights)} exists, skipped")
        return None
    (xtr, ytr), (xte, yte) = splits
    torch.manual_seed(SEED)
    model = build(net, act)
    opt_name, optimizer, lr = OPTIMISERS[act]
    print(f"{name}: training ({epochs} epochs, {opt_name} lr {lr}, batch {BATCH}, seed {SEED})", flush=True)
    start = time.perf_counter()
    train(model, (xtr, ytr), (xte, yte), epochs, lr=lr, optimizer=optimizer, batch_size=BATCH)
    seconds = time.perf_counter() - start
    acc, _ = accuracy(model, xte, yte)
    model.eval()
    with torch.no_grad():
        reference = {"input": xte[:REFERENCE_IMAGES].contiguous(),
                     "output": model(xte[:REFERENCE_IMAGES]).contiguous()}
    write_atomic(OUT / f"{name}.reference.safetensors",
                 lambda p: save_file(reference, str(p), metadata={"model": name, "torch": torch.__version__}))
    log = {"name": name, "dataset": dataset, "net": net, "activation": act, "test_accuracy": acc,
           "epochs": epochs, "optimizer": opt_name, "lr": lr, "batch_size": BATCH, "seed": SEED,
           "train_seconds": round(seconds, 1), "threads": torch.get_num_threads(), "torch": torch.__version__}
    write_atomic(OUT / f"{name}.train.json", lambda p: p.write_text(json.dumps(log, indent=1) + "\n"))
    # Weights last: their presence means the net is done.
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    write_atomic(weights, lambda p: save_file(state, str(p)))
    print(f"{name}: test accuracy {acc:.4f} (PyTorch), {seconds:.0f} s; saved {shown(weights)}")
    return log


def selection(args):
    if args.all:
        return list(DATASETS), list(NETS), list(ACTIVATIONS)
    if not args.dataset:
        sys.exit("train_paper_nets: give --dataset (and optionally --net, --act), or --all")
    return ([args.dataset], [args.net] if args.net else list(NETS),
            [args.act] if args.act else list(ACTIVATIONS))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=list(DATASETS))
    ap.add_argument("--net", choices=list(NETS))
    ap.add_argument("--act", choices=list(ACTIVATIONS))
    ap.add_argument("--all", action="store_true", help="every dataset, net and activation")
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1: these nets are small, and more threads spin when cores are busy)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    datasets, nets, acts = selection(args)
    OUT.mkdir(parents=True, exist_ok=True)
    for dataset in datasets:
        todo = [(n, a) for n in nets for a in acts]
        missing = [(n, a) for n, a in todo if not (OUT / f"{name_of(dataset, n, a)}.safetensors").exists()]
        splits = None
        if missing:
            folder = data_folder(dataset)
            splits = (load("train", folder), load("t10k", folder))
        for net, act in todo:
            train_one(dataset, net, act, splits, args.epochs)


if __name__ == "__main__":
    main()

"""Summarise the demo's output with Polars and compare its predictions with PyTorch's.

Prints accuracy and mean H0 total persistence by class from out/fashion-mnist/summary/*.parquet, and
checks, sample by sample, that actopo's `pred` equals what PyTorch predicts with the same weights.
PyTorch runs on one thread, as actopo's CPU forward (src/forward/mod.rs); a prediction may still
differ on a near-tie, where the two logits are equal within f32 rounding (1e-5 of the logit + 5e-6
of the largest |logit|, see tests/python/tolerance.py): such samples are counted and printed, not
failed.
Exit code 1 if any other prediction differs or the row count is not what was expected.
"""

import argparse
import sys
from pathlib import Path

import polars as pl
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "tests" / "python"))
import tolerance as tol  # noqa: E402
from train_ccff import ccff, load  # noqa: E402

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="out/fashion-mnist")
    ap.add_argument("--weights", default="models/ccff.safetensors")
    ap.add_argument("--expect-rows", type=int, default=10000)
    args = ap.parse_args()

    summary = pl.read_parquet(f"{args.out}/summary/*.parquet")
    network = summary.filter(pl.col("scope") == "network")
    accuracy = network.select((pl.col("pred") == pl.col("label")).mean()).item()
    print(f"network summary rows: {network.height}")
    print(f"actopo accuracy: {accuracy:.4f}")
    by_class = (
        network.group_by("label")
        .agg(
            pl.len().alias("n"),
            (pl.col("pred") == pl.col("label")).mean().alias("accuracy"),
            pl.col("h0_total_persistence").mean().alias("mean_h0_total_persistence"),
            pl.col("n_edges").mean().alias("mean_edges"),
        )
        .sort("label")
        .with_columns(pl.col("label").map_elements(lambda i: CLASSES[i], return_dtype=pl.Utf8).alias("class"))
    )
    with pl.Config(tbl_rows=20, tbl_cols=10, float_precision=4):
        print(by_class.select("label", "class", "n", "accuracy", "mean_h0_total_persistence", "mean_edges"))

    model = ccff()
    model.load_state_dict(load_file(args.weights))
    model.eval()
    x, y = load("t10k")
    torch.set_num_threads(1)
    with torch.no_grad():
        logits = torch.cat([model(x[i:i + 1000]) for i in range(0, len(x), 1000)])
    pred = logits.argmax(1)
    torch_acc = (pred == y).float().mean().item()
    print(f"PyTorch accuracy (same weights, same images): {torch_acc:.4f}")
    ours = network.sort("index")["pred"].to_list()
    differ = [i for i, p in enumerate(ours) if p != int(pred[i])]
    disagree = sum(not tol.argmax_agrees(ours[i], logits[i]) for i in differ)
    print(f"samples where actopo's prediction differs from PyTorch's: {disagree}"
          f" (and {len(differ) - disagree} near-ties of logits within f32 rounding)")
    ok = network.height == args.expect_rows and disagree == 0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

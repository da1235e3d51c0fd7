"""Predict attacked vs clean from `actopo features`, with Polars and scikit-learn (cross-validated).

    actopo run config/fashion-mnist-attacks.toml --set data.limit=500 \
        --set 'attacks=[{kind="fgsm", eps=0.1}]' --set 'output.dir="out/fgsm"'
    actopo features out/fgsm
    python scripts/features_example.py out/fgsm

Each (image, variant) of the `network` scope is one example: its Betti curve, landscape,
silhouette, persistence image and scalars side by side; the target is variant != clean. The folds
are grouped by image, so an image's clean and attacked graphs never sit on both sides of a split.
"""

import argparse
import sys

import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

VECTORS = ["betti_curve", "landscape", "silhouette", "persistence_image"]
SCALARS = ["entropy", "total_persistence_1", "total_persistence_2", "total_persistence_inf"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output_dir")
    ap.add_argument("--scope", default="network")
    args = ap.parse_args()

    df = pl.read_parquet(f"{args.output_dir}/features/*.parquet").filter(pl.col("scope") == args.scope)
    X = np.hstack([np.stack(df[c].to_numpy()) for c in VECTORS] + [df.select(SCALARS).to_numpy()])
    y = (df["variant"] != "clean").to_numpy()
    groups = df["index"].to_numpy()

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    scores = cross_val_score(model, X, y, groups=groups, cv=GroupKFold(n_splits=5), scoring="accuracy")
    print(f"{len(df)} graphs ({y.sum()} attacked), {X.shape[1]} features, scope {args.scope}")
    print(f"attacked vs clean, 5-fold accuracy grouped by image: {scores.mean():.3f} +- {scores.std():.3f}"
          f" (chance {max(y.mean(), 1 - y.mean()):.3f})")


if __name__ == "__main__":
    sys.exit(main())

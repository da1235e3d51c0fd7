"""The paper's subgraph comparison, notebook style, in plain Polars over actopo's Parquet outputs.

Gebhart et al. (2019) ask whether an adversarial input's most persistent structure (the killing
edges of its most persistent H0 pairs: actopo's `subgraphs/` table) stays with its true class or
moves to the class it is misclassified as. This script rebuilds that comparison from the files,
step by step, so you can adapt it: class representatives, overlaps, nearest-representative
("subgraph") predictions, recovery vs retention per variant. With --check it also compares its
numbers with `actopo analyze subgraphs` (analysis/subgraph_variants.parquet): two independent
implementations of the same definitions. Both read the same files, so counts (n) must be equal and
rates and mean overlaps, f64 means of the same ratios summed in a different order, equal within
1e-9 absolute (the order changes them by about 1e-16 times the number of samples).

With --fit FIT_DIR the class representatives come from FIT_DIR's clean subgraphs (e.g. a run over
the training split) and OUT_DIR's samples are scored against them, as `actopo analyze subgraphs
OUT_DIR --fit FIT_DIR` does; --check then also checks that actopo recorded that fit folder
(`actopo.fit` metadata; `in-sample` without --fit).

Usage: python scripts/paper_comparison.py OUT_DIR [--fit FIT_DIR] [--min-fraction 0.5] [--scope network] [--check]
"""

import argparse
import os
import sys

import polars as pl
import pyarrow.parquet as pq

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--min-fraction", type=float, default=0.5)
ap.add_argument("--scope", default="network")
ap.add_argument("--fit", help="fit the representatives on this run's output folder (default: OUT_DIR itself)")
ap.add_argument("--check", action="store_true")
args = ap.parse_args()
keys = ["shard", "index"]

# 1. Each (sample, variant)'s subgraph S: a set of (src, dst) unit ids.
def subgraphs(out):
    return (
        pl.read_parquet(f"{out}/subgraphs/*.parquet")
        .filter(pl.col("scope") == args.scope)
        .select(*keys, "variant", "src", "dst")
        .unique()
    )


def outcomes(out):
    return (
        pl.read_parquet(f"{out}/summary/*.parquet")
        .filter(pl.col("scope") == "network")
        .select(*keys, "variant", "label", "pred")
    )


def clean_right_of(outcome):
    return outcome.filter((pl.col("variant") == "clean") & (pl.col("label") == pl.col("pred"))).select(*keys, "label")


S = subgraphs(args.out)
outcome = outcomes(args.out)
clean_right = clean_right_of(outcome)

# 2. Class representatives R_c: edges in >= min_fraction of the clean subgraphs of samples
#    labelled c and predicted c, in the fit run (OUT_DIR itself unless --fit).
fit_dir = args.fit or args.out
fit_S = subgraphs(fit_dir) if args.fit else S
fit_clean_right = clean_right_of(outcomes(fit_dir)) if args.fit else clean_right
print("fit:", f"representatives fitted on {args.fit}" if args.fit else "in-sample")
support = fit_clean_right.group_by("label").agg(pl.len().alias("support"))
R = (
    fit_S.filter(pl.col("variant") == "clean")
    .join(fit_clean_right, on=keys)
    .group_by("label", "src", "dst")
    .agg(pl.len().alias("count"))
    .join(support, on="label")
    .with_columns((pl.col("count") / pl.col("support")).alias("fraction"))
    .filter(pl.col("fraction") >= args.min_fraction)
    .rename({"label": "class"})
)
R_size = support.rename({"label": "class"}).join(R.group_by("class").agg(pl.len().alias("r_size")), on="class", how="left").fill_null(0)
print("representative sizes:", dict(R_size.sort("class").select("class", "r_size").iter_rows()))

# 3. |S ∩ R_c| for every (sample, variant, class), with |S| and |R_c|, then overlap and Jaccard.
S_size = S.group_by(*keys, "variant").agg(pl.len().alias("s_size"))
inter = S.join(R.select("class", "src", "dst"), on=["src", "dst"]).group_by(*keys, "variant", "class").agg(pl.len().alias("inter"))
pairs = (
    S_size.join(R_size.select("class", "r_size"), how="cross")
    .join(inter, on=[*keys, "variant", "class"], how="left")
    .fill_null(0)
    .with_columns(
        (pl.col("inter") / pl.col("s_size")).alias("overlap"),
        pl.when(pl.col("s_size") + pl.col("r_size") - pl.col("inter") > 0)
        .then(pl.col("inter") / (pl.col("s_size") + pl.col("r_size") - pl.col("inter")))
        .otherwise(0.0)
        .alias("jaccard"),
    )
)

# 4. The subgraph prediction: the class whose representative has the largest Jaccard (ties: smaller class).
nearest = (
    pairs.sort("jaccard", "class", descending=[True, False])
    .group_by(*keys, "variant", maintain_order=True)
    .first()
    .select(*keys, "variant", pl.col("class").alias("subgraph_pred"))
)
rows = (
    outcome.join(S_size, on=[*keys, "variant"])
    .join(nearest, on=[*keys, "variant"])
    .join(pairs.select(*keys, "variant", pl.col("class").alias("label"), pl.col("overlap").alias("overlap_true")), on=[*keys, "variant", "label"], how="left")
    .join(pairs.select(*keys, "variant", pl.col("class").alias("pred"), pl.col("overlap").alias("overlap_pred")), on=[*keys, "variant", "pred"], how="left")
)

# 5. Per variant, over samples the model gets right when clean and, for perturbed variants, whose
#    prediction the perturbation changed: recovery (subgraph says the true class) vs retention
#    (subgraph says the adversarial class), and the mean overlaps.
counted = rows.join(clean_right.select(keys), on=keys).filter((pl.col("variant") == "clean") | (pl.col("label") != pl.col("pred")))
table = counted.group_by("variant", maintain_order=True).agg(
    pl.len().alias("n"),
    (pl.col("subgraph_pred") == pl.col("label")).mean().alias("recovery_rate"),
    (pl.col("subgraph_pred") == pl.col("pred")).mean().alias("retention_rate"),
    pl.col("overlap_true").mean().alias("mean_overlap_true"),
    pl.col("overlap_pred").mean().alias("mean_overlap_pred"),
)
with pl.Config(tbl_rows=50, float_precision=3, tbl_width_chars=120):
    print(table)

print(
    "\nReading: for adversarial variants, recovery > retention and overlap_true > overlap_pred mean the\n"
    "perturbed input's most persistent structure still looks like its true class (the paper's finding)."
)

if args.check:
    # a variant with no counted sample (n = 0, e.g. noise that flipped nothing) has no group above
    rust = pl.read_parquet(f"{args.out}/analysis/subgraph_variants.parquet").filter(pl.col("n") > 0)
    both = table.join(rust, on="variant", suffix="_rust")
    bad = []
    if both.filter(pl.col("n") != pl.col("n_rust")).height:
        bad.append("n differs")
    for col in ["recovery_rate", "retention_rate", "mean_overlap_true", "mean_overlap_pred"]:
        diff = both.select((pl.col(col).cast(pl.Float64) - pl.col(f"{col}_rust").cast(pl.Float64)).abs().max()).item()
        if diff is None or diff > 1e-9:
            bad.append(f"{col} differs by {diff}")
    recorded = (pq.read_metadata(f"{args.out}/analysis/subgraph_variants.parquet").metadata or {}).get(b"actopo.fit", b"").decode()
    expected = os.path.realpath(args.fit) if args.fit and os.path.realpath(args.fit) != os.path.realpath(args.out) else "in-sample"
    if recorded != expected:
        bad.append(f"actopo.fit is {recorded!r}, expected {expected!r}")
    if both.height != rust.height or table.height != rust.height or bad:
        print("paper_comparison: MISMATCH with actopo analyze:", bad or "variant sets differ")
        print("paper_comparison: 0 passed, 1 failed")
        sys.exit(1)
    print(f"paper_comparison: {both.height} passed, 0 failed (Polars == actopo analyze subgraphs)")

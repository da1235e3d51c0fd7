"""Per-attack table from a run with [[attacks]]: success rate, mean perturbation size, and mean H0
total persistence of the same samples clean vs perturbed (network scope).

Usage: python scripts/attack_report.py out/fashion-mnist-attacks
"""

import sys

import polars as pl

out = sys.argv[1] if len(sys.argv) > 1 else "out/fashion-mnist-attacks"
s = pl.read_parquet(f"{out}/summary/*.parquet").filter(pl.col("scope") == "network")
clean = s.filter(pl.col("variant") == "clean").select("shard", "index", pl.col("h0_total_persistence").alias("clean_h0_tp"))
table = (
    s.filter(pl.col("variant") != "clean")
    .join(clean, on=["shard", "index"])
    .group_by("variant", maintain_order=True)
    .agg(
        pl.len().alias("n"),
        pl.col("attack_success").mean().alias("success_rate"),
        pl.col("perturbation_l2").mean().alias("mean_l2"),
        pl.col("perturbation_linf").mean().alias("mean_linf"),
        pl.col("clean_h0_tp").mean().alias("h0_tp_clean"),
        pl.col("h0_total_persistence").mean().alias("h0_tp_perturbed"),
    )
)
with pl.Config(tbl_rows=50, tbl_cols=10, float_precision=3, tbl_width_chars=140):
    print(table)

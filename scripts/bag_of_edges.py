"""The reference code's own test of the paper's claim: a linear SVC on bag-of-edges vectors.

For each (sample, variant), its bag of edges is the set of killing edges (src, dst unit ids, from
the `subgraphs/` table, scope `network`) of its first `take` persistent H0 pairs (`rank < take`;
`rank` orders the pairs by persistence, most persistent first), as a sparse binary vector over
the edges seen in the fit run's clean subgraphs (an edge never seen there carries no weight in a
linear model fitted on them, so it is dropped).

1. Cross-validation: `--folds`-fold stratified (shuffled, seed 0) accuracy of a LinearSVC trained
   on the clean inputs of FIT_DIR (the training split) against their true labels.
2. Transfer: the SVC fitted on all those clean inputs predicts every (sample, variant) of
   TEST_DIR. Per variant we report
   - `accuracy`: SVC prediction = true label, over all labelled samples of the variant;
   - over the *successful* perturbations (the model was right on the clean input and is wrong on
     the perturbed one: clean pred = label and variant pred != label, the same samples
     `actopo analyze subgraphs` counts): `recovery` (SVC prediction = true label) and `retention`
     (SVC prediction = the perturbed input's model prediction `pred`).

Usage: python scripts/bag_of_edges.py FIT_DIR TEST_DIR [--takes 3,15,50] [--folds 10] [--json OUT]
"""

import argparse
import json
import sys

import numpy as np
import polars as pl
import scipy.sparse as sp
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.svm import LinearSVC

KEYS = ["shard", "index", "variant"]


def edges(out, take, clean_only):
    """(shard, index, variant, edge) rows of the first `take` pairs, network scope."""
    frame = pl.scan_parquet(f"{out}/subgraphs/*.parquet").filter(
        (pl.col("scope") == "network") & (pl.col("rank") < take)
    )
    if clean_only:
        frame = frame.filter(pl.col("variant") == "clean")
    return frame.select(*KEYS, "src", "dst").unique().collect()


def outcomes(out):
    return (
        pl.read_parquet(f"{out}/summary/*.parquet")
        .filter(pl.col("scope") == "network")
        .select(*KEYS, "label", "pred")
    )


def design(rows, samples, vocabulary):
    """Binary CSR matrix, one row per `samples` row (in its order), one column per vocabulary edge."""
    ids = samples.select(KEYS).with_row_index("row")
    hits = rows.join(ids, on=KEYS).join(vocabulary, on=["src", "dst"])
    data = np.ones(hits.height, dtype=np.float64)
    matrix = sp.csr_matrix(
        (data, (hits["row"].to_numpy(), hits["col"].to_numpy())), shape=(samples.height, vocabulary.height)
    )
    matrix.data[:] = 1.0  # duplicates cannot occur (rows are unique), but keep it binary regardless
    return matrix


def svc():
    return LinearSVC(C=1.0, max_iter=20000, random_state=0)


def evaluate_take(fit_dir, test_dir, take, folds):
    fit_rows = edges(fit_dir, take, clean_only=True)
    fit_samples = outcomes(fit_dir).filter((pl.col("variant") == "clean") & pl.col("label").is_not_null())
    vocabulary = fit_rows.select("src", "dst").unique().sort("src", "dst").with_row_index("col")
    x_fit = design(fit_rows, fit_samples, vocabulary)
    y_fit = fit_samples["label"].to_numpy()
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    cv = cross_val_score(svc(), x_fit, y_fit, cv=split)
    model = svc().fit(x_fit, y_fit)

    test_samples = outcomes(test_dir).filter(pl.col("label").is_not_null())
    x_test = design(edges(test_dir, take, clean_only=False), test_samples, vocabulary)
    scored = test_samples.with_columns(pl.Series("svc_pred", model.predict(x_test)))
    clean = scored.filter(pl.col("variant") == "clean").select("shard", "index", pl.col("pred").alias("clean_pred"))
    scored = scored.join(clean, on=["shard", "index"], how="left")
    return {
        "take": take,
        "vocabulary": vocabulary.height,
        "fit_samples": fit_samples.height,
        "cv_folds": folds,
        "cv_accuracy_mean": float(cv.mean()),
        "cv_accuracy_std": float(cv.std()),
        "variants": per_variant(scored),
    }


def per_variant(scored):
    """Accuracy over all samples; recovery/retention over successful perturbations."""
    successful = (pl.col("clean_pred") == pl.col("label")) & (pl.col("pred") != pl.col("label"))
    table = (
        scored.group_by("variant", maintain_order=True)
        .agg(
            pl.len().alias("n_all"),
            (pl.col("svc_pred") == pl.col("label")).mean().alias("accuracy"),
            successful.sum().alias("n_successful"),
            (pl.col("svc_pred") == pl.col("label")).filter(successful).mean().alias("recovery"),
            (pl.col("svc_pred") == pl.col("pred")).filter(successful).mean().alias("retention"),
        )
    )
    return table.to_dicts()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fit_dir", help="run over clean training images (output.subgraphs = true)")
    ap.add_argument("test_dir", help="run over test images with attacks (same graph settings)")
    ap.add_argument("--takes", default="3,15,50", help="comma-separated numbers of generators per bag")
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    results = [evaluate_take(args.fit_dir, args.test_dir, int(t), args.folds) for t in args.takes.split(",")]
    for r in results:
        print(
            f"take={r['take']}: {r['cv_folds']}-fold CV accuracy on {r['fit_samples']} clean fit inputs "
            f"{r['cv_accuracy_mean']:.3f} ± {r['cv_accuracy_std']:.3f} ({r['vocabulary']} edges)"
        )
        for v in r["variants"]:
            rec = "-" if v["recovery"] is None else f"{v['recovery']:.3f}"
            ret = "-" if v["retention"] is None else f"{v['retention']:.3f}"
            print(
                f"  {v['variant']:<32} acc {v['accuracy']:.3f} (n={v['n_all']})  "
                f"recovery {rec} retention {ret} (n_successful={v['n_successful']})"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

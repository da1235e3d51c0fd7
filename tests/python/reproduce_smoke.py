"""Smoke test of scripts/reproduce_paper.sh: the paper's experiment end to end on a few dozen images.

One setting (Fashion-MNIST, CCFF), 32 test images with PGD and its matched-noise control, 64
training images for the fit, the SVC with take = 3 and 3 folds. Checks that every output exists
and that the numbers are consistent with the run's own tables, recomputed here independently:
- actopo analyze subgraphs --fit against scripts/paper_comparison.py (run by the script with --check);
- the SVC's counts (inputs per variant, successful attacks) against the summary table;
- its bag-of-edges vectors against the subgraphs table read with pyarrow (rank < take);
- recovery + retention <= 1 (disjoint events, since a successful attack's pred != label), rates in [0, 1];
- the report: the hand-written introduction survives, the reference table, a section, the figure;
- percentile 90: either run (when the binary accepts graph.threshold) or reported as not run;
- the reference code's percentile 90 (graph.threshold.reference_percentile): run.
Takes well under 2 minutes on 2 CPU cores.

Usage: python tests/python/reproduce_smoke.py [--bin target/release/actopo]
"""

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import bag_of_edges  # noqa: E402
import reproduce_report  # noqa: E402

N_TEST, N_TRAIN, TAKE = 32, 64, 3
FAILURES = []


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what)
    if not condition:
        FAILURES.append(what)


def read(path_glob_dir, columns):
    table = pq.read_table(path_glob_dir, columns=columns)
    return table.to_pylist()


def check_svc(folder):
    svc = json.loads((folder / "svc.json").read_text())
    check([r["take"] for r in svc] == [TAKE], f"svc.json holds take {TAKE} only")
    result = svc[0]
    check(0.0 <= result["cv_accuracy_mean"] <= 1.0 and result["cv_folds"] == 3, "3-fold CV accuracy in [0, 1]")
    check(result["fit_samples"] == N_TRAIN, f"SVC fitted on {N_TRAIN} clean training inputs")
    summary = [r for r in read(str(folder / "test/summary"), ["index", "variant", "scope", "label", "pred"])
               if r["scope"] == "network"]
    clean_pred = {r["index"]: r["pred"] for r in summary if r["variant"] == "clean"}
    expected = defaultdict(lambda: [0, 0])
    for r in summary:
        expected[r["variant"]][0] += 1
        expected[r["variant"]][1] += clean_pred[r["index"]] == r["label"] and r["pred"] != r["label"]
    for v in result["variants"]:
        n_all, n_succ = expected[v["variant"]]
        check(v["n_all"] == n_all == N_TEST, f"{v['variant']}: SVC scored all {N_TEST} inputs")
        check(v["n_successful"] == n_succ, f"{v['variant']}: {n_succ} successful perturbations, as in the summary")
        rates = [x for x in (v["accuracy"], v["recovery"], v["retention"]) if x is not None]
        check(all(0.0 <= x <= 1.0 for x in rates), f"{v['variant']}: rates in [0, 1]")
        if v["recovery"] is not None:
            check(v["recovery"] + v["retention"] <= 1.0 + 1e-12, f"{v['variant']}: recovery + retention <= 1")
    pgd = next(v for v in result["variants"] if v["variant"] == "pgd-linf-0.1")
    check(pgd["n_successful"] > N_TEST // 2, "PGD eps 0.1 flips most inputs on CCFF")


def check_bags(folder):
    """bag_of_edges.design against the subgraphs table read with pyarrow, edge by edge."""
    rows = read(str(folder / "train/subgraphs"), ["index", "variant", "scope", "src", "dst", "rank"])
    truth = defaultdict(set)
    for r in rows:
        if r["scope"] == "network" and r["variant"] == "clean" and r["rank"] < TAKE:
            truth[r["index"]].add((r["src"], r["dst"]))
    fit_rows = bag_of_edges.edges(str(folder / "train"), TAKE, clean_only=True)
    samples = bag_of_edges.outcomes(str(folder / "train")).filter(pl.col("variant") == "clean")
    vocabulary = fit_rows.select("src", "dst").unique().sort("src", "dst").with_row_index("col")
    edge_of = {c: (s, d) for c, s, d in vocabulary.iter_rows()}
    matrix = bag_of_edges.design(fit_rows, samples, vocabulary)
    same = all(
        {edge_of[c] for c in matrix[i].indices} == truth[index]
        for i, index in enumerate(samples["index"].to_list())
    )
    check(same, f"bag-of-edges vectors = the rank < {TAKE} killing edges of each clean training input")
    check(all(len(truth[i]) >= 1 for i in samples["index"].to_list()), "every clean training input has a bag")


def check_report(doc, folder):
    text = doc.read_text()
    check(text.startswith("# Smoke intro\n"), "the hand-written introduction above the marker is kept")
    check(text.count(reproduce_report.GENERATED) == 1, "one generated-section marker")
    check("| SVC recovery on PGD, CCFF-RELU fashion-mnist | 0.80 |" in text, "reference figures beside ours")
    check("### fashion-mnist / ccff-relu / threshold none" in text, "a section for the threshold-0 setting")
    check("percentile 90" in text or "threshold 90" in text, "percentile 90 run or reported as not run")
    check("### fashion-mnist / ccff-relu / threshold reference 90" in text,
          "a section for the reference code's cuts (graph.threshold.reference_percentile = 90)")
    png = doc.parent / doc.stem / "overlap-fashion-mnist-ccff-relu-t0.png"
    check(png.exists() and Image.open(png).size[0] > 100, "overlap figure written")
    variants = read(str(folder / "test/analysis/subgraph_variants.parquet"), None)
    check([v["variant"] for v in variants] == ["clean", "pgd-linf-0.1", "matched_noise-pgd-linf-0.1"],
          "analyze subgraphs scored clean, PGD and its matched noise")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "target/release/actopo"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        doc = tmp / "reproduction.md"
        doc.write_text("# Smoke intro\n\nkept as written.\n\n" + reproduce_report.GENERATED + "\nold text\n")
        cmd = [str(ROOT / "scripts/reproduce_paper.sh"), "--test-limit", str(N_TEST), "--train-limit", str(N_TRAIN),
               "--attacks", "pgd", "--takes", str(TAKE), "--folds", "3", "--top-k", "50",
               "--out", str(tmp / "runs"), "--doc", str(doc), "--actopo", args.bin, "--device", "cpu"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        check(done.returncode == 0, "reproduce_paper.sh exits 0" + ("" if done.returncode == 0 else ":\n" + done.stderr))
        if done.returncode == 0:
            folder = tmp / "runs/fashion-mnist-ccff-relu-t0"
            for name in ["test/manifest.json", "train/manifest.json", "analyze_subgraphs.txt",
                         "analyze_uncertainty.txt", "svc.json", "test/analysis/uncertainty_counts.parquet"]:
                check((folder / name).exists(), f"{name} exists")
            check("passed, 0 failed" in (folder / "paper_comparison.txt").read_text(),
                  "analyze subgraphs --fit agrees with scripts/paper_comparison.py --check")
            check_svc(folder)
            check_bags(folder)
            check_report(doc, folder)
    print(f"reproduce_smoke: {'FAILED: ' + '; '.join(FAILURES) if FAILURES else 'all checks passed'}")
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()

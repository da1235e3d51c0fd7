"""`actopo features` against GUDHI's `representations` on the same diagrams and grids.

Makes a small real run (Fashion-MNIST test images, the CCFF demo model, the `network` and `layers`
scopes, clean + FGSM), runs `actopo features` on it, reads the features and the diagrams back with
pyarrow, recomputes every feature with GUDHI on the grids stored in the features metadata, prints
the largest difference per feature and fails above the stated tolerance. Also checks that
`--grid-from` reuses the grids exactly, that `--threads 1` gives the same bytes, and that the scalars
agree with the run's own summary table.

How the diagrams are handed to GUDHI: actopo's diagrams are superlevel (birth >= death, in edge
weights); a finite pair is the interval [death, birth]:
  - landscape, silhouette, persistence image, entropy: GUDHI gets the points (death, birth), i.e.
    the interval [death, birth] as a sublevel (birth', death') pair;
  - Betti curve: actopo counts a class at t when death < t <= birth (alive in the graph of the
    edges of weight >= t), and the essential classes when t <= birth. GUDHI's BettiCurve counts
    b' <= x < d'; fed the negated intervals [-birth, -death) (and [-birth, inf) for essential
    classes) and evaluated at x = -t, that is exactly actopo's count, so the counts must be equal;
  - total persistence p-norms: twice GUDHI's Wasserstein distance (order p, internal_p = inf) to
    the empty diagram for p = 1, 2 (each point is matched to the diagonal at distance
    lifetime / 2), and twice the bottleneck distance for p = inf.

Tolerances: Betti curves equal exactly (counts). Every other feature: |actopo - GUDHI| <= 1e-10 *
max(1, largest |value| of that feature over the run); both sides compute in float64 from the same
float32 diagram values, so the differences are summation-order rounding (measured ~1e-15).
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import gudhi
import gudhi.wasserstein
from gudhi.representations import BettiCurve, Entropy, Landscape, PersistenceImage, Silhouette

ROOT = Path(__file__).resolve().parents[2]
REL_TOL = 1e-10


def make_run(bin_path, out, limit):
    subprocess.run(
        [bin_path, "run", str(ROOT / "config/fashion-mnist.toml"),
         "--set", f"data.limit={limit}",
         "--set", 'graph.scopes=["network", "layers"]',
         "--set", "data.clip=[0.0, 1.0]",
         "--set", 'attacks=[{kind="fgsm", eps=0.1}]',
         "--set", f'output.dir="{out}"'],
        check=True, stdout=subprocess.DEVNULL)


def read_diagrams(run):
    """(shard, index, variant, scope) -> (finite pairs as [[death, birth]], essential births)."""
    t = pq.read_table(sorted((run / "diagrams").glob("*.parquet")))
    t = t.filter(pc.equal(t["dim"], 0)).to_pydict()
    out = {}
    for shard, index, variant, scope, birth, death in zip(
            t["shard"], t["index"], t["variant"], t["scope"], t["birth"], t["death"]):
        pairs, essential = out.setdefault((shard, index, variant, scope), ([], []))
        # pyarrow gives the float32 values as Python floats: exactly actopo's f64 conversion
        if death is None:
            essential.append(birth)
        else:
            pairs.append([death, birth])
    return {k: (np.array(p, dtype=np.float64).reshape(-1, 2), np.array(e, dtype=np.float64))
            for k, (p, e) in out.items()}


def read_features(run):
    files = sorted((run / "features").glob("*.parquet"))
    meta = json.loads(pq.read_metadata(files[0]).metadata[b"actopo.features"])
    return pq.read_table(files).to_pydict(), meta


def linspace(g):
    return np.linspace(g["min"], g["max"], g["n_bins"])


def gudhi_betti(pairs, essential, grid):
    """actopo's count at each t of `grid` (death < t <= birth), from GUDHI on negated values."""
    negated = np.concatenate([
        np.column_stack([-pairs[:, 1], -pairs[:, 0]]),
        np.column_stack([-essential, np.full(len(essential), np.inf)]),
    ]).reshape(-1, 2)
    xs = -grid[::-1]
    if len(np.unique(xs)) != len(xs):
        raise SystemExit("degenerate grid: GUDHI's predefined_grid must be strictly increasing")
    return BettiCurve(predefined_grid=xs).fit_transform([negated])[0][::-1].astype(float)


def sublevel_count(pairs, essential, grids):
    """The other endpoint convention (death <= t < birth), only to show the check can tell."""
    grid = linspace(grids["curve"])
    return BettiCurve(predefined_grid=grid).fit_transform(
        [np.concatenate([pairs, np.column_stack([essential, np.full(len(essential), np.inf)])])])[0]


def gudhi_features(pairs, essential, grids, meta):
    curve, image = grids["curve"], grids["image"]
    grid = linspace(curve)
    lo, hi = curve["min"], curve["max"]
    k, p, n = meta["landscape_levels"], meta["weight_power"], curve["n_bins"]
    out = {"betti_curve": gudhi_betti(pairs, essential, grid)}
    out["landscape"] = Landscape(num_landscapes=k, resolution=n, sample_range=[lo, hi]).fit_transform([pairs])[0]
    weight = lambda pt: (pt[1] - pt[0]) ** p if pt[1] > pt[0] else 0.0
    if sum(weight(pt) for pt in pairs) > 0:
        out["silhouette"] = Silhouette(weight=weight, resolution=n, sample_range=[lo, hi]).fit_transform([pairs])[0]
    else:
        out["silhouette"] = np.zeros(n)  # GUDHI divides 0 by 0 here; actopo documents zeros
    s, q = image["start"], image["persistence"]
    pi = PersistenceImage(bandwidth=image["sigma"], weight=lambda pt: pt[1] ** p if pt[1] > 0 else 0.0,
                          resolution=[s["n_bins"], q["n_bins"]],
                          im_range=[s["min"], s["max"], q["min"], q["max"]])
    out["persistence_image"] = pi.fit_transform([pairs])[0]
    positive = pairs[pairs[:, 1] > pairs[:, 0]]
    out["entropy"] = Entropy(mode="scalar").fit_transform([positive])[0][0] if len(positive) else 0.0
    empty = np.zeros((0, 2))
    for order in (1, 2):
        out[f"total_persistence_{order}"] = 2 * gudhi.wasserstein.wasserstein_distance(
            pairs, empty, order=order, internal_p=np.inf)
    out["total_persistence_inf"] = 2 * gudhi.bottleneck_distance(pairs, empty, 0.0)
    return out


FEATURES = ["betti_curve", "landscape", "silhouette", "persistence_image", "entropy",
            "total_persistence_1", "total_persistence_2", "total_persistence_inf"]


def compare(run):
    feats, meta = read_features(run)
    diagrams = read_diagrams(run)
    worst = {f: 0.0 for f in FEATURES}
    scale = {f: 0.0 for f in FEATURES}
    endpoint_sensitive = 0
    rows = len(feats["index"])
    for i in range(rows):
        key = (feats["shard"][i], feats["index"][i], feats["variant"][i], feats["scope"][i])
        pairs, essential = diagrams.get(key, (np.zeros((0, 2)), np.zeros(0)))
        ref = gudhi_features(pairs, essential, meta["scopes"][key[3]], meta)
        endpoint_sensitive += int(np.any(sublevel_count(pairs, essential, meta["scopes"][key[3]]) != ref["betti_curve"]))
        for f in FEATURES:
            ours, theirs = np.asarray(feats[f][i], dtype=float), np.asarray(ref[f], dtype=float)
            if ours.shape != theirs.shape:
                raise SystemExit(f"{f} of {key}: actopo has shape {ours.shape}, GUDHI {theirs.shape}")
            worst[f] = max(worst[f], float(np.max(np.abs(ours - theirs), initial=0.0)))
            scale[f] = max(scale[f], float(np.max(np.abs(theirs), initial=0.0)))
    print(f"{rows} rows, {len(meta['scopes'])} scopes ({', '.join(meta['scopes'])}); max |actopo - GUDHI| per feature:")
    failed = []
    for f in FEATURES:
        tol = 0.0 if f == "betti_curve" else REL_TOL * max(1.0, scale[f])
        print(f"  {f:24s} {worst[f]:.3e}  (largest |value| {scale[f]:.3e}, tolerance {tol:.1e})")
        if worst[f] > tol:
            failed.append(f)
    # the grid ends lie on births and deaths, so the endpoint convention is visible: counting
    # death <= t < birth instead must change some curves, or the Betti check could not tell them apart
    print(f"  rows whose Betti curve the [death, birth) convention would change: {endpoint_sensitive}")
    if endpoint_sensitive == 0:
        failed.append("betti_curve (endpoint convention not exercised)")
    if failed:
        raise SystemExit(f"features differ from GUDHI beyond tolerance: {failed}")
    return feats, meta


def check_summary(run, feats):
    """The scalars against the run's own summary table (written by `actopo run`, in f64)."""
    s = pq.read_table(sorted((run / "summary").glob("*.parquet"))).to_pydict()
    summary = {(s["shard"][i], s["index"][i], s["variant"][i], s["scope"][i]): i for i in range(len(s["index"]))}
    pairs = [("total_persistence_1", "h0_total_persistence"), ("total_persistence_inf", "h0_max_persistence"),
             ("entropy", "h0_entropy")]
    worst = {a: 0.0 for a, _ in pairs}
    for i in range(len(feats["index"])):
        j = summary[(feats["shard"][i], feats["index"][i], feats["variant"][i], feats["scope"][i])]
        for ours, theirs in pairs:
            d = abs(feats[ours][i] - s[theirs][j]) / max(1.0, abs(s[theirs][j]))
            worst[ours] = max(worst[ours], d)
    print("max relative |features - summary|: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
    if max(worst.values()) > 1e-9:
        raise SystemExit("features' scalars disagree with the summary table")


def check_grid_from_and_threads(bin_path, run, meta, scratch):
    """A second run reusing the first's grids gets them exactly; one thread writes the same bytes."""
    other = scratch / "other"
    subprocess.run([bin_path, "run", str(ROOT / "config/fashion-mnist.toml"), "--set", "data.limit=7",
                    "--set", 'graph.scopes=["network", "layers"]', "--set", f'output.dir="{other}"'],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([bin_path, "features", str(other), "--grid-from", str(run)], check=True, stdout=subprocess.DEVNULL)
    _, theirs = read_features(other)
    if theirs["scopes"] != meta["scopes"]:
        raise SystemExit("--grid-from did not reuse the grids exactly")
    compare(other)
    before = {f.name: f.read_bytes() for f in (run / "features").glob("*.parquet")}
    subprocess.run([bin_path, "features", str(run), "--threads", "1"], check=True, stdout=subprocess.DEVNULL)
    after = {f.name: f.read_bytes() for f in (run / "features").glob("*.parquet")}
    if before != after:
        raise SystemExit("--threads 1 wrote other bytes than the default thread count")
    print("--grid-from reuses the grids exactly; --threads 1 writes identical files")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=str(ROOT / "target/release/actopo"))
    ap.add_argument("--limit", type=int, default=50, help="images in the run")
    ap.add_argument("--run", type=Path, help="an existing run folder instead of a new one (it gets features/)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        run = args.run
        if run is None:
            run = scratch / "run"
            make_run(args.bin, run, args.limit)
        subprocess.run([args.bin, "features", str(run)], check=True, stdout=subprocess.DEVNULL)
        feats, meta = compare(run)
        check_summary(run, feats)
        check_grid_from_and_threads(args.bin, run, meta, scratch)
    print("features cross-check: OK")


if __name__ == "__main__":
    sys.exit(main())

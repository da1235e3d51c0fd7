"""How much the reference code's graph defects move the H0 diagrams (docs/reproduction.md).

The reference is tgebhart/pt_activation: `CCFF.compute_dynamic_filtration2` (pt_activation/models/
ccff.py) with `conv_layer_as_matrix`, `conv_filtration_fast2` and `linear_filtration_fast2`
(pt_activation/functions/filtration.py), persistence by Dionysus 2. This script ports its graph
construction to numpy with each defect switchable, on the real CCFF weights (models/ccff.safetensors)
and the first Fashion-MNIST test images, and compares each variant's H0 diagram with the corrected
graph's:
  1. conv1 units get two names: `(1, i // 3, i % 576)` where their input edges and the conv1 stage's
     vertices are added, `(1, c, j)` where their output edges are. The first names are isolated
     vertices (one essential class each) unless the input edges are in the graph; for i < 9 they
     coincide with a real unit's second name and hand it their value first.
  2. Dionysus keeps the first value appended for a vertex: a conv2 unit gets the heaviest edge of
     the first input channel that has one above the cut, not its heaviest edge; when that is lighter
     than one of its edges, the vertex enters after the edge.
  3. with `input_layer=True` the input -> conv1 edges attach to the first names (1.), so each conv1
     unit is split in two.
Dionysus is emulated: simplices sorted by value, heaviest first, vertices before edges at equal
values; H0 pairs by the standard column reduction, which for a graph is union-find where each
component is named by its earliest vertex in that order and an edge kills the later of the two names
(whatever their values: a vertex that enters after its edge gives a point with birth < death, which
Dionysus 2.0.10 and later report). The corrected graph (names fixed, each vertex at its heaviest kept
edge, no vertex without a kept edge) is checked against `actopo diagrams` on the same activations:
point counts exact, values within tests/python/tolerance.py's stated tolerance.

Usage: python scripts/reference_defects.py [--bin target/release/actopo] [--samples 20] [--percentiles 0,90]
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import gudhi
import numpy as np
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests/python"))
import tolerance as tol  # noqa: E402
from gudhi_crosscheck import fashion  # noqa: E402
from reference_threshold_check import capture, ccff, conv_products, reference_cuts  # noqa: E402

CONV1, CONV2 = (3, 24), (3, 22)  # (channels, side) of the conv1 and conv2 outputs


def key(layer, channel, index):
    """A reference vertex name (layer, channel, index) as one integer."""
    return np.asarray(layer, np.int64) * 10**9 + np.asarray(channel, np.int64) * 10**6 + np.asarray(index, np.int64)


class Graph:
    """Edges and vertex appends in the order the reference adds them."""

    def __init__(self):
        self.src, self.dst, self.w, self.vkeys, self.vvals = [], [], [], [], []

    def edges(self, src, dst, w):
        self.src.append(src), self.dst.append(dst), self.w.append(np.asarray(w, np.float64))

    def vertices(self, keys, values):
        self.vkeys.append(np.broadcast_to(keys, np.shape(values)).astype(np.int64))
        self.vvals.append(np.asarray(values, np.float64))

    def arrays(self):
        cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0)  # noqa: E731
        return cat(self.src).astype(np.int64), cat(self.dst).astype(np.int64), cat(self.w), \
            cat(self.vkeys).astype(np.int64), cat(self.vvals)


def conv1_names(i, fixed):
    """Stage 0's name for conv1 flat unit i: `(1, i // nlc, i % nls)` with nlc = 3 channels and
    nls = 576 positions (defect 1), or the name the conv2 stage uses."""
    channels, side = CONV1
    return key(1, i // side**2, i % side**2) if fixed else key(1, i // channels, i % side**2)


def build(acts, weights, p, fixed_names, input_layer):
    """compute_dynamic_filtration2's edges and vertex appends for one image."""
    h1, h2, h3 = acts["2"], acts["5"], acts["7"]
    y = (weights[3] @ h3).astype(np.float32)
    cuts = reference_cuts([h1.reshape(-1), h2, h3, y], weights, p)
    g = Graph()
    e1 = conv_products(weights[0], acts["0"])                 # [1728 conv1 units, 784 pixels]
    if input_layer:
        i, j = np.nonzero(e1 > cuts[0])
        g.edges(key(0, 0, j), conv1_names(i, fixed_names), e1[i, j])
        j = np.nonzero(e1.max(axis=0) > cuts[0])[0]
        g.vertices(key(0, 0, j), e1.max(axis=0)[j])
    if input_layer or not fixed_names:  # without the input, fixed names would give conv1 units no own value here
        i = np.nonzero(e1.max(axis=1) > cuts[0])[0]
        g.vertices(conv1_names(i, fixed_names), e1.max(axis=1)[i])
    e2 = conv_products(weights[1], h1)                        # [1452 conv2 units, 3 * 576]
    low = min(cuts[0], cuts[1])
    for c in range(CONV1[0]):                                 # one input channel at a time
        ec = e2[:, c * CONV1[1]**2:(c + 1) * CONV1[1]**2]
        i, j = np.nonzero(ec > cuts[1])
        g.edges(key(1, c, j), key(2, 0, i), ec[i, j])
        j = np.nonzero(ec.max(axis=0) > low)[0]
        g.vertices(key(1, c, j), ec.max(axis=0)[j])
        i = np.nonzero(ec.max(axis=1) > cuts[1])[0]
        g.vertices(key(2, 0, i), ec.max(axis=1)[i])
    e3 = np.absolute(weights[2] * h2).astype(np.float64)      # float32 products, as the reference
    i, j = np.nonzero(e3 > cuts[2])
    g.edges(key(2, 0, j), key(3, 0, i), e3[i, j])
    j = np.nonzero(e3.max(axis=0) > min(cuts[1], cuts[2]))[0]
    g.vertices(key(2, 0, j), e3.max(axis=0)[j])
    e4 = np.absolute(weights[3] * h3).astype(np.float64)
    i, j = np.nonzero(e4 > cuts[3])
    g.edges(key(3, 0, j), key(4, 0, i), e4[i, j])
    both = np.maximum(e4.max(axis=0), e3.max(axis=1))
    j = np.nonzero(both > min(cuts[2], cuts[3]))[0]
    g.vertices(key(3, 0, j), both[j])
    i = np.nonzero(e4.max(axis=1) > cuts[3])[0]
    g.vertices(key(4, 0, i), e4.max(axis=1)[i])
    return g.arrays()


def vertex_values(src, dst, w, vkeys, vvals, rule):
    """Each vertex's value: `first` (Dionysus: the first value appended), `max` (the largest
    appended), or `edges` (the heaviest kept incident edge; vertices without one dropped)."""
    if rule == "edges":
        names = np.unique(np.concatenate([src, dst]))
        value = np.full(len(names), -np.inf)
        np.maximum.at(value, np.searchsorted(names, src), w)
        np.maximum.at(value, np.searchsorted(names, dst), w)
        return names, value
    names, first = np.unique(vkeys, return_index=True)
    if rule == "first":
        return names, vvals[first]
    value = np.full(len(names), -np.inf)
    np.maximum.at(value, np.searchsorted(names, vkeys), vvals)
    return names, value


def dionysus_h0(src, dst, w, names, value):
    """H0 of the filtration Dionysus builds: (finite points as (birth, death), essential births)."""
    s, d = np.searchsorted(names, src), np.searchsorted(names, dst)
    if len(src) and not (np.array_equal(names[np.minimum(s, len(names) - 1)], src)
                         and np.array_equal(names[np.minimum(d, len(names) - 1)], dst)):
        raise SystemExit("reference_defects: an edge ends at a vertex that was never appended")
    n = len(names)
    # Positions in the sorted filtration: value descending; vertices before edges at equal values.
    order = np.lexsort((np.r_[np.zeros(n), np.ones(len(w))], -np.r_[value, w]))
    position = np.empty(len(order), np.int64)
    position[order] = np.arange(len(order))
    vpos, epos = position[:n].tolist(), position[n:]
    parent = list(range(n))

    def root(v):
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    finite = []
    for e in np.argsort(epos, kind="stable").tolist():
        a, b = root(int(s[e])), root(int(d[e]))
        if a == b:
            continue
        young, old = (a, b) if vpos[a] > vpos[b] else (b, a)
        parent[young] = old
        finite.append((float(value[young]), float(w[e])))
    essential = [float(value[v]) for v in range(n) if parent[v] == v]
    return finite, essential


def compare(variant, corrected):
    """How one variant's diagram differs from the corrected graph's."""
    (fin, ess), (cfin, cess) = variant, corrected
    ordinary = [(b, d) for b, d in fin if b > d]              # nonzero persistence, birth > death
    inverted = [(b, d) for b, d in fin if b < d]              # vertex entered after its edge
    theirs = {}
    for pt in ordinary:
        theirs[pt] = theirs.get(pt, 0) + 1
    for pt in ((b, d) for b, d in cfin if b > d):
        if theirs.get(pt, 0):
            theirs[pt] -= 1
    changed = sum(theirs.values())
    # GUDHI wants birth <= death: the superlevel points (b, d) go in as (-b, -d).
    sub = lambda pts: np.array([(-b, -d) for b, d in pts] or [(0.0, 0.0)])  # noqa: E731
    dist = gudhi.bottleneck_distance(sub(ordinary), sub([(b, d) for b, d in cfin if b > d]))
    return {"essential": len(ess), "finite": len(ordinary), "inverted": len(inverted), "changed": changed,
            "bottleneck": dist}


def actopo_points(bin_path, acts_file, out, p):
    """`actopo diagrams` network scope per image: (finite pairs, essential births)."""
    cmd = [bin_path, "diagrams", "--spec", str(ROOT / "models/ccff.toml"), "--activations", str(acts_file),
           "--out", str(out), "--scopes", "network", "--no-input", "--threshold-reference-percentile", repr(float(p))]
    subprocess.run(cmd, check=True, capture_output=True)
    samples = json.loads(out.read_text())["samples"]
    return [([(b, d) for b, d, _, _ in s["scopes"][0]["h0"]], s["scopes"][0]["h0_essential"]) for s in samples]


VARIANTS = {  # name -> (fixed names, vertex rule, input layer); "edges" with fixed names is ours
    "as published (input_layer=False)": (False, "first", False),
    "defect 1 alone": (False, "max", False),
    "defect 2 alone": (True, "first", False),
    "vertex values from unkept edges alone": (True, "max", False),
    "as published, input_layer=True (defects 1-3)": (False, "first", True),
    "input_layer=True, defects 1 and 3 alone": (False, "max", True),
}


def diagram(acts, weights, p, fixed, rule, input_layer):
    graph = build(acts, weights, p, fixed, input_layer)
    return dionysus_h0(*graph[:3], *vertex_values(*graph, rule))


def image_rows(acts, weights, p, ours):
    """One image: each variant against the corrected graph (with the input for input variants), and
    the corrected graph against actopo's diagram."""
    corrected = {flag: diagram(acts, weights, p, True, "edges", flag) for flag in (False, True)}
    fin, ess = corrected[False]
    problems = tol.diagram_problems(ours[0] + [(b, None) for b in ours[1]],
                                    [(b, d) for b, d in fin if b > d] + [(b, None) for b in ess])
    rows = {name: compare(diagram(acts, weights, p, *flags), corrected[flags[2]]) for name, flags in VARIANTS.items()}
    rows["corrected, input_layer=True"] = compare(corrected[True], corrected[True])
    return rows, problems


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("ACTOPO_BIN", str(ROOT / "target/release/actopo")))
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--percentiles", default="0,90")
    args = ap.parse_args()
    test = fashion("t10k", args.samples)
    if test is None:
        sys.exit("reference_defects: Fashion-MNIST is not installed (Debian package dataset-fashion-mnist)")
    model = ccff()
    weights = [model[i].weight.detach().numpy() for i in (0, 2, 5, 7)]
    captured, _ = capture(model, test[0])
    failures = 0
    for p in [float(t) for t in args.percentiles.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            acts_file = Path(tmp) / "acts.safetensors"
            save_file({k: v.contiguous() for k, v in captured.items()}, str(acts_file))
            ours = actopo_points(args.bin, acts_file, Path(tmp) / "out.json", p)
        rows = {name: [] for name in [*VARIANTS, "corrected, input_layer=True"]}
        for i in range(args.samples):
            image, problems = image_rows({k: v[i].numpy() for k, v in captured.items()}, weights, p, ours[i])
            for name, stats in image.items():
                rows[name].append(stats)
            if problems:
                failures += 1
                print(f"P {p:g} image {i}: corrected graph vs actopo: {'; '.join(problems[:3])}")
        report(p, args.samples, rows, ours)
    print(f"\nreference_defects: corrected graph vs actopo diagrams ({tol.STATED}): {failures} image(s) differ")
    sys.exit(1 if failures else 0)


def span(values, fmt="{:d}"):
    lo, hi = min(values), max(values)
    if fmt != "{:d}":  # GUDHI's bottleneck distance answers ~1e-308 for equal diagrams
        lo, hi = (0.0 if v < 1e-12 else v for v in (lo, hi))
    return fmt.format(lo) if lo == hi else f"{fmt.format(lo)}-{fmt.format(hi)}"


def report(p, n, rows, ours):
    print(f"\n### Reference percentile {p:g}, {n} Fashion-MNIST test images (CCFF, models/ccff.safetensors)\n")
    print(f"actopo (corrected graph): essential classes {span([len(e) for _, e in ours])}, finite points "
          f"{span([len(f) for f, _ in ours])}, largest persistence {span([max(b - d for b, d in f) for f, _ in ours], '{:.4g}')}.\n")
    print("| variant | essential classes | finite points | points with birth < death | points not in ours | "
          "bottleneck distance to ours |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, stats in rows.items():
        print(f"| {name} | {span([s['essential'] for s in stats])} | {span([s['finite'] for s in stats])} | "
              f"{span([s['inverted'] for s in stats])} | {span([s['changed'] for s in stats])} | "
              f"{span([s['bottleneck'] for s in stats], '{:.4g}')} |")


if __name__ == "__main__":
    main()

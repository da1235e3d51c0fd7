"""Check `graph.threshold = { reference_percentile = P }` against the reference code's cuts.

The reference is tgebhart/pt_activation, `CCFF.compute_dynamic_filtration2` (pt_activation/models/
ccff.py) with `conv_filtration_fast2`, `linear_filtration_fast2` and `conv_layer_as_matrix`
(pt_activation/functions/filtration.py). Its thresholding is re-implemented here in numpy, on the
real CCFF weights (models/ccff.safetensors) and the first Fashion-MNIST test images, with its graph
defects left out (we count the edges of the correct graph that pass its cuts):
  - hiddens = [relu(c1(x)), relu(c2(.)) flattened, relu(l1(.)), l2(.)] (CCFF.forward), as float32;
  - cut[l] = (1 / (l + 1)) * np.percentile(|hiddens[l]|, P) for every layer l, then for the linear
    layers (l = 2, 3) replaced by np.percentile(|W * h|, P), h the layer's input (hiddens[l - 1]);
  - a conv edge is |W[o, c, i, j] * h[c, y + i, x + j]| taken in float64 (the reference multiplies
    the float64 `conv_layer_as_matrix` by diag(x)), a linear edge |W * h| in float32; an edge is
    kept when strictly above its layer's cut;
  - with input_layer = False (our graph.include_input = false) conv1's own edges are not added.
The kept edges of each op must equal the `n_edges` of actopo's `layers` scope of that op (`actopo
diagrams --threshold-reference-percentile P --no-input` on the same activations), exactly; the
network scope's vertices must equal the ends of the kept edges, its H0 diagram GUDHI's on them, and `actopo run` with the config key
on the same images must keep as many edges per image. Also printed: how many vertices the
reference's vertex rule (a vertex is added when its heaviest edge on either side, kept or not, is
above the smaller cut of its two layers) adds beyond those, which actopo leaves out (docs/graph.md).

Usage: python tests/python/reference_threshold_check.py [--bin target/release/actopo] [--samples 20]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import tolerance as tol
from gudhi_crosscheck import fashion, gudhi_diagram, net_ccff, op_edges, unit_offsets

PERCENTILE = 90.0
ROOT = Path(__file__).resolve().parents[2]


def ccff():
    """models/ccff.toml as PyTorch: layer names are the spec's layer indices."""
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 5, bias=False), torch.nn.ReLU(),
        torch.nn.Conv2d(3, 3, 3, bias=False), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(1452, 256, bias=False), torch.nn.ReLU(),
        torch.nn.Linear(256, 10, bias=False))
    model.load_state_dict(load_file(str(ROOT / "models/ccff.safetensors")))
    return model.eval()


def capture(model, x):
    """Each graph op's input (conv 0, conv 2, linear 5, linear 7), by layer name."""
    captured = {}
    hooks = [model[int(k)].register_forward_hook(
        lambda mod, inp, out, key=k: captured.__setitem__(key, inp[0].detach().clone()))
        for k in ("0", "2", "5", "7")]
    with torch.no_grad():
        y = model(x)
    for h in hooks:
        h.remove()
    return captured, y


def reference_cuts(hiddens, weights, p):
    """compute_dynamic_filtration2's `percentiles`, one per layer (c1, c2, l1, l2)."""
    cuts = np.zeros(4)
    for l in range(4):
        cuts[l] = (1 / (l + 1)) * np.percentile(np.absolute(hiddens[l]), p)
    for l in (2, 3):
        cuts[l] = np.percentile(np.absolute(hiddens[l - 1] * weights[l]), p)
    return cuts


def conv_products(w, x):
    """|W[o, c, i, j] * x[c, y + i, x + j]| in float64, as [out units, input units] (dense)."""
    out_c, in_c, k, _ = w.shape
    n = x.shape[1]
    m = n - k + 1
    prod = np.zeros((out_c * m * m, in_c * n * n))
    w64 = w.astype(np.float64)
    x64 = x.astype(np.float64)
    for o in range(out_c):
        for c in range(in_c):
            for i in range(k):
                for j in range(k):
                    rows = o * m * m + np.arange(m)[:, None] * m + np.arange(m)[None, :]
                    cols = c * n * n + (np.arange(m)[:, None] + i) * n + (np.arange(m)[None, :] + j)
                    prod[rows.ravel(), cols.ravel()] = np.abs(w64[o, c, i, j] * x64[c, i:i + m, j:j + m]).ravel()
    return prod


def reference_image(acts, weights, p):
    """Kept edges per op, the kept graph's vertex count, and the vertices the reference's vertex
    rule adds beyond the ends of kept edges, for one image (acts: each op's input, float32)."""
    x, h1, h2, h3 = acts["0"], acts["2"], acts["5"], acts["7"]
    y = (weights[3] @ h3).astype(np.float32)
    hiddens = [h1.reshape(-1), h2, h3, y]
    cuts = reference_cuts(hiddens, weights, p)
    e1 = conv_products(weights[0], x)                       # input -> conv1 (not in the graph)
    e2 = conv_products(weights[1], h1)                      # conv1 units -> conv2 units
    e3 = np.absolute(weights[2] * h2)                       # float32, [256, 1452]
    e4 = np.absolute(weights[3] * h3)                       # float32, [10, 256]
    kept = [e2 > cuts[1], e3 > cuts[2], e4 > cuts[3]]
    counts = [0] + [int(k.sum()) for k in kept]
    # Vertices: per layer of units, the ends of kept edges (actopo) and the reference's rule.
    ends = [kept[0].any(axis=0), kept[0].any(axis=1) | kept[1].any(axis=0),
            kept[1].any(axis=1) | kept[2].any(axis=0), kept[2].any(axis=1)]
    # compute_dynamic_filtration2's vertex appends, keys corrected: conv1 units from the l = 0
    # stage (heaviest input edge) and the l = 1 stage (heaviest conv2 edge), and so on.
    rule = [(e1.max(axis=1) > cuts[0]) | (e2.max(axis=0) > min(cuts[0], cuts[1])),
            (e2.max(axis=1) > cuts[1]) | (e3.max(axis=0) > min(cuts[1], cuts[2])),
            np.maximum(e4.max(axis=0), e3.max(axis=1)) > min(cuts[2], cuts[3]),
            e4.max(axis=1) > cuts[3]]
    missing = sum(int((e & ~r).sum()) for e, r in zip(ends, rule))
    extra = sum(int((r & ~e).sum()) for e, r in zip(ends, rule))
    return counts, sum(int(e.sum()) for e in ends), extra, missing, cuts


def gudhi_problems(model, acts, cuts, want, scope):
    """The network scope against GUDHI on the edges of our graph (f32 weights, unit ids as actopo
    numbers them without the input) strictly above the reference cuts; also that as many edges
    pass in f32 as the reference's products pass (`want`)."""
    offsets = unit_offsets(net_ccff()[2], [1, 28, 28], include_input=False)
    parts = [op_edges(model[int(k)], torch.from_numpy(acts[k]), s, d, "all")
             for k, (s, d) in zip(("2", "5", "7"), offsets[1:])]
    kept = [tuple(x[w > cut] for x in (src, dst, w)) for (src, dst, w), cut in zip(parts, cuts[1:])]
    problems = []
    if [len(k[2]) for k in kept] != want[1:]:
        problems.append(f"f32 edges above the cuts {[len(k[2]) for k in kept]} vs {want[1:]}")
    src, dst, wt = (np.concatenate(x) for x in zip(*kept))
    finite, essential, _, _ = gudhi_diagram(src, dst, wt, keep_zero=False)
    s = scope["summary"]
    if (s["h0_pairs"], s["h0_essential"]) != (len(finite), len(essential)):
        problems.append(f"(h0_pairs, h0_essential) {s['h0_pairs'], s['h0_essential']} vs GUDHI {len(finite), len(essential)}")
    ours = [(b, d) for b, d, _, _ in scope["h0"]] + [(b, None) for b in scope["h0_essential"]]
    problems += tol.diagram_problems(ours, finite + [(b, None) for b in essential])
    return problems, len(finite) + len(essential)


def actopo_diagrams(bin_path, acts, out, p):
    cmd = [bin_path, "diagrams", "--spec", str(ROOT / "models/ccff.toml"), "--activations", str(acts),
           "--out", str(out), "--scopes", "network,layers", "--no-input",
           "--threshold-reference-percentile", repr(p)]
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


def actopo_run(bin_path, out, n, p):
    """Kept edges per image of the `network` scope of `actopo run` on the same images (the config
    key, the run's own forward pass)."""
    cmd = [bin_path, "run", str(ROOT / "config/fashion-mnist.toml"), "--set", f"data.limit={n}",
           "--set", "graph.include_input=false", "--set", f"graph.threshold={{reference_percentile={p!r}}}",
           "--set", f"output.dir={json.dumps(str(out))}"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    import polars as pl
    table = pl.concat([pl.read_parquet(f) for f in sorted((out / "summary").glob("*.parquet"))])
    return table.filter(pl.col("scope") == "network").sort("index")["n_edges"].to_list()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("ACTOPO_BIN", "target/release/actopo"))
    ap.add_argument("--samples", type=int, default=20)
    args = ap.parse_args()
    test = fashion("t10k", args.samples)
    if test is None:
        print("reference threshold check: Fashion-MNIST is not installed; skipped")
        return
    model = ccff()
    weights = [model[i].weight.detach().numpy() for i in (0, 2, 5, 7)]
    captured, _ = capture(model, test[0])
    tol.self_test()
    failures, points = 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        acts = Path(tmp) / "acts.safetensors"
        save_file({k: v.contiguous() for k, v in captured.items()}, str(acts))
        ours = actopo_diagrams(args.bin, acts, Path(tmp) / "out.json", PERCENTILE)
        run_edges = actopo_run(args.bin, Path(tmp) / "run", args.samples, PERCENTILE)
    print(f"reference_percentile = {PERCENTILE:g}, graph.include_input = false: kept edges per op "
          "(conv1, conv2, linear1, linear2) and in all, Python re-implementation vs actopo")
    for i in range(args.samples):
        acts_i = {k: v[i].numpy() for k, v in captured.items()}
        want, n_vertices, extra, missing, cuts = reference_image(acts_i, weights, PERCENTILE)
        by_scope = {s["scope"]: s for s in ours["samples"][i]["scopes"]}
        scopes = {k: v["summary"] for k, v in by_scope.items()}
        got = [scopes[k]["n_edges"] for k in ("0", "2", "5", "7")]
        problems, n_points = gudhi_problems(model, acts_i, cuts, want, by_scope["network"])
        points += n_points
        ok = (got == want and scopes["network"]["n_edges"] == sum(want) == run_edges[i]
              and scopes["network"]["n_vertices"] == n_vertices and missing == 0 and not problems)
        failures += not ok
        print(f"image {i:2d}: python {want} = {sum(want):6d}  actopo {got} = {scopes['network']['n_edges']:6d}  "
              f"vertices {scopes['network']['n_vertices']:5d} (python {n_vertices:5d}; the reference's "
              f"vertex rule adds {extra:4d} without a kept edge)  run {run_edges[i]:6d}  {'ok' if ok else 'FAIL ' + '; '.join(problems)}")
    print(f"reference threshold check (CCFF, {args.samples} Fashion-MNIST test images, P = {PERCENTILE:g}): "
          f"edge counts per op (actopo diagrams) and per image (actopo run) compared exactly; network H0 diagrams "
          f"({points} points) against GUDHI on the same cut ({tol.STATED}); {failures} images failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

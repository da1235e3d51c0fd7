"""Cross-check `graph.threshold` against GUDHI on CCFF and Fashion-MNIST images.

The graph is built here as gudhi_crosscheck.py builds it (PyTorch hooks for each graph op's input,
torch unfold for the edges), then cut here, op by op:
  - percentile P: with the op's n nonzero edge weights sorted ascending, rank r = ceil(P * n / 100);
    the cut is the r-th smallest (r = 0: keep all); keep the edges of weight >= cut;
  - weight w: keep the edges whose weight (f32, compared as f64) is >= w;
and the diagram of every scope (network, and each layer on its own, cut the same way) is computed by
GUDHI and compared with `actopo diagrams --threshold-percentile P` / `--threshold-weight w` on the same
activations. Counts (edges, vertices, H0 pairs, essential classes, H1) must be equal; births and
deaths are compared with tolerance.py's tolerance (both sides read the same activations, so the
largest deviation printed is normally 0).

Usage: python tests/python/threshold_crosscheck.py [--bin target/release/actopo] [--samples N]
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
import torch
from safetensors.torch import save_file

import tolerance as tol
from gudhi_crosscheck import (fashion, graph_ops, gudhi_diagram, net_ccff, op_edges, unit_offsets,
                              write_model)

PERCENTILE = 90.0


def cut_edges(edges, threshold):
    """The edges of one op at or above its cut: ("percentile", P) or ("weight", w)."""
    src, dst, wt = edges
    kind, value = threshold
    if kind == "percentile":
        rank = math.ceil(value * len(wt) / 100.0)
        cut = 0.0 if rank == 0 else float(np.sort(wt)[rank - 1])
        keep = wt >= np.float32(cut)
    else:
        keep = wt.astype(np.float64) >= value
    return src[keep], dst[keep], wt[keep]


def capture(model, ops, x):
    """Each graph op's input for the images x, by op name."""
    captured = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, key=key: captured.__setitem__(key, inp[0].detach().clone()))
             for key, m in ops]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return captured


def actopo_diagrams(bin_path, spec, acts, out, threshold):
    kind, value = threshold
    cmd = [bin_path, "diagrams", "--spec", str(spec), "--activations", str(acts), "--out", str(out),
           "--scopes", "network,layers", "--h1-diagram", f"--threshold-{kind}", repr(value)]
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


def scope_problems(o, edges):
    """What differs between actopo's scope `o` and GUDHI on the cut `edges`."""
    src, dst, wt = edges
    finite, essential, h1, nv = gudhi_diagram(src, dst, wt, keep_zero=False)
    s = o["summary"]
    problems = []
    if (s["n_edges"], s["n_vertices"]) != (len(wt), nv):
        problems.append(f"(edges, vertices) {s['n_edges'], s['n_vertices']} vs {len(wt), nv}")
    if (s["h0_pairs"], s["h0_essential"], s["h1_count"]) != (len(finite), len(essential), len(h1)):
        problems.append("h0_pairs, h0_essential or h1_count differs")
    ours = [(b, d) for b, d, _, _ in o["h0"]]
    want = finite + [(b, None) for b in essential]
    problems += tol.diagram_problems(ours + [(b, None) for b in o["h0_essential"]], want)
    if not tol.sorted_values_match(o["h1"], h1, tol.diagram_scale(want)):
        problems.append("H1 births differ")
    deviation = tol.max_deviation(ours, finite) if finite and not problems else 0.0
    return problems, len(finite) + len(essential), deviation, (len(wt), nv, len(finite))


def check(folder, bin_path, images, threshold, model, spec, layers):
    ops = graph_ops(layers)
    captured = capture(model, ops, images)
    acts = folder / "acts.safetensors"
    save_file({k: v.contiguous() for k, v in captured.items()}, str(acts))
    ours = actopo_diagrams(bin_path, spec, acts, folder / "out.json", threshold)
    offsets = unit_offsets(layers, [1, 28, 28])
    failures, pairs, deviation = 0, 0, 0.0
    for i in range(len(images)):
        per_op = [cut_edges(op_edges(m, captured[key][i], s, d, "all"), threshold)
                  for (key, m), (s, d) in zip(ops, offsets)]
        scopes = {"network": tuple(np.concatenate(parts) for parts in zip(*per_op))}
        scopes.update({key: edges for (key, _), edges in zip(ops, per_op)})
        by_scope = {s["scope"]: s for s in ours["samples"][i]["scopes"]}
        for scope, edges in scopes.items():
            problems, n_pairs, dev, (ne, nv, nh0) = scope_problems(by_scope[scope], edges)
            failures += bool(problems)
            pairs += n_pairs
            deviation = max(deviation, dev)
            status = "ok" if not problems else "FAIL " + "; ".join(problems)
            print(f"{threshold[0]}={threshold[1]:<8g} image {i} {scope:<8} E={ne:>7} V={nv:>5} H0={nh0:>5} {status}")
    return failures, pairs, deviation


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("ACTOPO_BIN", "target/release/actopo"))
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--train-steps", type=int, default=300, help="Adam steps on CCFF before the check")
    args = ap.parse_args()
    tol.self_test()
    test = fashion("t10k", args.samples)
    if test is None:
        print("threshold cross-check: Fashion-MNIST is not installed; skipped")
        return
    torch.manual_seed(sum(map(ord, "net_ccff")))
    failures, pairs, deviation = 0, 0, 0.0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        name, input_shape, layers = net_ccff()
        model, spec = write_model(folder, name, input_shape, layers, args.train_steps)
        images = test[0]
        # A fixed weight that keeps some but not all edges: the median network edge weight of
        # the first image, rounded to two significant digits.
        ops = graph_ops(layers)
        first = capture(model, ops, images[:1])
        weights = np.concatenate([op_edges(m, first[key][0], s, d, "all")[2]
                                  for (key, m), (s, d) in zip(ops, unit_offsets(layers, input_shape))])
        weight = float(f"{np.median(weights):.2g}")
        for threshold in (("percentile", PERCENTILE), ("percentile", 0.0), ("weight", weight)):
            f, p, d = check(folder, args.bin, images, threshold, model, spec, layers)
            failures, pairs, deviation = failures + f, pairs + p, max(deviation, d)
    print(f"threshold cross-check (CCFF, {args.samples} Fashion-MNIST test images, percentile {PERCENTILE:g}, "
          f"percentile 0 and weight {weight:g}): {pairs} H0 points compared with GUDHI ({tol.STATED}); "
          f"largest relative deviation of a birth or death: {deviation:.2g}; {failures} scopes failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

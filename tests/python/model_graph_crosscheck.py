"""Cross-check of actopo on model graphs (spec format 2) against PyTorch + an independent graph + GUDHI.

For each seeded model of model_graph_models.py (an MLP with batch norms, a ResNet with identity and
1x1-downsample shortcuts, a depthwise-separable block, a DenseNet-like cat block, adaptive pools to
sizes that do not divide their input) and one format-1 control net:
  1. PyTorch runs the model on real Fashion-MNIST test images (one thread, actopo's zero-padded
     32-sample chunks), with hooks on every module (model_graph_reference.trace);
  2. the activation graph is built from the modules and the hooked values alone
     (model_graph_reference.ReferenceGraph: unit ids carried through shape ops, conv edges by
     unfold, batch norms folded when they read a conv/linear output nothing else reads);
  3. GUDHI computes its persistence (SimplexTree, each simplex at minus its value);
  4. the check's own writer (model_graph_spec.py, not scripts/export_torch.py) writes the spec and
     weights, and `actopo run` processes the same images (the IDX file itself, data.limit = N);
  5. every summary row, diagram and killing edge is compared, scope `network` and every `layers`
     scope: edges, vertices, H0 pairs, essential classes and H1 (GUDHI's count) exactly; H0
     diagrams with the tolerance of tolerance.py (f32 rounding); summaries against GUDHI's pairs
     and against actopo's own; each killing edge in subgraphs/ must be an edge of the reference
     graph of that weight between the vertex layers it names; the manifest's vertex layers must be
     the reference's; `pred` must be PyTorch's argmax (near-ties allowed, counted) and `label` the
     file's.
Prints one line per failing row and a table per run; exit code 1 on any failure.
Usage: .venv/bin/python tests/python/model_graph_crosscheck.py [--bin target/release/actopo]
       [--samples 8] [--only resnet,mlp_bn]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn as nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import gudhi_crosscheck as gc  # noqa: E402
import model_graph_models as models  # noqa: E402
import tolerance as tol  # noqa: E402
from model_graph_reference import ReferenceGraph, trace_in_chunks  # noqa: E402
from model_graph_spec import write_model  # noqa: E402

ROOT = HERE.parent.parent
IMAGES = gc.FASHION / "t10k-images-idx3-ubyte.gz"
STEM = "t10k-images-idx3-ubyte"
INPUT_SHAPE = (1, 28, 28)


@dataclass
class Run:
    label: str
    model: str
    include_input: bool = True
    batch_norm: str = "fold"
    keep_zero: bool = False
    format_version: int = 2


RUNS = [
    Run("control small_conv (format 1)", "small_conv", format_version=1),
    Run("mlp_bn", "mlp_bn"),
    Run("resnet", "resnet"),
    Run("resnet bn=values no-input", "resnet", include_input=False, batch_norm="values", keep_zero=True),
    Run("dwsep no-input", "dwsep", include_input=False),
    Run("dense_cat", "dense_cat"),
    Run("dense_cat no-input", "dense_cat", include_input=False, keep_zero=True),
]


def control_small_conv():
    """gudhi_crosscheck's small conv net (old ops only) as an nn.Sequential."""
    _, _, layers = gc.net_small_conv()
    return nn.Sequential(*[m for _, m, _ in layers]).eval()


BUILT = {}


def build_model(name, train, steps):
    """The run's model; built (and trained) once per name."""
    if name not in BUILT:
        torch.manual_seed(5)
        BUILT[name] = control_small_conv() if name == "small_conv" else models.build(name, *train, steps)
    return BUILT[name]


def run_actopo(bin_path, folder, spec, run, samples):
    cfg = folder / f"{spec.stem}-{run.include_input}-{run.batch_norm}.toml"
    out = folder / f"out-{cfg.stem}"
    batch_norm = f'batch_norm = "{run.batch_norm}"\n' if run.batch_norm != "fold" else ""
    cfg.write_text(f"""[model]
spec = "{spec}"
device = "cpu"
[data]
shards = ["{IMAGES}"]
limit = {samples}
mean = [0.0]
std = [1.0]
[pipeline]
batch_size = 7
workers = 2
[graph]
scopes = ["network", "layers"]
include_input = {str(run.include_input).lower()}
{batch_norm}[homology]
keep_zero_persistence = {str(run.keep_zero).lower()}
[output]
dir = "{out}"
subgraphs = true
""")
    done = subprocess.run([bin_path, "run", str(cfg)], capture_output=True, text=True)
    if done.returncode != 0:
        return None, f"actopo run failed ({done.returncode}): {done.stderr.strip()[-2000:]}"
    return out, None


@dataclass
class Tally:
    rows: int = 0
    failed: int = 0
    pairs: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0
    counts_equal: int = 0
    killing_edges: int = 0
    preds_exact: int = 0
    near_ties: int = 0
    images: int = 0
    notes: list = field(default_factory=list)  # failures that are not one row's
    info: list = field(default_factory=list)


def deviations(ours, theirs):
    """Largest absolute and relative difference of sorted births and of sorted deaths."""
    worst_abs, worst_rel = 0.0, 0.0
    for k in (0, 1):
        for a, b in zip(sorted(float(p[k]) for p in ours), sorted(float(p[k]) for p in theirs)):
            worst_abs = max(worst_abs, abs(a - b))
            worst_rel = max(worst_rel, abs(a - b) / max(abs(a), abs(b), 1e-30))
    return worst_abs, worst_rel


def layer_of(vertex_layers, unit):
    for name, first, n in vertex_layers:
        if first <= unit < first + n:
            return name
    return None


def killing_edge_problems(kills, graph, vertex_layers, scale):
    """Each killing edge must be an edge of the reference graph of that weight, between the vertex
    layers the row names."""
    src, dst, wt = graph
    if not kills:
        return []
    key = src * (1 << 32) + dst
    order = np.argsort(key)
    key, wt_sorted = key[order], wt[order]
    problems = []
    for k in kills:
        want = k["src"] * (1 << 32) + k["dst"]
        lo, hi = int(np.searchsorted(key, want)), int(np.searchsorted(key, want, side="right"))
        parallel = [float(w) for w in wt_sorted[lo:hi]]  # more than one: see parallel_edges()
        if not parallel:
            problems.append(f"killing edge ({k['src']},{k['dst']}) is no edge of the reference graph")
        elif not any(tol.close(w, k["weight"], scale=scale) for w in parallel):
            problems.append(f"killing edge ({k['src']},{k['dst']}) weighs {k['weight']}, reference {parallel}")
        names = (layer_of(vertex_layers, k["src"]), layer_of(vertex_layers, k["dst"]))
        if names != (k["layer_src"], k["layer_dst"]):
            problems.append(f"killing edge ({k['src']},{k['dst']}) named {k['layer_src']}->{k['layer_dst']}, "
                            f"reference {names[0]}->{names[1]}")
        if problems:
            break
    return problems


def parallel_edges(graph):
    """Edges that join the same two units as another edge (an add or a cat that reads the same
    units twice): GUDHI's simplicial complex keeps one of them, at the heaviest weight."""
    src, dst, _ = graph
    return len(src) - len(np.unique(src * (1 << 32) + dst))


def row_problems(row, graph, points, kills, run, ref, tally):
    """Everything that differs for one summary row (one image, one scope)."""
    src, dst, wt = graph
    finite, essential, h1, nv = gc.gudhi_diagram(src, dst, wt, run.keep_zero)
    problems = []
    # a parallel edge joins two units already joined: one more independent cycle each (the
    # multigraph rule of docs/graph.md), which GUDHI's simplicial complex cannot hold
    expect = {"n_edges": len(wt), "n_vertices": nv, "h0_pairs": len(finite), "h0_essential": len(essential),
              "h1_count": len(h1) + parallel_edges(graph)}
    wrong = [f"{k} {row[k]} vs reference {v}" for k, v in expect.items() if row[k] != v]
    problems += wrong
    tally.counts_equal += not wrong
    ours = [(p["birth"], p["death"]) for p in points if p["dim"] == 0]
    ours_finite = [p for p in ours if p[1] is not None]
    want = finite + [(b, None) for b in essential]
    scale = tol.diagram_scale(want)
    diagram = tol.diagram_problems(ours, want)
    if diagram:
        problems.append(f"H0 diagram differs from GUDHI's ({len(ours)} points vs {len(want)}): {'; '.join(diagram)}")
    elif finite:
        a, r = deviations(ours_finite, finite)
        tally.max_abs, tally.max_rel = max(tally.max_abs, a), max(tally.max_rel, r)
    tally.pairs += len(finite)
    problems += tol.own_summary_problems(row, gc.summary_of(ours_finite))
    problems += tol.reference_summary_problems(row, finite, gc.summary_of(finite), scale)
    problems += killing_edge_problems(kills, graph, ref.units.vertex_layers, scale)
    tally.killing_edges += len(kills)
    return problems


def read_outputs(out):
    summary = pq.read_table(out / "summary" / f"{STEM}.parquet").to_pylist()
    points, kills = {}, {}
    for r in pq.read_table(out / "diagrams" / f"{STEM}.parquet").to_pylist():
        points.setdefault((r["index"], r["scope"]), []).append(r)
    for r in pq.read_table(out / "subgraphs" / f"{STEM}.parquet").to_pylist():
        kills.setdefault((r["index"], r["scope"]), []).append(r)
    manifest = json.loads((out / "manifest.json").read_text())
    return summary, points, kills, manifest


def compare(run, ref, logits, labels, out, tally):
    summary, points, kills, manifest = read_outputs(out)
    layers = [tuple(v) if isinstance(v, list) else (v["name"], v["first"], v["len"])
              for v in manifest["model"]["vertex_layers"]]
    if layers != [tuple(v) for v in ref.units.vertex_layers]:
        tally.notes.append(f"manifest vertex layers {layers} vs reference {ref.units.vertex_layers}")
    names = [ref.calls[k].name for k in ref.graph_calls]
    scopes = ["network"] + names
    n = len(logits)
    got = [(r["index"], r["scope"]) for r in summary]
    if got != [(i, s) for i in range(n) for s in scopes]:
        tally.notes.append(f"summary rows {got[:3]}... are not (image, scope) for {n} images x {scopes}")
        tally.failed += 1
        return
    probs = torch.softmax(logits, 1)
    for i in range(n):
        per_call = ref.edges(i)
        graphs = {"network": tuple(np.concatenate(p) for p in zip(*per_call.values())), **per_call}
        parallel = {s: parallel_edges(g) for s, g in graphs.items() if s != "network" and parallel_edges(g)}
        if parallel and i == 0:
            tally.info.append(f"image 0: parallel edges (one unit reaching an add or a cat twice; GUDHI keeps "
                              f"the heaviest, H1 counts the rest) in {parallel}")
        for row in summary[i * len(scopes):(i + 1) * len(scopes)]:
            scope = row["scope"]
            problems = row_problems(row, graphs[scope], points.get((i, scope), []), kills.get((i, scope), []),
                                    run, ref, tally)
            if scope == "network":
                exact = row["pred"] == int(logits[i].argmax())
                tally.preds_exact += exact
                if not tol.argmax_agrees(row["pred"], logits[i]):
                    problems.append(f"pred {row['pred']} vs PyTorch {int(logits[i].argmax())}")
                elif not exact:
                    tally.near_ties += 1
            if not tol.close(row["confidence"], float(probs[i].max())):
                problems.append(f"confidence {row['confidence']} vs PyTorch {float(probs[i].max())}")
            if row["label"] != int(labels[i]):
                problems.append(f"label {row['label']} vs {int(labels[i])}")
            tally.rows += 1
            if problems:
                tally.failed += 1
                print(f"FAIL {run.label} image {i} scope {scope}: {'; '.join(problems)}")


def check(run, args, folder, x, labels, train):
    tally = Tally(images=len(x))
    model = build_model(run.model, train, args.train_steps)
    calls, logits = trace_in_chunks(model, x)
    ref = ReferenceGraph(calls, INPUT_SHAPE, run.include_input, run.batch_norm)
    tally.notes += [f"reference self-check: {p}" for p in ref.self_check(0)]
    name = run.model if run.format_version == 2 else f"{run.model}_v1"
    spec = write_model(folder, name, model, calls, INPUT_SHAPE, run.format_version)
    out, error = run_actopo(args.bin, folder, spec, run, len(x))
    if error:
        tally.failed += 1
        tally.notes.append(error)
        return tally, ref
    compare(run, ref, logits, labels, out, tally)
    return tally, ref


def print_table(results):
    head = f"{'run':<32} {'rows':>5} {'fail':>4} {'pairs':>7} {'max abs':>9} {'max rel':>9} " \
           f"{'counts eq':>10} {'kills':>6} {'pred eq':>8}"
    print(head)
    print("-" * len(head))
    for run, t, _ in results:
        preds = f"{t.preds_exact}/{t.images}" + (f" ({t.near_ties} tie)" if t.near_ties else "")
        print(f"{run.label:<32} {t.rows:>5} {t.failed:>4} {t.pairs:>7} {t.max_abs:>9.2g} {t.max_rel:>9.2g} "
              f"{t.counts_equal:>4}/{t.rows:<5} {t.killing_edges:>6} {preds:>8}")
        for note in t.notes:
            print(f"    ! {note}")
        for note in t.info:
            print(f"    i {note}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("ACTOPO_BIN", str(ROOT / "target/release/actopo")))
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--train-steps", type=int, default=150, help="Adam steps per model before the check")
    ap.add_argument("--only", default="", help="comma-separated model names (small_conv, mlp_bn, ...)")
    args = ap.parse_args()
    tol.self_test()
    torch.set_num_threads(1)  # as actopo's CPU forward (src/forward/mod.rs)
    print(f"model graphs: {tol.STATED}; PyTorch on 1 thread like actopo; tolerance self-test passed")
    test, train = gc.fashion("t10k", args.samples), gc.fashion("train", 64 * args.train_steps)
    if test is None:
        print("model graphs: Fashion-MNIST is not installed (scripts/setup.sh installs dataset-fashion-mnist)")
        sys.exit(1)
    x, labels = test  # u8 / 255 in f32, as actopo scales 8-bit images
    only = set(filter(None, args.only.split(",")))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in RUNS:
            if only and run.model not in only:
                continue
            start = time.time()
            tally, ref = check(run, args, Path(tmp), x, labels, train)
            results.append((run, tally, ref))
            print(f"{run.label}: {tally.rows} rows, {tally.failed} failed, folded into {ref.folded()} "
                  f"({time.time() - start:.1f} s)")
    print_table(results)
    failed = sum(1 for _, t, _ in results if t.failed or t.notes)
    print(f"model graphs: {len(results) - failed} runs passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

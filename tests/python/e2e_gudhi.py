"""End-to-end check of `actopo run` against PyTorch + GUDHI (not against actopo's own core).

Real images (Fashion-MNIST test split) go through the real binary from two shard formats: a Parquet
shard laid out like a dataset hub's (an `image` struct of PNG bytes and a `label`) and an `.npz`
shard (uint8). The models are the trained demo CCFF (models/ccff.*, when present) and a small conv
net with bias, stride, padding and pools. The written Parquet is compared, sample by sample, with:
  - PyTorch's prediction and softmax confidence for the same weights and inputs;
  - GUDHI's persistence of the activation graph built independently (torch unfold) from PyTorch's
    activations: H0 pairs and essential classes in the diagrams table, every summary column.
Counts (edges, vertices, pairs, essential classes, H1, rows, labels) must be equal; floats are
compared with the tolerance of tolerance.py (f32 rounding: 1e-5 of the value + 5e-6 of the largest
value of its diagram, since actopo's libtorch forward and PyTorch's here may sum a layer's terms in
a different order on another CPU), diagrams point by point after sorting, summaries also against
actopo's own diagram (1e-9), and a prediction may differ only on a near-tie of logits.
PyTorch runs with one intra-op thread, as actopo's CPU forward does (src/forward/mod.rs calls
tch::set_num_threads(1)), and in actopo's zero-padded 32-sample chunks.
Prints 'e2e: N passed, M failed' and the largest deviation seen; exit code 1 on any failure.
"""

import argparse
import io
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn as nn
from PIL import Image
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import gudhi_crosscheck as gc  # noqa: E402
import tolerance as tol  # noqa: E402

ROOT = HERE.parent.parent


def write_shards(folder, x_u8, labels):
    """Half the images as a hub-style Parquet shard (PNG bytes), half as .npz."""
    half = len(x_u8) // 2
    rows = []
    for img in x_u8[:half]:
        buf = io.BytesIO()
        Image.fromarray(img[0]).save(buf, format="PNG")
        rows.append({"bytes": buf.getvalue(), "path": None})
    table = pa.table({
        "image": pa.array(rows, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        "label": pa.array(labels[:half], type=pa.int64()),
    })
    pq.write_table(table, folder / "part-0.parquet")
    np.savez(folder / "part-1.npz", x=x_u8[half:], y=labels[half:].astype(np.int64))
    return [("part-0.parquet", 0, half), ("part-1.npz", half, len(x_u8))]


def run_actopo(bin_path, folder, spec, name, extra=""):
    cfg = folder / f"run-{name}.toml"
    cfg.write_text(f"""
[model]
spec = "{spec}"
device = "cpu"
[data]
shards = ["shards/*"]
[pipeline]
batch_size = 7
workers = 2
[graph]
scopes = ["network", "layers"]
[output]
dir = "out-{name}"
{extra}
""")
    subprocess.run([bin_path, "run", str(cfg)], check=True)
    return folder / f"out-{name}"


def compare(name, model, layers, out_dir, shards, x, labels):
    failures, passed, deviation = 0, 0, 0.0
    ops = gc.graph_ops(layers)
    # PyTorch's forward in actopo's zero-padded 32-sample chunks: libtorch rounds differently for
    # different batch sizes, and actopo fixes the batch size so its outputs never depend on it.
    parts, logit_parts = {}, []
    hooks = [m.register_forward_hook(lambda mod, inp, out, key=key: parts.setdefault(key, []).append(inp[0].detach().clone()))
             for key, m in ops]
    with torch.no_grad():
        for i in range(0, len(x), 32):
            chunk = x[i:i + 32]
            rows = len(chunk)
            chunk = torch.cat([chunk, torch.zeros(32 - rows, *chunk.shape[1:])])
            logit_parts.append(model(chunk)[:rows])
            for key in parts:
                parts[key][-1] = parts[key][-1][:rows]
    for h in hooks:
        h.remove()
    logits = torch.cat(logit_parts)
    captured = {key: torch.cat(v) for key, v in parts.items()}
    probs = torch.softmax(logits, 1)
    offsets = gc.unit_offsets(layers, list(x.shape[1:]))
    for shard, lo, hi in shards:
        stem = shard.rsplit(".", 1)[0]
        summary = pq.read_table(out_dir / "summary" / f"{stem}.parquet").to_pylist()
        diagrams = pq.read_table(out_dir / "diagrams" / f"{stem}.parquet").to_pylist()
        n_scopes = 1 + len(ops)
        if len(summary) != (hi - lo) * n_scopes:
            print(f"FAIL {name} {shard}: {len(summary)} summary rows, expected {(hi - lo) * n_scopes}")
            failures += 1
            continue
        by_key = {}
        for r in diagrams:
            by_key.setdefault((r["index"], r["scope"]), []).append(r)
        for row in summary:
            i = lo + row["index"]
            problems = []
            if row["shard"] != shard or row["variant"] != "clean" or row["label"] != int(labels[i]):
                problems.append(f"shard/variant/label {row['shard']} {row['variant']} {row['label']}")
            if not tol.argmax_agrees(row["pred"], logits[i]):
                problems.append(f"pred {row['pred']} vs PyTorch {int(logits[i].argmax())}")
            if not tol.close(row["confidence"], float(probs[i].max())):
                problems.append(f"confidence {row['confidence']} vs PyTorch {float(probs[i].max())}")
            per_op = [gc.op_edges(m, captured[key][i], s, d, "all") for (key, m), (s, d) in zip(ops, offsets)]
            if row["scope"] == "network":
                src, dst, wt = (np.concatenate(p) for p in zip(*per_op))
            else:
                src, dst, wt = per_op[[k for k, _ in ops].index(row["scope"])]
            finite, essential, _, nv = gc.gudhi_diagram(src, dst, wt, False)
            h1_count = len(wt) - nv + len(essential)
            expect = {"n_edges": len(wt), "n_vertices": nv, "h0_pairs": len(finite), "h0_essential": len(essential),
                      "h1_count": h1_count}
            for k, v in expect.items():
                if row[k] != v:
                    problems.append(f"{k} {row[k]} vs {v}")
            points = by_key.get((row["index"], row["scope"]), [])
            ours = [(p["birth"], p["death"]) for p in points if p["dim"] == 0]
            ours_finite = [p for p in ours if p[1] is not None]
            want = finite + [(b, None) for b in essential]
            diagram_problems = tol.diagram_problems(ours, want)
            if diagram_problems:
                problems.append(f"diagram rows differ ({len(ours)} vs GUDHI {len(want)}): {'; '.join(diagram_problems)}")
            elif finite:
                deviation = max(deviation, tol.max_deviation(ours_finite, finite))
            problems += tol.own_summary_problems(row, gc.summary_of(ours_finite))
            problems += tol.reference_summary_problems(row, finite, gc.summary_of(finite), tol.diagram_scale(want))
            if problems:
                failures += 1
                print(f"FAIL {name} {shard} index {row['index']} {row['scope']}: {'; '.join(problems)}")
            else:
                passed += 1
    print(f"{name}: {passed} summary rows match PyTorch + GUDHI, {failures} differ "
          f"(largest relative deviation of a birth or death: {deviation:.2g})")
    return passed, failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "target/release/actopo"))
    ap.add_argument("--samples", type=int, default=8)
    args = ap.parse_args()
    tol.self_test()
    torch.set_num_threads(1)  # as actopo's CPU forward (src/forward/mod.rs)
    print(f"e2e: {tol.STATED}; PyTorch on 1 thread like actopo; tolerance self-test passed")
    test = gc.fashion("t10k", args.samples)
    if test is None:
        print("e2e: Fashion-MNIST is not installed (scripts/setup.sh installs dataset-fashion-mnist)")
        sys.exit(1)
    x, labels = test
    x_u8 = (x.numpy() * 255).round().astype(np.uint8)
    x = torch.from_numpy(x_u8.astype(np.float32) / 255.0)
    total_pass, total_fail = 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "shards").mkdir()
        shards = write_shards(folder / "shards", x_u8, labels.numpy())

        torch.manual_seed(5)
        _, _, layers = gc.net_small_conv()
        model, spec = gc.write_model(folder, "small_conv", [1, 28, 28], layers)
        out = run_actopo(args.bin, folder, spec.name, "small_conv")
        p, f = compare("small_conv", model, layers, out, shards, x, labels)
        total_pass, total_fail = total_pass + p, total_fail + f

        if (ROOT / "models/ccff.safetensors").exists():
            _, _, layers = gc.net_ccff()
            model = nn.Sequential(*[m for _, m, _ in layers]).eval()
            model.load_state_dict(load_file(str(ROOT / "models/ccff.safetensors")))
            out = run_actopo(args.bin, folder, str(ROOT / "models/ccff.toml"), "ccff")
            p, f = compare("ccff (trained)", model, layers, out, shards, x, labels)
            total_pass, total_fail = total_pass + p, total_fail + f
    print(f"e2e: {total_pass} passed, {total_fail} failed")
    sys.exit(1 if total_fail else 0)


if __name__ == "__main__":
    main()

"""Cross-check actopo's topology core against GUDHI on real conv nets.

For each test net (PyTorch, seeded weights; CCFF on Fashion-MNIST images when the Debian package is
installed), this script
  1. writes the actopo model spec + safetensors weights,
  2. runs the forward pass in PyTorch, capturing every graph op's input with hooks,
  3. builds the activation graph independently with torch unfold / max_pool2d indices,
  4. computes persistence with GUDHI's SimplexTree (each simplex inserted at minus its value),
  5. runs `actopo diagrams` on the same activations and compares edge and vertex counts, H0 pairs,
     essential classes, H1 and the summary statistics.
Counts must be equal; births, deaths and summaries are compared with the tolerance of tolerance.py
(f32 rounding: 1e-5 of the value + 5e-6 of the largest value of its diagram; diagrams point by point
after sorting; summaries also against actopo's own diagram, 1e-9). Both sides read the same
activations, so no forward pass differs here and the printed largest deviation is normally 0: the
tolerance only keeps this check consistent with e2e_gudhi.py, where actopo runs its own forward.

Exit code 0 when every comparison holds; prints one line per (net, sample, scope).
Usage: python tests/python/gudhi_crosscheck.py [--bin target/release/actopo] [--samples N]
"""

import argparse
import gzip
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import gudhi
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

import tolerance as tol

FASHION = Path("/usr/share/datasets/fashion-mnist")


def fashion(split, n):
    """First n Fashion-MNIST images of a split in [0, 1] and their labels, or None when the data set
    is not installed."""
    p = FASHION / f"{split}-images-idx3-ubyte.gz"
    if not p.exists():
        return None
    raw = gzip.open(p, "rb").read()
    count = int.from_bytes(raw[4:8], "big")
    data = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(count, 1, 28, 28)[:n]
    labels = np.frombuffer(gzip.open(FASHION / f"{split}-labels-idx1-ubyte.gz", "rb").read(), dtype=np.uint8, offset=8)[:n]
    return torch.from_numpy(data.astype(np.float32) / 255.0), torch.from_numpy(labels.astype(np.int64))


def train_briefly(model, steps):
    """A few hundred SGD steps on Fashion-MNIST's training split, so the CCFF check also runs on
    trained weights (sparser, more structured graphs than at initialisation)."""
    train = fashion("train", steps * 32)
    if train is None or steps == 0:
        return False
    x, y = train
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for i in range(steps):
        xb, yb = x[i * 32:(i + 1) * 32], y[i * 32:(i + 1) * 32]
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
    model.eval()
    return True


# ---------------------------------------------------------------------------------------------
# Test nets: (name, input shape, list of (layer name or None, module, spec dict))


def net_ccff():
    layers = [
        (None, nn.Conv2d(1, 3, 5, bias=False), {"op": "conv2d", "out_channels": 3, "kernel_size": 5, "bias": False}),
        (None, nn.ReLU(), {"op": "relu"}),
        (None, nn.Conv2d(3, 3, 3, bias=False), {"op": "conv2d", "out_channels": 3, "kernel_size": 3, "bias": False}),
        (None, nn.ReLU(), {"op": "relu"}),
        (None, nn.Flatten(), {"op": "flatten"}),
        (None, nn.Linear(1452, 256, bias=False), {"op": "linear", "out_features": 256, "bias": False}),
        (None, nn.ReLU(), {"op": "relu"}),
        (None, nn.Linear(256, 10, bias=False), {"op": "linear", "out_features": 10, "bias": False}),
    ]
    return "ccff", [1, 28, 28], layers


def net_geometry():
    """Padding, stride, dilation, rectangular kernels, overlapping max and avg pools, bias."""
    layers = [
        ("c1", nn.Conv2d(1, 4, 3, stride=2, padding=1),
         {"op": "conv2d", "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1}),
        ("r1", nn.ReLU(), {"op": "relu"}),
        ("p1", nn.MaxPool2d(3, stride=1, padding=1), {"op": "max_pool2d", "kernel_size": 3, "stride": 1, "padding": 1}),
        ("c2", nn.Conv2d(4, 5, (3, 2), stride=(1, 2), padding=(2, 1), dilation=2),
         {"op": "conv2d", "out_channels": 5, "kernel_size": [3, 2], "stride": [1, 2], "padding": [2, 1], "dilation": 2}),
        ("t2", nn.Tanh(), {"op": "tanh"}),
        ("p2", nn.AvgPool2d(2, stride=1), {"op": "avg_pool2d", "kernel_size": 2, "stride": 1}),
        ("f", nn.Flatten(), {"op": "flatten"}),
        ("d", nn.Dropout(0.5), {"op": "dropout"}),
        ("fc1", nn.Linear(5 * 13 * 6, 12), {"op": "linear", "out_features": 12}),
        ("lr", nn.LeakyReLU(0.1), {"op": "leaky_relu", "negative_slope": 0.1}),
        ("fc2", nn.Linear(12, 4), {"op": "linear", "out_features": 4}),
    ]
    return "geometry", [1, 28, 28], layers


def net_small_conv():
    """Small CNN with two max pools (non-overlapping) and sigmoid, to exercise ties in pools."""
    layers = [
        ("conv", nn.Conv2d(1, 2, 5, padding=2), {"op": "conv2d", "out_channels": 2, "kernel_size": 5, "padding": 2}),
        ("relu", nn.ReLU(), {"op": "relu"}),
        ("pool", nn.MaxPool2d(2), {"op": "max_pool2d", "kernel_size": 2}),
        ("conv2", nn.Conv2d(2, 3, 3, stride=2), {"op": "conv2d", "out_channels": 3, "kernel_size": 3, "stride": 2}),
        ("sig", nn.Sigmoid(), {"op": "sigmoid"}),
        ("pool2", nn.MaxPool2d(2, stride=2, padding=1), {"op": "max_pool2d", "kernel_size": 2, "stride": 2, "padding": 1}),
        ("flat", nn.Flatten(), {"op": "flatten"}),
        ("out", nn.Linear(3 * 4 * 4, 10), {"op": "linear", "out_features": 10}),
    ]
    return "small_conv", [1, 28, 28], layers


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return repr(v)


def write_model(folder, name, input_shape, layers, train_steps=0):
    model = nn.Sequential(*[m for _, m, _ in layers]).eval()
    if name == "ccff":
        train_briefly(model, train_steps)
    lines = ["format_version = 1", f'name = "{name}"', f"input_shape = {toml_value(input_shape)}",
             f'weights = "{name}.safetensors"']
    state = {}
    for i, (lname, module, spec) in enumerate(layers):
        lines.append("\n[[layers]]")
        if lname is not None:
            lines.append(f'name = "{lname}"')
        for k, v in spec.items():
            lines.append(f"{k} = {toml_value(v)}")
        key = lname if lname is not None else str(i)
        for pname, p in module.named_parameters():
            state[f"{key}.{pname}"] = p.detach().contiguous()
    spec_path = folder / f"{name}.toml"
    spec_path.write_text("\n".join(lines) + "\n")
    save_file(state, str(folder / f"{name}.safetensors"))
    return model, spec_path


# ---------------------------------------------------------------------------------------------
# Independent graph construction


def graph_ops(layers):
    return [(lname if lname is not None else str(i), m) for i, (lname, m, _) in enumerate(layers)
            if isinstance(m, (nn.Conv2d, nn.Linear, nn.MaxPool2d, nn.AvgPool2d))]


def unit_offsets(layers, input_shape, include_input=True):
    """(source offset or None, destination offset) of each graph op's units, computed here
    independently of actopo: the input first (when included), then each graph op's output."""
    offsets = []
    next_id = int(np.prod(input_shape)) if include_input else 0
    cur = 0 if include_input else None
    with torch.no_grad():
        h = torch.zeros(1, *input_shape)
        for _, m, _ in layers:
            h = m(h)
            if isinstance(m, (nn.Conv2d, nn.Linear, nn.MaxPool2d, nn.AvgPool2d)):
                offsets.append((cur, next_id))
                cur = next_id
                next_id += h[0].numel()
    return offsets


def pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def op_edges(module, a, src_off, dst_off, maxpool_rule):
    """Edges (src, dst, weight f32) of one graph op for one sample; a is the op's input [C, H, W] or [F]."""
    if isinstance(module, nn.Linear):
        w = (module.weight.detach() * a.reshape(1, -1)).abs()  # [out, in]
        out_i, in_j = torch.meshgrid(torch.arange(w.shape[0]), torch.arange(w.shape[1]), indexing="ij")
        src, dst, wt = in_j.flatten() + src_off, out_i.flatten() + dst_off, w.flatten()
    elif isinstance(module, nn.Conv2d):
        C, H, W = a.shape
        k, s, p, d = pair(module.kernel_size), pair(module.stride), pair(module.padding), pair(module.dilation)
        ids = torch.arange(1, C * H * W + 1, dtype=torch.float64).reshape(1, C, H, W)
        id_cols = F.unfold(ids, k, dilation=d, padding=p, stride=s)[0].long()  # [C*kh*kw, L], 0 = padding
        a_cols = F.unfold(a.reshape(1, C, H, W), k, dilation=d, padding=p, stride=s)[0]  # [CKK, L]
        wmat = module.weight.detach().reshape(module.out_channels, -1)  # [O, CKK]
        wt = (wmat[:, :, None] * a_cols[None, :, :]).abs()  # [O, CKK, L]
        L = a_cols.shape[1]
        src = (id_cols[None].expand_as(wt) - 1)
        dst = (torch.arange(module.out_channels)[:, None, None] * L + torch.arange(L)[None, None, :]).expand_as(wt)
        real = (id_cols[None].expand_as(wt) > 0)
        src, dst, wt = src[real] + src_off, dst[real] + dst_off, wt[real]
    else:
        C, H, W = a.shape
        k, s, p = pair(module.kernel_size), pair(module.stride), pair(module.padding)
        if isinstance(module, nn.MaxPool2d) and maxpool_rule == "argmax":
            pooled, idx = F.max_pool2d(a.reshape(1, C, H, W), k, s, p, return_indices=True)
            idx = idx[0].reshape(C, -1)  # flat H*W index of the winner in each channel
            L = idx.shape[1]
            src = (torch.arange(C)[:, None] * H * W + idx).flatten()
            dst = torch.arange(C * L)
            wt = a.reshape(C, -1).gather(1, idx).abs().flatten()
            src, dst = src + src_off, dst + dst_off
        else:
            ids = torch.arange(1, C * H * W + 1, dtype=torch.float64).reshape(1, C, H, W)
            id_cols = F.unfold(ids, k, padding=p, stride=s)[0].long().reshape(C, k[0] * k[1], -1)
            a_cols = F.unfold(a.reshape(1, C, H, W), k, padding=p, stride=s)[0].reshape(C, k[0] * k[1], -1)
            L = a_cols.shape[2]
            wt = a_cols.abs()
            if isinstance(module, nn.AvgPool2d):
                wt = wt / (k[0] * k[1])
            dst = (torch.arange(C)[:, None, None] * L + torch.arange(L)[None, None, :]).expand_as(wt)
            real = id_cols > 0
            src, dst, wt = id_cols[real] - 1 + src_off, dst[real] + dst_off, wt[real]
    keep = wt != 0
    return src[keep].numpy().astype(np.int64), dst[keep].numpy().astype(np.int64), wt[keep].numpy().astype(np.float32)


def gudhi_diagram(src, dst, wt, keep_zero):
    """Superlevel persistence via GUDHI: every simplex inserted at minus its value."""
    st = gudhi.SimplexTree()
    if len(wt) == 0:
        return [], [], [], 0
    verts = np.unique(np.concatenate([src, dst]))
    birth = np.full(int(verts.max()) + 1, -np.inf)
    np.maximum.at(birth, src, wt.astype(np.float64))
    np.maximum.at(birth, dst, wt.astype(np.float64))
    st.insert_batch(verts[None, :].astype(np.int32), -birth[verts])
    st.insert_batch(np.stack([src, dst]).astype(np.int32), -wt.astype(np.float64))
    st.compute_persistence(min_persistence=-1.0 if keep_zero else 0.0, persistence_dim_max=True)
    h0 = st.persistence_intervals_in_dimension(0)
    h1 = st.persistence_intervals_in_dimension(1)
    finite = sorted(((-b, -d) for b, d in h0 if math.isfinite(d)), reverse=True)
    essential = sorted((-b for b, d in h0 if not math.isfinite(d)), reverse=True)
    h1b = sorted((-b for b, _ in h1), reverse=True)
    return finite, essential, h1b, len(verts)


def summary_of(finite):
    life = [float(b) - float(d) for b, d in finite]
    total = sum(life)
    entropy = -sum((l / total) * math.log(l / total) for l in life if l > 0) if total > 0 else 0.0
    return total, max(life, default=0.0), entropy


def check(net_fn, folder, bin_path, n_samples, images, options, train_steps):
    torch.manual_seed(sum(map(ord, net_fn.__name__)))
    name, input_shape, layers = net_fn()
    model, spec_path = write_model(folder, name, input_shape, layers, train_steps)
    if images is not None and input_shape == [1, 28, 28]:
        x = images[:n_samples]
    else:
        x = torch.rand(n_samples, *input_shape)
    ops = graph_ops(layers)
    captured = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, key=key: captured.__setitem__(key, inp[0].detach().clone()))
             for key, m in ops]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    act_path = folder / f"{name}-acts.safetensors"
    save_file({k: v.contiguous() for k, v in captured.items()}, str(act_path))

    include_input = options.get("include_input", True)
    maxpool_rule = options.get("maxpool_edges", "all")
    keep_zero = options.get("keep_zero", False)
    out_path = folder / f"{name}-out.json"
    cmd = [bin_path, "diagrams", "--spec", str(spec_path), "--activations", str(act_path),
           "--out", str(out_path), "--scopes", "network,layers", "--h1-diagram", "--maxpool-edges", maxpool_rule]
    if not include_input:
        cmd.append("--no-input")
    if keep_zero:
        cmd.append("--keep-zero-persistence")
    subprocess.run(cmd, check=True)
    ours = json.loads(out_path.read_text())

    offsets = unit_offsets(layers, input_shape, include_input)

    failures = 0
    compared = 0
    deviation = 0.0
    for i in range(n_samples):
        per_op = []
        for (key, m), (src_off, dst_off) in zip(ops, offsets):
            if src_off is None:
                per_op.append((np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)))
            else:
                per_op.append(op_edges(m, captured[key][i], src_off, dst_off, maxpool_rule))
        scopes = {"network": tuple(np.concatenate(parts) for parts in zip(*per_op))}
        for (key, _), edges in zip(ops, per_op):
            scopes[key] = edges
        ours_scopes = {s["scope"]: s for s in ours["samples"][i]["scopes"]}
        assert list(ours_scopes) == ["network"] + [k for k, _ in ops], list(ours_scopes)
        for scope, (src, dst, wt) in scopes.items():
            o = ours_scopes[scope]
            finite, essential, h1, nv = gudhi_diagram(src, dst, wt, keep_zero)
            edge_weight = {(int(s), int(d)): float(w) for s, d, w in zip(src, dst, wt)}
            our_finite = [(b, d) for b, d, _, _ in o["h0"]]
            problems = []
            if o["summary"]["n_edges"] != len(wt):
                problems.append(f"n_edges {o['summary']['n_edges']} vs unfold {len(wt)}")
            if o["summary"]["n_vertices"] != nv:
                problems.append(f"n_vertices {o['summary']['n_vertices']} vs {nv}")
            want = finite + [(b, None) for b in essential]
            scale = tol.diagram_scale(want)
            h0_problems = tol.diagram_problems(our_finite + [(b, None) for b in o["h0_essential"]], want)
            if h0_problems:
                problems.append(f"H0 differs from GUDHI: {'; '.join(h0_problems)}")
            elif finite:
                deviation = max(deviation, tol.max_deviation(our_finite, finite))
            if not tol.sorted_values_match(o["h1"], h1, scale):
                problems.append(f"H1 differs: {len(o['h1'])} vs GUDHI {len(h1)}")
            s = o["summary"]
            if s["h1_count"] != len(h1) or s["h0_essential"] != len(essential) or s["h0_pairs"] != len(finite):
                problems.append("h1_count, h0_essential or h0_pairs count differs")
            problems += tol.own_summary_problems(s, summary_of(our_finite))
            problems += tol.reference_summary_problems(s, finite, summary_of(finite), scale)
            for b, d, u, v in o["h0"]:
                w = edge_weight.get((u, v))
                if w is None or not tol.close(w, d, scale=scale):
                    problems.append(f"killing edge ({u},{v}) at {d} is not an edge of that weight")
                    break
            status = "ok" if not problems else "FAIL " + "; ".join(problems)
            failures += bool(problems)
            compared += 1
            print(f"{name:<10} {str(options):<55} sample {i} {scope:<8} E={len(wt):>7} V={nv:>5} "
                  f"H0={len(finite):>5} ess={len(essential)} H1={len(h1):>7} {status}")
    return failures, compared, deviation


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("ACTOPO_BIN", "target/release/actopo"))
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--train-steps", type=int, default=300, help="Adam steps on CCFF before the check")
    args = ap.parse_args()
    tol.self_test()
    print(f"comparison: {tol.STATED}; tolerance self-test passed")
    test = fashion("t10k", max(args.samples, 8))
    images = None if test is None else test[0]
    print("inputs:", "Fashion-MNIST test images" if images is not None else "uniform random (Fashion-MNIST not installed)")
    runs = [
        (net_ccff, {}),
        (net_geometry, {}),
        (net_geometry, {"include_input": False, "keep_zero": True}),
        (net_small_conv, {}),
        (net_small_conv, {"maxpool_edges": "argmax", "keep_zero": True}),
    ]
    failures = 0
    compared = 0
    deviation = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for net_fn, opts in runs:
            failed, done, dev = check(net_fn, Path(tmp), args.bin, args.samples, images, opts, args.train_steps)
            failures += failed
            compared += done
            deviation = max(deviation, dev)
    print(f"GUDHI cross-check: {compared} (net, sample, scope) diagrams compared ({tol.STATED}); "
          f"largest relative deviation of a birth or death: {deviation:.2g}")
    print(f"gudhi: {compared - failures} passed, {failures} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

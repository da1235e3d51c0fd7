"""Compare actopo's FGSM and PGD with the same attacks written in PyTorch.

Runs `actopo run` with FGSM (L-inf), PGD L-inf and PGD L2 (no random start, so both sides are
deterministic) on the demo CCFF model and Fashion-MNIST test images, implements the same attacks
here with torch autograd (summed cross-entropy, gradient sign / normalised gradient steps, projection,
clipping to [0, 1]; batches of 32 padded with zeros like actopo), and compares per sample: the
prediction on the adversarial input, attack success, the L-inf and L2 size of the perturbation, and,
for the first samples, the network-scope summary against GUDHI on PyTorch's adversarial graph.

Predictions must agree (a differing one only on a near-tie of PyTorch's logits) and attack success
must follow from them; perturbation sizes and summaries are compared with the tolerance of
tests/python/tolerance.py (f32 rounding: 1e-5 of the value, + 5e-6 of the diagram's largest value
for summaries; a layer's terms may be summed in a different order here than in actopo's libtorch). PyTorch runs with one intra-op thread, as actopo's
CPU forward does (src/forward/mod.rs calls tch::set_num_threads(1)). Attacks that take the sign of
the gradient stay comparable only while no gradient entry is within rounding of zero, which holds
for these inputs; a failure there shows as a large perturbation difference on one sample.

Usage: python scripts/crosscheck_attacks.py [--samples 64] [--bin target/release/actopo]
Prints one table row per attack and 'attacks: N passed, M failed'; exit code 1 on any mismatch.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "python"))
import gudhi_crosscheck as gc  # noqa: E402
import tolerance as tol  # noqa: E402

CHUNK = 32
ATTACKS = [
    ("fgsm-0.1", dict(kind="fgsm", eps=0.1)),
    ("pgd-linf-0.1", dict(kind="pgd", eps=0.1, norm="linf", steps=10, step_size=0.025, random_start=False)),
    ("pgd-l2-1.5", dict(kind="pgd", eps=1.5, norm="l2", steps=10, step_size=0.375, random_start=False)),
]


def chunked(fn, x, y):
    out = []
    for i in range(0, len(x), CHUNK):
        xb, yb = x[i:i + CHUNK], y[i:i + CHUNK]
        rows = len(xb)
        if rows < CHUNK:
            xb = torch.cat([xb, torch.zeros(CHUNK - rows, *xb.shape[1:])])
            yb = torch.cat([yb, torch.zeros(CHUNK - rows, dtype=yb.dtype)])
        out.append(fn(xb, yb, rows)[:rows])
    return torch.cat(out)


def grad(model, x, y, rows):
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x)[:rows], y[:rows], reduction="sum")
    (g,) = torch.autograd.grad(loss, x)
    return g


def fgsm(model, eps):
    return lambda x, y, rows: (x + eps * grad(model, x, y, rows).sign()).clamp(0, 1).detach()


def pgd(model, eps, norm, steps, step_size):
    def run(x, y, rows):
        adv = x.clone()
        for _ in range(steps):
            g = grad(model, adv, y, rows)
            with torch.no_grad():
                if norm == "linf":
                    adv = adv + step_size * g.sign()
                    delta = (adv - x).clamp(-eps, eps)
                else:
                    gn = g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
                    adv = adv + (g / gn) * step_size
                    delta = adv - x
                    factor = (eps / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).clamp_max(1.0)
                    delta = delta * factor.view(-1, 1, 1, 1)
                adv = (x + delta).clamp(0, 1)
        return adv.detach()
    return run


def toml_attack(name, a):
    lines = ["[[attacks]]", f'name = "{name}"']
    for k, v in a.items():
        lines.append(f"{k} = {gc.toml_value(v)}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "target/release/actopo"))
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--gudhi-samples", type=int, default=3)
    args = ap.parse_args()
    tol.self_test()
    torch.set_num_threads(1)  # as actopo's CPU forward (src/forward/mod.rs)
    print(f"attacks: {tol.STATED}; PyTorch on 1 thread like actopo; tolerance self-test passed")
    x, y = gc.fashion("t10k", args.samples)
    _, _, layers = gc.net_ccff()
    model = torch.nn.Sequential(*[m for _, m, _ in layers]).eval()
    model.load_state_dict(load_file(str(ROOT / "models/ccff.safetensors")))
    for p in model.parameters():
        p.requires_grad_(False)

    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "attacks.toml"
        cfg.write_text("\n".join([
            "[model]", f'spec = "{ROOT / "models/ccff.toml"}"', 'device = "cpu"',
            "[data]", '''shards = ["/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"]''', f"limit = {args.samples}",
            "[output]", f'dir = "{tmp}/out"',
        ] + [toml_attack(n, a) for n, a in ATTACKS]) + "\n")
        subprocess.run([args.bin, "run", str(cfg)], check=True)
        rows = pq.read_table(f"{tmp}/out/summary/t10k-images-idx3-ubyte.parquet").to_pylist()

    ours = {(r["variant"], r["index"]): r for r in rows if r["scope"] == "network"}
    passed = failed = 0
    print(f"{'attack':<14} {'pred agree':>10} {'success ours':>12} {'success torch':>13} {'max |dL2|':>10} {'max |dLinf|':>11} {'GUDHI':>6}")
    ops = gc.graph_ops(layers)
    offsets = gc.unit_offsets(layers, [1, 28, 28])
    for name, a in ATTACKS:
        fn = fgsm(model, a["eps"]) if a["kind"] == "fgsm" else pgd(model, a["eps"], a["norm"], a["steps"], a["step_size"])
        adv = chunked(fn, x, y)
        with torch.no_grad():
            logits = chunked(lambda xb, yb, rows: model(xb), adv, y)
        pred = logits.argmax(1)
        delta = (adv - x).flatten(1)
        l2, linf = delta.norm(dim=1), delta.abs().amax(dim=1)
        agree, consistent, sizes_close, succ_ours, max_dl2, max_dlinf = 0, 0, 0, 0, 0.0, 0.0
        for i in range(len(x)):
            r = ours[(name, i)]
            agree += tol.argmax_agrees(r["pred"], logits[i])
            consistent += r["attack_success"] == (r["pred"] != int(y[i]))
            succ_ours += r["attack_success"]
            sizes_close += tol.close(r["perturbation_l2"], float(l2[i])) and tol.close(r["perturbation_linf"], float(linf[i]))
            max_dl2 = max(max_dl2, abs(r["perturbation_l2"] - float(l2[i])))
            max_dlinf = max(max_dlinf, abs(r["perturbation_linf"] - float(linf[i])))
        gudhi_ok = 0
        for i in range(min(args.gudhi_samples, len(x))):
            captured = {}
            hooks = [m.register_forward_hook(lambda mod, inp, out, key=key: captured.__setitem__(key, inp[0].detach()))
                     for key, m in ops]
            # the same padded 32-sample batch actopo's forward pass sees (libtorch rounds by batch size)
            base = i - i % CHUNK
            batch = adv[base:base + CHUNK]
            batch = torch.cat([batch, torch.zeros(CHUNK - len(batch), *batch.shape[1:])])
            with torch.no_grad():
                model(batch)
            for h in hooks:
                h.remove()
            per_op = [gc.op_edges(m, captured[key][i - base], s, d, "all") for (key, m), (s, d) in zip(ops, offsets)]
            src, dst, wt = (np.concatenate(p) for p in zip(*per_op))
            finite, essential, _, nv = gc.gudhi_diagram(src, dst, wt, False)
            r = ours[(name, i)]
            scale = tol.diagram_scale(finite + [(b, None) for b in essential])
            summary_problems = tol.reference_summary_problems(r, finite, gc.summary_of(finite), scale)
            same = r["n_edges"] == len(wt) and r["n_vertices"] == nv and not summary_problems
            if not same:
                print(f"  {name} sample {i}: ours E={r['n_edges']} V={r['n_vertices']} vs GUDHI on PyTorch's input"
                      f" E={len(wt)} V={nv}; {'; '.join(summary_problems)}")
            gudhi_ok += same
        succ_torch = int((pred != y).sum())
        n = len(x)
        ok = agree == n and consistent == n and sizes_close == n and gudhi_ok == min(args.gudhi_samples, n)
        passed, failed = passed + ok, failed + (not ok)
        print(f"{name:<14} {agree:>6}/{n:<3} {succ_ours / n:>12.3f} {succ_torch / n:>13.3f} {max_dl2:>10.2e} {max_dlinf:>11.2e} "
              f"{gudhi_ok:>3}/{min(args.gudhi_samples, n)}  {'ok' if ok else 'MISMATCH'}")
    print(f"attacks: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

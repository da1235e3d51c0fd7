"""Checks scripts/export_torch.py on torchvision's resnet18, vgg11_bn, mobilenet_v2 and densenet121
(3x224x224, random weights and batch-norm statistics, fixed seed), on a small module of our own that
uses most of the mapped ops, and on a model it must refuse.

Each exported model is run again by a small interpreter written here in plain PyTorch that reads
only the written TOML and safetensors (not the exporter's code, not actopo's Rust), and its outputs
are compared with the reference outputs the exporter wrote. Also checked: the weights file holds
exactly the tensors the layers use, f32, equal to the model's own (state-dict names for modules
called once); the spec has one conv2d / linear / batch norm layer per such module; the reference
outputs are the model's; a refusal lists every unmappable node with its name, target and code line
and exits with status 2. With `--bin target/release/actopo`, and a binary whose `validate` takes a
spec, each export is also checked by `actopo validate SPEC`.

Tolerance: the interpreter runs the same PyTorch kernels on the same batch as the reference, but
not necessarily in the same order of f32 sums (a batch norm applied separately, a residual add in
another order), so an output may differ by f32 rounding: |ours - reference| <= 1e-5 * max|reference|
+ 1e-6 (about 80 ulps of the largest output).

Usage: python tests/python/export_check.py [--bin target/release/actopo] [--keep DIR]
"""

import argparse
import inspect
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[2]
EXPORTER = ROOT / "scripts" / "export_torch.py"
sys.path.insert(0, str(EXPORTER.parent))
import export_torch  # noqa: E402

REL_TOL, ABS_TOL = 1e-5, 1e-6
INPUT_SHAPE = (3, 224, 224)
SEED = 14


# ---------------------------------------------------------------------------------------------
# The spec's forward pass in plain PyTorch, from the files only


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def conv2d(keys, x, w, b):
    assert w.shape[0] == keys["out_channels"] and w.shape[2:] == pair(keys["kernel_size"])
    return F.conv2d(x, w, b, pair(keys.get("stride", 1)), pair(keys.get("padding", 0)),
                    pair(keys.get("dilation", 1)), keys.get("groups", 1))


def pool_args(keys):
    kernel = pair(keys["kernel_size"])
    return kernel, pair(keys.get("stride", kernel)), pair(keys.get("padding", 0))


def batch_norm(keys, x, t):
    return F.batch_norm(x, t["running_mean"], t["running_var"], t["weight"], t["bias"], False, 0.0,
                        keys.get("eps", 1e-5))


OPS = {
    "conv2d": lambda k, xs, t: conv2d(k, xs[0], t["weight"], t.get("bias")),
    "linear": lambda k, xs, t: F.linear(xs[0], t["weight"], t.get("bias")),
    "max_pool2d": lambda k, xs, t: F.max_pool2d(xs[0], *pool_args(k)),
    "avg_pool2d": lambda k, xs, t: F.avg_pool2d(xs[0], *pool_args(k)),
    "adaptive_avg_pool2d": lambda k, xs, t: F.adaptive_avg_pool2d(xs[0], pair(k["output_size"])),
    "add": lambda k, xs, t: sum(xs[1:], xs[0]),
    "cat": lambda k, xs, t: torch.cat(xs, k.get("dim", 1)),
    "flatten": lambda k, xs, t: torch.flatten(xs[0], k.get("start_dim", 1)),
    "reshape": lambda k, xs, t: xs[0].reshape(xs[0].shape[0], *k["shape"]),
    "batch_norm2d": lambda k, xs, t: batch_norm(k, xs[0], t),
    "batch_norm1d": lambda k, xs, t: batch_norm(k, xs[0], t),
    "relu": lambda k, xs, t: F.relu(xs[0]),
    "relu6": lambda k, xs, t: F.relu6(xs[0]),
    "leaky_relu": lambda k, xs, t: F.leaky_relu(xs[0], k.get("negative_slope", 0.01)),
    "sigmoid": lambda k, xs, t: torch.sigmoid(xs[0]),
    "tanh": lambda k, xs, t: torch.tanh(xs[0]),
    "hardtanh": lambda k, xs, t: F.hardtanh(xs[0], k.get("min_val", -1.0), k.get("max_val", 1.0)),
    "gelu": lambda k, xs, t: F.gelu(xs[0], approximate=k.get("approximate", "none")),
    "silu": lambda k, xs, t: F.silu(xs[0]),
    "elu": lambda k, xs, t: F.elu(xs[0], k.get("alpha", 1.0)),
    "softplus": lambda k, xs, t: F.softplus(xs[0], k.get("beta", 1.0), k.get("threshold", 20.0)),
    "hardswish": lambda k, xs, t: F.hardswish(xs[0]),
    "dropout": lambda k, xs, t: xs[0],
    "identity": lambda k, xs, t: xs[0],
}
TENSORS = {"conv2d": ("weight", "bias"), "linear": ("weight", "bias"),
           "batch_norm2d": ("weight", "bias", "running_mean", "running_var"),
           "batch_norm1d": ("weight", "bias", "running_mean", "running_var")}


def run_spec(spec_path, x):
    """The spec's output for the batch x, and the names of the tensors its layers read."""
    spec = tomllib.loads(spec_path.read_text())
    assert spec["format_version"] == 2 and list(spec["input_shape"]) == list(x.shape[1:])
    weights = load_file(str(spec_path.parent / spec["weights"]))
    values, used, previous = {"input": x}, set(), "input"
    with torch.no_grad():
        for i, layer in enumerate(spec["layers"]):
            name = layer.get("name", str(i))
            assert name not in values, f"layer name {name} twice"
            keys = {k: v for k, v in layer.items() if k not in ("name", "op", "inputs")}
            wanted = [s for s in TENSORS.get(layer["op"], ()) if s != "bias" or keys.get("bias", True)
                      or layer["op"].startswith("batch_norm")]
            tensors = {s: weights[f"{name}.{s}"] for s in wanted}
            used |= {f"{name}.{s}" for s in wanted}
            # every input must be written before it is read: the file is in topological order
            operands = [values[n] for n in layer.get("inputs", [previous])]
            values[name] = OPS[layer["op"]](keys, operands, tensors)
            previous = name
    return values[previous], used, spec, weights


# ---------------------------------------------------------------------------------------------
# Checks of one export


def max_abs(a, b):
    return float((a - b).abs().max())


def within_tolerance(ours, reference):
    return max_abs(ours, reference) <= REL_TOL * float(reference.abs().max()) + ABS_TOL


def check_export(label, model, spec_path, failures):
    """Re-runs the written spec and compares; returns the max abs difference."""
    ref = load_file(str(spec_path.with_name(spec_path.stem + ".reference.safetensors")))
    out, used, spec, weights = run_spec(spec_path, ref["input"])
    diff = max_abs(out, ref["output"])
    if not within_tolerance(out, ref["output"]):
        failures.append(f"{label}: spec re-run differs from the reference by {diff:.3g}")
    with torch.no_grad():
        own = model.eval()(ref["input"])
    if not within_tolerance(own, ref["output"]):
        failures.append(f"{label}: the reference outputs are not the model's ({max_abs(own, ref['output']):.3g})")
    if set(weights) != used:
        failures.append(f"{label}: weights file tensors differ from the layers' "
                        f"(unused {sorted(set(weights) - used)[:5]}, missing {sorted(used - set(weights))[:5]})")
    if any(t.dtype != torch.float32 for t in weights.values()):
        failures.append(f"{label}: weights not all f32")
    check_tensors_equal_model(label, model, weights, failures)
    check_layer_counts(label, model, spec, failures)
    return diff, spec, weights


def check_tensors_equal_model(label, model, weights, failures):
    """A tensor named after a module's parameter or buffer equals it exactly."""
    state = model.state_dict()
    named = [k for k in weights if k in state]
    if not named:
        failures.append(f"{label}: no tensor has a state-dict name")
    for key in named:
        if not torch.equal(weights[key], state[key].float()):
            failures.append(f"{label}: {key} differs from the model's")


def check_layer_counts(label, model, spec, failures):
    kinds = {"conv2d": nn.Conv2d, "linear": nn.Linear, "batch_norm2d": nn.BatchNorm2d,
             "batch_norm1d": nn.BatchNorm1d}
    ops = [layer["op"] for layer in spec["layers"]]
    for op, cls in kinds.items():
        modules = sum(type(m) is cls for m in model.modules())
        if ops.count(op) != modules:
            failures.append(f"{label}: {ops.count(op)} {op} layers for {modules} {cls.__name__} modules")


def randomize_batch_norms(model, seed):
    """Running statistics and affine parameters away from their defaults (0, 1, 1, 0), so a
    swapped or missing tensor changes the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                if m.affine:
                    m.weight.copy_(0.5 + torch.rand(n, generator=g))
                    m.bias.copy_(0.1 * torch.randn(n, generator=g))
    return model


def run_exporter(*args):
    return subprocess.run([sys.executable, str(EXPORTER), *map(str, args)], capture_output=True, text=True)


# ---------------------------------------------------------------------------------------------
# A user's own module, and one the exporter must refuse


class SmallNet(nn.Module):
    """A residual add, a cat, a grouped conv, adaptive pooling to a size that does not divide the
    input, a global mean, batch norm 1d after a linear layer, an in-place ReLU whose result is not
    used, and activations as modules and functions."""

    def __init__(self, num_classes=10, width=8):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.act = nn.ReLU(inplace=True)  # called twice: its layers get the fx node names
        self.block = nn.Sequential(
            nn.Conv2d(width, width, 3, padding="same", groups=width), nn.BatchNorm2d(width, affine=False),
            nn.Hardswish(), nn.Conv2d(width, width, 1, groups=2), nn.ReLU6())
        self.branch = nn.Conv2d(width, 4, 3, padding=2, dilation=2)
        self.pool = nn.AdaptiveAvgPool2d((3, None))
        self.fc1 = nn.Linear((width + 4) * (3 * 10 + 1), 32)
        self.bn1d = nn.BatchNorm1d(32)
        self.drop = nn.Dropout(0.25)
        self.head = nn.Linear(32, num_classes)
        self.out = nn.Sequential(nn.Hardtanh(-3.0, 3.0), nn.Identity())

    def forward(self, x):
        x = self.act(self.bn(self.stem(x)))
        x = x + self.block(x)
        x = self.act(x)
        z = torch.tanh(F.leaky_relu(self.branch(x), 0.2))
        x = torch.cat([x, z], dim=1)
        x = F.avg_pool2d(F.max_pool2d(x, 2), 3, stride=1, padding=1)
        x = self.pool(x)
        x = F.elu(x, alpha=0.5) + F.softplus(x, beta=2.0)
        x = torch.cat([x.view(x.size(0), -1), x.mean((2, 3))], 1)
        x = F.gelu(self.bn1d(self.fc1(x)), approximate="tanh")
        x.relu_()  # its result unused: it works by overwriting x
        x = self.head(F.silu(self.drop(x)))
        return self.out(torch.sigmoid(x) + x.flatten(1))


class Unsupported(nn.Module):
    """Four nodes the exporter cannot map: reflect padding, a ceil-mode pool that grows the output,
    a reduction and a softmax."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")
        self.pool = nn.MaxPool2d(2, ceil_mode=True)

    def forward(self, x):
        x = self.pool(self.conv(x))
        x = x.sum(dim=2)
        return torch.softmax(x.flatten(1), 1)


def line_of(cls, text):
    lines, first = inspect.getsourcelines(cls.forward)
    return first + next(i for i, line in enumerate(lines) if text in line)


def check_refusal(tmp, failures):
    proc = run_exporter("--model", f"{Path(__file__).resolve()}:Unsupported", "--input-shape", "3,9,9",
                        "--out", tmp / "unsupported")
    if proc.returncode != 2:
        failures.append(f"refusal: exit status {proc.returncode}, expected 2\n{proc.stderr}")
    graph = torch.fx.symbolic_trace(Unsupported()).graph
    names = {str(n.target): n.name for n in graph.nodes}
    expected = [
        (names["conv"], "torch.nn.Conv2d", line_of(Unsupported, "self.pool(self.conv(x))"), "padding_mode"),
        (names["pool"], "torch.nn.MaxPool2d", line_of(Unsupported, "self.pool(self.conv(x))"), "ceil_mode"),
        (names["sum"], "method Tensor.sum", line_of(Unsupported, "x.sum("), "no spec op"),
        (next(v for k, v in names.items() if "softmax" in k), "softmax", line_of(Unsupported, "softmax"),
         "no spec op"),
    ]
    lines = [line for line in proc.stderr.splitlines() if line.strip().startswith("- node")]
    for node, target, line, reason in expected:
        hits = [ln for ln in lines if f"`{node}`" in ln and target in ln and f"export_check.py:{line}" in ln
                and reason in ln]
        if len(hits) != 1:
            failures.append(f"refusal: no line names node `{node}`, {target}, export_check.py:{line} "
                            f"and '{reason}':\n{proc.stderr}")
    if len(lines) != len(expected):
        failures.append(f"refusal: {len(lines)} nodes listed, expected {len(expected)}:\n{proc.stderr}")
    if any((tmp / f"unsupported{s}").exists() for s in (".toml", ".safetensors")):
        failures.append("refusal: files were written")
    print(f"refusal: exit {proc.returncode}, {len(lines)} nodes listed, e.g. {lines[-1].strip() if lines else ''}")


def check_custom(tmp, failures, validate):
    torch.manual_seed(SEED)
    model = randomize_batch_norms(SmallNet(num_classes=7), SEED).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "small.safetensors"))
    started = time.perf_counter()
    proc = run_exporter("--model", f"{Path(__file__).resolve()}:SmallNet", "--kwargs", '{"num_classes": 7}',
                        "--state-dict", tmp / "small.safetensors", "--input-shape", "3,20,20",
                        "--out", tmp / "small", "--reference-count", 8, "--seed", 3)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        failures.append(f"custom: exporter failed:\n{proc.stderr}")
        return
    diff, spec, weights = check_export("custom", model, tmp / "small.toml", failures)
    missing = set(OPS) - {layer["op"] for layer in spec["layers"]}
    if missing:
        failures.append(f"custom: SmallNet no longer exercises {sorted(missing)}")
    report("SmallNet (own module, CLI)", spec, weights, seconds, diff, validate(tmp / "small.toml"))
    check_planted_errors(tmp, model, failures)


def check_planted_errors(tmp, model, failures):
    """The comparison catches a wrong file: the in-place ReLU dropped, a wrong eps, two batch-norm
    statistics swapped."""
    text = (tmp / "small.toml").read_text()
    weights = load_file(str(tmp / "small.safetensors"))
    swapped = weights | {"bn.running_mean": weights["bn.running_var"], "bn.running_var": weights["bn.running_mean"]}
    save_file(swapped, str(tmp / "swapped.safetensors"))
    plants = {
        "in-place relu dropped": text.replace('name = "relu_"\nop = "relu"', 'name = "relu_"\nop = "identity"'),
        "eps changed": text.replace("eps = 1e-05", "eps = 0.5", 1),
        "statistics swapped": text.replace('weights = "small.safetensors"', 'weights = "swapped.safetensors"'),
    }
    shutil.copy(tmp / "small.reference.safetensors", tmp / "planted.reference.safetensors")
    for label, planted in plants.items():
        if planted == text:
            failures.append(f"planted error '{label}': the spec text to change was not found")
            continue
        (tmp / "planted.toml").write_text(planted)
        caught = []
        check_export(label, model, tmp / "planted.toml", caught)
        if not any("differs from the reference" in c for c in caught):
            failures.append(f"planted error '{label}' was not caught")
    print(f"planted errors: {len(plants)} planted, each must fail the comparison")


def report(label, spec, weights, seconds, diff, validated):
    values = sum(t.numel() for t in weights.values())
    print(f"{label}: {len(spec['layers'])} layers, {len(weights)} tensors ({values:,} values), "
          f"exported in {seconds:.1f} s, plain-PyTorch re-run max abs diff {diff:.3g}{validated}")


# ---------------------------------------------------------------------------------------------
# torchvision models


def check_torchvision(name, tmp, failures, validate, via_cli):
    torch.manual_seed(SEED)
    model = randomize_batch_norms(getattr(torchvision.models, name)(weights=None), SEED).eval()
    started = time.perf_counter()
    if via_cli:  # the dotted-name path, with the weights through --state-dict (.pt)
        torch.save(model.state_dict(), tmp / f"{name}.pt")
        started = time.perf_counter()
        proc = run_exporter("--model", f"torchvision.models.{name}", "--state-dict", tmp / f"{name}.pt",
                            "--input-shape", ",".join(map(str, INPUT_SHAPE)), "--out", tmp / name,
                            "--seed", SEED)
        if proc.returncode != 0:
            failures.append(f"{name}: exporter failed:\n{proc.stderr}")
            return
    else:
        export_torch.export(model, INPUT_SHAPE, tmp / name, seed=SEED, source=f"torchvision.models.{name}")
    seconds = time.perf_counter() - started
    diff, spec, weights = check_export(name, model, tmp / f"{name}.toml", failures)
    report(name + (" (CLI)" if via_cli else " (Python API)"), spec, weights, seconds, diff,
           validate(tmp / f"{name}.toml"))


# ---------------------------------------------------------------------------------------------
# actopo validate, when the binary has it


def validator(bin_path, failures):
    if bin_path is None:
        return lambda spec: ""
    help_text = subprocess.run([bin_path, "validate", "--help"], capture_output=True, text=True).stdout
    usage = re.search(r"Usage:.*validate.*<([^>]+)>", help_text)
    if not usage or "SPEC" not in usage.group(1).upper():
        print(f"actopo validate: {bin_path} validates configs only; its spec check is skipped")
        return lambda spec: ""

    def validate(spec):
        proc = subprocess.run([bin_path, "validate", str(spec)], capture_output=True, text=True)
        if proc.returncode != 0:
            failures.append(f"actopo validate {spec.name} failed:\n{proc.stdout}{proc.stderr}")
            return "; actopo validate FAILED"
        lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if "max abs" in ln.lower()]
        if not lines:
            failures.append(f"actopo validate {spec.name} compared no reference outputs:\n{proc.stdout}")
            return "; actopo validate: no reference comparison"
        return "\n    actopo validate: " + lines[0]

    return validate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", help="actopo binary: also run `actopo validate SPEC` on each export")
    ap.add_argument("--keep", help="write the exports here instead of a temporary folder")
    args = ap.parse_args()
    torch.set_num_threads(2)
    failures = []
    validate = validator(args.bin, failures)
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(args.keep or scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        print(f"export check: tolerance |spec re-run - reference| <= {REL_TOL:g} * max|reference| + {ABS_TOL:g}")
        check_refusal(tmp, failures)
        check_custom(tmp, failures, validate)
        for i, name in enumerate(["resnet18", "vgg11_bn", "mobilenet_v2", "densenet121"]):
            check_torchvision(name, tmp, failures, validate, via_cli=i == 0)
    if failures:
        print("export check FAILED:\n" + "\n".join(failures), file=sys.stderr)
        return 1
    print("export check: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())

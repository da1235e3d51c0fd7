"""The activation graph of a PyTorch model graph, built straight from the modules (not from a spec).

Independent of actopo's Rust code and of its spec: forward hooks on every leaf module record which
module read which tensors and what it made; from that trace alone this module works out
  - which tensor each module read (its producers: the model input or an earlier module call);
  - the unit each value belongs to, by carrying an integer "unit id" tensor beside the values:
    a graph module (conv, linear, pools, adaptive average pool, Add) makes fresh ids, a value module
    (activations, batch norm, dropout, identity) passes its input's ids on, and a shape module
    (Flatten, Reshape, Cat) is applied to the id tensors themselves, so ids are re-indexed exactly
    as PyTorch re-indexes the values;
  - which batch norms fold into the conv or linear before them (the batch norm reads that module's
    output and nothing else reads it);
  - every edge of one sample: conv taps from torch unfold (im2col) of the values and of the ids,
    padding taps dropped, groups honoured; linear as W * a; max/avg pool windows from unfold;
    adaptive average pool windows by PyTorch's rule; Add from the operand values.
The definition it implements is docs/graph.md's "model graphs" (edge weight |w * a| in f32, zero
edges left out, a batch norm folded as W' = W * gamma / sqrt(var + eps) in f32).
"""

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

INPUT = -1  # producer index of the model input


class Add(nn.Module):
    """x + y as a module, so that hooks see the operands as they enter the add."""

    def forward(self, *xs):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class Cat(nn.Module):
    """torch.cat(xs, dim) as a module (dim counts the batch dimension, as in PyTorch)."""

    def __init__(self, dim=1):
        super().__init__()
        self.dim = dim

    def forward(self, *xs):
        return torch.cat(xs, self.dim)


class Reshape(nn.Module):
    """x.reshape(N, *shape): `shape` is one sample's shape."""

    def __init__(self, *shape):
        super().__init__()
        self.shape = shape

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape)


GRAPH_MODULES = (nn.Conv2d, nn.Linear, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, Add)
SHAPE_MODULES = (nn.Flatten, Reshape, Cat)
VALUE_MODULES = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.GELU, nn.SiLU, nn.ELU, nn.Softplus, nn.Hardswish,
                 nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Dropout, nn.Identity, nn.BatchNorm1d, nn.BatchNorm2d)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def role(module):
    if isinstance(module, GRAPH_MODULES):
        return "graph"
    if isinstance(module, SHAPE_MODULES):
        return "shape"
    if isinstance(module, VALUE_MODULES):
        return "value"
    raise ValueError(f"{type(module).__name__} is not a module this check knows")


@dataclass
class Call:
    """One module call of the forward pass: the module, the calls whose outputs it read (INPUT for
    the model input) and the operand values it read (batch first), captured as it ran."""
    name: str
    module: nn.Module
    operands: list
    values: list = field(default_factory=list)
    out_shape: tuple = ()
    output: torch.Tensor = None  # graph calls only, for ReferenceGraph.self_check


def trace(model, x):
    """Runs model(x) with hooks on every leaf module; returns (calls in execution order, output)."""
    calls, keep = [], [x]
    producer = {id(x): INPUT}

    def hook(name, module, inputs, output):
        try:
            operands = [producer[id(t)] for t in inputs]
        except KeyError:
            raise ValueError(f"{name} reads a tensor no module made (an op outside a module?)") from None
        if id(output) in producer and role(module) != "value":
            raise ValueError(f"{name} returned one of its inputs")
        producer[id(output)] = len(calls)
        keep.extend([*inputs, output])  # ids stay unique while the tensors live
        graph = role(module) == "graph"
        values = [t.detach().clone() for t in inputs] if graph else []
        calls.append(Call(name, module, operands, values, tuple(output.shape[1:]),
                          output.detach().clone() if graph else None))

    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    handles = [m.register_forward_hook(lambda mod, i, o, n=n: hook(n, mod, i, o)) for n, m in leaves]
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    names = [c.name for c in calls]
    if len(set(names)) != len(names):
        raise ValueError("a module is called twice; give each use its own module")
    if producer.get(id(out)) != len(calls) - 1:
        raise ValueError("the model's output is not the last module call's output")
    return calls, out


def trace_in_chunks(model, x, chunk=32):
    """PyTorch's forward in actopo's zero-padded `chunk`-sample batches (libtorch may round a
    layer's sums differently for other batch sizes). Returns (calls with every sample's operand
    values, logits)."""
    calls, outs = None, []
    for i in range(0, len(x), chunk):
        rows = min(chunk, len(x) - i)
        padded = torch.cat([x[i:i + rows], torch.zeros(chunk - rows, *x.shape[1:])])
        part, out = trace(model, padded)
        outs.append(out[:rows])
        if calls is None:
            calls = part
            for c in calls:
                c.values = [v[:rows] for v in c.values]
                c.output = None if c.output is None else c.output[:rows]
        else:
            for c, p in zip(calls, part):
                c.values = [torch.cat([v, w[:rows]]) for v, w in zip(c.values, p.values)]
                c.output = None if c.output is None else torch.cat([c.output, p.output[:rows]])
    return calls, torch.cat(outs)


def consumers(calls, k):
    return sum(k in c.operands for c in calls)


def fold_scales(calls, batch_norm):
    """{index of a conv/linear call: its f32 per-output-channel scale gamma / sqrt(var + eps)} for
    each batch norm that folds: it reads a conv or linear call's output that nothing else reads."""
    scales = {}
    if batch_norm != "fold":
        return scales
    for c in calls:
        if not isinstance(c.module, BATCH_NORMS) or len(c.operands) != 1:
            continue
        j = c.operands[0]
        if j != INPUT and isinstance(calls[j].module, (nn.Conv2d, nn.Linear)) and consumers(calls, j) == 1:
            bn = c.module
            scales[j] = (bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)).float()
    return scales


@dataclass
class Units:
    """Unit ids of every call's output (ids of the model input: `input`); -1 = not a vertex."""
    input: torch.Tensor
    of_call: list
    vertex_layers: list  # (name, first id, number of units), in id order


def unit_ids(calls, input_shape, include_input):
    """Carries an integer id tensor through the calls: fresh ids at graph modules, the input's ids
    through value modules, shape modules applied to the id tensors."""
    n_in = int(np.prod(input_shape))
    ids_in = torch.arange(n_in).reshape(input_shape) if include_input else torch.full(input_shape, -1)
    layers = [("input", 0, n_in)] if include_input else []
    next_id = n_in if include_input else 0
    of_call = []

    def ids(k):
        return ids_in if k == INPUT else of_call[k]

    for c in calls:
        kind = role(c.module)
        if kind == "graph":
            n = int(np.prod(c.out_shape))
            of_call.append(torch.arange(next_id, next_id + n).reshape(c.out_shape))
            layers.append((c.name, next_id, n))
            next_id += n
        elif kind == "value":
            of_call.append(ids(c.operands[0]))
        else:
            of_call.append(c.module(*[ids(k)[None] for k in c.operands])[0])
        if tuple(of_call[-1].shape) != c.out_shape:
            raise AssertionError(f"{c.name}: ids {tuple(of_call[-1].shape)} vs values {c.out_shape}")
    return Units(ids_in, of_call, layers)


def pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _unfold_ids(uid, k, d, p, s):
    """unfold of an id tensor [C, H, W]: [C*kh*kw, L] ids, -1 at padding taps (and non-units)."""
    shifted = (uid + 1).to(torch.float64)[None]  # exact for ids < 2^53; 0 = padding after unfold
    return F.unfold(shifted, k, dilation=d, padding=p, stride=s)[0].round().long() - 1


def conv_edges(m, a, uid, dst, scale):
    C, H, W = a.shape
    k, s, p, d = pair(m.kernel_size), pair(m.stride), pair(m.padding), pair(m.dilation)
    G, O = m.groups, m.out_channels
    weight = m.weight.detach()
    if scale is not None:
        weight = weight * scale.reshape(-1, 1, 1, 1)  # f32, as W' = W * scale
    cols_a = F.unfold(a[None], k, dilation=d, padding=p, stride=s)[0]
    cols_u = _unfold_ids(uid, k, d, p, s)
    L = cols_a.shape[1]
    cols_a = cols_a.reshape(G, (C // G) * k[0] * k[1], L)
    cols_u = cols_u.reshape(G, (C // G) * k[0] * k[1], L)
    wmat = weight.reshape(G, O // G, (C // G) * k[0] * k[1])
    wt = wmat[:, :, :, None] * cols_a[:, None, :, :]  # [G, O/G, CK/G, L]
    src = cols_u[:, None].expand_as(wt)
    dst = dst.reshape(G, O // G, 1, L).expand_as(wt)
    return src, dst, wt


def linear_edges(m, a, uid, dst, scale):
    if a.dim() != 1:
        raise ValueError("linear on a non-flat input")
    weight = m.weight.detach()
    if scale is not None:
        weight = weight * scale[:, None]
    wt = weight * a[None, :]
    return uid[None, :].expand_as(wt), dst[:, None].expand_as(wt), wt


def pool_edges(m, a, uid, dst):
    C = a.shape[0]
    k, s, p = pair(m.kernel_size), pair(m.stride), pair(m.padding)
    if isinstance(m, nn.MaxPool2d) and (pair(m.dilation) != (1, 1) or m.ceil_mode):
        raise ValueError("max pool with dilation or ceil_mode")
    if isinstance(m, nn.AvgPool2d) and (m.ceil_mode or not m.count_include_pad or m.divisor_override):
        raise ValueError("avg pool other than floor mode with padding counted")
    cols_a = F.unfold(a[None], k, padding=p, stride=s)[0].reshape(C, k[0] * k[1], -1)
    cols_u = _unfold_ids(uid, k, (1, 1), p, s).reshape(C, k[0] * k[1], -1)
    wt = cols_a
    if isinstance(m, nn.AvgPool2d):
        wt = wt / (k[0] * k[1])
    return cols_u, dst.reshape(C, 1, -1).expand_as(wt), wt


def adaptive_windows(size, out):
    """PyTorch's adaptive pooling windows along one axis: [floor(i*size/out), ceil((i+1)*size/out))."""
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


def adaptive_edges(m, a, uid, dst):
    C, H, W = a.shape
    oh, ow = dst.shape[1:]
    parts = []
    for i, (r0, r1) in enumerate(adaptive_windows(H, oh)):
        for j, (c0, c1) in enumerate(adaptive_windows(W, ow)):
            win_a = a[:, r0:r1, c0:c1].reshape(C, -1)
            wt = win_a / ((r1 - r0) * (c1 - c0))
            parts.append((uid[:, r0:r1, c0:c1].reshape(C, -1), dst[:, i, j][:, None].expand_as(wt), wt))
    return tuple(torch.cat([p[n].flatten() for p in parts]) for n in range(3))


def add_edges(values, uids, dst):
    """Operand k's unit i -> output unit i, weight |operand k's value at i|."""
    src = torch.cat([u.flatten() for u in uids])
    wt = torch.cat([v.flatten() for v in values])
    return src, dst.flatten().repeat(len(uids)), wt


def call_contributions(call, sample, ids_of_operands, dst, scale):
    """Every (src, dst, signed w * a) of one graph call for one sample (pools: a, or a / window
    size), flat, padding taps and non-units (src -1) included."""
    m = call.module
    a = [v[sample] for v in call.values]
    if isinstance(m, Add):
        src, dst, wt = add_edges(a, ids_of_operands, dst)
    elif isinstance(m, nn.Conv2d):
        src, dst, wt = conv_edges(m, a[0], ids_of_operands[0], dst, scale)
    elif isinstance(m, nn.Linear):
        src, dst, wt = linear_edges(m, a[0], ids_of_operands[0], dst, scale)
    elif isinstance(m, nn.AdaptiveAvgPool2d):
        src, dst, wt = adaptive_edges(m, a[0], ids_of_operands[0], dst)
    else:
        src, dst, wt = pool_edges(m, a[0], ids_of_operands[0], dst)
    return src.flatten(), dst.flatten(), wt.flatten()


def call_edges(call, sample, ids_of_operands, dst, scale):
    """Edges (src, dst, weight |w * a| f32) of one graph call for one sample, as numpy arrays;
    edges from non-units (padding, the input when it is not a vertex layer) and of weight 0 left
    out."""
    src, dst, wt = call_contributions(call, sample, ids_of_operands, dst, scale)
    wt = wt.abs()
    keep = (src >= 0) & (wt != 0)
    return (src[keep].numpy().astype(np.int64), dst[keep].numpy().astype(np.int64),
            wt[keep].numpy().astype(np.float32))


class ReferenceGraph:
    """The traced model's activation graph: vertex layers, and each graph call's edges per sample."""

    def __init__(self, calls, input_shape, include_input, batch_norm):
        self.calls = calls
        self.units = unit_ids(calls, tuple(input_shape), include_input)
        self.scales = fold_scales(calls, batch_norm)
        self.graph_calls = [k for k, c in enumerate(calls) if role(c.module) == "graph"]

    def ids(self, k):
        return self.units.input if k == INPUT else self.units.of_call[k]

    def edges(self, sample):
        """{graph call name: (src, dst, weight)} for one sample, in execution order."""
        out = {}
        for k in self.graph_calls:
            c = self.calls[k]
            operand_ids = [self.ids(j) for j in c.operands]
            out[c.name] = call_edges(c, sample, operand_ids, self.units.of_call[k], self.scales.get(k))
        return out

    def folded(self):
        """Names of the conv/linear calls a batch norm folds into."""
        return [self.calls[k].name for k in self.scales]

    def self_check(self, sample):
        """The edges against PyTorch's own outputs: for each graph call, the signed contributions
        summed per output unit (plus the bias) must give the module's output (max pools: their
        maximum), with every input value a unit. Returns the problems found."""
        units = unit_ids(self.calls, tuple(self.units.input.shape), True)
        problems = []
        for k in self.graph_calls:
            c = self.calls[k]
            operand_ids = [units.input if j == INPUT else units.of_call[j] for j in c.operands]
            dst_ids = units.of_call[k]
            src, dst, w = call_contributions(c, sample, operand_ids, dst_ids, None)
            real = src >= 0
            index = dst[real] - int(dst_ids.min())
            want = c.output[sample].flatten().double()
            if isinstance(c.module, nn.MaxPool2d):
                got = torch.full_like(want, -np.inf).scatter_reduce(0, index, w[real].double(), "amax")
                bound = 0.0
            else:
                got = torch.zeros_like(want).index_add_(0, index, w[real].double())
                bias = getattr(c.module, "bias", None)
                if bias is not None:
                    got += bias.detach().double().repeat_interleave(want.numel() // bias.numel())
                bound = 1e-5 * float(want.abs().max()) + 1e-6
            worst = float((got - want).abs().max())
            if worst > bound:
                problems.append(f"{c.name}: edges sum to the output within {worst:.3g} (> {bound:.3g})")
        return problems

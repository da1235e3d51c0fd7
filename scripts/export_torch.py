"""Export a PyTorch model to an actopo model: a spec (format 2), its weights and reference outputs.

The model is traced with torch.fx in eval mode; every node of the traced graph becomes one spec
layer (docs/exporter.md has the table of PyTorch modules and functions and the ops they become).
A node with no spec op is refused, naming the node, its target and the model's code line; every
such node is listed at once. Writes, for `--out models/NAME`:

  NAME.toml                  the spec (format_version = 2)
  NAME.safetensors           exactly the tensors the spec's layers use, f32
  NAME.reference.safetensors `input` [N, *input_shape] (seeded standard normal) and `output`
                             [N, *output_shape] (PyTorch's outputs in eval mode), f32

Usage:
  python scripts/export_torch.py --model torchvision.models.resnet18 --input-shape 3,224,224 \\
      --out models/resnet18
  python scripts/export_torch.py --model mypackage.nets:make_net --kwargs '{"num_classes": 10}' \\
      --state-dict runs/net.pt --input-shape 1,28,28 --out models/mynet
  (`--model path/to/file.py:callable` loads a file; torchvision builders get weights=None.)

Python: `from export_torch import export; export(model, (3, 32, 32), "models/net")`.
Exit status: 0 written, 2 refused (the reasons on stderr), 1 an unexpected error.
"""

import argparse
import importlib
import importlib.util
import inspect
import json
import math
import operator
import os
import re
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

# Batch size of the shape pass: more than 1, so a node that folds the batch dimension into the
# sample's shows as changing it.
SHAPE_BATCH = 2
DEFAULT_REFERENCE_COUNT = 4
TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
DOCS = "docs/exporter.md"


class ExportError(Exception):
    """The model cannot be exported; `problems` lists every reason (one line each)."""

    def __init__(self, message, problems=()):
        super().__init__(message)
        self.message = message
        self.problems = list(problems)

    def __str__(self):
        return "\n".join([self.message] + [f"  - {p}" for p in self.problems])


class Refusal(Exception):
    """One node has no spec op (the reason)."""


@dataclass
class Layer:
    """One spec layer: the node it comes from, its op and keys, operands and tensors."""

    node: fx.Node
    op: str
    keys: dict
    operands: list  # fx.Node, or INPUT
    tensors: dict = field(default_factory=dict)  # suffix ("weight", ...) -> tensor
    module: str | None = None  # qualified name when the node calls a module
    suffix: str = ""  # a layer before the last of a node that becomes several: its name's suffix
    inplace: bool = False  # the node overwrites its first operand (ReLU(inplace=True), add_)
    name: str = ""


@dataclass
class Alias:
    """A node that passes its operand on unchanged (contiguous, clone): no layer."""

    operand: fx.Node


@dataclass
class Exported:
    """What export() wrote."""

    spec: Path
    weights: Path
    reference: Path
    layers: int
    tensors: int
    values: int
    output_shape: tuple
    seconds: float


INPUT = "input"


# ---------------------------------------------------------------------------------------------
# Tracing and shapes


class _Tracer(fx.Tracer):
    """fx's tracer (torch.nn modules are leaves) that records each node's code line."""

    def __init__(self):
        super().__init__()
        self.record_stack_traces = True


def trace(model):
    """The model's fx graph module, traced in eval mode."""
    model.eval()
    try:
        graph = _Tracer().trace(model)
    except Exception as err:  # noqa: BLE001: any tracing failure is reported with its line
        where = _frame_of_traceback(err.__traceback__)
        raise ExportError(
            f"torch.fx cannot trace the model: {type(err).__name__}: {err}",
            [f"at {where}" if where else "at an unknown line",
             "control flow on tensor values or shapes, or calls fx cannot follow, stop the trace; "
             "make that code independent of the input, or wrap the model so forward() only "
             f"runs traceable code ({DOCS}, 'Tracing')"]) from err
    return fx.GraphModule(model, graph)


def propagate_shapes(gm, input_shape):
    """Runs the graph once (ShapeProp) so every node knows its output's shape."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        names = ", ".join(n.name for n in placeholders)
        raise ExportError(f"the model's forward takes {len(placeholders)} inputs ({names}); "
                          "the exporter needs exactly one tensor input: wrap the model")
    x = torch.randn(SHAPE_BATCH, *input_shape, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(x)
    except Exception as err:  # noqa: BLE001: the model's own error, reported with the shape
        raise ExportError(f"the model does not run on an input of shape {list(input_shape)} "
                          f"(batch {SHAPE_BATCH}): {type(err).__name__}: {err}",
                          ["check --input-shape (one input, no batch dimension)"]) from err


def shape_of(node):
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if isinstance(meta, TensorMetadata) else None


def holds_tensors(node):
    """Whether the node's result is or contains a tensor (ints, sizes and None do not)."""
    return node.meta.get("tensor_meta") is not None


# ---------------------------------------------------------------------------------------------
# Where a node comes from (for messages)


def _short_path(path):
    marker = "site-packages" + os.sep
    if marker in path:
        return path.split(marker, 1)[1]
    try:
        rel = os.path.relpath(path)
        return path if rel.startswith("..") else rel
    except ValueError:
        return path


def _frame_text(path, line, func, code=""):
    text = f"{_short_path(path)}:{line} in {func}"
    return f"{text}: `{code.strip()}`" if code.strip() else text


def code_line(node):
    """The model code line that made the node: its innermost frame outside torch."""
    trace_text = node.stack_trace or ""
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)\n([^\n]*)', trace_text)
    user = [f for f in frames if not f[0].startswith(TORCH_DIR)]
    return _frame_text(*user[-1]) if user else "(no code line recorded)"


def _frame_of_traceback(tb):
    frames = [f for f in traceback.extract_tb(tb) if not f.filename.startswith(TORCH_DIR)]
    if not frames:
        return None
    f = frames[-1]
    return _frame_text(f.filename, f.lineno, f.name, f.line or "")


def _type_name(cls):
    public = getattr(nn, cls.__name__, None)
    if public is cls:
        return f"torch.nn.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def target_text(node, gm):
    if node.op == "call_module":
        return f"module {node.target}: {_type_name(type(gm.get_submodule(node.target)))}"
    if node.op == "call_method":
        return f"method Tensor.{node.target}"
    if node.op == "call_function":
        try:
            name = fx.node._get_qualified_name(node.target)
        except Exception:  # noqa: BLE001: some builtins have no qualified name
            name = getattr(node.target, "__name__", repr(node.target))
        return "function " + name.replace("_operator.", "operator.")
    return f"{node.op} {node.target}"


def problem_text(node, gm, reason):
    return f"node `{node.name}` ({target_text(node, gm)}) at {code_line(node)}: {reason}"


# ---------------------------------------------------------------------------------------------
# Reading a node's arguments


class Call:
    """One call node with its module (for call_module), shapes and arguments."""

    def __init__(self, node, gm):
        self.node = node
        self.module = gm.get_submodule(node.target) if node.op == "call_module" else None
        self.out_shape = shape_of(node)

    def arg(self, index, name, default=None):
        """Argument `name` at position `index` (counting the input as 0), or its default."""
        if index is not None and len(self.node.args) > index:
            return self.const(self.node.args[index], name)
        return self.const(self.node.kwargs.get(name, default), name)

    def const(self, value, name):
        found = []
        fx.node.map_aggregate(value, lambda v: found.append(v) if isinstance(v, fx.Node) else v)
        if found:
            raise Refusal(f"its argument `{name}` is computed at run time; the spec needs a constant")
        return value

    def tensor_arg(self, index=0, name="input"):
        value = self.node.args[index] if len(self.node.args) > index else self.node.kwargs.get(name)
        if not isinstance(value, fx.Node) or shape_of(value) is None:
            raise Refusal(f"its `{name}` is not a tensor from the model's input "
                          f"(got {_value_text(value)})")
        return value

    @property
    def in_shape(self):
        return shape_of(self.tensor_arg())

    def module_operand(self):
        """The one tensor a module is called with."""
        if len(self.node.args) != 1 or self.node.kwargs:
            raise Refusal("the module is called with more than one argument")
        return self.tensor_arg()

    def need_rank(self, rank, what):
        shape = self.in_shape
        if len(shape) != rank:
            raise Refusal(f"its input has shape {_sample(shape)} per sample; the spec's {what}")


def _value_text(value):
    if isinstance(value, fx.Node):
        return f"`{value.name}`, not a tensor"
    return repr(value)


def _sample(shape):
    return list(shape[1:])


def pair(value, what):
    """(a, b) from an int or a 1- or 2-sequence."""
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) in (1, 2) and all(isinstance(v, int) for v in value):
        return (value[0], value[-1])
    raise Refusal(f"its {what} {value!r} is not an int or a pair of ints")


def int_or_pair(p):
    return p[0] if p[0] == p[1] else [p[0], p[1]]


# ---------------------------------------------------------------------------------------------
# Graph ops and batch norm


def conv2d(call):
    m = call.module
    call.need_rank(4, "conv2d needs [C, H, W]")
    if m.padding_mode != "zeros":
        raise Refusal(f"padding_mode = {m.padding_mode!r}; the spec pads with zeros only "
                      "(set padding_mode='zeros', or pad explicitly)")
    kernel, dilation = pair(m.kernel_size, "kernel_size"), pair(m.dilation, "dilation")
    padding = conv_padding(m.padding, kernel, dilation)
    keys = {"in_channels": m.in_channels, "out_channels": m.out_channels,
            "kernel_size": int_or_pair(kernel), "stride": int_or_pair(pair(m.stride, "stride")),
            "padding": int_or_pair(padding), "dilation": int_or_pair(dilation),
            "groups": m.groups, "bias": m.bias is not None}
    tensors = {"weight": m.weight} | ({"bias": m.bias} if m.bias is not None else {})
    return Layer(call.node, "conv2d", keys, [call.module_operand()], tensors)


def conv_padding(padding, kernel, dilation):
    """Integer padding; 'same' resolves when PyTorch pads both sides alike."""
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        if any(t % 2 for t in totals):
            raise Refusal("padding='same' with an even kernel pads one side more than the other; "
                          "the spec pads both sides alike")
        return (totals[0] // 2, totals[1] // 2)
    return pair(padding, "padding")


def linear(call):
    m = call.module
    call.need_rank(2, "linear needs a flat input (put torch.flatten before it)")
    keys = {"in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None}
    tensors = {"weight": m.weight} | ({"bias": m.bias} if m.bias is not None else {})
    return Layer(call.node, "linear", keys, [call.module_operand()], tensors)


def batch_norm(op, rank):
    def convert(call):
        m = call.module
        call.need_rank(rank, f"{op} needs " + ("[C, H, W]" if rank == 4 else "[features]"))
        if not m.track_running_stats or m.running_mean is None:
            raise Refusal("track_running_stats=False: it normalises with each batch's statistics "
                          "even in eval mode, so an output depends on the other inputs")
        ones = torch.ones(m.num_features)
        tensors = {"weight": m.weight if m.affine else ones,
                   "bias": m.bias if m.affine else torch.zeros(m.num_features),
                   "running_mean": m.running_mean, "running_var": m.running_var}
        keys = {"num_features": m.num_features, "eps": float(m.eps)}
        return Layer(call.node, op, keys, [call.module_operand()], tensors)

    return convert


def pool_keys(call, kernel, stride, padding, ceil_mode):
    call.need_rank(4, "pooling needs [C, H, W]")
    k = pair(kernel, "kernel_size")
    s = k if stride is None or stride == [] or stride == () else pair(stride, "stride")
    p = pair(padding, "padding")
    if ceil_mode:
        floor = [(size + 2 * pi - ki) // si + 1 for size, ki, si, pi in zip(call.in_shape[2:], k, s, p)]
        if list(call.out_shape[2:]) != floor:
            raise Refusal("ceil_mode=True gives a larger output than floor mode here; the spec "
                          "pools in floor mode (set ceil_mode=False, or pad the input)")
    return {"kernel_size": int_or_pair(k), "stride": int_or_pair(s), "padding": int_or_pair(p)}


def max_pool2d(call):
    if call.module is not None:
        m = call.module
        kernel, stride, padding, dilation, ceil, indices = (
            m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, m.return_indices)
        operand = call.module_operand()
    else:
        kernel, stride, padding = call.arg(1, "kernel_size"), call.arg(2, "stride"), call.arg(3, "padding", 0)
        dilation, ceil = call.arg(4, "dilation", 1), call.arg(5, "ceil_mode", False)
        indices, operand = call.arg(6, "return_indices", False), call.tensor_arg()
    if indices:
        raise Refusal("return_indices=True returns a tuple; the spec's max_pool2d returns the values")
    if pair(dilation, "dilation") != (1, 1):
        raise Refusal(f"dilation = {dilation!r}; the spec's max_pool2d has dilation 1")
    keys = pool_keys(call, kernel, stride, padding, ceil)
    return Layer(call.node, "max_pool2d", keys, [operand])


def avg_pool2d(call):
    if call.module is not None:
        m = call.module
        kernel, stride, padding, ceil, include_pad, divisor = (
            m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad, m.divisor_override)
        operand = call.module_operand()
    else:
        kernel, stride, padding = call.arg(1, "kernel_size"), call.arg(2, "stride"), call.arg(3, "padding", 0)
        ceil, include_pad = call.arg(4, "ceil_mode", False), call.arg(5, "count_include_pad", True)
        divisor, operand = call.arg(6, "divisor_override"), call.tensor_arg()
    if divisor is not None:
        raise Refusal(f"divisor_override = {divisor}; the spec divides by the window size")
    if not include_pad and pair(padding, "padding") != (0, 0):
        raise Refusal("count_include_pad=False with padding; the spec counts padded cells in the "
                      "divisor (PyTorch's default)")
    keys = pool_keys(call, kernel, stride, padding, ceil)
    return Layer(call.node, "avg_pool2d", keys, [operand])


def adaptive_avg_pool2d(call):
    operand = call.module_operand() if call.module is not None else call.tensor_arg()
    if call.module is None:
        call.arg(1, "output_size")  # refuses a size computed at run time
    call.need_rank(4, "adaptive_avg_pool2d needs [C, H, W]")
    # None entries of output_size keep the input's size: the shape pass has resolved them.
    size = (call.out_shape[2], call.out_shape[3])
    return Layer(call.node, "adaptive_avg_pool2d", {"output_size": int_or_pair(size)}, [operand])


def add(call):
    a = call.tensor_arg(0, "input")
    other = call.node.args[1] if len(call.node.args) > 1 else call.node.kwargs.get("other")
    if not isinstance(other, fx.Node) or shape_of(other) is None:
        raise Refusal(f"adds {_value_text(other)}; the spec's add sums two layer outputs")
    alpha = call.arg(2, "alpha", 1)
    if alpha != 1:
        raise Refusal(f"alpha = {alpha}; the spec's add has no scale")
    if shape_of(a) != shape_of(other):
        raise Refusal(f"adds shapes {_sample(shape_of(a))} and {_sample(shape_of(other))}; the "
                      "spec's add needs equal shapes (no broadcasting)")
    inplace = call.node.target in (operator.iadd, "add_")
    return Layer(call.node, "add", {}, [a, other], inplace=inplace)


def cat(call):
    tensors = call.node.args[0] if call.node.args else call.node.kwargs.get("tensors")
    if not isinstance(tensors, (list, tuple)) or not all(isinstance(t, fx.Node) for t in tensors):
        raise Refusal("its tensors are not a list of layer outputs")
    for t in tensors:
        if shape_of(t) is None:
            raise Refusal(f"`{t.name}` is not a tensor")
    rank = len(shape_of(tensors[0]))
    dim = call.arg(1, "dim", 0)
    dim = dim + rank if dim < 0 else dim
    if dim == 0:
        raise Refusal("it concatenates along the batch dimension")
    return Layer(call.node, "cat", {"dim": dim}, list(tensors))


# ---------------------------------------------------------------------------------------------
# Shape ops


def flatten(call):
    if call.module is not None:
        start, end, operand = call.module.start_dim, call.module.end_dim, call.module_operand()
    else:
        start, end, operand = call.arg(1, "start_dim", 0), call.arg(2, "end_dim", -1), call.tensor_arg()
    rank = len(shape_of(operand))
    start, end = start % rank, end % rank
    if start == 0:
        raise Refusal("it flattens the batch dimension (start_dim = 0); use start_dim = 1")
    if end != rank - 1:
        return reshape_to_output(call, operand)
    return Layer(call.node, "flatten", {"start_dim": start}, [operand])


def spatial_mean(call):
    """x.mean((2, 3)): global average pooling, then (without keepdim) a flatten."""
    operand = call.tensor_arg()
    call.need_rank(4, "mean over H and W needs [C, H, W]")
    dims = call.arg(1, "dim")
    dims = {d % 4 for d in (dims if isinstance(dims, (list, tuple)) else [dims])} if dims is not None else None
    if dims != {2, 3} or call.arg(3, "dtype") is not None:
        raise Refusal("a mean over other dimensions than H and W (2, 3); the spec averages only "
                      "over windows of H and W")
    pool = Layer(call.node, "adaptive_avg_pool2d", {"output_size": 1}, [operand])
    if call.arg(2, "keepdim", False):
        return pool
    pool.suffix = "_pool"
    return [pool, Layer(call.node, "flatten", {"start_dim": 1}, [pool])]


def reshape_to_output(call, operand=None):
    """view / reshape / squeeze / unsqueeze: a reshape to the node's output shape (batch kept)."""
    if operand is None:
        operand = call.module_operand() if call.module is not None else call.tensor_arg()
    return Layer(call.node, "reshape", {"shape": _sample(call.out_shape)}, [operand])


def alias(call):
    return Alias(call.tensor_arg())


def identity(call):
    return Layer(call.node, "identity", {}, [call.module_operand()])


def dropout_module(call):
    return Layer(call.node, "dropout", {"p": float(call.module.p)}, [call.module_operand()],
                 inplace=bool(getattr(call.module, "inplace", False)))


def dropout_function(call):
    if call.arg(2, "training", True):
        raise Refusal("training=True drops units even in eval mode; pass training=self.training")
    return Layer(call.node, "dropout", {"p": float(call.arg(1, "p", 0.5))}, [call.tensor_arg()],
                 inplace=bool(call.arg(3, "inplace", False)))


# ---------------------------------------------------------------------------------------------
# Activations: module attributes, or function arguments (name, position, default)

MODULE_ACTIVATIONS = {
    nn.ReLU: ("relu", ()),
    nn.ReLU6: ("relu6", ()),
    nn.LeakyReLU: ("leaky_relu", ("negative_slope",)),
    nn.Sigmoid: ("sigmoid", ()),
    nn.Tanh: ("tanh", ()),
    nn.Hardtanh: ("hardtanh", ("min_val", "max_val")),
    nn.GELU: ("gelu", ("approximate",)),
    nn.SiLU: ("silu", ()),
    nn.ELU: ("elu", ("alpha",)),
    nn.Softplus: ("softplus", ("beta", "threshold")),
    nn.Hardswish: ("hardswish", ()),
}


def module_activation(call):
    op, attrs = MODULE_ACTIVATIONS[type(call.module)]
    keys = {a: _key_value(getattr(call.module, a)) for a in attrs}
    return Layer(call.node, op, keys, [call.module_operand()],
                 inplace=bool(getattr(call.module, "inplace", False)))


def _key_value(v):
    return v if isinstance(v, str) else float(v)


def function_activation(op, params=(), inplace_at=None, always_inplace=False):
    """params: (key, position, default) of the function's arguments after the input."""

    def convert(call):
        keys = {key: _key_value(call.arg(pos, key, default)) for key, pos, default in params}
        inplace = always_inplace or (inplace_at is not None and bool(call.arg(inplace_at, "inplace", False)))
        return Layer(call.node, op, keys, [call.tensor_arg()], inplace=inplace)

    return convert


# ---------------------------------------------------------------------------------------------
# The tables: torch.nn module types, functions and Tensor methods -> converters

MODULES = {
    nn.Conv2d: conv2d,
    nn.Linear: linear,
    nn.BatchNorm2d: batch_norm("batch_norm2d", 4),
    nn.BatchNorm1d: batch_norm("batch_norm1d", 2),
    nn.MaxPool2d: max_pool2d,
    nn.AvgPool2d: avg_pool2d,
    nn.AdaptiveAvgPool2d: adaptive_avg_pool2d,
    nn.Flatten: flatten,
    nn.Unflatten: reshape_to_output,
    nn.Identity: identity,
    **{d: dropout_module for d in (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                                   nn.AlphaDropout, nn.FeatureAlphaDropout)},
    **{m: module_activation for m in MODULE_ACTIVATIONS},
}

RELU = function_activation("relu", inplace_at=1)
RELU_ = function_activation("relu", always_inplace=True)
FUNCTIONS = {
    F.relu: RELU, torch.relu: RELU, torch.relu_: RELU_, F.relu_: RELU_,
    F.relu6: function_activation("relu6", inplace_at=1),
    F.leaky_relu: function_activation("leaky_relu", [("negative_slope", 1, 0.01)], inplace_at=2),
    F.leaky_relu_: function_activation("leaky_relu", [("negative_slope", 1, 0.01)], always_inplace=True),
    torch.sigmoid: function_activation("sigmoid"), F.sigmoid: function_activation("sigmoid"),
    torch.tanh: function_activation("tanh"), F.tanh: function_activation("tanh"),
    F.hardtanh: function_activation("hardtanh", [("min_val", 1, -1.0), ("max_val", 2, 1.0)], inplace_at=3),
    F.gelu: function_activation("gelu", [("approximate", 1, "none")]),
    F.silu: function_activation("silu", inplace_at=1),
    F.elu: function_activation("elu", [("alpha", 1, 1.0)], inplace_at=2),
    F.softplus: function_activation("softplus", [("beta", 1, 1.0), ("threshold", 2, 20.0)]),
    F.hardswish: function_activation("hardswish", inplace_at=1),
    F.dropout: dropout_function,
    F.max_pool2d: max_pool2d,
    F.avg_pool2d: avg_pool2d,
    F.adaptive_avg_pool2d: adaptive_avg_pool2d,
    operator.add: add, operator.iadd: add, torch.add: add,
    torch.mean: spatial_mean,
    torch.cat: cat, torch.concat: cat, torch.concatenate: cat,
    torch.flatten: flatten,
    torch.reshape: reshape_to_output, torch.squeeze: reshape_to_output,
    torch.unsqueeze: reshape_to_output,
}

METHODS = {
    "relu": RELU, "relu_": RELU_,
    "sigmoid": function_activation("sigmoid"), "sigmoid_": function_activation("sigmoid", always_inplace=True),
    "tanh": function_activation("tanh"), "tanh_": function_activation("tanh", always_inplace=True),
    "add": add, "add_": add,
    "flatten": flatten,
    "view": reshape_to_output, "reshape": reshape_to_output,
    "squeeze": reshape_to_output, "unsqueeze": reshape_to_output,
    "mean": spatial_mean,
    "contiguous": alias, "clone": alias, "detach": alias,
}


def converter_for(node, gm):
    if node.op == "call_module":
        return MODULES.get(type(gm.get_submodule(node.target)))
    if node.op == "call_function":
        try:
            return FUNCTIONS.get(node.target)
        except TypeError:  # an unhashable target
            return None
    if node.op == "call_method":
        return METHODS.get(node.target)
    return None


# ---------------------------------------------------------------------------------------------
# From the fx graph to spec layers


class Converter:
    """Walks the traced graph in order and maps each node that reaches the output to a layer."""

    def __init__(self, gm):
        self.gm = gm
        self.layers = []
        self.made = {}  # node -> Layer, INPUT, or None (refused: its users are still checked)
        self.aliases = {}  # node -> the node whose value it passes on
        self.overwritten = {}  # node -> the in-place node that later overwrote its value
        self.problems = []
        self.output = None
        self.live = set()  # the nodes the output depends on

    def source(self, node):
        """The node whose value `node` holds when read now (through aliases and in-place ops)."""
        while True:
            if node in self.overwritten:
                node = self.overwritten[node]
            elif node in self.aliases:
                node = self.aliases[node]
            else:
                return node

    def run(self):
        # Every node is visited: one the output does not read may still overwrite a value it
        # reads (`x.relu_()` as a statement). A node the output does not depend on is refused
        # only when it may work in place.
        self.live = ancestors(self.gm.graph)
        for node in self.gm.graph.nodes:
            self.visit(node)
        if self.problems:
            raise ExportError(f"{len(self.problems)} node(s) of the model cannot be exported "
                              f"(the ops the exporter maps: {DOCS}):", self.problems)
        return self.finish()

    def visit(self, node):
        if node.op == "placeholder":
            self.made[node] = INPUT
        elif node.op == "output":
            self.visit_output(node)
        elif node.op == "get_attr" or not holds_tensors(node):
            return  # a parameter read (its users are refused) or a size computation
        else:
            self.visit_call(node)

    def visit_call(self, node):
        try:
            converted = self.convert(node)
        except Refusal as refusal:
            if node in self.live or may_work_in_place(node, self.gm):
                self.problems.append(problem_text(node, self.gm, str(refusal)))
            self.made[node] = None
            return
        if isinstance(converted, Alias):
            self.aliases[node] = self.source(converted.operand)
            return
        chain = converted if isinstance(converted, list) else [converted]  # later ones read earlier
        first = chain[0].operands[0]
        chain[0].operands = [self.operand(node, o) for o in chain[0].operands]
        if chain[0].inplace:  # later reads of the operand see this node's result
            self.overwritten[self.source(first)] = node
        for layer in chain:
            layer.module = node.target if node.op == "call_module" else None
        self.layers += chain
        self.made[node] = chain[-1]

    def convert(self, node):
        convert = converter_for(node, self.gm)
        if convert is None:
            raise Refusal("no spec op does this")
        shape = shape_of(node)
        if shape is None:
            raise Refusal("its result is not a single tensor")
        if not shape or shape[0] != SHAPE_BATCH:
            raise Refusal(f"it changes the batch dimension (shape {list(shape)} for a batch of "
                          f"{SHAPE_BATCH}); each sample must pass through on its own")
        return convert(Call(node, self.gm))

    def operand(self, node, operand):
        made = self.made.get(self.source(operand))
        if made is None and self.source(operand) not in self.made:
            reason = (f"it reads `{operand.name}`, a parameter or buffer used in forward outside "
                      "a module; the spec's layers hold their own tensors")
            self.problems.append(problem_text(node, self.gm, reason))
        return made

    def visit_output(self, node):
        result = node.args[0]
        if not isinstance(result, fx.Node) or shape_of(result) is None:
            returned = node.all_input_nodes
            where = code_line(returned[0]) if returned else "(no code line recorded)"
            self.problems.append(
                f"the model's output (returned at {where}) is not one tensor; export a wrapper "
                "whose forward returns the one output to analyse")
            return
        self.output = self.made.get(self.source(result))
        if self.output is INPUT:
            self.problems.append(problem_text(node, self.gm, "the model returns its input unchanged"))

    def finish(self):
        """The layers the output depends on, in graph (topological) order, the output last."""
        keep, stack = set(), [self.output]
        while stack:
            layer = stack.pop()
            if isinstance(layer, Layer) and id(layer) not in keep:
                keep.add(id(layer))
                stack.extend(layer.operands)
        layers = [layer for layer in self.layers if id(layer) in keep]
        assert layers and layers[-1] is self.output, "the output layer is not the last"
        return layers


IN_PLACE_OPERATORS = {operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.ipow}


def may_work_in_place(node, gm):
    """Whether a node may overwrite its operand (so it matters though nothing reads its result)."""
    if node.op == "call_module":
        return getattr(gm.get_submodule(node.target), "inplace", False) is True
    name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
    return (node.kwargs.get("inplace") is True or node.target in IN_PLACE_OPERATORS
            or (isinstance(name, str) and name.endswith("_") and not name.startswith("__")))


def ancestors(graph):
    """The nodes the output depends on (through every argument)."""
    output = next(n for n in graph.nodes if n.op == "output")
    seen, stack = {output}, [output]
    while stack:
        for n in stack.pop().all_input_nodes:
            if n not in seen:
                seen.add(n)
                stack.append(n)
    return seen


def name_layers(layers):
    """A module called once: its qualified name (so tensors keep their state-dict names); any other
    node: its fx name. Made unique; `input` is reserved."""
    calls = {}
    for layer in layers:
        if layer.module is not None:
            calls[layer.module] = calls.get(layer.module, 0) + 1
    used = {INPUT}
    for layer in layers:
        if layer.module is not None and calls[layer.module] == 1 and not layer.suffix \
                and layer.module not in used:
            layer.name = layer.module
            used.add(layer.name)
    for layer in layers:
        if not layer.name:
            layer.name = unique(layer.node.name + layer.suffix, used)
            used.add(layer.name)


def unique(base, used):
    name, k = base, 1
    while name in used:
        name, k = f"{base}_{k}", k + 1
    return name


# ---------------------------------------------------------------------------------------------
# Writing


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("inf" if v > 0 else "-inf" if v < 0 else "nan")
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {v!r}")


def spec_text(layers, name, input_shape, weights_file, source):
    lines = [f"# Exported by scripts/export_torch.py from {source}",
             f"# (torch {torch.__version__}); the forward pass of this spec is PyTorch's in eval mode.",
             "format_version = 2",
             f"name = {toml_value(name)}",
             f"input_shape = {toml_value(list(input_shape))}",
             f"weights = {toml_value(weights_file)}"]
    previous = INPUT
    for layer in layers:
        lines += ["", "[[layers]]", f"name = {toml_value(layer.name)}", f"op = {toml_value(layer.op)}"]
        inputs = [INPUT if o is INPUT else o.name for o in layer.operands]
        if inputs != [previous] or layer.op in ("add", "cat"):
            lines.append(f"inputs = {toml_value(inputs)}")
        lines += [f"{key} = {toml_value(value)}" for key, value in layer.keys.items()]
        previous = layer.name
    return "\n".join(lines) + "\n"


def layer_tensors(layers):
    """`<layer>.<suffix>` -> f32 contiguous copy (a module called twice has its own copies)."""
    out = {}
    for layer in layers:
        for suffix, t in layer.tensors.items():
            out[f"{layer.name}.{suffix}"] = t.detach().to(torch.float32).contiguous().clone()
    return out


def write_atomic(path, write):
    """Writes through a temporary file, so a reader never sees half a file; the mode follows the
    umask (safetensors creates its files 0600)."""
    tmp = path.with_name(path.name + ".partial")
    write(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def reference(model, input_shape, count, seed, inputs=None):
    if inputs is None:
        inputs = torch.randn(count, *input_shape, generator=torch.Generator().manual_seed(seed))
    inputs = inputs.detach().to(torch.float32).contiguous()
    if tuple(inputs.shape[1:]) != tuple(input_shape):
        raise ExportError(f"reference inputs have shape {list(inputs.shape)}; expected "
                          f"[N, {', '.join(map(str, input_shape))}]")
    with torch.no_grad():
        outputs = model(inputs)
    return inputs, outputs.detach().to(torch.float32).contiguous()


def check_float32(model):
    odd = sorted({str(t.dtype) for t in list(model.parameters()) + list(model.buffers())
                  if t.is_floating_point() and t.dtype != torch.float32})
    if odd:
        raise ExportError(f"the model holds {', '.join(odd)} tensors; the spec's forward pass is "
                          "f32: call model.float() before exporting")


def export(model, input_shape, out_prefix, name=None, reference_inputs=None,
           reference_count=DEFAULT_REFERENCE_COUNT, seed=0, source=None):
    """Export `model` (put in eval mode) for inputs of `input_shape` (no batch dimension) to
    `<out_prefix>.toml`, `.safetensors` and `.reference.safetensors`. Raises ExportError, with
    every reason, when a node cannot be mapped. Returns an Exported (paths and counts)."""
    started = time.perf_counter()
    input_shape = tuple(int(s) for s in input_shape)
    out_prefix = Path(out_prefix)
    if out_prefix.suffix == ".toml":  # `--out models/net.toml` means the prefix models/net
        out_prefix = out_prefix.with_suffix("")
    name = name or out_prefix.name
    model.eval()
    check_float32(model)
    gm = trace(model)
    propagate_shapes(gm, input_shape)
    layers = Converter(gm).run()
    name_layers(layers)
    tensors = layer_tensors(layers)
    inputs, outputs = reference(model, input_shape, reference_count, seed, reference_inputs)
    paths = [Path(f"{out_prefix}{suffix}") for suffix in (".toml", ".safetensors", ".reference.safetensors")]
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    text = spec_text(layers, name, input_shape, paths[1].name, source or type(model).__qualname__)
    write_atomic(paths[1], lambda p: save_file(tensors, str(p)))
    meta = {"seed": str(seed), "torch": torch.__version__, "source": str(source or type(model).__qualname__)}
    write_atomic(paths[2], lambda p: save_file({"input": inputs, "output": outputs}, str(p), metadata=meta))
    write_atomic(paths[0], lambda p: p.write_text(text))
    return Exported(*paths, layers=len(layers), tensors=len(tensors),
                    values=sum(t.numel() for t in tensors.values()),
                    output_shape=tuple(outputs.shape[1:]), seconds=time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------
# The command line


def load_module(path_or_name):
    if path_or_name.endswith(".py"):
        path = Path(path_or_name)
        if not path.is_file():
            raise ExportError(f"--model: no file {path}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
        return module
    if os.getcwd() not in sys.path:  # a package in the folder the exporter is run from
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(path_or_name)
    except ImportError as err:
        raise ExportError(f"--model: cannot import {path_or_name}: {err}",
                          ["run from the folder that holds the package, or set PYTHONPATH"]) from err


def build_model(model_arg, kwargs):
    """`package.module:callable`, `file.py:callable` or a dotted name such as
    torchvision.models.resnet18. A callable that takes `weights` gets weights=None."""
    module_part, sep, attr = model_arg.rpartition(":")
    if not sep:
        module_part, _, attr = model_arg.rpartition(".")
    if not module_part or not attr:
        raise ExportError(f"--model {model_arg!r}: expected package.module:callable or a dotted name")
    factory = getattr(load_module(module_part), attr, None)
    if not callable(factory):
        raise ExportError(f"--model: {module_part} has no callable {attr!r}")
    if kwargs.get("weights") is not None or kwargs.get("pretrained"):
        raise ExportError("--kwargs asks for pretrained weights; the exporter never downloads: "
                          "load weights with --state-dict")
    if "weights" in _parameters(factory):
        kwargs = {"weights": None} | kwargs
    model = factory(**kwargs)
    if not isinstance(model, nn.Module):
        raise ExportError(f"--model: {model_arg}(...) returned {type(model).__name__}, not an nn.Module")
    return model


def _parameters(factory):
    try:
        return inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}


def load_state_dict(model, path):
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"--state-dict: no file {path}")
    if path.suffix == ".safetensors":
        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001: pickles of whole models and other formats
            raise ExportError(f"--state-dict {path}: not a state dict torch.load(weights_only=True) "
                              f"reads ({type(err).__name__}); save one with "
                              "torch.save(model.state_dict(), PATH)") from err
        for key in ("state_dict", "model_state_dict"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
    if state and all(k.startswith("module.") for k in state):  # saved from nn.DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # tensors whose shapes differ from the model's
        lines = [ln.strip() for ln in str(err).splitlines()[1:] if ln.strip()]
        raise ExportError(f"--state-dict {path} does not fit the model:", lines[:10]) from err
    problems = [f"missing from the file: {k}" for k in result.missing_keys[:10]]
    problems += [f"not in the model: {k}" for k in result.unexpected_keys[:10]]
    if problems:
        raise ExportError(f"--state-dict {path} does not fit the model "
                          f"({len(result.missing_keys)} missing, {len(result.unexpected_keys)} unexpected):",
                          problems)


def parse_shape(text):
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        shape = ()
    if not shape or any(s < 1 for s in shape):
        raise ExportError(f"--input-shape {text!r}: expected positive integers such as 3,224,224 "
                          "(one input, no batch dimension)")
    return shape


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True,
                    help="package.module:callable, file.py:callable, or e.g. torchvision.models.resnet18")
    ap.add_argument("--kwargs", default="{}", help="JSON object passed to the callable")
    ap.add_argument("--state-dict", help="weights: a .pt/.pth state dict or a .safetensors file")
    ap.add_argument("--input-shape", required=True, help="one input without the batch dimension: 3,224,224")
    ap.add_argument("--out", required=True, help="output prefix: models/NAME writes models/NAME.toml, ...")
    ap.add_argument("--name", help="the spec's name (default: NAME of --out)")
    ap.add_argument("--reference-count", type=int, default=DEFAULT_REFERENCE_COUNT,
                    help="reference inputs to write (default 4)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the reference inputs (default 0)")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        kwargs = json.loads(args.kwargs)
        if not isinstance(kwargs, dict):
            raise ExportError(f"--kwargs {args.kwargs!r}: expected a JSON object")
        if args.reference_count < 1:
            raise ExportError("--reference-count must be at least 1")
        shape = parse_shape(args.input_shape)
        model = build_model(args.model, kwargs)
        if args.state_dict:
            load_state_dict(model, args.state_dict)
        done = export(model, shape, args.out, name=args.name, reference_count=args.reference_count,
                      seed=args.seed, source=args.model)
    except json.JSONDecodeError as err:
        print(f"export_torch: --kwargs is not JSON: {err}", file=sys.stderr)
        return 2
    except ExportError as err:
        print(f"export_torch: cannot export {args.model}: {err}", file=sys.stderr)
        return 2
    print(f"export_torch: wrote {done.spec} ({done.layers} layers), {done.weights} ({done.tensors} "
          f"tensors, {done.values:,} values), {done.reference} ({args.reference_count} inputs, output "
          f"shape {list(done.output_shape)}) in {done.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

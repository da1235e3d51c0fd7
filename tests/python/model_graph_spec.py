"""Writes an actopo model spec (docs/model-spec.md) and its weights for a traced PyTorch model.

The check's own writer, so that it does not depend on scripts/export_torch.py: one [[layers]] table
per module call of model_graph_reference.trace, named by the module's qualified name (its weights'
prefix in the state dict), with `inputs` naming the calls it read. Format 1 (no `inputs`) for a
chain of the ops format 1 knows, to check the reference against the sequential path too.
"""

import torch.nn as nn
from safetensors.torch import save_file

from model_graph_reference import INPUT, Add, Cat, Reshape, pair


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return repr(v)


def _window(m):
    return {"kernel_size": list(pair(m.kernel_size)), "stride": list(pair(m.stride)),
            "padding": list(pair(m.padding))}


def op_keys(m):
    """(op, keys) of one module; exact types, since nn.ReLU6 is an nn.Hardtanh."""
    t = type(m)
    if t is nn.Conv2d:
        if m.padding_mode != "zeros" or isinstance(m.padding, str):
            raise ValueError("conv2d with a padding mode or string padding")
        return "conv2d", {"out_channels": m.out_channels, "kernel_size": list(m.kernel_size),
                          "stride": list(m.stride), "padding": list(m.padding),
                          "dilation": list(m.dilation), "groups": m.groups, "bias": m.bias is not None}
    simple = {
        nn.Linear: lambda: ("linear", {"out_features": m.out_features, "bias": m.bias is not None}),
        nn.MaxPool2d: lambda: ("max_pool2d", _window(m)),
        nn.AvgPool2d: lambda: ("avg_pool2d", _window(m)),
        nn.AdaptiveAvgPool2d: lambda: ("adaptive_avg_pool2d", {"output_size": list(pair(m.output_size))}),
        Add: lambda: ("add", {}),
        Cat: lambda: ("cat", {"dim": m.dim}),
        Reshape: lambda: ("reshape", {"shape": list(m.shape)}),
        nn.Flatten: lambda: ("flatten", {"start_dim": m.start_dim}),
        nn.BatchNorm2d: lambda: ("batch_norm2d", {"eps": m.eps}),
        nn.BatchNorm1d: lambda: ("batch_norm1d", {"eps": m.eps}),
        nn.ReLU: lambda: ("relu", {}),
        nn.ReLU6: lambda: ("relu6", {}),
        nn.Hardtanh: lambda: ("hardtanh", {"min_val": m.min_val, "max_val": m.max_val}),
        nn.GELU: lambda: ("gelu", {"approximate": m.approximate}),
        nn.SiLU: lambda: ("silu", {}),
        nn.ELU: lambda: ("elu", {"alpha": m.alpha}),
        nn.Softplus: lambda: ("softplus", {"beta": float(m.beta), "threshold": float(m.threshold)}),
        nn.Hardswish: lambda: ("hardswish", {}),
        nn.LeakyReLU: lambda: ("leaky_relu", {"negative_slope": m.negative_slope}),
        nn.Sigmoid: lambda: ("sigmoid", {}),
        nn.Tanh: lambda: ("tanh", {}),
        nn.Dropout: lambda: ("dropout", {"p": m.p}),
        nn.Identity: lambda: ("identity", {}),
    }
    if t not in simple:
        raise ValueError(f"no spec op for {t.__name__}")
    return simple[t]()


FORMAT1_OPS = {"conv2d", "linear", "max_pool2d", "avg_pool2d", "relu", "leaky_relu", "sigmoid", "tanh",
               "flatten", "dropout"}


def write_model(folder, name, model, calls, input_shape, format_version=2):
    """Writes folder/NAME.toml and folder/NAME.safetensors (the model's state dict as it is);
    returns the spec's path."""
    lines = [f"format_version = {format_version}", f'name = "{name}"',
             f"input_shape = {toml_value(list(input_shape))}", f'weights = "{name}.safetensors"']
    for k, c in enumerate(calls):
        op, keys = op_keys(c.module)
        lines += ["", "[[layers]]", f"name = {toml_value(c.name)}", f'op = "{op}"']
        lines += [f"{key} = {toml_value(v)}" for key, v in keys.items()]
        inputs = ["input" if j == INPUT else calls[j].name for j in c.operands]
        if format_version >= 2:
            lines.append(f"inputs = {toml_value(inputs)}")
        elif op not in FORMAT1_OPS or c.operands != [k - 1 if k else INPUT]:
            raise ValueError(f"{c.name} ({op}) cannot be written in format 1")
    spec = folder / f"{name}.toml"
    spec.write_text("\n".join(lines) + "\n")
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / f"{name}.safetensors"))
    return spec

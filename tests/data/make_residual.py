"""Writes the reference-check fixture: residual.toml (a format-2 spec), residual.safetensors and
residual.reference.safetensors (5 inputs and PyTorch's outputs), for the `reference` integration
tests. Run once from the repository root with `.venv/bin/python tests/data/make_residual.py`; the
outputs are committed, and cargo tests never run Python.

The model is written here as a PyTorch module, independently of actopo: a ResNet basic block with
a strided 1x1-conv + batch-norm shortcut and a grouped conv, a depthwise conv, a cat, adaptive
pooling to a size that does not divide the input, and a head with batch_norm1d and every value
activation actopo has. Batch-norm statistics are random (not the identity), so eval mode matters.
"""

from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent

SPEC = """format_version = 2
name = "residual"
input_shape = [3, 9, 9]
weights = "residual.safetensors"

[[layers]]
name = "conv1"
op = "conv2d"
out_channels = 8
kernel_size = 3
stride = 2
padding = 1
bias = false
[[layers]]
name = "bn1"
op = "batch_norm2d"
[[layers]]
name = "relu1"
op = "relu6"
[[layers]]
name = "conv2"
op = "conv2d"
out_channels = 8
kernel_size = 3
padding = 1
groups = 4
bias = false
[[layers]]
name = "bn2"
op = "batch_norm2d"
[[layers]]
name = "down"
op = "conv2d"
inputs = ["input"]
out_channels = 8
kernel_size = 1
stride = 2
bias = false
[[layers]]
name = "down_bn"
op = "batch_norm2d"
eps = 0.1
[[layers]]
name = "add"
op = "add"
inputs = ["bn2", "down_bn"]
[[layers]]
name = "relu2"
op = "relu"
[[layers]]
name = "dw"
op = "conv2d"
out_channels = 8
kernel_size = 3
padding = 1
groups = 8
[[layers]]
name = "hswish"
op = "hardswish"
[[layers]]
name = "cat"
op = "cat"
inputs = ["relu2", "hswish"]
dim = 1
[[layers]]
name = "pool"
op = "adaptive_avg_pool2d"
output_size = [3, 2]
[[layers]]
name = "flat"
op = "flatten"
[[layers]]
name = "fc1"
op = "linear"
out_features = 24
[[layers]]
name = "bnf"
op = "batch_norm1d"
[[layers]]
name = "gelu"
op = "gelu"
[[layers]]
name = "drop"
op = "dropout"
p = 0.5
[[layers]]
name = "fc2"
op = "linear"
out_features = 16
[[layers]]
name = "elu"
op = "elu"
alpha = 0.5
[[layers]]
name = "silu"
op = "silu"
[[layers]]
name = "softplus"
op = "softplus"
beta = 2.0
threshold = 1.0
[[layers]]
name = "gelu_tanh"
op = "gelu"
approximate = "tanh"
[[layers]]
name = "hardtanh"
op = "hardtanh"
min_val = 0.2
max_val = 0.75
[[layers]]
name = "same"
op = "identity"
[[layers]]
name = "fc3"
op = "linear"
out_features = 10
"""


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, groups=4, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.down = nn.Conv2d(3, 8, 1, stride=2, bias=False)
        self.down_bn = nn.BatchNorm2d(8, eps=0.1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pool = nn.AdaptiveAvgPool2d((3, 2))
        self.fc1 = nn.Linear(96, 24)
        self.bnf = nn.BatchNorm1d(24)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(24, 16)
        self.fc3 = nn.Linear(16, 10)

    def forward(self, x):
        h = nn.functional.relu6(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        h = torch.relu(h + self.down_bn(self.down(x)))
        both = torch.cat([h, nn.functional.hardswish(self.dw(h))], dim=1)
        f = torch.flatten(self.pool(both), 1)
        f = self.drop(nn.functional.gelu(self.bnf(self.fc1(f))))
        f = nn.functional.elu(self.fc2(f), alpha=0.5)
        f = nn.functional.softplus(nn.functional.silu(f), beta=2.0, threshold=1.0)
        f = nn.functional.hardtanh(nn.functional.gelu(f, approximate="tanh"), 0.2, 0.75)
        return self.fc3(f)


def main():
    torch.manual_seed(14)
    model = Residual()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
        # Values spread over every activation's bends (thresholds, clamps, approximations).
        model.conv1.weight.mul_(2.0)
        model.bnf.weight.mul_(3.0)
        model.fc2.weight.mul_(10.0)
        model.fc3.weight.mul_(4.0)
    model.eval()
    x = 2.0 * torch.randn(5, 3, 9, 9)
    with torch.no_grad():
        y = model(x)
    (HERE / "residual.toml").write_text(SPEC)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(HERE / "residual.safetensors"))
    save_file({"input": x.contiguous(), "output": y.contiguous()},
              str(HERE / "residual.reference.safetensors"))
    print("outputs", tuple(y.shape), "max |output|", float(y.abs().max()))


if __name__ == "__main__":
    main()

"""Train a small ResNet on Fashion-MNIST's training split and export it as an actopo model.

The net (about 11k weights): a 3x3 stem conv 1->8 with batch norm; a basic residual block 8->8 with an
identity shortcut; a basic block 8->16 with stride 2 and a 1x1 conv + batch norm downsample shortcut;
adaptive average pooling 14x14 -> 3x3 (windows that overlap: 3 does not divide 14); a linear layer
144 -> 10. Inputs are raw pixels in [0, 1]. It exercises what spec format 2 adds: residual adds,
batch norms folded into their convs, a 1x1 shortcut and adaptive pooling.

Writes models/fmnist-resnet.toml, .safetensors and .reference.safetensors through
scripts/export_torch.py, and prints the test accuracy PyTorch gets.

Usage: python scripts/train_fmnist_resnet.py [--epochs 2] [--out models]
"""

import argparse
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_torch import export  # noqa: E402
from train_ccff import load, train  # noqa: E402


class BasicBlock(nn.Module):
    """torchvision's BasicBlock, smaller: conv-bn-relu-conv-bn, plus the shortcut, then relu."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


class SmallResNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer1 = BasicBlock(8, 8, 1)
        self.layer2 = BasicBlock(8, 16, 2)
        self.pool = nn.AdaptiveAvgPool2d((3, 3))
        self.fc = nn.Linear(16 * 9, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--out", default="models")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    xtr, ytr = load("train")
    xte, yte = load("t10k")
    model = SmallResNet()
    train(model, (xtr, ytr), (xte, yte), args.epochs, lr=2e-3)
    model.eval()
    exported = export(model, (1, 28, 28), Path(args.out) / "fmnist-resnet", name="fmnist-resnet",
                      reference_inputs=xte[:8])
    print("exported:", exported)


if __name__ == "__main__":
    main()

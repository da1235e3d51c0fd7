"""Small seeded models for model_graph_crosscheck.py, one per new op family, each op a module (so
the hooks of model_graph_reference.py see it). Seeded initial weights, batch-norm gammas and betas
randomised (a fifth of the gammas negative), then a short Adam training on Fashion-MNIST's training
split, so that predictions mean something and batch-norm statistics are real ones.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from model_graph_reference import Add, Cat, Reshape


def mlp_bn():
    """BatchNorm1d right after a Linear (folds) and one after an activation (values); the value
    activations gelu (tanh), silu, elu, softplus, hardtanh; identity and dropout."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 48), nn.BatchNorm1d(48), nn.GELU(approximate="tanh"),
        nn.Linear(48, 32), nn.SiLU(), nn.BatchNorm1d(32), nn.ELU(alpha=0.7), nn.Identity(),
        nn.Linear(32, 24), nn.Softplus(beta=2.0, threshold=1.5), nn.Dropout(0.3),
        nn.Linear(24, 16, bias=False), nn.Hardtanh(-0.4, 0.9),
        nn.Linear(16, 10),
    )


class BasicBlock(nn.Module):
    """ResNet basic block: identity shortcut, or a 1x1 conv + batch norm downsample (stride 2)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.add = Add()
        self.relu2 = nn.ReLU()

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        shortcut = x if self.down is None else self.down(x)
        return self.relu2(self.add(out, shortcut))


class TinyResNet(nn.Module):
    """stem (stride 2) -> identity block -> downsample block -> adaptive pool 7x7 -> 3x2 -> fc."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 6, 3, 2, 1, bias=False), nn.BatchNorm2d(6), nn.ReLU())
        self.layer1 = BasicBlock(6, 6, 1)
        self.layer2 = BasicBlock(6, 12, 2)
        self.pool = nn.AdaptiveAvgPool2d((3, 2))
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(12 * 3 * 2, 10)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.layer2(self.layer1(self.stem(x))))))


class DepthwiseSeparable(nn.Module):
    """MobileNet-like: a residual add that reads the model input (its conv's BN folds), a
    depthwise 3x3 (groups = channels) + BN + ReLU6, a pointwise 1x1 whose output feeds both its BN
    and an add (so that BN does not fold), hardswish, an overlapping max pool with padding, a
    grouped conv (groups = 4) with bias + BN, adaptive pool 7x7 -> 3x3."""

    def __init__(self):
        super().__init__()
        self.pre = nn.Conv2d(1, 1, 3, 1, 1, bias=False)
        self.pre_bn = nn.BatchNorm2d(1)
        self.pre_add = Add()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.pw = nn.Conv2d(8, 16, 1, bias=False)
        self.pw_bn = nn.BatchNorm2d(16)
        self.pw_act = nn.Hardswish()
        self.pw_skip = Add()
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.grouped = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1, groups=4), nn.BatchNorm2d(16), nn.Hardswish())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(3), nn.Flatten(), nn.Linear(16 * 9, 10))

    def forward(self, x):
        h = self.dw(self.stem(self.pre_add(x, self.pre_bn(self.pre(x)))))
        p = self.pw(h)
        h = self.pw_skip(self.pw_act(self.pw_bn(p)), p)
        return self.head(self.grouped(self.pool(h)))


class DenseLayer(nn.Module):
    """DenseNet layer: BN (not foldable: it reads a cat or a pool) -> ReLU -> 3x3 conv, its output
    concatenated to its input along channels."""

    def __init__(self, cin, growth):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(cin, growth, 3, 1, 1, bias=False)
        self.cat = Cat(1)

    def forward(self, x):
        return self.cat(x, self.conv(self.relu(self.bn(x))))


class TinyDenseNet(nn.Module):
    """The input concatenated with the stem's output, a max pool, two dense layers, a transition
    (BN after cat, 1x1 conv, avg pool), a cat of a tensor with itself read by a 3x3 conv + BN
    (folds; each unit reaches the conv twice: parallel edges), adaptive pool 5x5 -> 2x2,
    flatten(start_dim=2), reshape, fc."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, 1, 1), nn.ReLU())
        self.cat0 = Cat(1)
        self.pool0 = nn.MaxPool2d(2)
        self.dense1 = DenseLayer(5, 4)
        self.dense2 = DenseLayer(9, 4)
        self.trans = nn.Sequential(nn.BatchNorm2d(13), nn.ReLU(), nn.Conv2d(13, 8, 1, bias=False),
                                   nn.AvgPool2d(2))
        self.twice = Cat(1)
        self.head = nn.Sequential(nn.Conv2d(16, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(2), nn.Flatten(2), Reshape(32))
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        h = self.pool0(self.cat0(x, self.stem(x)))
        t = self.trans(self.dense2(self.dense1(h)))
        return self.fc(self.head(self.twice(t, t)))


def randomise_affine(model, seed):
    """Batch-norm gammas away from 1 (a fifth negative) and betas away from 0, so that folding is
    not close to the identity even after a short training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))):
            n = bn.num_features
            sign = torch.where(torch.rand(n, generator=g) < 0.2, -1.0, 1.0)
            bn.weight.copy_(sign * (0.3 + 1.2 * torch.rand(n, generator=g)))
            bn.bias.copy_(0.1 * torch.randn(n, generator=g))


def train_briefly(model, images, labels, steps, batch=64):
    """A few Adam steps on training images (batch-norm statistics follow, as in any training);
    returns the model in eval mode."""
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for i in range(steps):
        at = (i * batch) % (len(images) - batch + 1)
        opt.zero_grad()
        F.cross_entropy(model(images[at:at + batch]), labels[at:at + batch]).backward()
        opt.step()
    return model.eval()


MODELS = {
    "mlp_bn": mlp_bn,
    "resnet": TinyResNet,
    "dwsep": DepthwiseSeparable,
    "dense_cat": TinyDenseNet,
}


def build(name, train_images, train_labels, steps):
    """The seeded model `name`, briefly trained, in eval mode."""
    seed = sum(map(ord, name))
    torch.manual_seed(seed)
    model = MODELS[name]()
    randomise_affine(model, seed)
    return train_briefly(model, train_images, train_labels, steps)

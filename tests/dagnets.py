"""Small DAG networks for the tests: residual, depthwise/grouped, concat, a shared tensor.

Seeded random weights and BatchNorm statistics (no training), digits-sized (1x8x8 input), so a
test builds one in milliseconds. ``DAG_NETS`` names each factory.
"""

import torch
from torch import nn

__all__ = ["ResNetTiny", "MobileTiny", "ConcatTiny", "MLPResidual", "DAG_NETS", "build", "train"]


def _bn(c):
    return nn.BatchNorm2d(c)


class ResNetTiny(nn.Module):
    """ResNet v1: an identity block and a block with a strided 1x1 projection shortcut + BN."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), _bn(6), nn.ReLU())
        self.a1 = nn.Conv2d(6, 6, 3, padding=1)
        self.a1_bn = _bn(6)
        self.a2 = nn.Conv2d(6, 6, 3, padding=1)
        self.a2_bn = _bn(6)
        self.b1 = nn.Conv2d(6, 10, 3, stride=2, padding=1)
        self.b1_bn = _bn(10)
        self.b2 = nn.Conv2d(10, 10, 3, padding=1)
        self.b2_bn = _bn(10)
        self.proj = nn.Conv2d(6, 10, 1, stride=2, bias=False)
        self.proj_bn = _bn(10)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(10, 10)

    def forward(self, x):
        x = self.stem(x)
        y = self.relu(self.a1_bn(self.a1(x)))
        x = self.relu(self.a2_bn(self.a2(y)) + x)
        y = self.relu(self.b1_bn(self.b1(x)))
        x = torch.relu(self.b2_bn(self.b2(y)) + self.proj_bn(self.proj(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class MobileTiny(nn.Module):
    """Depthwise separable + a MobileNetV2 inverted residual with a linear (signed) bottleneck,
    a depth multiplier of 2 and a grouped convolution."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), _bn(4), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=4), _bn(4), nn.ReLU())
        self.pw = nn.Sequential(nn.Conv2d(4, 6, 1), _bn(6))            # linear bottleneck
        self.expand = nn.Sequential(nn.Conv2d(6, 12, 1), _bn(12), nn.ReLU6())
        self.dw2 = nn.Sequential(nn.Conv2d(12, 12, 3, padding=1, groups=12), _bn(12), nn.ReLU6())
        self.project = nn.Sequential(nn.Conv2d(12, 6, 1), _bn(6))       # linear, then + input
        self.mult = nn.Sequential(nn.Conv2d(6, 12, 3, stride=2, padding=1, groups=6), nn.ReLU())
        self.grouped = nn.Sequential(nn.Conv2d(12, 8, 3, padding=1, groups=2), nn.ReLU())
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = self.pw(self.dw(self.stem(x)))
        x = x + self.project(self.dw2(self.expand(x)))
        x = self.grouped(self.mult(x))
        return self.fc(torch.flatten(x, 1))


class ConcatTiny(nn.Module):
    """Two branches of one tensor joined by torch.cat along channels (an inception cell)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 5, 3, padding=1), nn.ReLU())
        self.left = nn.Sequential(nn.Conv2d(5, 3, 1), nn.ReLU())
        self.right = nn.Sequential(nn.Conv2d(5, 6, 3, padding=1), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.mix = nn.Sequential(nn.Conv2d(9, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.cat([self.left(x), self.right(x)], dim=1)
        x = self.mix(self.pool(x))
        return self.fc(x.flatten(1))


class MLPResidual(nn.Module):
    """A fully connected residual block on vectors with a signed (no ReLU) hidden layer."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(64, 32)
        self.h1 = nn.Linear(32, 32)
        self.h2 = nn.Linear(32, 32)
        self.out = nn.Linear(32, 10)

    def forward(self, x):
        x = self.inp(torch.flatten(x, 1))          # signed: no ReLU
        y = torch.relu(self.h1(x))
        x = torch.add(self.h2(y), x)               # add of signed branches, signed output
        return self.out(torch.relu(x))


DAG_NETS = {"resnet": ResNetTiny, "mobile": MobileTiny, "concat": ConcatTiny,
            "mlp-residual": MLPResidual}


def build(name, seed=0):
    """The network ``name`` with seeded weights and BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    net = DAG_NETS[name]()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, nn.BatchNorm2d):
                c = mod.num_features
                mod.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
                mod.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                mod.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                mod.bias.copy_(torch.randn(c, generator=gen) * 0.2)
    return net.eval()


def train(net, x, y, epochs=4, seed=0):
    """A few epochs of Adam on ``(x, y)`` (float32 numpy), so the network computes something:
    seeded and single-threaded; returns ``net`` in eval mode."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        xt, yt = torch.as_tensor(x), torch.as_tensor(y, dtype=torch.int64)
        net.train()
        for _ in range(epochs):
            perm = torch.randperm(len(xt), generator=gen)
            for i in range(0, len(xt), 32):
                idx = perm[i:i + 32]
                loss = nn.functional.cross_entropy(net(xt[idx]), yt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return net.eval()

"""Small DAG networks for the tests: residual, depthwise/grouped, concat, a shared tensor.

Seeded random weights and BatchNorm statistics (no training), digits-sized (1x8x8 input), so a
test builds one in milliseconds. ``DAG_NETS`` names each factory.
"""

import torch
from torch import nn

__all__ = ["ResNetTiny", "MobileTiny", "ConcatTiny", "MLPResidual", "DAG_NETS", "build",
           "random_dag", "train", "seed_batchnorm"]


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


def seed_batchnorm(net, seed, mean=0.2, affine=True):
    """Seeded BatchNorm statistics (and affine parameters), so folding them changes weights
    the way a trained network's would; returns ``net`` in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
                c = mod.num_features
                mod.running_mean.copy_(torch.randn(c, generator=gen) * mean)
                mod.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                if affine:
                    mod.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                    mod.bias.copy_(torch.randn(c, generator=gen) * 0.2)
    return net.eval()


def build(name, seed=0):
    """The network ``name`` with seeded weights and BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    return seed_batchnorm(DAG_NETS[name](), seed + 1)


class _Res(nn.Module):
    """conv-BN-ReLU-conv-BN + shortcut (identity, or a strided 1x1 projection + BN)."""

    def __init__(self, c, out, stride, relu_after):
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(c, out, 3, stride, 1), _bn(out), nn.ReLU())
        self.c2 = nn.Sequential(nn.Conv2d(out, out, 3, 1, 1), _bn(out))
        self.proj = (nn.Sequential(nn.Conv2d(c, out, 1, stride, bias=False), _bn(out))
                     if stride != 1 or c != out else nn.Identity())
        self.relu = nn.ReLU() if relu_after else nn.Identity()

    def forward(self, x):
        return self.relu(self.c2(self.c1(x)) + self.proj(x))


class _DW(nn.Module):
    """Depthwise (depth multiplier ``mult``) + pointwise, each with BN; ReLU6 between."""

    def __init__(self, c, out, mult, stride):
        super().__init__()
        self.dw = nn.Sequential(nn.Conv2d(c, c * mult, 3, stride, 1, groups=c), _bn(c * mult),
                                nn.ReLU6())
        self.pw = nn.Sequential(nn.Conv2d(c * mult, out, 1), _bn(out), nn.ReLU())

    def forward(self, x):
        return self.pw(self.dw(x))


class _Grouped(nn.Module):
    def __init__(self, c, out, groups):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(c, out, 3, 1, 1, groups=groups), nn.ReLU())

    def forward(self, x):
        return self.conv(x)


class _Cat(nn.Module):
    """Two branches of one tensor joined along channels, then max pooled."""

    def __init__(self, c, a, b, pool):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(c, a, 1), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(c, b, 3, 1, 1), nn.ReLU())
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()

    def forward(self, x):
        return self.pool(torch.cat([self.a(x), self.b(x)], dim=1))


class _Linear(nn.Module):
    """A linear bottleneck (signed) added back to its input: MobileNetV2's residual."""

    def __init__(self, c):
        super().__init__()
        self.expand = nn.Sequential(nn.Conv2d(c, 2 * c, 1), nn.ReLU6())
        self.project = nn.Sequential(nn.Conv2d(2 * c, c, 1), _bn(c))

    def forward(self, x):
        return x + self.project(self.expand(x))


def random_dag(rng, blocks=3):
    """A random digits-sized DAG: a stem, ``blocks`` random residual / depthwise / grouped /
    concat / linear-bottleneck blocks, then flatten and a linear layer (seeded by ``rng``)."""
    c = int(rng.integers(2, 9))
    layers, size, after_cat = [nn.Conv2d(1, c, 3, 1, 1), nn.ReLU()], 8, False
    for _ in range(blocks):
        kind = int(rng.integers(0, 5))
        out = int(rng.integers(2, 13))
        down = size > 2 and rng.random() < 0.4
        if after_cat and kind in (0, 4):
            # a concat's lanes may have gaps (each part from a word boundary): the overlay
            # adds only tensors of one layout, so its shortcut goes through a projection
            kind, down = 0, True
            out = out if out != c else out + 1
        after_cat = kind == 3
        if kind == 0:
            layers.append(_Res(c, out, 2 if down and size > 2 else 1, bool(rng.random() < 0.7)))
            size = (size + 1) // 2 if down and size > 2 else size
        elif kind == 1:
            layers.append(_DW(c, out, int(rng.integers(1, 3)), 2 if down else 1))
            size = (size + 1) // 2 if down else size
        elif kind == 2:
            g = [d for d in range(1, c + 1) if c % d == 0][int(rng.integers(0, 2)) % 2 - 1]
            out = g * int(rng.integers(1, 4))
            layers.append(_Grouped(c, out, g))
        elif kind == 3:
            a, b = int(rng.integers(1, 8)), int(rng.integers(1, 8))
            layers.append(_Cat(c, a, b, down))
            out, size = a + b, size // 2 if down else size
        else:
            layers.append(_Linear(c))
            out = c
        c = out
    layers += [nn.Flatten(), nn.Linear(c * size * size, int(rng.integers(2, 11)))]
    torch.manual_seed(int(rng.integers(0, 1 << 30)))
    return seed_batchnorm(nn.Sequential(*layers), int(rng.integers(0, 1 << 30)), affine=False)


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

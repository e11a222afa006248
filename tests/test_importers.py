"""torch.fx capture: zoo models, BatchNorm folding, ReLU fusion and every unsupported-op error."""

import copy
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flowkit import captured, digits, node_rng, trained
from torch import nn

from quantflow import importers
from quantflow.errors import UnsupportedOpError, UserError
from quantflow.importers import Act, capture, run_float
from quantflow.qmodel import LayerKind

SUPPORTED = re.escape(", ".join(importers.SUPPORTED))


def _float_equal(model, layers, x, atol=1e-9):
    """The captured float chain computes what the (float64) torch model computes."""
    ref = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        want = ref(torch.as_tensor(x, dtype=torch.float64)).numpy()
    got = run_float(layers, x)[-1].numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=atol)


def test_capture_digits_cnn():
    layers = captured("digits-cnn")
    assert [(lyr.kind, lyr.act) for lyr in layers] == [
        (LayerKind.CONV2D, Act.RELU), (LayerKind.CONV2D, Act.RELU), (LayerKind.MAXPOOL, Act.NONE),
        (LayerKind.CONV2D, Act.RELU), (LayerKind.FLATTEN, Act.NONE),
        (LayerKind.LINEAR, Act.NONE)]
    assert [lyr.out_shape for lyr in layers] == [(16, 8, 8), (32, 8, 8), (32, 4, 4),
                                                 (32, 4, 4), (512,), (10,)]
    assert layers[0].in_shape == (1, 8, 8)
    assert [lyr.extra.get("bn_folded") for lyr in layers[:4]] == ["1", "4", None, None]
    assert layers[0].padding == (1, 1) and layers[2].kernel == layers[2].stride == (2, 2)


def test_capture_digits_mlp():
    layers = captured("digits-mlp")
    assert [(lyr.kind, lyr.act, lyr.out_shape) for lyr in layers] == [
        (LayerKind.FLATTEN, Act.NONE, (64,)), (LayerKind.LINEAR, Act.RELU, (64,)),
        (LayerKind.LINEAR, Act.RELU, (32,)), (LayerKind.LINEAR, Act.NONE, (10,))]


@pytest.mark.parametrize("name", ["digits-cnn", "digits-mlp"])
def test_captured_zoo_equals_float_model(name):
    x = digits().x_test[:64]
    _float_equal(trained(name), captured(name), x)


def _randomize_bn(bn, rng):
    with torch.no_grad():
        bn.running_mean.copy_(torch.as_tensor(rng.normal(0, 1, bn.num_features)))
        bn.running_var.copy_(torch.as_tensor(rng.uniform(0.1, 3, bn.num_features)))
        if bn.affine:
            bn.weight.copy_(torch.as_tensor(rng.normal(1, 0.5, bn.num_features)))
            bn.bias.copy_(torch.as_tensor(rng.normal(0, 0.5, bn.num_features)))


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("conv_bias", [True, False])
def test_bn_folding_matches_float(request, affine, conv_bias):
    seed, rng = node_rng(request)
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=conv_bias), nn.BatchNorm2d(4, affine=affine),
        nn.ReLU(), nn.Conv2d(4, 3, 3, stride=2), nn.BatchNorm2d(3, eps=1e-3), nn.ReLU6(),
        nn.Flatten(), nn.Linear(12, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3))
    for m in model:
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            _randomize_bn(m, rng)
    layers = capture(model, (2, 5, 5))
    assert [lyr.kind for lyr in layers] == [LayerKind.CONV2D, LayerKind.CONV2D,
                                            LayerKind.FLATTEN, LayerKind.LINEAR,
                                            LayerKind.LINEAR], f"seed={seed}"
    assert [lyr.act for lyr in layers] == [Act.RELU, Act.RELU6, Act.NONE, Act.RELU, Act.NONE]
    assert [lyr.extra.get("bn_folded") for lyr in layers] == ["1", "4", None, "8", None]
    x = rng.uniform(-1, 1, size=(7, 2, 5, 5))
    _float_equal(model, layers, x)
    # the folded layers alone (before any ReLU hides a sign) equal conv+BN
    with torch.no_grad():
        want = model.double()[:2](torch.as_tensor(x)).numpy()
    folded = layers[0]
    got = F.conv2d(torch.as_tensor(x), torch.from_numpy(folded.weight),
                   torch.from_numpy(folded.bias), padding=1).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, err_msg=f"seed={seed}")


def test_relu_after_maxpool_fuses_into_the_conv(request):
    seed, rng = node_rng(request)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(),
                          nn.Flatten(), nn.Linear(48, 4))
    layers = capture(model, (1, 8, 8))
    assert [(lyr.kind, lyr.act) for lyr in layers] == [
        (LayerKind.CONV2D, Act.RELU), (LayerKind.MAXPOOL, Act.NONE),
        (LayerKind.FLATTEN, Act.NONE), (LayerKind.LINEAR, Act.NONE)]
    _float_equal(model, layers, rng.uniform(-1, 1, size=(5, 1, 8, 8)))


def test_functional_forms_and_global_pooling(request):
    seed, rng = node_rng(request)
    torch.manual_seed(seed)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(1, 4, 3, padding=1)
            self.c2 = nn.Conv2d(4, 6, 3)
            self.drop = nn.Dropout(0.5)
            self.idn = nn.Identity()
            self.fc = nn.Linear(6, 3)

        def forward(self, x):
            x = F.relu(self.c1(x))
            x = F.avg_pool2d(x, 2, 2, 1)  # positional padding
            x = torch.relu(self.idn(self.c2(x)))
            x = F.max_pool2d(x, kernel_size=1)
            x = x.mean((2, 3))
            return self.fc(self.drop(x))

    model = Net()
    layers = capture(model, (1, 6, 6))
    kinds = [lyr.kind for lyr in layers]
    assert kinds == [LayerKind.CONV2D, LayerKind.AVGPOOL, LayerKind.CONV2D, LayerKind.MAXPOOL,
                     LayerKind.AVGPOOL, LayerKind.FLATTEN, LayerKind.LINEAR]
    assert layers[1].padding == (1, 1), "positional padding of avg_pool2d must be kept"
    assert layers[4].extra == {"global": True} and layers[4].kernel == (2, 2)
    _float_equal(model, layers, rng.uniform(-1, 1, size=(3, 1, 6, 6)))

    gap = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(2, 2))
    layers = capture(gap, (1, 5, 5))
    assert layers[1].kind is LayerKind.AVGPOOL and layers[1].kernel == (3, 3)
    _float_equal(gap, layers, rng.uniform(-1, 1, size=(3, 1, 5, 5)))


# -- unsupported ops --------------------------------------------------------------------------

class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 1, 3, padding=1)
        self.c2 = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        y = self.c1(x)
        return y + self.c2(y)


class _Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 10, batch_first=True)

    def forward(self, x):
        return self.lstm(x.reshape(-1, 8, 8))[0][:, -1]


class Functional(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.c = nn.Conv2d(1, 2, 3)
        self.fn = fn

    def forward(self, x):
        return self.fn(self.c(x))


class Branchy(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x
        return -x


def _mean3(x):
    return x.mean(3)


def _maxpool_ceil(x):
    return F.max_pool2d(x, 2, ceil_mode=True)


def _maxpool_dilated(x):
    return F.max_pool2d(x, 2, dilation=2)


def _avgpool_ceil(x):
    return F.avg_pool2d(x, 2, 2, 0, True)


def _avgpool_excluding_pad(x):
    return F.avg_pool2d(x, 2, padding=1, count_include_pad=False)


def _sigmoid(x):
    return torch.sigmoid(x)


def _view(x):
    return x.view(-1)


def _add_constant(x):
    return x + 1.0


def _add_alpha(x):
    return torch.add(x, x, alpha=2)


def _cat_height(x):
    return torch.cat([x, x], dim=2)


class SharedRelu(nn.Module):
    """A ReLU on a tensor the add also reads: the pre-ReLU tensor must stay."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 2, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x):
        y = self.c(x)
        return self.relu(y) + y


class SharedBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 2, 3, padding=1)
        self.bn = nn.BatchNorm2d(2)

    def forward(self, x):
        y = self.c(x)
        return self.bn(y) + y


UNSUPPORTED = [
    ("sigmoid", nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sigmoid()), "Sigmoid", 2, "_1"),
    ("tanh", nn.Sequential(nn.Flatten(), nn.Linear(64, 3), nn.Tanh()), "Tanh", 3, "_2"),
    ("add constant", Functional(_add_constant),
     r"add other than of two tensors \(a constant or alpha\)", 2, "add"),
    ("add alpha", Functional(_add_alpha),
     r"add other than of two tensors \(a constant or alpha\)", 2, "add"),
    ("cat height", Functional(_cat_height),
     r"torch.cat\(dim=2\) \(only channels of \(N, C, H, W\): dim=1\)", 2, "cat"),
    ("relu on a shared tensor", SharedRelu(),
     "relu on a tensor that other layers also read \\(it cannot be fused into the layer"
     " before it\\)", 2, "relu"),
    ("bn on a shared tensor", SharedBN(),
     "BatchNorm2d on a tensor that other layers also read", 2, "bn"),
    ("dilation", nn.Sequential(nn.Conv2d(1, 2, 3, dilation=2)),
     "Conv2d with dilation, string or non-zero padding mode", 1, "_0"),
    ("reflect", nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect")),
     "Conv2d with dilation, string or non-zero padding mode", 1, "_0"),
    ("maxpool padding", nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2, padding=1)),
     "MaxPool2d with padding", 2, "_1"),
    ("maxpool ceil", nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2, ceil_mode=True)),
     "MaxPool2d with dilation or ceil_mode", 2, "_1"),
    ("adaptive 2", nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(2)),
     r"AdaptiveAvgPool2d\(2\)", 2, "_1"),
    ("flatten 0", nn.Sequential(nn.Flatten(0)), r"Flatten other than Flatten\(1, -1\)", 1,
     "_0"),
    ("bn first", nn.Sequential(nn.BatchNorm2d(1), nn.Conv2d(1, 2, 3)),
     "BatchNorm2d not directly after Conv2d/Linear", 1, "_0"),
    ("bn after relu", nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.BatchNorm2d(2)),
     "BatchNorm2d not directly after Conv2d/Linear", 3, "_2"),
    ("bn no stats", nn.Sequential(nn.Conv2d(1, 2, 3),
                                  nn.BatchNorm2d(2, track_running_stats=False)),
     "BatchNorm2d without running statistics", 2, "_1"),
    ("relu first", nn.Sequential(nn.ReLU(), nn.Conv2d(1, 2, 3)), "relu not after Conv2d/Linear/add",
     1, "_0"),
    ("relu twice", nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.ReLU6()),
     "relu6 not after Conv2d/Linear/add", 3, "_2"),
    ("relu after avgpool", nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2), nn.ReLU()),
     "relu not after Conv2d/Linear/add", 3, "_2"),
    ("mean one dim", Functional(_mean3), r"'mean' \(call_method\)", 2, "mean"),
    ("max_pool2d ceil", Functional(_maxpool_ceil),
     "max_pool2d with dilation, ceil_mode or return_indices", 2, "max_pool2d"),
    ("max_pool2d dilation", Functional(_maxpool_dilated),
     "max_pool2d with dilation, ceil_mode or return_indices", 2, "max_pool2d"),
    ("avg_pool2d ceil", Functional(_avgpool_ceil),
     "avg_pool2d with ceil_mode, divisor_override or excluded padding", 2, "avg_pool2d"),
    ("avg_pool2d excluded pad", Functional(_avgpool_excluding_pad),
     "avg_pool2d with ceil_mode, divisor_override or excluded padding", 2, "avg_pool2d"),
    ("torch.sigmoid", Functional(_sigmoid), r"'sigmoid' \(call_function\)", 2, "sigmoid"),
    ("view", Functional(_view), r"'view' \(call_method\)", 2, "view"),
    # the LSTM is named, not the reshape before it nor the indexing after it
    ("LSTM", _Recurrent(), "LSTM", 2, "lstm"),
]


@pytest.mark.parametrize(("model", "what", "index", "node"), [c[1:] for c in UNSUPPORTED],
                         ids=[c[0] for c in UNSUPPORTED])
def test_unsupported_op_message(model, what, index, node):
    with pytest.raises(UnsupportedOpError,
                       match=rf"^unsupported op {what} at graph node {index} \('{node}'\); "
                             rf"supported: {SUPPORTED}$"):
        capture(model, (1, 8, 8))


def test_untraceable_model():
    with pytest.raises(UnsupportedOpError,
                       match=r"^cannot trace the model with torch\.fx \(TraceError: .+\)$"):
        capture(Branchy(), (1, 8, 8))


def test_shape_mismatch_messages():
    with pytest.raises(UnsupportedOpError,
                       match=r"^layer '1': Linear expects 100 features, gets \(64,\)$"):
        capture(nn.Sequential(nn.Flatten(), nn.Linear(100, 2)), (1, 8, 8))
    with pytest.raises(UnsupportedOpError,
                       match=r"^layer '0': Conv2d expects 3 input channels, gets \(1, 8, 8\)$"):
        capture(nn.Sequential(nn.Conv2d(3, 2, 3)), (1, 8, 8))
    with pytest.raises(UnsupportedOpError,
                       match=r"^layer '0': kernel \(9, 9\) does not fit input \(1, 8, 8\)$"):
        capture(nn.Sequential(nn.Conv2d(1, 2, 9)), (1, 8, 8))
    with pytest.raises(UnsupportedOpError,
                       match=r"^layer '1': pooling needs a feature map, gets \(64,\)$"):
        capture(nn.Sequential(nn.Flatten(), nn.MaxPool2d(2)), (1, 8, 8))


def test_empty_model():
    with pytest.raises(UnsupportedOpError, match=r"^the model has no layers to quantize$"):
        capture(nn.Sequential(nn.Identity(), nn.Dropout()), (1, 8, 8))


def test_unsupported_op_error_is_a_user_error():
    assert issubclass(UnsupportedOpError, UserError)

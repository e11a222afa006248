"""DAG networks through the quantization flow: capture, signed tensors, add and concat.

The fake-quant twin equals the integer reference on every integer of every layer, for the
residual, depthwise/grouped, concat and vector-residual networks of :mod:`dagnets`, at every
width 2..8 and at mixed widths, on unsigned and on standardized (signed) inputs.
"""

import math
from fractions import Fraction

import dagnets
import numpy as np
import pytest
import torch
from flowkit import digits

from quantflow import importers, ptq, reference
from quantflow.calibrate import RangeMethod
from quantflow.errors import UnsupportedOpError
from quantflow.numerics import QFormat, add_requantize, rescale
from quantflow.qmodel import LayerKind

FAST_BITS = [(2, 2), (4, 4), (8, 8), (8, 2), (3, 6)]
BITS = [pytest.param(w, a, id=f"W{w}A{a}") for w, a in FAST_BITS] + [
    pytest.param(b, b, id=f"W{b}A{b}", marks=pytest.mark.slow) for b in (3, 5, 6, 7)]


def _standardize(x):
    return (x - 0.3) / 0.35


@pytest.fixture(scope="module")
def data():
    ds = digits()
    return ds.x_train[:400], ds.x_test


def test_capture_keeps_the_graph():
    layers = importers.capture(dagnets.build("resnet"), (1, 8, 8))
    kinds = [(lyr.kind, lyr.inputs, lyr.act.value) for lyr in layers]
    assert kinds[3] == (LayerKind.ADD, (2, 0), "relu")          # identity shortcut + ReLU
    assert kinds[6] == (LayerKind.CONV2D, (3,), "none")          # projection shortcut reads 3
    assert kinds[7] == (LayerKind.ADD, (5, 6), "relu")
    assert layers[6].stride == (2, 2) and layers[6].extra["bn_folded"] == "proj_bn"
    assert importers.consumers(layers, 3) == [4, 6]              # one tensor, two readers
    mobile = importers.capture(dagnets.build("mobile"), (1, 8, 8))
    assert [lyr.groups for lyr in mobile if lyr.kind is LayerKind.CONV2D] == [
        1, 4, 1, 1, 12, 1, 6, 2]
    assert mobile[7].out_shape == (12, 4, 4)                     # depth multiplier 2
    cat = importers.capture(dagnets.build("concat"), (1, 8, 8))
    assert (cat[3].kind, cat[3].inputs, cat[3].out_shape) == (LayerKind.CONCAT, (1, 2),
                                                              (9, 8, 8))


@pytest.mark.parametrize("name", list(dagnets.DAG_NETS))
def test_float_forward_equals_the_module(name, data):
    net = dagnets.build(name)
    layers = importers.capture(net, (1, 8, 8))
    x = data[1][:64]
    with torch.no_grad():
        want = net(torch.from_numpy(x)).double().numpy()
    got = importers.run_float(layers, x)[-1].numpy()
    assert np.allclose(got, want, atol=1e-5), np.abs(got - want).max()


def _quantize(name, wbits, abits, x_calib, layer_bits=None, method=RangeMethod.MSE):
    layers = importers.capture(dagnets.build(name), (1, 8, 8))
    cfg = ptq.PTQConfig(wbits, abits, w_method=method, a_method=method,
                        layer_bits=layer_bits or {})
    net = ptq.quantize(layers, name, (1, 8, 8), x_calib, cfg)
    return net, net.export()


def _assert_twin_equals_reference(net, qm, x, where):
    x_int = qm.quantize_input(x)
    outs = reference.run(qm, x_int)
    with torch.no_grad():
        got = net.forward_int(torch.as_tensor(x_int, dtype=torch.float64))
    assert len(got) == len(outs) == len(qm.layers)
    for i, (layer, want, g) in enumerate(zip(qm.layers, outs, got, strict=True)):
        g = g.numpy()
        assert np.array_equal(g, np.round(g)), f"{where} layer {i}: not integer-valued"
        if not np.array_equal(g.astype(np.int64), want):
            idx = tuple(int(v) for v in np.argwhere(g != want)[0])
            pytest.fail(f"{where} layer {i} ({layer.name}) at {idx}: expected {want[idx]},"
                        f" got {g[idx]}")
        assert layer.out_fmt.contains(want), f"{where} layer {i} leaves {layer.out_fmt}"
    return outs


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned-input", "signed-input"])
@pytest.mark.parametrize(("wbits", "abits"), BITS)
@pytest.mark.parametrize("name", list(dagnets.DAG_NETS))
def test_twin_equals_reference_on_every_integer(name, wbits, abits, signed, data):
    x_cal, x_test = data
    if signed:
        x_cal, x_test = _standardize(x_cal), _standardize(x_test)
    net, qm = _quantize(name, wbits, abits, x_cal)
    assert qm.input_fmt.signed is signed
    extremes = np.stack([np.zeros_like(x_test[0]), np.full_like(x_test[0], 8.0),
                         np.full_like(x_test[0], -8.0 if signed else 0.0)])
    outs = _assert_twin_equals_reference(net, qm, np.concatenate([x_test, extremes]),
                                         f"{name} W{wbits}A{abits}")
    # signed tensors take both signs (the comparison covered negative values)
    for layer, out in zip(qm.layers, outs, strict=True):
        if layer.requant and layer.out_fmt.signed and layer.kind is not LayerKind.FLATTEN:
            assert int(out.min()) < 0 < int(out.max()), f"{layer.name}: not signed in use"


def test_mixed_layer_bits(data):
    """8-bit first and last layer, 2-bit middle; the add at 3 bits."""
    layer_bits = {"stem.0": (8, 2), "fc": (8, 8), "add_1": (2, 3)}
    net, qm = _quantize("resnet", 2, 2, data[0], layer_bits)
    assert qm.layers[0].w_fmt.bits == 8 and qm.layers[-1].w_fmt.bits == 8
    assert qm.layers[1].w_fmt.bits == 2 and qm.layers[7].out_fmt == QFormat(3, False)
    _assert_twin_equals_reference(net, qm, data[1], "resnet mixed")


def test_concat_inputs_share_one_scale(data):
    net, qm = _quantize("concat", 4, 4, data[0])
    left, right, cat = qm.layers[1], qm.layers[2], qm.layers[3]
    assert float(left.out_scale[0]) == float(right.out_scale[0])
    assert cat.in_fmt == left.out_fmt == right.out_fmt


def test_signed_input_is_held_not_clipped(data):
    x_cal, x_test = (_standardize(x) for x in data)
    _, qm = _quantize("mlp-residual", 8, 8, x_cal, method=RangeMethod.MINMAX)
    assert qm.input_fmt == QFormat(8, True)
    assert qm.input_saturation(x_cal) == 0.0
    xi = qm.quantize_input(x_test)
    assert int(xi.min()) < 0


def test_add_requantize_matches_exact_rationals():
    rng = np.random.default_rng(7)
    for _ in range(200):
        xs = [rng.integers(-128, 128, size=16), rng.integers(0, 256, size=16)]
        mults = [int(rng.integers(0, 1 << 16)), int(rng.integers(0, 1 << 16))]
        shifts = [int(rng.integers(0, 30)), int(rng.integers(0, 30))]
        lo, hi = sorted(int(v) for v in rng.integers(-20, 20, size=2))
        got = add_requantize(xs, mults, shifts, lo, hi)
        for n in range(16):
            # each term is floor(x * M / 2**s + 1/2) (exactly, for s > 0), or x * M
            total = sum(math.floor(Fraction(int(x[n]) * m, 1 << s) + Fraction(1, 2)) if s
                        else int(x[n]) * m for x, m, s in zip(xs, mults, shifts, strict=True))
            assert got[n] == min(max(total, lo), hi)
    assert np.array_equal(rescale([-3, -2, -1, 1, 2, 3], 1, 1), [-1, -1, 0, 1, 1, 2])
    with pytest.raises(ValueError, match=r"^An add must have one \(M, s\) per input, not 1 for"
                                         r" 2 inputs$"):
        add_requantize([np.zeros(2), np.zeros(2)], [1], [0], 0, 1)


def test_logits_read_by_another_layer_is_refused():
    class Bad(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(64, 10)
            self.b = torch.nn.Linear(10, 10)

        def forward(self, x):
            y = self.a(torch.flatten(x, 1))
            return self.b(y) + y

    layers = importers.capture(Bad(), (1, 8, 8))
    with pytest.raises(UnsupportedOpError, match=r"^add layer 'add' gives the network output"):
        ptq.check_chain(layers)


def test_standardized_features_lose_nothing_at_w8a8():
    """A model trained on standardized (signed) features quantizes at W8A8 within 0.5 points
    of its float accuracy: the input is signed, nothing is clipped to zero."""
    import dataclasses

    from quantflow import flow, zoo

    ds = digits()
    mu, sd = ds.x_train.mean(axis=0, keepdims=True), ds.x_train.std(axis=0, keepdims=True)
    std = dataclasses.replace(ds, name="digits-standardized",
                              x_train=((ds.x_train - mu) / (sd + 0.1)).astype(np.float32),
                              x_test=((ds.x_test - mu) / (sd + 0.1)).astype(np.float32))
    which = zoo.ZooModel.DIGITS_MLP
    torch.manual_seed(0)
    net = zoo.train(zoo.build(which), std, zoo.RECIPES[which])
    r = flow.quantize_model(which.value, net, std, ptq.PTQConfig(8, 8), flow.Method.MSE)
    assert r.qmodel.input_fmt == QFormat(8, True)
    assert r.quant_accuracy >= r.float_accuracy - 0.005, (r.float_accuracy, r.quant_accuracy)
    assert r.qmodel.input_saturation(std.x_test) < 1e-3

"""The torch fake-quant twin reproduces every integer of the integer reference.

Over the whole digits test set (450 images, plus an all-zero and a saturating image) at every
bit width 1..8 (1 bit: bipolar weights, 0/1 activations) and mixed widths, on both weight
grids (narrow and full, whose -2^(b-1) code must appear), for both zoo networks: each layer's
float64 output is integer-valued and equal, element for element, to
:func:`quantflow.reference.run`.
"""

import numpy as np
import pytest
import torch
from flowkit import calib_set, digits, quantized, trained
from torch import nn

from quantflow import reference
from quantflow.fakequant import floor_ste, round_ste

BITS = [(b, b) for b in range(1, 9)] + [(2, 8), (8, 2), (3, 6), (1, 8), (8, 1)]
MODELS = ["digits-cnn", "digits-mlp"]


@pytest.fixture(scope="module")
def zoo_inputs():
    """Train (or load from the cache) both zoo networks once; the test images plus extremes."""
    for name in MODELS:
        trained(name)
    x = digits().x_test
    extremes = np.stack([np.zeros_like(x[0]), np.full_like(x[0], 4.0)])  # 4.0 saturates
    return np.concatenate([x, extremes])


def _first_mismatch(want, got):
    idx = tuple(int(i) for i in np.argwhere(want != got)[0])
    return idx, int(want[idx]), got[idx]


@pytest.mark.parametrize("grid", ["narrow", "full"])
@pytest.mark.parametrize(("wbits", "abits"), BITS, ids=[f"W{w}A{a}" for w, a in BITS])
@pytest.mark.parametrize("name", MODELS)
def test_fakequant_equals_reference_on_every_integer(zoo_inputs, name, wbits, abits, grid):
    # min-max on the narrow grid; MSE on the full one (its clipped activation ranges make the
    # quantized net saturate, which the full grid's smaller W2 activations do not under min-max)
    net, qm = quantized(name, wbits, abits, "minmax" if grid == "narrow" else "mse", grid)
    lows = [int(lyr.weight.min()) for lyr in qm.layers if lyr.weight is not None]
    if wbits == 1:  # binary: both grids are the bipolar +-1, and no weight is zero
        assert all(np.all(np.abs(lyr.weight) == 1) for lyr in qm.mac_layers)
        assert min(lows) == -1
    elif grid == "full":  # some channel's largest |w| is negative: it lands on -2^(b-1)
        assert min(lows) == -(1 << (wbits - 1)), lows
    else:
        assert min(lows) >= -((1 << (wbits - 1)) - 1), lows
    x_int = qm.quantize_input(zoo_inputs)
    assert int(x_int.max()) == qm.input_fmt.max and int(x_int.min()) == 0
    with torch.no_grad():
        x_fq = net.quantize_input(zoo_inputs)
        assert np.array_equal(x_fq.numpy(), x_int), "input quantization differs"
        outs_fq = net.forward_int(x_fq)
    outs_ref = reference.run(qm, x_int)
    assert len(outs_fq) == len(outs_ref) == len(qm.layers)
    for i, (layer, want, got_t) in enumerate(zip(qm.layers, outs_ref, outs_fq, strict=True)):
        got = got_t.numpy()
        where = f"{name} W{wbits}A{abits} layer {i} ({layer.name})"
        assert got.dtype == np.float64 and got.shape == want.shape, where
        assert np.all(np.isfinite(got)) and np.array_equal(got, np.round(got)), (
            f"{where}: fake-quant output is not integer-valued")
        assert np.all(np.abs(got) < 2.0 ** 53), f"{where}: beyond float64's exact integers"
        if not np.array_equal(got.astype(np.int64), want):
            idx, e, g = _first_mismatch(want, got)
            pytest.fail(f"{where}: first mismatch at {idx}: expected {e}, got {g}")
        assert layer.out_fmt.contains(want), f"{where}: output leaves {layer.out_fmt}"
    # the comparison covered both clamp ends: some requantized MAC layer saturates at hi
    ends = [(int(o.min()) == lyr.lo, int(o.max()) == lyr.hi)
            for lyr, o in zip(qm.layers, outs_ref, strict=True)
            if lyr.requant and lyr.weight is not None]
    assert any(hi for _, hi in ends) and all(lo for lo, _ in ends), (
        f"{name} W{wbits}A{abits}: clamp ends not exercised {ends}")
    # and the float forward ranks classes exactly as the reference does
    with torch.no_grad():
        logits = net(torch.as_tensor(zoo_inputs, dtype=torch.float64)).numpy()
    assert np.array_equal(np.argmax(logits, axis=1), reference.predict(qm, x_int))


@pytest.mark.parametrize("name", MODELS)
def test_export_carries_the_forward_parameters(zoo_inputs, name):
    net, qm = quantized(name, 4, 4)
    fq_layers = list(net.layers)
    for fl, ql in zip(fq_layers, qm.layers, strict=True):
        assert fl.kind is ql.kind and fl.name == ql.name
        if ql.weight is not None:
            assert np.array_equal(fl.int_weight().detach().numpy(), ql.weight)
            assert np.array_equal(fl.int_bias().detach().numpy(), ql.bias)
            assert ql.w_fmt.contains(ql.weight) and int(np.abs(ql.weight).max()) <= ql.w_fmt.max
        if fl.requant:
            assert np.array_equal(fl.mult.numpy(), ql.mult)
            assert np.array_equal(fl.shift.numpy(), ql.shift)
            assert np.all(ql.mult < 1 << fl.mult_bits)
    assert not qm.layers[-1].requant, "logits stay at accumulator scale"
    assert qm.layers[-1].out_fmt == qm.layers[-1].acc_fmt


def test_ste_forward_rounds_and_passes_gradients():
    x = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, -0.7, 0.7], dtype=torch.float64,
                     requires_grad=True)
    r = round_ste(x)
    assert r.tolist() == [-2.0, -2.0, -0.0, 0.0, 2.0, 2.0, -1.0, 1.0]  # half to even, as rint
    assert np.array_equal(r.detach().numpy(), np.rint(x.detach().numpy()))
    r.sum().backward()
    assert x.grad.tolist() == [1.0] * 8
    y = torch.tensor([-1.5, -0.5, 0.5, 1.0], dtype=torch.float64, requires_grad=True)
    f = floor_ste(y)
    assert f.tolist() == [-2.0, -1.0, 0.0, 1.0]
    f.sum().backward()
    assert y.grad.tolist() == [1.0] * 4


def _every_op_net():
    """Untrained, but touching every supported op: strided padded conv + BN + ReLU6 (scaled
    so activations pass 6 before the clamp), padded average pool, max pool with stride 1,
    1x1 conv, global average pool, flatten, linear."""
    torch.manual_seed(1234)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
        nn.AvgPool2d(2, stride=1, padding=1), nn.Conv2d(8, 12, 2), nn.ReLU(),
        nn.MaxPool2d(2, stride=1), nn.Conv2d(12, 16, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(16, 10))
    with torch.no_grad():
        net[0].weight.mul_(20.0)
    return net.eval()


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("method", ["minmax", "mse"])
def test_fakequant_equals_reference_on_every_op(zoo_inputs, bits, method):
    from quantflow import ptq
    from quantflow.calibrate import RangeMethod
    from quantflow.importers import capture

    layers = capture(_every_op_net(), (1, 8, 8))
    m = RangeMethod(method)
    cfg = ptq.PTQConfig(bits, bits, w_method=m, a_method=m)
    net = ptq.quantize(layers, "every-op", (1, 8, 8), calib_set(), cfg)
    qm = net.export()
    assert [layer.kind.value for layer in qm.layers] == [
        "conv2d", "avgpool", "conv2d", "maxpool", "conv2d", "avgpool", "flatten", "linear"]
    relu6 = qm.layers[0]
    assert relu6.lo == 0 and relu6.hi == min(relu6.out_fmt.max,
                                             int(np.floor(6.0 / float(relu6.out_scale[0]))))
    x_int = qm.quantize_input(zoo_inputs)
    with torch.no_grad():
        outs_fq = net.forward_int(torch.as_tensor(x_int, dtype=torch.float64))
    for i, (want, got_t) in enumerate(zip(reference.run(qm, x_int), outs_fq, strict=True)):
        got = got_t.numpy()
        assert np.array_equal(got, np.round(got)), f"W{bits} {method} layer {i}: not integers"
        if not np.array_equal(got.astype(np.int64), want):
            idx, e, g = _first_mismatch(want, got)
            pytest.fail(f"W{bits} {method} layer {i}: first mismatch at {idx}: expected {e},"
                        f" got {g}")


def test_float64_exactness_bound_is_checked():
    """acc * M must stay below 2**53 for the float64 forward to equal the int64 reference:
    W8A8 with K = 4096 has 29-bit accumulators, and 31-bit multipliers make 59 bits."""
    from quantflow import importers, ptq

    layers = importers.capture(nn.Sequential(nn.Flatten(), nn.Linear(4096, 2)), (1, 64, 64))
    x = np.zeros((2, 1, 64, 64), dtype=np.float32)
    x[0, 0, 0, 0] = 1.0
    with pytest.raises(ValueError, match=r"^Accumulator and multiplier bits must keep acc \* M "
                                         r"within 53 bits .*, not 59 \(layer '1'\)$"):
        ptq.quantize(layers, "wide", (1, 64, 64), x, ptq.PTQConfig(8, 8, mult_bits=31))

"""AdaRound: learned rounding stays within floor/ceil, is deterministic and exports bit-exact;
on DAG graphs each layer learns from its real source and grouped convs keep their groups."""

import numpy as np
import pytest
import torch
from flowkit import (assert_export_bit_exact, calib_set, captured, dag_captured, dag_quantized,
                     digits, layer_errors, standardize)

from quantflow import adaround, importers, ptq
from quantflow.calibrate import RangeMethod
from quantflow.qmodel import MAC_KINDS

FAST = adaround.AdaRound(iterations=30, batch=256)


def _net(name, bits=2):
    cfg = ptq.PTQConfig(bits, bits, w_method=RangeMethod.MSE, a_method=RangeMethod.MSE)
    return ptq.quantize(captured(name), name, digits().input_shape, calib_set(), cfg)


def _snapshot(net):
    return {i: (fq.weight.detach().clone(), fq.bias.detach().clone(),
                fq.w_scale.detach().clone(), fq.int_weight().detach().clone())
            for i, fq in enumerate(net.layers) if fq.kind in MAC_KINDS}


@pytest.mark.parametrize("name", ["digits-cnn", "digits-mlp"])
def test_adaround_rounds_each_weight_down_or_up(name):
    net = _net(name)
    before = _snapshot(net)
    changed = adaround.adaround(net, captured(name), calib_set()[:128], FAST)
    assert set(changed) == set(before)
    for i, (w, b, s, _) in before.items():
        fq = net.layers[i]
        q = fq.w_fmt.max
        shape = (-1,) + (1,) * (w.dim() - 1)
        lo = torch.clamp(torch.floor(w / s.reshape(shape)), -q, q)
        hi = torch.clamp(torch.floor(w / s.reshape(shape)) + 1, -q, q)
        got = fq.int_weight().detach()
        assert torch.all((got == lo) | (got == hi)), f"{name} layer {i}: outside floor/ceil"
        assert torch.equal(fq.bias.detach(), b) and torch.equal(fq.w_scale.detach(), s), (
            f"{name} layer {i}: AdaRound changed a bias or a scale")


def test_adaround_is_deterministic_and_exports_bit_exact():
    results = []
    for _ in range(2):
        net = _net("digits-mlp")
        FAST.apply(net, captured("digits-mlp"), calib_set()[:128])
        results.append(net)
    for a, b in zip(*[_snapshot(n).values() for n in results], strict=True):
        assert torch.equal(a[3], b[3]), "two seeded runs rounded differently"
    net = results[0]
    assert_export_bit_exact(net)


def test_adaround_layer_rows_match_the_convolution():
    fl = captured("digits-cnn")[1]
    x = np.random.default_rng(0).random((2, *fl.in_shape))
    rows, positions = adaround.layer_rows(fl, x)
    assert positions == 64 and rows.shape == (2 * 64, int(np.prod(fl.weight.shape[1:])))
    out = rows @ fl.weight.reshape(len(fl.weight), -1).T + fl.bias
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(fl.weight),
                                     torch.from_numpy(fl.bias), padding=fl.padding)
    np.testing.assert_allclose(out.reshape(2, 8, 8, -1).transpose(0, 3, 1, 2), ref.numpy(),
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("kw", "msg"), [
    ({"iterations": 0}, r"^AdaRound iterations must be a positive integer, not 0$"),
    ({"batch": True}, r"^AdaRound batch must be a positive integer, not True$"),
    ({"warmup": 1.0}, r"^AdaRound warmup must be a fraction in \[0, 1\), not 1\.0$"),
])
def test_adaround_options_are_validated(kw, msg):
    with pytest.raises(ValueError, match=msg):
        adaround.AdaRound(**kw)


# -- DAG graphs ---------------------------------------------------------------------------------

DAG_FAST = adaround.AdaRound(iterations=60, batch=256)


def test_layer_rows_of_a_grouped_conv_match_the_convolution():
    fl = dag_captured("mobile")[8]  # 12 -> 8 channels in 2 groups
    assert fl.groups == 2
    x = np.random.default_rng(0).random((2, *fl.in_shape))
    rows, positions = adaround.layer_rows(fl, x)
    assert rows.shape == (2 * positions, 12 * 9)
    w = fl.weight.reshape(len(fl.weight), -1)
    out = adaround.grouped_matmul(rows, w, adaround.row_groups(fl)) + fl.bias
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(fl.weight),
                                     torch.from_numpy(fl.bias), padding=fl.padding, groups=2)
    np.testing.assert_allclose(out.reshape(2, 4, 4, -1).transpose(0, 3, 1, 2), ref.numpy(),
                               rtol=1e-10, atol=1e-10)


def test_layer_inputs_follow_the_graph():
    layers, net, x = dag_quantized("resnet", 4)
    xq, xf = adaround.layer_inputs(net, layers, x[:8], 6)  # the projection reads the add (3)
    want = importers.run_float(layers, x[:8])[3].numpy()
    np.testing.assert_allclose(xf, want)
    with torch.no_grad():
        q = net.forward_int(net.quantize_input(x[:8]))[3] * net.layers[6].in_scale
    np.testing.assert_array_equal(xq, q.numpy())


@pytest.mark.parametrize("bits", [4, 2])
@pytest.mark.parametrize(("name", "signed"), [("resnet", False), ("mobile", False),
                                              ("concat", False), ("mlp-residual", True)])
def test_adaround_on_a_dag_lowers_the_layer_error_and_exports_bit_exact(name, signed, bits):
    layers, net, x = dag_quantized(name, bits, signed=signed)
    x = x[:128]
    start = {i: fq.weight.detach().numpy().copy() for i, fq in enumerate(net.layers)
             if fq.kind in MAC_KINDS}
    adaround.adaround(net, layers, x, DAG_FAST)
    errs = layer_errors(net, layers, x, start, relu=True)
    learned, nearest = (sum(e[k] for e in errs.values()) for k in (0, 1))
    assert learned < nearest, f"{name} W{bits}: AdaRound {learned} vs nearest {nearest}"
    assert_export_bit_exact(net, x=np.concatenate([x, standardize(x)]) if signed else None)

"""GPTQ-style error feedback: integers stay in the format, the layer-output error on the
calibration inputs does not exceed round-to-nearest's, and the export is bit-exact."""

import numpy as np
import pytest
import torch
from flowkit import (assert_export_bit_exact, calib_set, captured, dag_quantized, digits,
                     layer_errors, standardize)

from quantflow import gptq, ptq
from quantflow.adaround import layer_inputs, layer_rows
from quantflow.calibrate import RangeMethod
from quantflow.qmodel import MAC_KINDS


def _net(name, bits=2):
    cfg = ptq.PTQConfig(bits, bits, w_method=RangeMethod.MSE, a_method=RangeMethod.MSE)
    return ptq.quantize(captured(name), name, digits().input_shape, calib_set(), cfg)


def test_first_layer_error_is_no_worse_than_nearest_and_export_is_exact():
    name = "digits-mlp"
    net = _net(name)
    fq = net.layers[1]
    xq, _ = layer_inputs(net, captured(name), calib_set(), 1)
    rows, _ = layer_rows(captured(name)[1], xq)
    w = fq.weight.detach().numpy().copy()
    s = fq.w_scale.detach().numpy().reshape(-1, 1)
    nearest = np.clip(np.rint(w / s), -1, 1) * s
    gptq.gptq(net, captured(name), calib_set())
    for lyr in net.layers:
        if lyr.kind in MAC_KINDS:
            assert lyr.w_fmt.contains(lyr.int_weight().detach().numpy().astype(np.int64))
    learned = fq.int_weight().detach().numpy() * s
    err = lambda q: float(np.sum((rows @ (w - q).T) ** 2))  # noqa: E731
    assert err(learned) <= err(nearest)
    assert_export_bit_exact(net)


def test_gptq_is_deterministic():
    a, b = _net("digits-mlp"), _net("digits-mlp")
    for net in (a, b):
        gptq.ErrorFeedbackRounding().apply(net, captured("digits-mlp"), calib_set())
    for la, lb in zip(a.layers, b.layers, strict=True):
        if la.kind in MAC_KINDS:
            assert torch.equal(la.int_weight(), lb.int_weight())


def test_damp_is_validated():
    with pytest.raises(ValueError, match=r"^GPTQ damp must be a positive float, not 0$"):
        gptq.ErrorFeedbackRounding(0)


@pytest.mark.parametrize("bits", [4, 2])
@pytest.mark.parametrize(("name", "signed"), [("resnet", False), ("mobile", False),
                                              ("concat", False), ("mlp-residual", True)])
def test_gptq_on_a_dag_lowers_the_layer_error_and_exports_bit_exact(name, signed, bits):
    """Per group Hessians on the layer's real source: the summed pre-activation error on the
    calibration inputs falls below round-to-nearest's."""
    layers, net, x = dag_quantized(name, bits, signed=signed)
    x = x[:256]
    start = {i: fq.weight.detach().numpy().copy() for i, fq in enumerate(net.layers)
             if fq.kind in MAC_KINDS}
    gptq.gptq(net, layers, x)
    errs = layer_errors(net, layers, x, start, relu=False)
    learned, nearest = (sum(e[k] for e in errs.values()) for k in (0, 1))
    assert learned < nearest, f"{name} W{bits}: GPTQ {learned} vs nearest {nearest}"
    assert_export_bit_exact(net, x=np.concatenate([x, standardize(x)]) if signed else None)

"""Activation range search: only activation scales move, the calibration KL never rises, and
the export stays bit-exact; on DAG graphs add and signed scales are searched and a concat's
producers move together."""

import numpy as np
import pytest
import torch
from flowkit import assert_export_bit_exact, calib_set, captured, dag_quantized, digits, standardize

from quantflow import actsearch, importers, ptq
from quantflow.calibrate import RangeMethod
from quantflow.qmodel import LayerKind


def _net(name, bits=2):
    cfg = ptq.PTQConfig(bits, bits, w_method=RangeMethod.MSE, a_method=RangeMethod.MSE)
    return ptq.quantize(captured(name), name, digits().input_shape, calib_set(), cfg)


@pytest.mark.parametrize("name", ["digits-mlp", "digits-cnn"])
def test_search_lowers_the_kl_and_changes_only_activation_scales(name):
    net = _net(name)
    x = calib_set()[:128]
    ref = torch.log_softmax(importers.run_float(captured(name), x)[-1], dim=1)
    before = actsearch.output_kl(net, net.quantize_input(x), ref)
    weights = [(lyr.int_weight().detach().clone(), lyr.w_scale.detach().clone())
               for lyr in net.layers if lyr.w_fmt is not None]
    after = actsearch.search_ranges(net, captured(name), x, sweeps=1,
                                    factors=(0.5, 0.8, 1.25))
    assert after <= before and after == actsearch.output_kl(net, net.quantize_input(x), ref)
    now = [(lyr.int_weight().detach(), lyr.w_scale.detach()) for lyr in net.layers
           if lyr.w_fmt is not None]
    for (w0, s0), (w1, s1) in zip(weights, now, strict=True):
        assert torch.equal(w0, w1) and torch.equal(s0, s1), "weights or weight scales moved"
    assert_export_bit_exact(net)


def test_sweeps_are_validated():
    with pytest.raises(ValueError, match=r"^Range search sweeps must be a positive integer,"
                                         r" not 0$"):
        actsearch.ActivationRangeSearch(0)


@pytest.mark.parametrize("bits", [4, 2])
@pytest.mark.parametrize(("name", "signed"), [("resnet", False), ("mobile", False),
                                              ("concat", False), ("mlp-residual", True)])
def test_search_on_a_dag_tunes_add_and_signed_scales_with_concat_tied(name, signed, bits):
    layers, net, x = dag_quantized(name, bits, signed=signed)
    x = x[:128]
    params = actsearch.searched_scales(net)
    ids = [id(p) for p in params]
    assert len(set(ids)) == len(ids)
    for i, layer in enumerate(net.layers):
        if layer.kind is LayerKind.ADD:
            assert any(layer.out_scale is p for p in params), f"{name}: add {i} not searched"
        if layer.requant and layer.out_fmt.signed:
            assert any(layer.out_scale is p for p in params), f"{name}: signed {i} not searched"
        if layer.kind is LayerKind.CONCAT:
            outs = {id(net.layers[j].out_scale) for j in net.sources(i)}
            assert len(outs) == 1, f"{name}: concat producers have separate scales"
    ref = torch.log_softmax(importers.run_float(layers, x)[-1], dim=1)
    before = actsearch.output_kl(net, net.quantize_input(x), ref)
    after = actsearch.search_ranges(net, layers, x, sweeps=1, factors=(0.5, 0.8, 1.25))
    assert after <= before and after == actsearch.output_kl(net, net.quantize_input(x), ref)
    if name == "concat":
        qm = net.export()
        assert float(qm.layers[1].out_scale[0]) == float(qm.layers[2].out_scale[0])
    assert_export_bit_exact(net, x=np.concatenate([x, standardize(x)]) if signed else None)

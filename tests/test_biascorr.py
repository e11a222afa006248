"""Empirical bias correction zeroes the mean pre-activation error on the calibration data, on
chains and on DAG graphs."""

import numpy as np
import pytest
import torch
from flowkit import calib_set, captured, dag_quantized, digits, standardize

from quantflow import biascorr, ptq, reference
from quantflow.calibrate import RangeMethod

MODELS = ["digits-cnn", "digits-mlp"]


def _net(name, bits=2):
    cfg = ptq.PTQConfig(bits, bits, w_method=RangeMethod.MSE, a_method=RangeMethod.MSE)
    return ptq.quantize(captured(name), name, digits().input_shape, calib_set(), cfg)


def assert_bit_exact(net, qm, x):
    """Every layer of the exact fake-quant forward equals the integer reference."""
    x_int = qm.quantize_input(x)
    with torch.no_grad():
        outs = net.forward_int(torch.from_numpy(x_int).double())
    for i, (want, got) in enumerate(zip(reference.run(qm, x_int), outs, strict=True)):
        assert np.array_equal(want, got.numpy().astype(np.int64)), f"layer {i} differs"


@pytest.mark.parametrize("name", MODELS)
def test_bias_correction_zeroes_the_mean_error(name):
    net = _net(name)
    x = calib_set()
    before = biascorr.preact_errors(net, captured(name), x)
    weights = {i: net.layers[i].int_weight().detach().clone() for i in before}
    biascorr.correct_bias(net, captured(name), x)
    after = biascorr.preact_errors(net, captured(name), x)
    for i, err in after.items():
        fq = net.layers[i]
        half_lsb = 0.5 * (fq.w_scale * fq.in_scale).detach().numpy()
        assert np.all(np.abs(err) <= half_lsb * (1 + 1e-9) + 1e-12), (
            f"{name} layer {i}: mean error {np.abs(err).max()} above half an LSB")
        assert torch.equal(fq.int_weight(), weights[i]), "bias correction changed weights"
    assert sum(np.abs(e).sum() for e in after.values()) < sum(
        np.abs(e).sum() for e in before.values())


def test_bias_correction_keeps_export_bit_exact():
    net = _net("digits-cnn")
    biascorr.BiasCorrection().apply(net, captured("digits-cnn"), calib_set())
    assert_bit_exact(net, net.export(), digits().x_test[:100])


@pytest.mark.parametrize("bits", [4, 2])
@pytest.mark.parametrize(("name", "signed"), [("resnet", False), ("mobile", False),
                                              ("concat", False), ("mlp-residual", True)])
def test_bias_correction_on_a_dag_zeroes_the_mean_error_per_channel(name, signed, bits):
    """Grouped and depthwise convs, adds and concats: each layer's error is measured on the
    inputs its own graph gives it."""
    layers, net, x = dag_quantized(name, bits, signed=signed)
    before = biascorr.preact_errors(net, layers, x)
    biascorr.correct_bias(net, layers, x)
    after = biascorr.preact_errors(net, layers, x)
    assert set(after) == {i for i, lyr in enumerate(layers) if lyr.weight is not None}
    for i, err in after.items():
        fq = net.layers[i]
        half_lsb = 0.5 * (fq.w_scale * fq.in_scale).detach().numpy()
        assert np.all(np.abs(err) <= half_lsb * (1 + 1e-9) + 1e-12), (
            f"{name} W{bits} layer {i}: mean error {np.abs(err).max()} above half an LSB")
    assert sum(np.abs(e).sum() for e in after.values()) < sum(
        np.abs(e).sum() for e in before.values())
    assert_bit_exact(net, net.export(), np.concatenate([x[:100], standardize(x[:100])]) if signed
                     else digits().x_test[:100])

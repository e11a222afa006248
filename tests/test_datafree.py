"""Data-free quantization reads no image and propagates statistics correctly, on chains and on
DAG graphs (adds, concats, grouped convs, ReLU6, signed tensors)."""

import numpy as np
import pytest
import torch
from flowkit import assert_export_bit_exact, captured, dag_trained, digits, standardize, trained

from quantflow import calibrate, datafree, importers, ptq, reference
from quantflow.calibrate import RangeMethod
from quantflow.qmodel import MAC_KINDS, LayerKind


def test_data_free_reads_no_image(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("data-free quantization touched data")

    monkeypatch.setattr(calibrate, "activation_scale", refuse)
    monkeypatch.setattr(importers, "run_float", refuse)
    monkeypatch.setattr(ptq, "run_float", refuse)
    monkeypatch.setattr(ptq, "activation_scale", refuse)
    cfg = ptq.PTQConfig(4, 4, w_method=RangeMethod.MSE)
    net = datafree.quantize_data_free(trained("digits-cnn"), captured("digits-cnn"),
                                      "digits-cnn", (1, 8, 8), cfg)
    qm = net.export()
    monkeypatch.undo()
    x_int = qm.quantize_input(digits().x_test[:50])
    with torch.no_grad():
        outs = net.forward_int(torch.from_numpy(x_int).double())
    for i, (want, got) in enumerate(zip(reference.run(qm, x_int), outs, strict=True)):
        assert np.array_equal(want, got.numpy().astype(np.int64)), f"layer {i} differs"


def test_max_of_normals_moments():
    assert datafree.max_normal_moments(1) == pytest.approx((0.0, 1.0), abs=1e-6)
    mean, std = datafree.max_normal_moments(2)
    assert mean == pytest.approx(1 / np.sqrt(np.pi), abs=1e-6)
    assert std == pytest.approx(np.sqrt(1 - 1 / np.pi), abs=1e-6)


def test_relu_moments_match_sampling():
    rng = np.random.default_rng(0)
    mu, sigma = np.array([-1.0, 0.0, 2.0]), np.array([0.5, 1.0, 3.0])
    z = np.maximum(rng.normal(mu, sigma, size=(400_000, 3)), 0)
    m, v = datafree.Stats(mu, sigma, relu=True).moments()
    np.testing.assert_allclose(m, z.mean(0), rtol=0.02, atol=2e-3)
    np.testing.assert_allclose(v, z.var(0), rtol=0.02, atol=2e-3)


def test_batchnorm_statistics_predict_the_first_conv():
    layers = captured("digits-cnn")
    stats = datafree.propagate(trained("digits-cnn"), layers)
    bn = trained("digits-cnn")[1]
    np.testing.assert_allclose(stats[0].mu, bn.bias.detach().double().numpy())
    assert set(stats) == {0, 1, 3, 5}


def test_data_free_refuses_a_weight_method_that_needs_data():
    cfg = ptq.PTQConfig(4, 4, w_method=RangeMethod.MSE_OUTPUT)
    with pytest.raises(ValueError, match=r"^Data-free weight range method must not need data,"
                                         r" not mse-out$"):
        datafree.quantize_data_free(trained("digits-cnn"), captured("digits-cnn"), "m",
                                    (1, 8, 8), cfg)


def test_relu6_moments_match_sampling():
    rng = np.random.default_rng(1)
    mu, sigma = np.array([-1.0, 3.0, 5.5, 8.0]), np.array([0.5, 2.0, 1.0, 3.0])
    z = np.clip(rng.normal(mu, sigma, size=(400_000, 4)), 0, 6)
    m, v = datafree.Stats(mu, sigma, relu=True, hi=6.0).moments()
    np.testing.assert_allclose(m, z.mean(0), rtol=0.02, atol=2e-3)
    np.testing.assert_allclose(v, z.var(0), rtol=0.02, atol=2e-3)


@pytest.mark.parametrize("bits", [4, 2])
@pytest.mark.parametrize(("name", "signed"), [("resnet", False), ("mobile", False),
                                              ("concat", False), ("mlp-residual", True)])
def test_data_free_on_a_dag_gives_finite_scales_and_signed_formats(name, signed, bits):
    """Adds, concats, grouped convs, ReLU6 and signed tensors (and a signed input for the MLP
    residual, trained on standardized images)."""
    model = dag_trained(name, signed)
    layers = importers.capture(model, (1, 8, 8))
    cfg = ptq.PTQConfig(bits, bits, w_method=RangeMethod.MSE)
    lo = -1.0 if signed else 0.0
    net = datafree.quantize_data_free(model, layers, name, (1, 8, 8), cfg, 2.0 if signed
                                      else 1.0, input_min=lo)
    stats = datafree.propagate(model, layers, 2.0 if signed else 1.0, lo)
    assert set(stats) == {i for i, lyr in enumerate(layers)
                          if lyr.kind in (LayerKind.ADD, *MAC_KINDS)}
    qm = net.export()
    assert qm.input_fmt.signed is signed
    want = ptq.plan_formats(layers, cfg, qm.input_fmt)
    for i, (fl, layer) in enumerate(zip(layers, qm.layers, strict=True)):
        assert np.all(np.isfinite(layer.out_scale)) and np.all(layer.out_scale > 0)
        if want[i] is not None:
            assert layer.out_fmt == want[i], f"{name} layer {i}"
        if fl.kind is LayerKind.CONCAT:
            got = {float(qm.layers[j].out_scale[0]) for j in qm.sources(i)}
            assert len(got) == 1, f"{name}: concat producers with scales {got}"
    # projection shortcut, linear bottleneck, signed hidden layer: no ReLU, signed
    assert any(f is not None and f.signed for f in want.values()) is (name != "concat")
    x = digits().x_test[:100]
    assert_export_bit_exact(net, x=standardize(x) if signed else x)

"""Data-free quantization reads no image and propagates statistics correctly."""

import numpy as np
import pytest
import torch
from flowkit import captured, digits, trained

from quantflow import calibrate, datafree, importers, ptq, reference
from quantflow.calibrate import RangeMethod


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

"""QAT with STE and LSQ: scales are tied and learned, training is deterministic, and the
exported model is bit-exact with the integer reference on every layer."""

import numpy as np
import pytest
import torch
from flowkit import calib_set, captured, digits

from quantflow import ptq, qat, reference
from quantflow.calibrate import RangeMethod

ONE = qat.QATConfig(epochs=1, batch=64)


def _net(name, bits=2):
    cfg = ptq.PTQConfig(bits, bits, w_method=RangeMethod.MSE, a_method=RangeMethod.MSE)
    return ptq.quantize(captured(name), name, digits().input_shape, calib_set(), cfg)


def _train_subset():
    ds = digits()
    return ds.x_train[:256], ds.y_train[:256]


@pytest.mark.parametrize("name", ["digits-cnn", "digits-mlp"])
def test_qat_export_is_bit_exact_on_every_layer(name):
    net = _net(name)
    scales = [float(lyr.out_scale.detach()) for lyr in net.layers if lyr.requant]
    qat.finetune(net, *_train_subset(), ONE)
    assert [float(lyr.out_scale.detach()) for lyr in net.layers if lyr.requant] != scales, (
        "LSQ did not move any activation scale")
    qm = net.export()
    x_int = qm.quantize_input(np.concatenate([digits().x_test[:100],
                                              np.full((1, 1, 8, 8), 4.0, np.float32)]))
    with torch.no_grad():
        outs = net.forward_int(torch.from_numpy(x_int).double())
    for i, (want, got) in enumerate(zip(reference.run(qm, x_int), outs, strict=True)):
        assert np.array_equal(want, got.numpy().astype(np.int64)), f"{name} layer {i} differs"


def test_scales_are_tied_between_producer_and_consumer():
    net = qat.tie_scales(_net("digits-cnn"))
    assert not net.layers[0].in_scale.requires_grad
    producer = None
    for layer in net.layers:
        if producer is not None:
            assert layer.in_scale is producer.out_scale, f"layer {layer.name} is not tied"
        if layer.requant:
            producer = layer


def test_qat_is_deterministic():
    runs = []
    for _ in range(2):
        net = _net("digits-mlp")
        qat.finetune(net, *_train_subset(), ONE)
        runs.append(net.export())
    for a, b in zip(runs[0].layers, runs[1].layers, strict=True):
        if a.weight is not None:
            assert np.array_equal(a.weight, b.weight) and np.array_equal(a.mult, b.mult if
                                                                         b.requant else a.mult)


@pytest.mark.parametrize(("kw", "msg"), [
    ({"epochs": 0}, r"^QAT epochs must be a positive integer, not 0$"),
    ({"lr": 0.0}, r"^QAT lr must be a positive float, not 0\.0$"),
    ({"scale_lr": 1}, r"^QAT scale_lr must be a positive float, not 1$"),
])
def test_qat_config_is_validated(kw, msg):
    with pytest.raises(ValueError, match=msg):
        qat.QATConfig(**kw)

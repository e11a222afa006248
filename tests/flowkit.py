"""Shared helpers for the quantflow tests: node-seeded generators and the trained zoo, once.

The zoo networks train in seconds and are cached on disk by :func:`quantflow.zoo.load_or_train`
(``$HWGEN_CACHE`` or ``~/.cache/hwgen``); the ``lru_cache`` here keeps them, the digits split
and captured chains in memory for the whole test session, so every test file shares one copy.
"""

import functools
import zlib

import numpy as np

__all__ = ["node_rng", "digits", "trained", "captured", "quantized", "calib_set", "tiny_model",
           "assert_export_bit_exact", "dag_trained", "dag_captured", "dag_quantized", "standardize",
           "layer_errors", "needs_verilator"]


def node_rng(request):
    """``(seed, Generator)`` seeded from the pytest node id: reproducible, distinct per test.

    Put ``seed`` in every assertion message so a failure can be replayed."""
    seed = zlib.crc32(request.node.nodeid.encode())
    return seed, np.random.default_rng(seed)


@functools.cache
def digits():
    from quantflow import data

    return data.digits()


@functools.cache
def trained(name):
    """The float zoo network ``name`` (``"digits-cnn"`` or ``"digits-mlp"``), in eval mode."""
    from quantflow import zoo

    return zoo.load_or_train(zoo.ZooModel(name), digits())


@functools.cache
def captured(name):
    """The captured float chain of a zoo network (do not mutate: it is shared)."""
    from quantflow import importers

    return importers.capture(trained(name), digits().input_shape)


@functools.cache
def calib_set():
    from quantflow import flow

    return flow.calibration_set(digits())


@functools.cache
def quantized(name, wbits, abits, method="minmax", grid="narrow"):
    """``(FakeQuantNet, QuantizedModel)`` for one fixed range-setting method and weight grid
    (fast, no search)."""
    from quantflow import ptq
    from quantflow.calibrate import RangeMethod
    from quantflow.numerics import WeightGrid

    m = RangeMethod(method)
    cfg = ptq.PTQConfig(wbits, abits, w_method=m,
                        a_method=RangeMethod.MSE if m is RangeMethod.MSE_OUTPUT else m,
                        w_grid=WeightGrid(grid))
    net = ptq.quantize(captured(name), name, digits().input_shape, calib_set(), cfg)
    return net, net.export({"recipe": cfg.describe()})


def tiny_model():
    """A hand-sized QuantizedModel touching every layer kind: conv (pad 1) -> maxpool 2 ->
    avgpool 2 (stride 1) -> flatten -> linear (logits at accumulator scale).

    Input 1x4x4 in 4-bit unsigned; 3-bit weights and activations."""
    from quantflow.numerics import QFormat
    from quantflow.qmodel import LayerKind, QLayer, QuantizedModel

    a4, a3, w3 = QFormat(4, False), QFormat(3, False), QFormat(3, True)
    conv = QLayer(name="conv", kind=LayerKind.CONV2D, in_shape=(1, 4, 4), out_shape=(2, 4, 4),
                  in_fmt=a4, out_fmt=a3, in_scale=0.1, out_scale=np.array([0.5]),
                  kernel=(3, 3), stride=(1, 1), padding=(1, 1), w_fmt=w3,
                  weight=np.array([[[[1, 0, -1], [2, 0, -2], [1, 0, -1]]],
                                   [[[-4, 3, 0], [1, 1, 1], [0, -1, 2]]]], dtype=np.int64),
                  bias=np.array([3, -5], dtype=np.int64), mult=np.array([3, 5], dtype=np.int64),
                  shift=np.array([3, 4], dtype=np.int64), lo=0, hi=7,
                  w_scale=np.array([0.01, 0.02]))
    pool = QLayer(name="pool", kind=LayerKind.MAXPOOL, in_shape=(2, 4, 4), out_shape=(2, 2, 2),
                  in_fmt=a3, out_fmt=a3, in_scale=0.5, out_scale=np.array([0.5]),
                  kernel=(2, 2), stride=(2, 2), requant=False)
    avg = QLayer(name="avg", kind=LayerKind.AVGPOOL, in_shape=(2, 2, 2), out_shape=(2, 1, 1),
                 in_fmt=a3, out_fmt=a3, in_scale=0.5, out_scale=np.array([0.5]),
                 kernel=(2, 2), stride=(1, 1), mult=np.array([1], dtype=np.int64),
                 shift=np.array([2], dtype=np.int64), lo=0, hi=7)
    flat = QLayer(name="flat", kind=LayerKind.FLATTEN, in_shape=(2, 1, 1), out_shape=(2,),
                  in_fmt=a3, out_fmt=a3, in_scale=0.5, out_scale=np.array([0.5]),
                  requant=False)
    fc = QLayer(name="fc", kind=LayerKind.LINEAR, in_shape=(2,), out_shape=(3,), in_fmt=a3,
                out_fmt=a3, in_scale=0.5, out_scale=np.array([0.1, 0.2, 0.3]), w_fmt=w3,
                weight=np.array([[1, -2], [3, 0], [-4, 3]], dtype=np.int64),
                bias=np.array([-7, 0, 6], dtype=np.int64), requant=False,
                w_scale=np.array([0.2, 0.4, 0.6]))
    fc.out_fmt = fc.acc_fmt
    return QuantizedModel(name="tiny", input_shape=(1, 4, 4), input_fmt=a4, input_scale=0.1,
                          layers=[conv, pool, avg, flat, fc], meta={"note": "hand-built"})


def assert_export_bit_exact(net, images=100, x=None):
    """``net.export()`` run by the integer reference equals the fake-quant net's exact forward
    on every layer of the first ``images`` digits test images (or of ``x``)."""
    import torch

    from quantflow import reference

    qm = net.export()
    x_int = qm.quantize_input(digits().x_test[:images] if x is None else x)
    with torch.no_grad():
        outs = net.forward_int(torch.from_numpy(x_int).double())
    for i, (want, got) in enumerate(zip(reference.run(qm, x_int), outs, strict=True)):
        assert np.array_equal(want, got.numpy().astype(np.int64)), f"layer {i} differs"
    return qm


def standardize(x):
    """Digits images with negative values (zero mean, about unit variance): a signed input."""
    return (x - 0.3) / 0.35


@functools.cache
def dag_trained(name, signed=False):
    """The :mod:`dagnets` network ``name`` after 3 epochs on 800 training images (standardized
    ones when ``signed``); shared, do not mutate."""
    import dagnets

    ds = digits()
    x = standardize(ds.x_train[:800]) if signed else ds.x_train[:800]
    return dagnets.train(dagnets.build(name), x.astype(np.float32), ds.y_train[:800], epochs=3)


def dag_captured(name, trained=False, signed=False):
    """A fresh captured graph of the :mod:`dagnets` network ``name`` (safe to mutate), seeded
    random or :func:`dag_trained`."""
    import dagnets

    from quantflow import importers

    net = dag_trained(name, signed) if trained else dagnets.build(name)
    return importers.capture(net, digits().input_shape)


def dag_quantized(name, bits, method="mse", signed=False, trained=False):
    """``(layers, FakeQuantNet, x_calib)`` of a :mod:`dagnets` network at W``bits``A``bits``
    (``signed``: calibrated on standardized images, so the network input is signed)."""
    from quantflow import ptq
    from quantflow.calibrate import RangeMethod

    layers = dag_captured(name, trained, signed)
    x = standardize(calib_set()) if signed else calib_set()
    m = RangeMethod(method)
    cfg = ptq.PTQConfig(bits, bits, w_method=m,
                        a_method=RangeMethod.MSE if m is RangeMethod.MSE_OUTPUT else m)
    return layers, ptq.quantize(layers, name, digits().input_shape, x, cfg), x


def layer_errors(net, layers, x, start, relu):
    """Per MAC layer ``(learned, nearest)`` output error on the net's own (quantized) inputs
    against the float layer on float inputs; ``start`` holds the float weights before the
    pass; ``relu``: compare after the layer's ReLU (AdaRound's objective) or before it."""
    from quantflow import adaround
    from quantflow.importers import Act
    from quantflow.qmodel import MAC_KINDS

    out = {}
    for i, fq in enumerate(net.layers):
        if fq.kind not in MAC_KINDS:
            continue
        xq, xf = adaround.layer_inputs(net, layers, x, i)
        rq, _ = adaround.layer_rows(layers[i], xq)
        rf, _ = adaround.layer_rows(layers[i], xf)
        groups, o = adaround.row_groups(layers[i]), fq.weight.shape[0]
        s = fq.w_scale.detach().numpy().reshape(o, 1)
        w, b = start[i].reshape(o, -1), fq.bias.detach().numpy()
        act = np.positive if not relu or layers[i].act is Act.NONE else (
            lambda v: np.maximum(v, 0))
        target = act(adaround.grouped_matmul(rf, w, groups) + b)

        def err(wq, rq=rq, groups=groups, b=b, act=act, target=target):
            return float(np.mean((act(adaround.grouped_matmul(rq, wq, groups) + b) - target)
                                 ** 2))

        learned = fq.int_weight().detach().numpy().reshape(o, -1) * s
        out[i] = err(learned), err(np.clip(np.rint(w / s), fq.w_lo, fq.w_hi) * s)
    return out


def needs_verilator():
    """Skip with the reason when Verilator is missing (``make setup`` installs it)."""
    import pytest

    from rtl_tests.runner import Sim, available

    reason = available(Sim.VERILATOR)
    if reason:
        pytest.skip(reason)

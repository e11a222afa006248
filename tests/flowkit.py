"""Shared helpers for the quantflow tests: node-seeded generators and the trained zoo, once.

The zoo networks train in seconds and are cached on disk by :func:`quantflow.zoo.load_or_train`
(``$HWGEN_CACHE`` or ``~/.cache/hwgen``); the ``lru_cache`` here keeps them, the digits split
and captured chains in memory for the whole test session, so every test file shares one copy.
"""

import functools
import zlib

import numpy as np

__all__ = ["node_rng", "digits", "trained", "captured", "quantized", "calib_set"]


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
def quantized(name, wbits, abits, method="minmax"):
    """``(FakeQuantNet, QuantizedModel)`` for one fixed range-setting method (fast, no search)."""
    from quantflow import ptq
    from quantflow.calibrate import RangeMethod

    m = RangeMethod(method)
    cfg = ptq.PTQConfig(wbits, abits, w_method=m,
                        a_method=RangeMethod.MSE if m is RangeMethod.MSE_OUTPUT else m)
    net = ptq.quantize(captured(name), name, digits().input_shape, calib_set(), cfg)
    return net, net.export({"recipe": cfg.describe()})

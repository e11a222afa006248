"""QONNX graphs built by hand with ``onnx.helper`` for the import tests (tests/test_qonnx.py).

:class:`Graph` appends nodes and initializers with short calls; :func:`dag` is a DAG with every
new op of the import (a signed input, depthwise and grouped Conv, two residual Adds, one with a
Relu after it, a dropped and a kept Quant on already quantized tensors, a Concat, a tensor read
by four nodes) with power-of-two scales, so it is exact unless a variant asks otherwise.
:func:`layer_errors` compares an imported model with ``qonnx.core.onnx_exec`` layer by layer.
"""

import numpy as np

__all__ = ["Graph", "dag", "DAG_KINDS", "DAG_SOURCES", "layer_errors"]

Q = "qonnx.custom_op.general"


class Graph:
    """A QONNX graph under construction: ``x`` is the float input of shape ``shape``."""

    def __init__(self, shape, seed=0):
        self.shape, self.nodes, self.inits = tuple(shape), [], []
        self.rng = np.random.default_rng(seed)
        self._n = 0

    def const(self, arr):
        from onnx import TensorProto, helper

        self._n += 1
        name = f"k{self._n}"
        arr = np.asarray(arr, dtype=np.float32)
        self.inits.append(helper.make_tensor(name, TensorProto.FLOAT, arr.shape, arr.ravel()))
        return name

    def node(self, op, inputs, name, domain="", **attrs):
        from onnx import helper

        self.nodes.append(helper.make_node(op, list(inputs), [name], name=name, domain=domain,
                                           **attrs))
        return name

    def quant(self, x, name, scale, bits, signed=False, mode="HALF_UP", narrow=0):
        return self.node("Quant", [x, self.const(scale), self.const(0.0), self.const(bits)],
                         name, Q, signed=int(signed), narrow=narrow, rounding_mode=mode)

    def weight(self, shape, scale, bits=4):
        w = self.rng.normal(0, 1, shape) * np.max(scale) * 2 ** (bits - 2)
        return self.quant(self.const(w), f"w{self._n}", scale, bits, True, "ROUND", 1)

    def conv(self, x, name, o, i, k, ws, s_in, group=1, bias=True):
        """Conv ``i // group`` -> ``o`` with per-channel weight scales ``ws`` and a bias on the
        accumulator grid ``ws * s_in``."""
        ins = [x, self.weight((o, i // group, k, k), np.reshape(ws, (o, 1, 1, 1)))]
        if bias:
            ins.append(self.const(self.rng.integers(-30, 30, o) * np.asarray(ws) * s_in))
        return self.node("Conv", ins, name, kernel_shape=[k, k], pads=[k // 2] * 4,
                         group=group)

    def model(self, out, out_shape):
        from onnx import TensorProto, helper

        g = helper.make_graph(
            self.nodes, "handmade",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(self.shape))],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, list(out_shape))],
            self.inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13),
                                                   helper.make_opsetid(Q, 2)])


#: dag()'s layers: kinds, and the layers each reads (-1: the network input).
DAG_KINDS = ["conv2d", "conv2d", "conv2d", "add", "add", "avgpool", "concat", "maxpool",
             "flatten", "linear"]
DAG_SOURCES = [(-1,), (0,), (0,), (1, 0), (3, 2), (1,), (4, 5), (6,), (7,), (8,)]


def dag(n=64, signed_rounding=False, two_rounded=False):
    """The DAG test graph on a signed 8-bit input (N, 2, 6, 6).

    ``signed_rounding``: the signed grouped-conv Quant rounds (a non-integer ratio) with
    HALF_UP, which differs from the contract at negative ties. ``two_rounded``: both inputs of
    the first add are rescaled by non-integer ratios (rounded one by one, QONNX rounds once).
    """
    g = Graph((n, 2, 6, 6))
    s_in, sa = 2.0 ** -6, 2.0 ** -3
    ws = 2.0 ** -np.array([3, 4, 3, 5])
    xq = g.quant("x", "q_in", s_in, 8, signed=True, mode="ROUND")
    c1 = g.conv(xq, "conv1", 4, 2, 3, ws, s_in)
    a1 = g.quant(g.node("Relu", [c1], "relu1"), "q_a1", sa, 4)
    dw = g.conv(a1, "dw", 4, 4, 3, ws, sa, group=4)  # depthwise
    a2 = g.quant(g.node("Relu", [dw], "relu2"), "q_a2", sa / 2, 4)
    gc = g.conv(a1, "gconv", 4, 4, 3, ws, sa, group=2, bias=False)  # grouped, signed output
    # integer ratios ws * sa / s_a3 >= 1: nothing rounds, exact even with ROUND
    s_a3 = ws.min() * sa * (2 if signed_rounding else 1)
    a3 = g.quant(gc, "q_a3", s_a3, 5, signed=True, mode="HALF_UP" if signed_rounding else
                 "ROUND")
    skip = g.quant(a1, "q_skip", sa, 6, signed=True)  # keeps every value: dropped
    s_a4 = sa * (2 if two_rounded else 1)
    a4 = g.quant(g.node("Add", [a2, skip], "add1"), "q_a4", s_a4, 4)
    add2 = g.node("Relu", [g.node("Add", [a4, a3], "add2")], "relu3")
    a5 = g.quant(add2, "q_a5", sa, 5, signed=True)      # signed, Relu folded into lo = 0
    a6 = g.quant(a2, "q_a6", sa, 5, signed=True)        # rounds a2: a 1x1 requantization
    cat = g.node("Concat", [a5, a6], "cat", axis=1)
    pool = g.node("MaxPool", [cat], "pool", kernel_shape=[2, 2], strides=[2, 2])
    flat = g.node("Flatten", [pool], "flat", axis=1)
    w = g.weight((3, 72), 2.0 ** -4)
    y = g.node("Gemm", [flat, w, g.const(g.rng.integers(-50, 50, 3) * 2.0 ** -4 * sa)], "fc",
               transB=1)
    return g.model(y, (n, 3))


def qonnx_context(model, x):
    """Every tensor of QONNX's own execution (shapes inferred; names kept)."""
    import warnings

    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    mw = ModelWrapper(model).transform(InferShapes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return execute_onnx(mw, {mw.graph.input[0].name: x}, return_full_exec_context=True)


def _ints(ctx, layer):
    """The integers of the ONNX tensor ``layer`` computes (QONNX's value / the layer's scale)."""
    t = ctx[layer.extra["onnx_tensor"]].astype(np.float64)
    s = np.asarray(layer.out_scale, dtype=np.float64)
    q = t / (s.reshape(1, -1, *[1] * (t.ndim - 2)) if s.size > 1 else s.reshape(()))
    assert np.array_equal(q, np.rint(q)), f"{layer.name}: QONNX's values are off the grid"
    return q.astype(np.int64)


def layer_errors(qm, model, x):
    """Per layer: the largest |difference| between the layer run on QONNX's own input integers
    and QONNX's output integers; and whether the whole reference run equals QONNX everywhere."""
    from quantflow import reference

    ctx = qonnx_context(model, x)
    x_int = qm.quantize_input(x)
    errors = []
    for i, layer in enumerate(qm.layers):
        args = [x_int if j < 0 else _ints(ctx, qm.layers[j]) for j in qm.sources(i)]
        errors.append(int(np.abs(reference.run_layer(layer, *args) - _ints(ctx, layer)).max()))
    run = reference.run(qm, x_int)
    whole = all(np.array_equal(o, _ints(ctx, lyr)) for o, lyr in zip(run, qm.layers, strict=True))
    return errors, whole

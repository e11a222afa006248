"""QONNX import against QONNX's own execution, on models the test exports from Brevitas.

Two small digits networks (conv, ReLU, max pool, flatten, linear) are trained for a few epochs
with Brevitas at W4A4 and W2A2 and exported with ``export_qonnx``:

- with Brevitas' default float scales, the imported QuantizedModel's top-1 equals
  ``qonnx.core.onnx_exec`` on every digits test image (biases are quantized with
  ``Int32Bias``, as integer hardware needs: a float bias is rounded to the accumulator grid
  on import, listed in ``meta["approximate"]``, and that can flip an exact logit tie);
- with power-of-two scales, a bias on the accumulator grid (``Int32Bias``) and activation
  rounding set to ``HALF_UP`` (the contract's rounding; QONNX's ``ROUND`` is half to even and
  differs from it only at exact ties), the integer logits equal QONNX's output divided by the
  output scale exactly, on every test image.

Needs the optional ``qonnx`` extra (brevitas, qonnx, onnx, onnxoptimizer); skipped without it.
"""

import functools
import warnings

import numpy as np
import pytest
from flowkit import digits

from quantflow import reference
from quantflow.errors import UnsupportedOpError

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # brevitas warns about optional kernels at import
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx", reason="needs the qonnx extra: pip install -e .[qonnx]")
    pytest.importorskip("onnxoptimizer", reason="needs the qonnx extra")
    qnn = pytest.importorskip("brevitas.nn", reason="needs the qonnx extra")
    pytest.importorskip("qonnx", reason="needs the qonnx extra")
    from brevitas.export import export_qonnx
    from brevitas.quant import (
        Int8WeightPerTensorFixedPoint,
        Int8WeightPerTensorFloat,
        Int32Bias,
        Uint8ActPerTensorFixedPoint,
        Uint8ActPerTensorFloat,
    )
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

from quantflow.qonnx import load_qonnx  # noqa: E402


def _net(bits, pow2):
    w_q = Int8WeightPerTensorFixedPoint if pow2 else Int8WeightPerTensorFloat
    a_q = Uint8ActPerTensorFixedPoint if pow2 else Uint8ActPerTensorFloat
    bias = {"bias_quant": Int32Bias}
    return torch.nn.Sequential(
        qnn.QuantIdentity(bit_width=8, act_quant=a_q, return_quant_tensor=True),
        qnn.QuantConv2d(1, 8, 3, padding=1, weight_bit_width=bits, weight_quant=w_q, **bias),
        torch.nn.ReLU(),
        qnn.QuantIdentity(bit_width=bits, act_quant=a_q, return_quant_tensor=True),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        qnn.QuantLinear(8 * 16, 10, weight_bit_width=bits, weight_quant=w_q, **bias),
    )


@functools.cache
def _exported(bits, pow2, tmp):
    """Train briefly (seeded, one thread), export to QONNX, return the ONNX path."""
    ds = digits()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(bits)
        net = _net(bits, pow2)
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        x, y = torch.from_numpy(ds.x_train), torch.from_numpy(ds.y_train)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net.train()
            for _ in range(3):
                for i in range(0, len(x), 64):
                    opt.zero_grad()
                    torch.nn.functional.cross_entropy(net(x[i:i + 64]), y[i:i + 64]).backward()
                    opt.step()
            net.eval()
            path = f"{tmp}/digits-w{bits}-{'pow2' if pow2 else 'float'}.onnx"
            # exported at the test-set batch: QONNX then runs all images in one execution
            export_qonnx(net, torch.from_numpy(ds.x_test), path, verbose=False)
    finally:
        torch.set_num_threads(threads)
    return path


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return str(tmp_path_factory.mktemp("qonnx"))


def _qonnx_run(model, x):
    mw = cleanup_model(ModelWrapper(model))
    name, out = mw.graph.input[0].name, mw.graph.output[0].name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return execute_onnx(mw, {name: x})[out]


def _half_up(path):
    model = onnx.load(path)
    for node in model.graph.node:
        for a in node.attribute:
            if node.op_type == "Quant" and a.name == "rounding_mode":
                a.s = b"HALF_UP"
    return model


@pytest.mark.parametrize("bits", [4, 2])
def test_float_scales_give_qonnx_top1_on_every_test_image(tmp, bits):
    path = _exported(bits, False, tmp)
    x = digits().x_test
    out = _qonnx_run(onnx.load(path), x).astype(np.float64)
    want = out.argmax(1)
    qm = load_qonnx(path)
    acc = reference.run(qm, qm.quantize_input(x))[-1]
    got = (acc * qm.output_scale).argmax(1)
    rows = np.arange(len(x))
    # An exact tie of two integer logits is broken in QONNX by float32 rounding noise: there
    # the only fair check is that QONNX's class is one of the tied maxima and that QONNX's own
    # logits for the two classes agree to float32 precision.
    tie = (acc[rows, want] == acc[rows, got]) & np.isclose(out[rows, want], out[rows, got],
                                                           rtol=1e-5, atol=1e-6)
    bad = np.flatnonzero((want != got) & ~tie)
    assert bad.size == 0, f"W{bits}: top-1 differs on images {bad[:10]}"


@pytest.mark.parametrize("bits", [4, 2])
def test_power_of_two_scales_give_qonnx_integers_exactly(tmp, bits):
    model = _half_up(_exported(bits, True, tmp))
    x = digits().x_test
    out = _qonnx_run(model, x).astype(np.float64)
    qm = load_qonnx(model, name="pow2")
    assert qm.meta["approximate"] == []
    scale = np.asarray(qm.output_scale, dtype=np.float64)
    assert np.all(np.log2(scale) == np.round(np.log2(scale))), "scales are not powers of two"
    acc = reference.run(qm, qm.quantize_input(x))[-1]
    assert np.array_equal(out / scale, acc), (
        f"W{bits}: first mismatch at {np.argwhere(out / scale != acc)[0]}")


def test_unsupported_node_is_named():
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Quant", ["x", "s", "z", "b"], ["xq"], name="q_in",
                          domain="qonnx.custom_op.general", signed=0),
         helper.make_node("Sigmoid", ["xq"], ["y"], name="squash")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor("s", TensorProto.FLOAT, [], [1 / 255]),
         helper.make_tensor("z", TensorProto.FLOAT, [], [0.0]),
         helper.make_tensor("b", TensorProto.FLOAT, [], [8.0])])
    with pytest.raises(UnsupportedOpError, match=r"^node 'squash' \(Sigmoid\): op Sigmoid is not"
                                                 r" supported; supported: Quant, "):
        load_qonnx(helper.make_model(g))


def test_unquantized_input_is_refused():
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="r")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    with pytest.raises(UnsupportedOpError, match=r"^node 'r' \(Relu\): the network input must"
                                                 r" first go through an unsigned Quant"):
        load_qonnx(helper.make_model(g))


def test_hwgen_quantize_imports_a_qonnx_file(tmp, capsys):
    from hwgen.cli import main
    from quantflow import serialize

    path = _exported(4, True, tmp)
    out = f"{tmp}/imported"
    assert main(["quantize", "--model", path, "--out", out]) == 0
    assert "QONNX W4A4 imported" in capsys.readouterr().out
    qm = serialize.load(out)
    assert qm.meta["source"] == "qonnx" and qm.wbits == 4 and qm.abits == 4

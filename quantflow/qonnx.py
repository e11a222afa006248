"""QONNX import: a quantized ONNX graph (Brevitas' ``export_qonnx``) -> QuantizedModel.

Supported: ``Quant`` / ``BipolarQuant`` on weights (any rounding mode, computed exactly as
QONNX does) and ``Quant`` on activations (signed or unsigned, zero point 0, per tensor),
``Trunc`` v2 after average pooling, ``Conv`` (any ``group``: grouped and depthwise; symmetric
padding, no dilation), ``Gemm`` (``transA=0``, ``alpha=beta=1``), ``MatMul`` and an ``Add`` of a
constant bias, the ``Add`` of two quantized tensors (a residual add), ``Concat`` along
channels, ``Relu``, ``MaxPool``, ``AveragePool`` / ``GlobalAveragePool``, ``Flatten`` /
``Reshape`` to ``(N, -1)`` and ``Identity``. The graph is a DAG: a quantized tensor may be read
by several nodes. Anything else raises :class:`UnsupportedOpError` naming the node.

Mapping onto the numerics contract (:mod:`quantflow.numerics`; the layers in
:mod:`quantflow.qonnx_layers`):

- the graph input goes through one ``Quant`` with zero point 0 (signed or unsigned): its scale
  and bit width are the model's ``input_scale`` / ``input_fmt``;
- weights become their integers ``Quant(w) / scale`` (per-tensor or per-output-channel
  scale); bipolar weights (``BipolarQuant``) are the contract's 1-bit weights, ``+-1``;
- a bias (float, or quantized by a ``Quant``) becomes ``round(b / (s_w * s_in))``: exact when
  the bias already lies on that grid (Brevitas ``Int32Bias``);
- the activation ``Quant`` after a MAC layer (or average pooling, or a residual ``Add``)
  becomes its requantization ``(M, s)`` of the ratio of scales (per output channel
  ``s_w * s_in / s_out``; per add input ``s_i / s_out``) with the clamp of the ``Quant``'s
  range (a ``Relu`` before it folded into ``lo = 0``); the last MAC layer, with no ``Quant``
  after it, returns its accumulator;
- a ``Quant`` on an already quantized tensor is dropped when it keeps every value (integer
  scale ratio, range inside), else it becomes a 1x1 average pool (a one-input requantization);
- ``Concat`` moves integers only: its inputs must share one scale and one format.

Exactness (the rules are in :mod:`quantflow.qonnx_layers`): with power-of-two scale ratios,
``HALF_UP`` rounding wherever a value is rounded onto a coarser grid (and that value is
non-negative, or no rounding happens at all), at most one input of each add rescaled by a
non-integer ratio, and biases on the accumulator grid, the import equals QONNX's execution
bit for bit. Every deviation is listed in ``meta["approximate"]``.

Pure numpy plus the ``onnx`` package (the optional ``qonnx`` extra).
"""

from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import DataError, UnsupportedOpError
from .numerics import DEFAULT_MULT_BITS, QFormat
from .qmodel import LayerKind, QuantizedModel
from .qonnx_consts import QConst, attrs, fold_constants, rounding_mode, unsupported, where
from .qonnx_layers import LayerBuilder, Pending, QTensor

__all__ = ["load_qonnx", "SUPPORTED_OPS"]

SUPPORTED_OPS = ("Quant", "BipolarQuant", "Trunc", "Conv", "Gemm", "MatMul", "Add", "Concat",
                 "Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten", "Reshape",
                 "Identity")
#: Ops whose activation inputs must be quantized tensors; the others take a pending layer.
_QUANTIZED_IN = ("Conv", "Gemm", "MatMul", "MaxPool", "AveragePool", "GlobalAveragePool",
                 "Flatten", "Reshape", "Concat")
_INPUT = "the network input must first go through a Quant with zero point 0"


def _pair(v, default):
    v = list(v) if v is not None else list(default)
    return tuple(int(x) for x in v)


class _Walker:
    """Visits the nodes in graph (topological) order; maps each tensor name to its state."""

    def __init__(self, consts, qconsts, mult_bits, input_name, dims):
        self.consts, self.b = consts, LayerBuilder(qconsts, mult_bits)
        self.input_name, self.dims = input_name, tuple(dims)
        self.tensors = {input_name: None}  # None: the float network input, not yet quantized
        self.read = set()  # pending (unquantized) tensors already read by a node
        self.input_fmt = self.input_scale = None

    def visit(self, node):
        if node.op_type == "Constant" or node.output[0] in self.consts:
            return
        if node.op_type not in SUPPORTED_OPS:
            unsupported(node, f"op {node.op_type} is not supported; supported:"
                        f" {', '.join(SUPPORTED_OPS)}")
        names = [t for t in node.input if t and t not in self.consts]
        if not names:
            unsupported(node, "no input computed from the network input")
        vals = []
        for t in names:
            if t not in self.tensors:
                unsupported(node, f"input {t!r} is neither a constant nor computed from the"
                            " network input")
            v = self.tensors[t]
            if v is None:
                if node.op_type != "Quant":
                    unsupported(node, _INPUT)
                if t in self.read:
                    unsupported(node, "the network input is read by several nodes (quantize"
                                " it once)")
                self.read.add(t)
            elif isinstance(v, Pending):
                if t in self.read:
                    unsupported(node, f"reads {t!r}, the unquantized output of"
                                f" {where(v.node)}, which another node reads too (a tensor"
                                " read by several nodes must come out of a Quant)")
                self.read.add(t)
            vals.append(v)
        if node.op_type in _QUANTIZED_IN or (node.op_type == "Add" and len(vals) == 2):
            if any(isinstance(v, Pending) for v in vals):
                unsupported(node, "its input is not quantized (a Quant node must come first)")
        self.tensors[node.output[0]] = self._dispatch(node, attrs(node), vals)

    def _dispatch(self, node, a, vals):
        op, x, b, consts, v = node.op_type, node.input, self.b, self.consts, vals[0]
        out = node.output[0]
        if op == "Quant":
            return self._quant(node, a, v)
        if op == "Conv":
            if any(d != 1 for d in a.get("dilations", [1, 1])):
                unsupported(node, "dilated convolution")
            pads = _pair(a.get("pads"), (0, 0, 0, 0))
            if pads[:2] != pads[2:] or a.get("auto_pad", b"NOTSET") not in (b"NOTSET",
                                                                             "NOTSET"):
                unsupported(node, f"asymmetric or automatic padding {pads}")
            wq = b.weight(node, x[1])
            p = b.mac(node, v, LayerKind.CONV2D, wq, wq.ints, groups=int(a.get("group", 1)),
                      kernel=tuple(wq.ints.shape[2:]), stride=_pair(a.get("strides"), (1, 1)),
                      padding=pads[:2])
            return b.add_bias(node, p, consts[x[2]]) if len(x) > 2 and x[2] else p
        if op == "Gemm":
            if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
                unsupported(node, "Gemm with transA, alpha or beta other than 1")
            wq = b.weight(node, x[1])
            w = wq.ints if a.get("transB", 0) else wq.ints.T
            if not a.get("transB", 0) and np.asarray(wq.scale).size > 1:
                wq = QConst(wq.ints, np.asarray(wq.scale).reshape(-1), wq.fmt)
            p = b.mac(node, v, LayerKind.LINEAR, wq, np.ascontiguousarray(w))
            return b.add_bias(node, p, consts[x[2]]) if len(x) > 2 and x[2] else p
        if op == "MatMul":
            wq = b.weight(node, x[1])
            return b.mac(node, v, LayerKind.LINEAR, QConst(
                wq.ints, np.asarray(wq.scale).reshape(-1), wq.fmt),
                np.ascontiguousarray(wq.ints.T))
        if op == "Add":
            if len(vals) == 2:
                return b.add(node, vals)
            if not isinstance(v, Pending):
                unsupported(node, "an Add of a constant that is not a bias after"
                            " Conv/Gemm/MatMul")
            return b.add_bias(node, v, consts[x[1] if x[1] in consts else x[0]])
        if op == "Concat":
            if a.get("axis") not in (1, -3):
                unsupported(node, f"Concat along axis {a.get('axis')} (only channels, axis 1)")
            return b.concat(node, vals, out)
        if op == "Relu":
            if not isinstance(v, Pending):
                unsupported(node, "a Relu on an already quantized tensor (put it before the"
                            " Quant)")
            v.relu = True
            return v
        if op == "Trunc":
            return self._trunc(node, a, v)
        if op == "MaxPool":
            if any(_pair(a.get("pads"), (0, 0, 0, 0))) or a.get("ceil_mode", 0) or \
                    any(d != 1 for d in a.get("dilations", [1, 1])):
                unsupported(node, "MaxPool with padding, ceil_mode or dilation")
            k = _pair(a["kernel_shape"], None)
            s = _pair(a.get("strides"), k)
            c, h, w = v.shape
            return b.passthrough(node, v, LayerKind.MAXPOOL,
                                 (c, (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1), out,
                                 kernel=k, stride=s)
        if op == "AveragePool":
            if any(_pair(a.get("pads"), (0, 0, 0, 0))) or a.get("ceil_mode", 0):
                unsupported(node, "AveragePool with padding or ceil_mode")
            k = _pair(a["kernel_shape"], None)
            return b.avgpool(node, v, k, _pair(a.get("strides"), k))
        if op == "GlobalAveragePool":
            return b.avgpool(node, v, v.shape[1:], v.shape[1:])
        if op in ("Flatten", "Reshape"):
            if op == "Flatten" and a.get("axis", 1) != 1:
                unsupported(node, "Flatten with axis other than 1")
            if op == "Reshape":
                target = [int(t) for t in consts[x[1]].reshape(-1)]
                if len(target) != 2 or target[1] not in (-1, int(np.prod(v.shape))):
                    unsupported(node, f"Reshape to {target} (only a flatten to (N, -1))")
            if len(v.shape) == 1:
                return v  # already flat
            return b.passthrough(node, v, LayerKind.FLATTEN, (int(np.prod(v.shape)),), out)
        if op == "Identity":
            return v  # the same value under a new name
        return unsupported(node, "BipolarQuant on activations (+-1 values; the contract's 1-bit"
                           " activations are unsigned 0/1: a Quant of bit width 1, signed=0)")

    def _quant(self, node, a, v):
        x, consts = node.input, self.consts
        zero = not np.any(consts[x[2]] != 0)
        if v is None and not zero:
            unsupported(node, _INPUT)
        if not zero:
            unsupported(node, "a non-zero zero point")
        scale = np.asarray(consts[x[1]]).reshape(-1)
        if scale.size != 1:
            unsupported(node, "a per-channel activation scale (the contract is per tensor)")
        bits, signed = int(consts[x[3]]), bool(a.get("signed", 1))
        narrow, mode = bool(a.get("narrow", 0)), rounding_mode(a.get("rounding_mode", "ROUND"))
        if v is None:
            if not (2 if signed else 1) <= bits <= 16:
                unsupported(node, f"{bits}-bit {'signed ' if signed else ''}input")
            self.input_fmt, self.input_scale = QFormat(bits, signed), float(scale[0])
            fmt = self.input_fmt
            return QTensor(-1, fmt, self.input_scale, self.dims, fmt.min, fmt.max)
        fmt = _act_fmt(node, bits, signed)
        if isinstance(v, QTensor):
            return self.b.requantize(node, v, float(scale[0]), fmt, narrow, mode, node.output[0])
        return self.b.close(node, v, float(scale[0]), fmt, narrow, mode, node.output[0])

    def _trunc(self, node, a, v):
        x, consts = node.input, self.consts
        if not isinstance(v, Pending) or v.layer.kind is not LayerKind.AVGPOOL:
            unsupported(node, "Trunc other than after average pooling")
        if len(x) != 6:
            unsupported(node, "Trunc v1 (5 inputs); only Trunc v2 with an output scale")
        in_scale = float(consts[x[1]].reshape(-1)[0])
        out_scale, bits = float(consts[x[4]].reshape(-1)[0]), int(consts[x[5]])
        pool = v.layer
        # Trunc first rounds its input to its own grid: exact only on the window-sum grid
        if in_scale * pool.kernel[0] * pool.kernel[1] != pool.in_scale:
            self.b.approx.append(f"{where(node)}: input grid is not the average pool's sum"
                                 " grid")
        ratio = Fraction(out_scale) / Fraction(in_scale)  # QONNX rounds it to a power of two
        if ratio.numerator & (ratio.numerator - 1) or ratio.denominator & (ratio.denominator - 1):
            self.b.approx.append(f"{where(node)}: output/input scale ratio {float(ratio)!r} is"
                                 " not a power of two (QONNX rounds it to one)")
        fmt = _act_fmt(node, bits, bool(a.get("signed", 0)))
        return self.b.close(node, v, out_scale, fmt, bool(a.get("narrow", 0)),
                            rounding_mode(a.get("rounding_mode", "FLOOR")), node.output[0])

    def finish(self, graph):
        if self.input_fmt is None:
            raise UnsupportedOpError("the graph has no Quant on its input")
        if len(graph.output) != 1:
            raise UnsupportedOpError(f"the graph must have one output, not {len(graph.output)}")
        v = self.tensors.get(graph.output[0].name)
        if not isinstance(v, Pending):
            raise UnsupportedOpError("the network must end with a Conv/Gemm/MatMul returning"
                                     " logits (a Quant on the output is not supported)")
        return self.b.finish(v, graph.output[0].name)


def _act_fmt(node, bits, signed):
    """The format of a quantized activation: 1..8 bits unsigned, 2..8 signed."""
    if not (2 if signed else 1) <= bits <= 8:
        unsupported(node, f"{bits}-bit {'signed' if signed else 'unsigned'} activations (the"
                    " contract allows 1..8 unsigned, 2..8 signed)")
    return QFormat.activation(bits, signed)


def load_qonnx(source, name=None, mult_bits=DEFAULT_MULT_BITS):
    """Import a QONNX file (path) or ``onnx.ModelProto`` as a validated QuantizedModel.

    Parameters
    ----------
    source : str, Path or onnx.ModelProto
        The QONNX model.
    name : str, optional
        Model name (default: the file stem or the graph name).
    mult_bits : int
        Width of the requantization multipliers ``M``.

    Returns
    -------
    QuantizedModel
        Validated; ``meta["approximate"]`` lists where it can differ from QONNX's execution,
        and each layer's ``extra["onnx_tensor"]`` names the ONNX tensor it computes.
    """
    import onnx

    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            model = onnx.load(str(path))
        except FileNotFoundError:
            raise DataError(f"{path}: no such ONNX file") from None
        except Exception as e:  # protobuf decode errors have no common public base class
            raise DataError(f"{path}: not a readable ONNX model ({type(e).__name__})") from None
        if not model.graph.node and not model.graph.input:
            # protobuf parses an empty (or zeroed) file as an empty model without complaint
            what = "an empty file" if path.stat().st_size == 0 else "an empty graph"
            raise DataError(f"{path}: not an ONNX model ({what})")
        name = name or path.stem
    else:
        model = source
        name = name or (model.graph.name or "qonnx")
    graph = model.graph
    consts, qconsts = fold_constants(graph)
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1:
        raise UnsupportedOpError(f"the graph must have one data input, not {len(inputs)}")
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim][1:]
    if len(dims) not in (1, 3) or not all(dims):
        raise UnsupportedOpError(f"input {inputs[0].name!r} must be (N, C, H, W) or (N, F)"
                                 f" with known sizes, not (N, {dims})")
    walker = _Walker(consts, qconsts, mult_bits, inputs[0].name, dims)
    for node in graph.node:
        walker.visit(node)
    layers = walker.finish(graph)
    meta = {"source": "qonnx", "approximate": walker.b.approx}
    return QuantizedModel(name, tuple(dims), walker.input_fmt, walker.input_scale, layers,
                          meta).validate()

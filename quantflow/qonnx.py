"""QONNX import: a quantized ONNX chain (Brevitas' ``export_qonnx``) -> QuantizedModel.

Supported: ``Quant`` / ``BipolarQuant`` on weights (any rounding mode, computed exactly as
QONNX does) and ``Quant`` on activations, ``Trunc`` after average pooling, ``Conv``
(groups 1, symmetric padding), ``Gemm`` (``transA=0``, ``alpha=beta=1``), ``MatMul`` and an
``Add`` of a constant bias, ``Relu``, ``MaxPool``, ``AveragePool`` / ``GlobalAveragePool``,
``Flatten`` / ``Reshape`` to ``(N, -1)``, and ``Identity``. Anything else raises
:class:`UnsupportedOpError` naming the node.

Mapping onto the numerics contract (DESIGN.md section 3):

- the graph input must go through an unsigned ``Quant`` with zero point 0: its scale and bit
  width are the model's ``input_scale`` / ``input_fmt``;
- weights become their integers ``Quant(w) / scale`` (per-tensor or per-output-channel
  scale); bipolar weights are ``+-1`` in a 2-bit format;
- a bias (float, or quantized by a ``Quant``) becomes ``round(b / (s_w * s_in))``: exact when
  the bias already lies on that grid (Brevitas ``Int32Bias``);
- ``Relu`` + unsigned ``Quant`` after a MAC layer (or after average pooling) becomes the
  per-channel requantization ``(M, s)`` of the ratio ``s_w * s_in / s_out`` with
  ``lo = 0``; the last MAC layer, with no ``Quant`` after it, returns its accumulator.

Where the result can differ from QONNX's own execution: the contract rounds half up, while a
``Quant`` with ``rounding_mode=ROUND`` rounds half to even (they differ only at exact ties,
which occur when ``s_w * s_in / s_out`` is a power of two below 1), ``Trunc`` with ``FLOOR``
is approximated by round-half-up, and a ratio that is not a power of two is represented by a
16-bit ``M / 2**s`` (relative error below ``2**-16``). Every such node is listed in
``meta["approximate"]``; with power-of-two scales, ``HALF_UP`` activation rounding and a bias
on the accumulator grid the import is exact.

Pure numpy plus the ``onnx`` package (the optional ``qonnx`` extra).
"""

from pathlib import Path

import numpy as np

from .errors import DataError, UnsupportedOpError
from .numerics import DEFAULT_MULT_BITS, QFormat, derive_multiplier, product_bound
from .qmodel import LayerKind, QLayer, QuantizedModel

__all__ = ["load_qonnx", "SUPPORTED_OPS"]

SUPPORTED_OPS = ("Quant", "BipolarQuant", "Trunc", "Conv", "Gemm", "MatMul", "Add", "Relu",
                 "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten", "Reshape",
                 "Identity")
_EXACT_ROUNDING = ("HALF_UP",)
_TIE_ROUNDING = ("ROUND", "HALF_EVEN")


def _attrs(node):
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _where(node):
    return f"node {node.name!r} ({node.op_type})"


def _unsupported(node, why):
    raise UnsupportedOpError(f"{_where(node)}: {why}")


def _round(mode, x, node):
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    mode = mode.upper()
    if mode in _TIE_ROUNDING:
        return np.round(x)
    if mode == "HALF_UP":
        return np.sign(x) * np.floor(np.abs(x) + 0.5)
    if mode == "FLOOR":
        return np.floor(x)
    if mode == "CEIL":
        return np.ceil(x)
    if mode in ("DOWN", "ROUND_TO_ZERO"):
        return np.fix(x)
    return _unsupported(node, f"rounding mode {mode!r}")


class _QConst:
    """A quantized constant: integers, scale (float64, broadcastable), format."""

    def __init__(self, ints, scale, fmt):
        self.ints, self.scale, self.fmt = ints, scale, fmt


def _quant_const(node, consts):
    """Evaluate a Quant/BipolarQuant whose inputs are all constants, as QONNX does."""
    a = _attrs(node)
    x = consts[node.input[0]].astype(np.float32)
    scale = consts[node.input[1]].astype(np.float32)
    if node.op_type == "BipolarQuant":
        ints = np.where(x / scale >= 0, 1.0, -1.0)
        return _QConst(ints.astype(np.int64), scale.astype(np.float64), QFormat(2, True))
    zp = consts[node.input[2]]
    bits = int(consts[node.input[3]])
    if np.any(zp != 0):
        _unsupported(node, "a non-zero zero point (the contract is symmetric)")
    signed, narrow = bool(a.get("signed", 1)), bool(a.get("narrow", 0))
    lo = -(1 << (bits - 1)) + int(narrow) if signed else 0
    hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1 - int(narrow)
    y = np.clip(x / scale, lo, hi)  # QONNX clamps, then rounds
    ints = _round(a.get("rounding_mode", "ROUND"), y, node).astype(np.int64)
    return _QConst(ints, scale.astype(np.float64), QFormat(bits, signed))


def _fold_constants(graph):
    """Initializers, Constant outputs and constant Quant/Identity results by tensor name."""
    from onnx import numpy_helper

    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    qconsts = {}
    for node in graph.node:
        if node.op_type == "Constant":
            consts[node.output[0]] = numpy_helper.to_array(_attrs(node)["value"])
        elif node.op_type in ("Quant", "BipolarQuant") and all(
                i in consts for i in node.input if i):
            q = _quant_const(node, consts)
            qconsts[node.output[0]] = q
            consts[node.output[0]] = q.ints * q.scale
        elif node.op_type == "Identity" and node.input[0] in consts:
            consts[node.output[0]] = consts[node.input[0]]
            if node.input[0] in qconsts:
                qconsts[node.output[0]] = qconsts[node.input[0]]
    return consts, qconsts


class _Builder:
    """Walks the activation chain node by node, closing a layer at each activation Quant."""

    def __init__(self, consts, qconsts, mult_bits):
        self.consts, self.qconsts, self.mult_bits = consts, qconsts, mult_bits
        self.layers, self.pending, self.approx = [], None, []
        self.fmt = self.scale = self.shape = None

    # -- helpers --------------------------------------------------------------------------
    def _weight(self, node, name):
        if name not in self.qconsts:
            _unsupported(node, f"weight {name!r} is not quantized by a Quant/BipolarQuant node")
        return self.qconsts[name]

    def _per_channel(self, node, scale, channels):
        s = np.asarray(scale, dtype=np.float64).reshape(-1)
        if s.size == 1:
            return np.full(channels, float(s[0]))
        if s.size != channels:
            _unsupported(node, f"a weight scale of {s.size} entries for {channels} channels")
        return s

    def _need_quantized_input(self, node):
        if self.pending is not None:
            _unsupported(node, "its input is not quantized (a Quant node must come first)")

    # -- ops --------------------------------------------------------------------------------
    def mac(self, node, kind, wq, w_ints, bias_name=None, **geometry):
        self._need_quantized_input(node)
        o = w_ints.shape[0]
        w_scale = self._per_channel(node, wq.scale, o)
        if not (2 <= wq.fmt.bits <= 8 and wq.fmt.signed):
            _unsupported(node, f"{wq.fmt.bits}-bit {'signed' if wq.fmt.signed else 'unsigned'}"
                         " weights (the contract has signed 2..8-bit weights)")
        layer = QLayer(node.name or node.output[0], kind, self.shape, (), self.fmt, self.fmt,
                       self.scale, np.ones(1), w_fmt=QFormat.weight(wq.fmt.bits),
                       weight=w_ints, bias=np.zeros(o, dtype=np.int64), w_scale=w_scale,
                       **geometry)
        if kind is LayerKind.CONV2D:
            c, h, w = self.shape
            (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
            layer.out_shape = (o, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)
        else:
            layer.out_shape = (o,)
        self.pending = {"layer": layer, "relu": False, "bias": 0.0, "node": node}
        if bias_name:
            self.add_bias(node, bias_name)

    def add_bias(self, node, name):
        if self.pending is None or self.pending["layer"].kind not in (LayerKind.CONV2D,
                                                                      LayerKind.LINEAR):
            _unsupported(node, "an Add that is not a bias after Conv/Gemm/MatMul")
        if name not in self.consts:
            _unsupported(node, "an Add of two activations (residual connections)")
        if self.pending["relu"]:
            _unsupported(node, "a bias added after the Relu")
        self.pending["bias"] = self.pending["bias"] + self.consts[name].astype(np.float64)

    def relu(self, node):
        if self.pending is None:
            _unsupported(node, "a Relu on an already quantized tensor (put it before the Quant)")
        self.pending["relu"] = True

    def quant(self, node, out_scale, bits, signed, rounding, narrow=False):
        if self.pending is None:
            _unsupported(node, "a second Quant with nothing to requantize in between")
        if signed:
            _unsupported(node, "a signed activation (the contract's activations are unsigned)")
        if not 2 <= bits <= 8:
            _unsupported(node, f"{bits}-bit activations (the contract allows 2..8)")
        mode = rounding.decode() if isinstance(rounding, bytes) else str(rounding)
        if mode.upper() not in _EXACT_ROUNDING:
            self.approx.append(f"{_where(node)}: {mode.upper()} rounding vs the contract's"
                               " round half up")
        self._close(node, float(out_scale), QFormat.activation(bits), narrow)

    def _close(self, node, out_scale, out_fmt, narrow=False):
        p, self.pending = self.pending, None
        layer = p["layer"]
        if layer.kind is LayerKind.AVGPOOL:
            ratios = np.array([layer.in_scale / out_scale / (layer.kernel[0] * layer.kernel[1])])
        else:
            self._set_bias(p)
            ratios = layer.w_scale * layer.in_scale / out_scale
        pairs = [derive_multiplier(float(r), self.mult_bits) for r in ratios]
        layer.mult = np.array([m for m, _ in pairs], dtype=np.int64)
        layer.shift = np.array([s for _, s in pairs], dtype=np.int64)
        for r, (m, s) in zip(ratios, pairs, strict=True):
            if m != r * 2.0 ** s:
                self.approx.append(f"{_where(node)}: ratio {float(r)!r} as {m}/2**{s}")
                break
        layer.requant, layer.out_fmt, layer.out_scale = True, out_fmt, np.array([out_scale])
        layer.lo, layer.hi = 0, out_fmt.max - int(narrow)
        self._push(layer)

    def _set_bias(self, p):
        layer = p["layer"]
        grid = layer.w_scale * layer.in_scale
        b = np.broadcast_to(np.asarray(p["bias"], dtype=np.float64).reshape(-1), grid.shape)
        ints = np.round(b / grid)
        bound = product_bound(layer.w_fmt, layer.in_fmt, layer.reduction)
        if np.any(np.abs(ints) > bound):
            _unsupported(p["node"], "a bias beyond the accumulator bound of the contract")
        if np.any(ints * grid != b):
            self.approx.append(f"{_where(p['node'])}: bias rounded to the accumulator grid")
        layer.bias = ints.astype(np.int64)

    def _push(self, layer):
        self.layers.append(layer)
        self.fmt, self.scale, self.shape = layer.out_fmt, float(layer.out_scale[0]), \
            tuple(layer.out_shape)

    def passthrough(self, node, kind, out_shape, **geometry):
        self._need_quantized_input(node)
        self._push(QLayer(node.name or node.output[0], kind, self.shape, tuple(out_shape),
                          self.fmt, self.fmt, self.scale, np.array([self.scale]), **geometry))

    def avgpool(self, node, kernel, stride):
        self._need_quantized_input(node)
        c, h, w = self.shape
        out = (c, (h - kernel[0]) // stride[0] + 1, (w - kernel[1]) // stride[1] + 1)
        layer = QLayer(node.name or node.output[0], LayerKind.AVGPOOL, self.shape, out, self.fmt,
                       self.fmt, self.scale, np.ones(1), kernel=kernel, stride=stride)
        self.pending = {"layer": layer, "relu": False, "bias": 0.0, "node": node}

    def finish(self):
        if self.pending is not None:
            p = self.pending
            layer = p["layer"]
            if layer.kind is LayerKind.AVGPOOL or p["relu"]:
                _unsupported(p["node"], "the network output must be the last Conv/Gemm's"
                             " accumulator (no Relu or pooling after it without a Quant)")
            self._set_bias(p)
            layer.requant = False
            layer.out_scale = layer.w_scale * layer.in_scale
            layer.out_fmt = layer.acc_fmt
            self.pending = None
            self._push(layer)
            self.scale = None
        elif not self.layers or self.layers[-1].kind not in (LayerKind.CONV2D, LayerKind.LINEAR,
                                                             LayerKind.FLATTEN):
            raise UnsupportedOpError("the network must end with a Conv/Gemm/MatMul returning"
                                     " logits (a Quant on the output is not supported)")
        return self.layers


def _pair(v, default):
    v = list(v) if v is not None else list(default)
    return tuple(int(x) for x in v)


def _dispatch(b, node, a, consts):
    op, x = node.op_type, node.input
    if op == "Conv":
        if a.get("group", 1) != 1 or any(d != 1 for d in a.get("dilations", [1, 1])):
            _unsupported(node, "grouped or dilated convolution")
        pads = _pair(a.get("pads"), (0, 0, 0, 0))
        if pads[:2] != pads[2:] or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            _unsupported(node, f"asymmetric or automatic padding {pads}")
        wq = b._weight(node, x[1])
        b.mac(node, LayerKind.CONV2D, wq, wq.ints, x[2] if len(x) > 2 and x[2] else None,
              kernel=tuple(wq.ints.shape[2:]), stride=_pair(a.get("strides"), (1, 1)),
              padding=pads[:2])
    elif op == "Gemm":
        if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
            _unsupported(node, "Gemm with transA, alpha or beta other than 1")
        wq = b._weight(node, x[1])
        w = wq.ints if a.get("transB", 0) else wq.ints.T
        if not a.get("transB", 0) and np.asarray(wq.scale).size > 1:
            wq = _QConst(wq.ints, np.asarray(wq.scale).reshape(-1), wq.fmt)
        b.mac(node, LayerKind.LINEAR, wq, np.ascontiguousarray(w),
              x[2] if len(x) > 2 and x[2] else None)
    elif op == "MatMul":
        wq = b._weight(node, x[1])
        b.mac(node, LayerKind.LINEAR, _QConst(wq.ints, np.asarray(wq.scale).reshape(-1),
                                              wq.fmt), np.ascontiguousarray(wq.ints.T))
    elif op == "Add":
        other = x[1] if x[1] in consts else x[0]
        b.add_bias(node, other)
    elif op == "Relu":
        b.relu(node)
    elif op == "Quant":
        if np.any(consts[x[2]] != 0):
            _unsupported(node, "a non-zero zero point")
        if np.asarray(consts[x[1]]).size != 1:
            _unsupported(node, "a per-channel activation scale (the contract is per tensor)")
        b.quant(node, float(np.asarray(consts[x[1]]).reshape(-1)[0]), int(consts[x[3]]),
                bool(a.get("signed", 1)), a.get("rounding_mode", "ROUND"),
                bool(a.get("narrow", 0)))
    elif op == "Trunc":
        if b.pending is None or b.pending["layer"].kind is not LayerKind.AVGPOOL:
            _unsupported(node, "Trunc other than after average pooling")
        if len(x) != 6:
            _unsupported(node, "Trunc v1 (5 inputs); only Trunc v2 with an output scale")
        mode = a.get("rounding_mode", b"FLOOR")
        out_scale, bits = float(consts[x[4]].reshape(-1)[0]), int(consts[x[5]])
        pool = b.pending["layer"]
        # Trunc first rounds its input to its own grid: exact only on the window-sum grid
        if float(consts[x[1]].reshape(-1)[0]) * pool.kernel[0] * pool.kernel[1] != pool.in_scale:
            b.approx.append(f"{_where(node)}: input grid is not the average pool's sum grid")
        b.quant(node, out_scale, bits, bool(a.get("signed", 0)), mode)
    elif op == "MaxPool":
        if any(_pair(a.get("pads"), (0, 0, 0, 0))) or a.get("ceil_mode", 0) or \
                any(d != 1 for d in a.get("dilations", [1, 1])):
            _unsupported(node, "MaxPool with padding, ceil_mode or dilation")
        k = _pair(a["kernel_shape"], None)
        s = _pair(a.get("strides"), k)
        c, h, w = b.shape
        b.passthrough(node, LayerKind.MAXPOOL, (c, (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1),
                      kernel=k, stride=s)
    elif op == "AveragePool":
        if any(_pair(a.get("pads"), (0, 0, 0, 0))) or a.get("ceil_mode", 0):
            _unsupported(node, "AveragePool with padding or ceil_mode")
        k = _pair(a["kernel_shape"], None)
        b.avgpool(node, k, _pair(a.get("strides"), k))
    elif op == "GlobalAveragePool":
        b.avgpool(node, b.shape[1:], b.shape[1:])
    elif op in ("Flatten", "Reshape"):
        if op == "Flatten" and a.get("axis", 1) != 1:
            _unsupported(node, "Flatten with axis other than 1")
        if op == "Reshape":
            target = [int(v) for v in consts[x[1]].reshape(-1)]
            n = int(np.prod(b.shape))
            if len(target) != 2 or target[1] not in (-1, n):
                _unsupported(node, f"Reshape to {target} (only a flatten to (N, -1))")
        if len(b.shape) == 1:
            return  # already flat
        b.passthrough(node, LayerKind.FLATTEN, (int(np.prod(b.shape)),))
    elif op == "Identity":
        return
    else:
        _unsupported(node, f"op {op} is not supported; supported: {', '.join(SUPPORTED_OPS)}")


def load_qonnx(source, name=None, mult_bits=DEFAULT_MULT_BITS):
    """Import a QONNX file (path) or ``onnx.ModelProto`` as a validated QuantizedModel."""
    import onnx

    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            model = onnx.load(str(path))
        except FileNotFoundError:
            raise DataError(f"{path}: no such ONNX file") from None
        except Exception as e:  # protobuf decode errors have no common public base class
            raise DataError(f"{path}: not a readable ONNX model ({type(e).__name__})") from None
        name = name or path.stem
    else:
        model = source
        name = name or (model.graph.name or "qonnx")
    graph = model.graph
    consts, qconsts = _fold_constants(graph)
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1:
        raise UnsupportedOpError(f"the graph must have one data input, not {len(inputs)}")
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim][1:]
    if len(dims) not in (1, 3) or not all(dims):
        raise UnsupportedOpError(f"input {inputs[0].name!r} must be (N, C, H, W) or (N, F)"
                                 f" with known sizes, not (N, {dims})")
    b = _Builder(consts, qconsts, mult_bits)
    b.shape = tuple(dims)
    cur, input_fmt, input_scale = inputs[0].name, None, None
    for node in graph.node:
        if node.output[0] in consts or node.op_type == "Constant":
            continue
        if cur not in node.input:
            _unsupported(node, "a branch (only chains are supported)")
        a = _attrs(node)
        if input_fmt is None:
            if node.op_type != "Quant" or a.get("signed", 1) or \
                    np.any(consts[node.input[2]] != 0):
                _unsupported(node, "the network input must first go through an unsigned Quant"
                             " with zero point 0")
            bits = int(consts[node.input[3]])
            if not 2 <= bits <= 16:
                _unsupported(node, f"{bits}-bit input")
            input_fmt = QFormat(bits, False)
            input_scale = float(np.asarray(consts[node.input[1]]).reshape(-1)[0])
            b.fmt, b.scale = input_fmt, input_scale
        else:
            _dispatch(b, node, a, consts)
        cur = node.output[0]
    if input_fmt is None:
        raise UnsupportedOpError("the graph has no Quant on its input")
    layers = b.finish()
    meta = {"source": "qonnx", "approximate": b.approx}
    return QuantizedModel(name, tuple(dims), input_fmt, input_scale, layers, meta).validate()

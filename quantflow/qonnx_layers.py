"""QONNX op mapping: the integer layers a QONNX graph's nodes become, and where each layer's
requantization can differ from QONNX's own execution.

A *tensor* the graph walker (:mod:`quantflow.qonnx`) tracks is either a :class:`QTensor`
(quantized: the output of a layer or of the input ``Quant``) or a :class:`Pending` computation
(a Conv/Gemm/MatMul accumulator with its bias and Relu, an average pool's window sum or a
residual add's operands) that the next activation ``Quant`` closes into one layer with its
``(M, s, lo, hi)``.

Exactness (listed in ``meta["approximate"]`` otherwise): a layer's requantization equals
QONNX's when every ratio ``M / 2**s`` is exact (power-of-two scale ratios) and, where a ratio
is not an integer (so a value is rounded), the ``Quant`` rounds ``HALF_UP`` and the rounded
value cannot be negative (an unsigned ``Quant``, a Relu before it, or non-negative inputs):
QONNX's ``HALF_UP`` rounds ties away from zero, the contract rounds them up. An add rounds each
input on its own and QONNX rounds their sum once, so an add is exact when at most one input's
ratio is not an integer.
"""

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .errors import UnsupportedOpError
from .numerics import QFormat, derive_multiplier, product_bound
from .qmodel import MAC_KINDS, LayerKind, QLayer
from .qonnx_consts import unsupported, where

__all__ = ["QTensor", "Pending", "LayerBuilder"]

#: Relative distance from an integer within which a bias counts as on the accumulator grid:
#: float32 scales multiplied in float64 differ from their float32 product by ~6e-8.
_GRID_TOLERANCE = 1e-6


@dataclass
class QTensor:
    """A quantized tensor: layer ``index``'s output (``-1``: the network input), its format,
    scale, shape and the integer range ``lo..hi`` its values can take."""

    index: int
    fmt: QFormat
    scale: float
    shape: tuple
    lo: int
    hi: int


@dataclass
class Pending:
    """A layer waiting for the activation Quant that closes it (``sources``: its inputs)."""

    layer: QLayer
    node: object
    sources: tuple
    relu: bool = False
    bias: object = 0.0


def _clamp_range(fmt, narrow):
    return fmt.min + int(narrow and fmt.signed), fmt.max - int(narrow and not fmt.signed)


def _name(node):
    return node.name or node.output[0]


class LayerBuilder:
    """Makes the layers (in topological order) and collects ``approx``, the deviations."""

    def __init__(self, qconsts, mult_bits):
        self.qconsts, self.mult_bits = qconsts, mult_bits
        self.layers, self.approx = [], []

    def weight(self, node, name):
        if name not in self.qconsts:
            unsupported(node, f"weight {name!r} is not quantized by a Quant/BipolarQuant node")
        return self.qconsts[name]

    # -- layers that wait for their Quant ---------------------------------------------------
    def mac(self, node, src, kind, wq, w_ints, groups=1, **geometry):
        """A Conv (``groups`` > 1: grouped or depthwise) or Gemm/MatMul reading ``src``."""
        o = w_ints.shape[0]
        s = np.asarray(wq.scale, dtype=np.float64).reshape(-1)
        if s.size not in (1, o):
            unsupported(node, f"a weight scale of {s.size} entries for {o} channels")
        w_scale = np.full(o, float(s[0])) if s.size == 1 else s
        if not (1 <= wq.fmt.bits <= 8 and wq.fmt.signed):
            unsupported(node, f"{wq.fmt.bits}-bit {'signed' if wq.fmt.signed else 'unsigned'}"
                        " weights (the contract has signed 1..8-bit weights; 1 bit is a"
                        " BipolarQuant)")
        if kind is LayerKind.CONV2D:
            c, h, w = src.shape
            if c % groups or o % groups or w_ints.shape[1] * groups != c:
                unsupported(node, f"group {groups} with weights {tuple(w_ints.shape)} on"
                            f" {c} input channels")
            (kh, kw), (sh, sw), (ph, pw) = (geometry["kernel"], geometry["stride"],
                                            geometry["padding"])
            out = (o, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)
        else:
            if len(src.shape) != 1 or w_ints.shape[1] != src.shape[0]:
                unsupported(node, f"weights {tuple(w_ints.shape)} on an input of shape"
                            f" {src.shape} (flatten to (N, F) first)")
            out = (o,)
        layer = QLayer(_name(node), kind, src.shape, out, src.fmt, src.fmt, src.scale,
                       np.ones(1), w_fmt=QFormat.weight(wq.fmt.bits), weight=w_ints,
                       bias=np.zeros(o, dtype=np.int64), w_scale=w_scale, groups=groups,
                       **geometry)
        return Pending(layer, node, (src,))

    def add_bias(self, node, p, values):
        if p.layer.kind not in MAC_KINDS:
            unsupported(node, "an Add of a constant that is not a bias after Conv/Gemm/MatMul")
        if p.relu:
            unsupported(node, "a bias added after the Relu")
        p.bias = p.bias + np.asarray(values, dtype=np.float64)
        return p

    def avgpool(self, node, src, kernel, stride):
        c, h, w = src.shape
        out = (c, (h - kernel[0]) // stride[0] + 1, (w - kernel[1]) // stride[1] + 1)
        layer = QLayer(_name(node), LayerKind.AVGPOOL, src.shape, out, src.fmt, src.fmt,
                       src.scale, np.ones(1), kernel=kernel, stride=stride)
        return Pending(layer, node, (src,))

    def add(self, node, sources):
        """A residual Add of quantized tensors; its Quant gives each input its own (M, s)."""
        shapes = [s.shape for s in sources]
        if any(sh != shapes[0] for sh in shapes):
            unsupported(node, f"an Add of tensors of shapes {shapes} (no broadcasting)")
        s0 = sources[0]
        layer = QLayer(_name(node), LayerKind.ADD, s0.shape, s0.shape, s0.fmt, s0.fmt,
                       s0.scale, np.ones(1))
        return Pending(layer, node, tuple(sources))

    # -- closing and pass-through layers ----------------------------------------------------
    def close(self, node, p, out_scale, fmt, narrow, mode, out_name):
        """The Quant ``node`` closes ``p``: requantize to ``fmt`` at ``out_scale``."""
        layer = p.layer
        lo, hi = _clamp_range(fmt, narrow)
        lo = max(lo, 0) if p.relu else lo
        nonneg = p.relu or not fmt.signed
        if layer.kind is LayerKind.ADD:
            ratios = [s.scale / out_scale for s in p.sources]
            nonneg = nonneg or all(s.lo >= 0 for s in p.sources)
        elif layer.kind is LayerKind.AVGPOOL:
            ratios = [layer.in_scale / out_scale / (layer.kernel[0] * layer.kernel[1])]
            nonneg = nonneg or p.sources[0].lo >= 0
        else:
            self._set_bias(p)
            ratios = list(layer.w_scale * layer.in_scale / out_scale)
        pairs = [self._multiplier(node, float(r)) for r in ratios]
        self._note(node, layer.kind, ratios, pairs, mode, nonneg)
        layer.mult = np.array([m for m, _ in pairs], dtype=np.int64)
        layer.shift = np.array([s for _, s in pairs], dtype=np.int64)
        layer.requant, layer.out_fmt, layer.out_scale = True, fmt, np.array([out_scale])
        layer.lo, layer.hi = lo, hi
        return QTensor(self._push(layer, p.sources, out_name), fmt, out_scale,
                       tuple(layer.out_shape), lo, hi)

    def requantize(self, node, src, out_scale, fmt, narrow, mode, out_name):
        """A Quant on an already quantized tensor: dropped when it keeps every value (the
        scale ratio is an integer and the range fits), else a 1x1 average pool (the contract's
        one-input requantization) on a (C, H, W) map."""
        lo, hi = _clamp_range(fmt, narrow)
        r = Fraction(src.scale) / Fraction(out_scale)
        if r.denominator == 1 and lo <= src.lo * r and src.hi * r <= hi:
            return src
        if len(src.shape) != 3:
            unsupported(node, "a Quant that changes the values of an already quantized vector"
                        " (only a (C, H, W) map can be requantized on its own)")
        layer = QLayer(_name(node), LayerKind.AVGPOOL, src.shape, src.shape, src.fmt, src.fmt,
                       src.scale, np.ones(1), kernel=(1, 1), stride=(1, 1))
        return self.close(node, Pending(layer, node, (src,)), out_scale, fmt, narrow, mode,
                          out_name)

    def passthrough(self, node, src, kind, out_shape, out_name, **geometry):
        layer = QLayer(_name(node), kind, src.shape, tuple(out_shape), src.fmt, src.fmt,
                       src.scale, np.array([src.scale]), **geometry)
        return QTensor(self._push(layer, (src,), out_name), src.fmt, src.scale,
                       tuple(out_shape), src.lo, src.hi)

    def concat(self, node, sources, out_name):
        keys = [(s.scale, s.fmt) for s in sources]
        if len(set(keys)) > 1:
            got = ", ".join(f"{f.bits}-bit {'signed' if f.signed else 'unsigned'} at {s!r}"
                            for s, f in keys)
            unsupported(node, f"inputs must share one scale and format to be concatenated,"
                        f" not {got}")
        shapes = [s.shape for s in sources]
        if any(len(sh) != 3 or sh[1:] != shapes[0][1:] for sh in shapes):
            unsupported(node, f"a Concat of tensors of shapes {shapes} (only (C, H, W) maps"
                        " of one size, along channels)")
        s0 = sources[0]
        out = (sum(sh[0] for sh in shapes), *s0.shape[1:])
        layer = QLayer(_name(node), LayerKind.CONCAT, s0.shape, out, s0.fmt, s0.fmt, s0.scale,
                       np.array([s0.scale]))
        return QTensor(self._push(layer, sources, out_name), s0.fmt, s0.scale, out,
                       min(s.lo for s in sources), max(s.hi for s in sources))

    def finish(self, p, out_name):
        """The network output: the last Conv/Gemm/MatMul's accumulator (logits)."""
        layer = p.layer
        if layer.kind not in MAC_KINDS or p.relu:
            unsupported(p.node, "the network output must be the last Conv/Gemm's accumulator"
                        " (no Relu, pooling or add after it without a Quant)")
        self._set_bias(p)
        layer.requant = False
        layer.out_scale = layer.w_scale * layer.in_scale
        layer.out_fmt = layer.acc_fmt
        self._push(layer, p.sources, out_name)
        return self.layers

    # -- helpers ----------------------------------------------------------------------------
    def _push(self, layer, sources, out_name):
        inputs = tuple(s.index for s in sources)
        layer.inputs = None if inputs == (len(self.layers) - 1,) else inputs
        layer.extra["onnx_tensor"] = out_name
        self.layers.append(layer)
        return len(self.layers) - 1

    def _multiplier(self, node, ratio):
        try:
            return derive_multiplier(ratio, self.mult_bits)
        except ValueError:
            raise UnsupportedOpError(f"{where(node)}: a scale ratio {ratio!r} beyond the"
                                     f" {self.mult_bits}-bit multiplier") from None

    def _note(self, node, kind, ratios, pairs, mode, nonneg):
        """List in ``approx`` how this requantization can differ from QONNX's."""
        inexact = [(r, m, s) for r, (m, s) in zip(ratios, pairs, strict=True)
                   if Fraction(m, 1 << s) != Fraction(float(r))]
        if inexact:
            r, m, s = inexact[0]
            more = f" ({len(inexact)} of {len(pairs)} ratios inexact)" if len(pairs) > 1 else ""
            self.approx.append(f"{where(node)}: ratio {float(r)!r} as {m}/2**{s}{more}")
        rounded = sum(1 for m, s in pairs if m % (1 << s))
        if kind is LayerKind.ADD and rounded > 1:
            self.approx.append(f"{where(node)}: {rounded} inputs rounded one by one (QONNX"
                               " rounds their sum once)")
        elif rounded and mode != "HALF_UP":
            self.approx.append(f"{where(node)}: {mode} rounding vs the contract's round half"
                               " up")
        elif rounded and not nonneg:
            self.approx.append(f"{where(node)}: HALF_UP rounds negative ties away from zero,"
                               " the contract rounds them up")

    def _set_bias(self, p):
        layer = p.layer
        grid = layer.w_scale * layer.in_scale
        b = np.broadcast_to(np.asarray(p.bias, dtype=np.float64).reshape(-1), grid.shape)
        ints = np.round(b / grid)
        bound = product_bound(layer.w_fmt, layer.in_fmt, layer.reduction)
        if np.any(np.abs(ints) > bound):
            unsupported(p.node, "a bias beyond the accumulator bound of the contract")
        # A bias already on the grid (Brevitas' Int32Bias: an integer times the float32 product
        # of the scales) sits within float32 rounding of an integer; only the others change an
        # integer by being rounded, and only those are listed.
        exact = b / grid
        off = np.abs(exact - ints) > _GRID_TOLERANCE * np.maximum(1.0, np.abs(exact))
        if np.any(off):
            self.approx.append(f"{where(p.node)}: {int(off.sum())} of {off.size} bias values"
                               " off the accumulator grid, rounded to it")
        layer.bias = ints.astype(np.int64)

"""QuantizedModel: the integer network every later stage consumes.

A chain of :class:`QLayer` records holding integer weights, biases at accumulator scale, and
per-output-channel requantization ``(M, s, lo, hi)`` as the contract in
:mod:`quantflow.numerics` defines them. Float scales are kept beside the integers only to
dequantize (inputs, logits) and to document; no integer result depends on them.

Pure numpy: ``hwgen`` imports this module.
"""

import enum
from dataclasses import dataclass, field

import numpy as np

from .errors import ArtifactError
from .numerics import QFormat, acc_bits, product_bound

__all__ = ["LayerKind", "QLayer", "QuantizedModel", "FORMAT_VERSION"]

FORMAT_VERSION = 1


class LayerKind(enum.Enum):
    CONV2D = "conv2d"
    LINEAR = "linear"
    MAXPOOL = "maxpool"
    AVGPOOL = "avgpool"
    FLATTEN = "flatten"


#: Kinds that multiply by weights and accumulate.
MAC_KINDS = (LayerKind.CONV2D, LayerKind.LINEAR)


@dataclass(eq=False)
class QLayer:
    """One layer of the integer chain.

    Shapes exclude the batch: ``(C, H, W)`` for feature maps, ``(F,)`` for vectors.

    For CONV2D and LINEAR: ``weight`` (int64, ``(O, I, kh, kw)`` or ``(O, I)``), ``bias``
    (int64, ``(O,)``), ``mult`` and ``shift`` (int64, ``(O,)``), ``w_fmt``. When ``requant`` is
    False the layer returns its accumulator (the last layer: logits at accumulator scale) and
    ``out_fmt`` is the accumulator format. For AVGPOOL: scalar-like ``mult``/``shift`` of shape
    ``(1,)`` requantize the window sum. MAXPOOL and FLATTEN carry no parameters.
    """

    name: str
    kind: LayerKind
    in_shape: tuple
    out_shape: tuple
    in_fmt: QFormat
    out_fmt: QFormat
    in_scale: float
    out_scale: np.ndarray  # (1,) or per output channel when the output is an accumulator
    kernel: tuple = (1, 1)
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    w_fmt: QFormat | None = None
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    mult: np.ndarray | None = None
    shift: np.ndarray | None = None
    requant: bool = True
    lo: int = 0
    hi: int = 0
    w_scale: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def reduction(self):
        """K: products summed per output element."""
        if self.kind is LayerKind.CONV2D:
            return int(self.weight.shape[1] * self.kernel[0] * self.kernel[1])
        if self.kind is LayerKind.LINEAR:
            return int(self.weight.shape[1])
        if self.kind is LayerKind.AVGPOOL:
            return self.kernel[0] * self.kernel[1]
        return 1

    @property
    def acc_fmt(self):
        """Accumulator format from the bound (products plus a bias within the same bound)."""
        if self.kind in MAC_KINDS:
            return QFormat(acc_bits(self.w_fmt, self.in_fmt, self.reduction), True)
        if self.kind is LayerKind.AVGPOOL:
            k = self.reduction
            return QFormat(self.in_fmt.bits + (k - 1).bit_length() + 1, True)
        return self.in_fmt

    @property
    def macs(self):
        """Multiply-accumulates per inference (useful work)."""
        if self.kind not in MAC_KINDS:
            return 0
        return int(np.prod(self.out_shape)) * self.reduction

    def validate(self, index):
        where = f"layer {index} ({self.name!r}, {self.kind.value})"
        _check(len(self.in_shape) in (1, 3) and len(self.out_shape) in (1, 3)
               and all(_is_int(n) and n >= 1 for n in (*self.in_shape, *self.out_shape)),
               f"{where}: shapes must be (C, H, W) or (F,) of positive integers")
        self._validate_geometry(where)
        if self.kind in MAC_KINDS:
            needed = ("weight", "bias", "w_scale") + (("mult", "shift") if self.requant else ())
            for attr in needed:
                _check(getattr(self, attr) is not None, f"{where}: missing {attr}")
            o = self.out_shape[0]
            per_channel = [self.bias] + ([self.mult, self.shift] if self.requant else [])
            _check(all(a.shape == (o,) for a in per_channel),
                   f"{where}: per-channel arrays must have {o} entries")
            _check(self.w_fmt is not None and self.w_fmt.signed, f"{where}: weight format must"
                   " be signed")
            if self.kind is LayerKind.CONV2D:
                want = (o, self.in_shape[0], *self.kernel)
            else:
                want = (o, int(np.prod(self.in_shape)))
            # Shape first: the reduction length (and so the bound) is read from it.
            _check(tuple(self.weight.shape) == want,
                   f"{where}: weight shape {tuple(self.weight.shape)} != expected {want}")
            _check(self.w_fmt.contains(self.weight), f"{where}: weights outside {self.w_fmt}")
            bound = product_bound(self.w_fmt, self.in_fmt, self.reduction)
            _check(bool(np.all(np.abs(self.bias) <= bound)), f"{where}: bias outside the"
                   " accumulator bound")
        if self.kind in MAC_KINDS + (LayerKind.AVGPOOL,) and self.requant:
            _check(self.mult is not None and bool(np.all(self.mult >= 0)),
                   f"{where}: multipliers must be non-negative")
            _check(bool(np.all((self.shift >= 0) & (self.shift <= 63))),
                   f"{where}: shifts must be in 0..63")
            _check(self.out_fmt.min <= self.lo <= self.hi <= self.out_fmt.max,
                   f"{where}: clamp bounds {self.lo}..{self.hi} outside {self.out_fmt}")

    def _validate_geometry(self, where):
        """Windows are two positive ints (padding >= 0) and the output shape follows from them."""
        if self.kind in (LayerKind.CONV2D, LayerKind.MAXPOOL, LayerKind.AVGPOOL):
            for attr, least in (("kernel", 1), ("stride", 1), ("padding", 0)):
                v = getattr(self, attr)
                _check(isinstance(v, tuple) and len(v) == 2
                       and all(_is_int(e) and e >= least for e in v),
                       f"{where}: {attr} must be two integers >= {least}, not {v!r}")
            _check(len(self.in_shape) == 3, f"{where}: input must be (C, H, W), not"
                   f" {tuple(self.in_shape)}")
            spatial = tuple((n + 2 * p - k) // s + 1 for n, k, s, p in
                            zip(self.in_shape[1:], self.kernel, self.stride, self.padding,
                                strict=True))
            channels = self.out_shape[0] if self.kind is LayerKind.CONV2D else self.in_shape[0]
            want = (channels, *spatial)
        elif self.kind is LayerKind.FLATTEN:
            want = (int(np.prod(self.in_shape)),)
        else:
            want = (self.out_shape[0],)
        _check(tuple(self.out_shape) == want and all(n >= 1 for n in want),
               f"{where}: output shape {tuple(self.out_shape)} != expected {want}")


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check(cond, message):
    if not cond:
        raise ArtifactError(message)


@dataclass(eq=False)
class QuantizedModel:
    """A chain of integer layers with the input quantization that feeds it.

    ``input_scale``: real value of one input LSB; ``x_int = clamp(round(x / input_scale))``
    in ``input_fmt``. The last layer's output is the network output (logits).
    """

    name: str
    input_shape: tuple
    input_fmt: QFormat
    input_scale: float
    layers: list
    meta: dict = field(default_factory=dict)

    def validate(self):
        """Raise :class:`ArtifactError` when the chain is inconsistent."""
        _check(len(self.layers) > 0, "model has no layers")
        shape, fmt = tuple(self.input_shape), self.input_fmt
        for i, layer in enumerate(self.layers):
            _check(tuple(layer.in_shape) == shape,
                   f"layer {i} ({layer.name!r}) expects input shape {tuple(layer.in_shape)},"
                   f" gets {shape}")
            _check(layer.in_fmt == fmt, f"layer {i} ({layer.name!r}) expects input {layer.in_fmt},"
                   f" gets {fmt}")
            layer.validate(i)
            if layer.kind in MAC_KINDS and not layer.requant and i != len(self.layers) - 1:
                raise ArtifactError(f"layer {i} ({layer.name!r}) returns its accumulator but is"
                                    " not the last layer")
            shape, fmt = tuple(layer.out_shape), layer.out_fmt
        return self

    @property
    def output_scale(self):
        return self.layers[-1].out_scale

    def quantize_input(self, x):
        """Float input (N, *input_shape) -> integers in ``input_fmt``, round half to even."""
        q = np.rint(np.asarray(x, dtype=np.float64) / self.input_scale)
        return np.clip(q, self.input_fmt.min, self.input_fmt.max).astype(np.int64)

    @property
    def mac_layers(self):
        return [layer for layer in self.layers if layer.kind in MAC_KINDS]

    @property
    def wbits(self):
        return max(layer.w_fmt.bits for layer in self.mac_layers)

    @property
    def abits(self):
        """Widest requantized activation. Max pooling and flatten only pass their input on
        (an exporter may leave ``requant`` set on them), so they never count: the network
        input's width is ``input_fmt``, not an activation width."""
        fmts = [layer.out_fmt for layer in self.layers
                if layer.requant and layer.kind in MAC_KINDS + (LayerKind.AVGPOOL,)]
        return max(f.bits for f in fmts) if fmts else self.input_fmt.bits

    def summary_rows(self):
        rows = []
        for layer in self.layers:
            rows.append({
                "name": layer.name, "kind": layer.kind.value,
                "in": "x".join(map(str, layer.in_shape)),
                "out": "x".join(map(str, layer.out_shape)),
                "w": layer.w_fmt.bits if layer.w_fmt else "",
                "a_in": layer.in_fmt.bits, "a_out": layer.out_fmt.bits,
                "acc": layer.acc_fmt.bits if layer.kind in MAC_KINDS else "",
                "macs": layer.macs,
            })
        return rows

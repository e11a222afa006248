"""QuantizedModel: the integer network every later stage consumes.

A graph of :class:`QLayer` records (a DAG in topological order: each layer names the layers it
reads, ``-1`` being the network input) holding integer weights, biases at accumulator scale, and
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

#: 2: layers name their inputs (DAGs), grouped convolutions, ADD and CONCAT, signed
#: activations. Version 1 folders (chains) still load.
FORMAT_VERSION = 2


class LayerKind(enum.Enum):
    CONV2D = "conv2d"
    LINEAR = "linear"
    MAXPOOL = "maxpool"
    AVGPOOL = "avgpool"
    FLATTEN = "flatten"
    ADD = "add"
    CONCAT = "concat"


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

    ``inputs``: indices of the layers this one reads (``-1`` is the network input); ``None``
    means the previous layer (a chain). CONV2D with ``groups > 1`` has weights
    ``(O, I / groups, kh, kw)`` (depthwise when ``groups == I``). ADD has one ``mult``/``shift``
    per input (:func:`quantflow.numerics.add_requantize`); CONCAT joins its inputs along
    channels and carries no parameters. ``in_shape``/``in_fmt``/``in_scale`` describe the
    first input; the others are their producers' outputs.
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
    inputs: tuple | None = None
    groups: int = 1

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
                g = self.groups
                _check(_is_int(g) and g >= 1 and self.in_shape[0] % g == 0 and o % g == 0,
                       f"{where}: groups must divide the {self.in_shape[0]} input and {o}"
                       f" output channels, not {g!r}")
                want = (o, self.in_shape[0] // g, *self.kernel)
            else:
                want = (o, int(np.prod(self.in_shape)))
            # Shape first: the reduction length (and so the bound) is read from it.
            _check(tuple(self.weight.shape) == want,
                   f"{where}: weight shape {tuple(self.weight.shape)} != expected {want}")
            _check(self.w_fmt.contains(self.weight), f"{where}: weights outside {self.w_fmt}")
            bound = product_bound(self.w_fmt, self.in_fmt, self.reduction)
            _check(bool(np.all(np.abs(self.bias) <= bound)), f"{where}: bias outside the"
                   " accumulator bound")
        if self.kind is LayerKind.ADD:
            n = len(self.inputs or ())
            _check(n >= 2 and self.mult is not None and self.shift is not None
                   and self.mult.shape == (n,) and self.shift.shape == (n,),
                   f"{where}: an add must have two or more inputs and one (M, s) per input")
            _check(self.requant, f"{where}: an add must requantize its sum")
        if self.kind in MAC_KINDS + (LayerKind.AVGPOOL, LayerKind.ADD) and self.requant:
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
        elif self.kind is LayerKind.ADD:
            want = tuple(self.in_shape)
        elif self.kind is LayerKind.CONCAT:
            _check(len(self.in_shape) == 3 and len(self.out_shape) == 3,
                   f"{where}: concatenation joins (C, H, W) maps along channels")
            want = (self.out_shape[0], *self.in_shape[1:])
        else:
            want = (self.out_shape[0],)
        _check(tuple(self.out_shape) == want and all(n >= 1 for n in want),
               f"{where}: output shape {tuple(self.out_shape)} != expected {want}")


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _positive(value, zero=False):
    """Every element of ``value`` is a finite real number > 0 (>= 0 with ``zero``)."""
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return bool(np.all(np.isfinite(a)) and np.all(a >= 0 if zero else a > 0))


def _check(cond, message):
    if not cond:
        raise ArtifactError(message)


@dataclass(eq=False)
class QuantizedModel:
    """A graph of integer layers (topological order) with the input quantization feeding it.

    ``input_scale``: real value of one input LSB; ``x_int = clamp(round(x / input_scale))``
    in ``input_fmt``. The last layer's output is the network output (logits).
    """

    name: str
    input_shape: tuple
    input_fmt: QFormat
    input_scale: float
    layers: list
    meta: dict = field(default_factory=dict)

    def sources(self, index):
        """Indices of the layers layer ``index`` reads (``-1``: the network input)."""
        inputs = self.layers[index].inputs
        return (index - 1,) if inputs is None else tuple(inputs)

    def consumers(self, index):
        """Indices of the layers that read layer ``index``'s output (``-1``: the input)."""
        return [j for j in range(len(self.layers)) if index in self.sources(j)]

    def tensor_shape(self, index):
        return tuple(self.input_shape) if index < 0 else tuple(self.layers[index].out_shape)

    def tensor_fmt(self, index):
        return self.input_fmt if index < 0 else self.layers[index].out_fmt

    def validate(self):
        """Raise :class:`ArtifactError` when the graph is inconsistent."""
        _check(len(self.layers) > 0, "model has no layers")
        _check(_positive(self.input_scale), f"input_scale must be a finite positive number,"
               f" not {self.input_scale!r}")
        for i, layer in enumerate(self.layers):
            where = f"layer {i} ({layer.name!r})"
            _check(_positive(layer.in_scale), f"{where}: in_scale must be a finite positive"
                   f" number, not {layer.in_scale!r}")
            _check(layer.out_scale is None or _positive(layer.out_scale),
                   f"{where}: out_scale must hold finite positive numbers")
            _check(layer.w_scale is None or _positive(layer.w_scale, zero=True),
                   f"{where}: w_scale must hold finite non-negative numbers")
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            src = layer.inputs
            _check(src is None or (isinstance(src, tuple) and len(src) >= 1
                                   and all(_is_int(j) and -1 <= j < i for j in src)),
                   f"layer {i} ({layer.name!r}): inputs must be earlier layers (or -1, the"
                   f" network input), not {src!r}")
            src = self.sources(i)
            multi = layer.kind in (LayerKind.ADD, LayerKind.CONCAT)
            _check(multi or len(src) == 1, f"layer {i} ({layer.name!r}, {layer.kind.value})"
                   f" reads one tensor, not {len(src)}")
            shape, fmt = self.tensor_shape(src[0]), self.tensor_fmt(src[0])
            _check(tuple(layer.in_shape) == shape,
                   f"layer {i} ({layer.name!r}) expects input shape {tuple(layer.in_shape)},"
                   f" gets {shape}")
            _check(layer.in_fmt == fmt, f"layer {i} ({layer.name!r}) expects input {layer.in_fmt},"
                   f" gets {fmt}")
            self._validate_joins(i, layer, src)
            layer.validate(i)
            for j in src:
                if j >= 0 and self.layers[j].kind in MAC_KINDS and not self.layers[j].requant:
                    raise ArtifactError(f"layer {j} ({self.layers[j].name!r}) returns its"
                                        " accumulator but is not the last layer")
            if i != last:
                _check(bool(self.consumers(i)), f"layer {i} ({layer.name!r}): its output is"
                       " never used (only the last layer is the network output)")
        return self

    def _validate_joins(self, i, layer, src):
        where = f"layer {i} ({layer.name!r}, {layer.kind.value})"
        shapes = [self.tensor_shape(j) for j in src]
        if layer.kind is LayerKind.ADD:
            _check(all(s == shapes[0] for s in shapes),
                   f"{where}: inputs must have one shape, not {shapes}")
        elif layer.kind is LayerKind.CONCAT:
            _check(all(len(s) == 3 and s[1:] == shapes[0][1:] for s in shapes),
                   f"{where}: inputs must be (C, H, W) maps of one size, not {shapes}")
            fmts = {self.tensor_fmt(j) for j in src}
            _check(len(fmts) == 1, f"{where}: inputs must share one format, not {fmts}")
            _check(tuple(layer.out_shape)[:1] == (sum(s[0] for s in shapes),),
                   f"{where}: output channels {layer.out_shape[0]} != the sum of the inputs'")

    @property
    def output_scale(self):
        return self.layers[-1].out_scale

    def quantize_input(self, x):
        """Float input (N, *input_shape) -> integers in ``input_fmt``, round half to even."""
        q = np.rint(np.asarray(x, dtype=np.float64) / self.input_scale)
        return np.clip(q, self.input_fmt.min, self.input_fmt.max).astype(np.int64)

    def input_saturation(self, x):
        """Fraction of input values that :meth:`quantize_input` clips to the format's ends
        (reported, so no input is clipped silently)."""
        q = np.rint(np.asarray(x, dtype=np.float64) / self.input_scale)
        out = (q < self.input_fmt.min) | (q > self.input_fmt.max)
        return float(out.mean()) if out.size else 0.0

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
                if layer.requant
                and layer.kind in MAC_KINDS + (LayerKind.AVGPOOL, LayerKind.ADD)]
        return max(f.bits for f in fmts) if fmts else self.input_fmt.bits

    def summary_rows(self):
        rows = []
        for layer in self.layers:
            rows.append({
                "name": layer.name, "kind": layer.kind.value,
                "inputs": ",".join(str(j) for j in self.sources(len(rows))),
                "in": "x".join(map(str, layer.in_shape)),
                "out": "x".join(map(str, layer.out_shape)),
                "w": layer.w_fmt.bits if layer.w_fmt else "",
                "a_in": layer.in_fmt.bits, "a_out": layer.out_fmt.bits,
                "acc": layer.acc_fmt.bits if layer.kind in MAC_KINDS else "",
                "macs": layer.macs,
            })
        return rows

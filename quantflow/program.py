"""The Program: a QuantizedModel scheduled onto an overlay, its memory images and cycle model.

Pure numpy (no torch, no Amaranth). The hardware configuration is read by attribute only
(``rows``, ``cols``, ``act_bits``, depths, latencies and ``need``), so this module does not
import ``hwgen``; :class:`hwgen.config.AccelConfig` is the configuration it is written for.

Dataflow the descriptors encode (README "design notes"):

- Activations live in two memories (banks), one word per ``(pixel, group)`` holding ``cols``
  channels of ``act_bits`` each, pixel-major: word ``base + (y*W + x)*stride + g``. Every live
  tensor of the DAG gets its own region (:mod:`quantflow.alloc`: first fit over both banks,
  kept until its last reader; a chain gets the classic ping-pong). A tensor's lane map says
  which channel each lane of its ``groups`` words holds (``-1``: unused), so a concatenation
  costs nothing: its parts are written side by side (each from a word boundary) into one
  region whose pixel ``stride`` is the sum of the parts' groups, and a reader of the concat
  packs its weights by the joint lane map. Signed tensors are stored as two's complement lanes
  and the descriptor's ``a_signed``/``b_signed`` say how the datapath reads them. The network input
  may be wider than a lane: it is stored as ``digits = ceil(input_bits / act_bits)`` digits of
  ``act_bits`` in adjacent lanes (``cols // digits`` channels per word) and the PE shifts lane
  ``l``'s product left by ``act_bits * (l % digits)`` before the adder tree, so
  ``sum_d w * digit_d << (act_bits*d) == w * x`` exactly. Why digits in lanes rather than an
  activation path ``max(input_bits, act_bits)`` wide: the multipliers, the activation memories
  and the pool unit stay ``act_bits`` wide for every layer (at 2 bits an 8-bit path would make
  each multiplier 4x larger for the sake of one layer), and the first layer, whose input has
  few channels (1 for digits), fills otherwise idle lanes instead of taking extra cycles; when
  ``act_bits`` divides ``input_bits`` the digits are literally the input's bits, so packing is
  free. Cost: ``cols >= digits`` (checked by AccelConfig) and the network input cannot be
  pooled before a MAC layer (UnsupportedOpError). The accumulator is sized for
  ``max(input_bits, act_bits)`` so the first layer cannot overflow.
- Every MAC layer is a convolution: LINEAR reads its (flattened) input as a ``(C, H, W)`` map
  with a ``H x W`` kernel, so FLATTEN costs nothing (its output is its input, read in torch's
  ``C, H, W`` order by the host).
- A MAC layer runs ``tiles = ceil(O / rows)`` output-channel tiles; for each output pixel it
  issues ``steps = kh * kw * G_in`` array cycles (im2col addresses generated on the fly,
  padding read as zero), then the ``rows`` accumulators drain serially through bias add and
  requantization while the next pixel computes. Each pixel takes ``slots = max(steps, rows)``
  cycles, which makes the cycle count exact and the utilisation ``macs / (cycles * rows*cols)``.
- Pooling runs one ``cols``-channel group per tile, lane-wise max or sum over the window.
- A grouped or depthwise convolution runs as a convolution whose weights are zero between
  groups (each output channel reads only its own group's channels; the zero products cost
  cycles, which the throughput issue's depthwise mode removes).
- An add runs one ``cols``-channel group per tile: per pixel it reads the word of input A, then
  the word of input B (``src2_delta`` words away, in bank ``src2_buf``), and the drain rescales
  the lanes of each pair with their own ``(M, s)``, sums them and clamps
  (:func:`quantflow.numerics.add_requantize`): ``2 * cols`` drain cycles, so a pixel takes
  ``slots = 2 * cols + 1``.
"""

import enum
from dataclasses import dataclass, field

import numpy as np

from .alloc import Region, allocate
from .errors import UnsupportedOpError
from .numerics import split_digits, weight_digits
from .qmodel import LayerKind

__all__ = ["Op", "Buffer", "LayerDesc", "TensorLoc", "Program", "compile_program",
           "execute", "pack_input", "read_loc", "layer_cycles", "DESC_FIELDS", "add_slots"]


class Op(enum.Enum):
    """What the datapath does with the activation words of one layer."""
    MAC = 0
    MAX = 1
    SUM = 2
    ADD = 3


class Buffer(enum.Enum):
    """Where a tensor lives: one of the two activation banks or the logits memory."""
    ACT0 = 0
    ACT1 = 1
    ACC = 2


#: Descriptor fields in hardware order (hwgen.layouts builds the bit layout from this list).
DESC_FIELDS = (
    "op", "src_buf", "dst_buf", "to_acc", "bias_en", "requant_en", "a_signed", "b_signed",
    "src2_buf",
    "in_h", "in_w", "in_g", "px_words", "row_words", "sx_words", "sy_words", "src2_delta",
    "out_h", "out_w", "out_g",
    "kh", "kw", "sy", "sx", "py", "px",
    "tiles", "steps", "slots", "out_ch", "digits", "wdigits", "tdiv", "ginc",
    "w_base", "p_base", "src_base", "src_org", "dst_base", "lo", "hi",
)


@dataclass(frozen=True)
class LayerDesc:
    """One instruction of the sequencer: a whole layer (see the module docstring)."""
    op: Op
    src_buf: int
    dst_buf: int
    to_acc: bool
    bias_en: bool
    requant_en: bool
    a_signed: bool
    b_signed: bool
    src2_buf: int
    in_h: int
    in_w: int
    in_g: int
    px_words: int
    row_words: int
    sx_words: int
    sy_words: int
    src2_delta: int
    out_h: int
    out_w: int
    out_g: int
    kh: int
    kw: int
    sy: int
    sx: int
    py: int
    px: int
    tiles: int
    steps: int
    slots: int
    out_ch: int
    digits: int
    wdigits: int
    tdiv: int
    ginc: int
    w_base: int
    p_base: int
    src_base: int
    src_org: int
    dst_base: int
    lo: int
    hi: int

    def fields(self):
        """Every field as an int, keyed by name (the hardware encoding's input)."""
        out = {}
        for name in DESC_FIELDS:
            v = getattr(self, name)
            out[name] = v.value if isinstance(v, Op) else int(v)
        return out

    @property
    def pixels(self):
        return self.out_h * self.out_w

    @property
    def issue_slots(self):
        return self.tiles * self.pixels * self.slots


@dataclass(frozen=True, eq=False)
class TensorLoc:
    """Where and how one layer output (or the input) is stored.

    ``stored`` is ``(C, H, W)`` as laid out in words (a vector is ``(F, 1, 1)``); ``shape`` is
    the model's logical shape of the tensor. ``groups`` words per pixel hold its channels,
    ``stride`` words separate two pixels (more than ``groups`` for a part of a concat), and
    ``lanes[g, l]`` is the channel in lane ``l`` of group ``g`` (``-1``: unused; lane ``l``
    holds digit ``l % digits`` of its channel).
    """
    buf: Buffer
    base: int
    stored: tuple
    shape: tuple
    groups: int = 1
    digits: int = 1
    per_word: int = 1
    stride: int = 1
    lanes: np.ndarray | None = None
    signed: bool = False

    @property
    def words(self):
        c, h, w = self.stored
        if self.buf is Buffer.ACC:
            return c * h * w
        return (h * w - 1) * self.stride + self.groups

    def reshaped(self, shape):
        """The same words seen with another logical shape (a flatten)."""
        return TensorLoc(self.buf, self.base, self.stored, tuple(shape), self.groups,
                         self.digits, self.per_word, self.stride, self.lanes, self.signed)

    def at(self, buf, base, stride):
        return TensorLoc(buf, base, self.stored, self.shape, self.groups, self.digits,
                         self.per_word, stride, self.lanes, self.signed)


@dataclass(eq=False)
class Program:
    """Descriptors, memory images and the placement of every layer output."""
    name: str
    config_digest: str
    descs: list
    layer_desc: list          # model layer index -> descriptor index (None: FLATTEN, CONCAT)
    outputs: list             # model layer index -> TensorLoc
    input_loc: TensorLoc
    weights: np.ndarray       # (words, rows, cols) int64
    bias: np.ndarray          # (entries,) int64
    mult: np.ndarray          # (entries,) int64
    shift: np.ndarray         # (entries,) int64
    macs: list                # useful MACs per descriptor
    cycles: list              # analytical cycles per descriptor
    usage: dict = field(default_factory=dict)

    def memory_map(self):
        return dict(self.usage)

    def cycle_report(self, array_macs):
        """Rows of (descriptor, op, macs, cycles, utilisation) from the analytical model."""
        rows = []
        for i, (d, macs, cyc) in enumerate(zip(self.descs, self.macs, self.cycles, strict=True)):
            rows.append({"desc": i, "op": d.op.name, "macs": macs, "cycles": cyc,
                         "utilization": macs / (cyc * array_macs) if cyc else 0.0})
        return rows


def _ceil(a, b):
    return -(-a // b)


def add_slots(cfg):
    """Issue slots per pixel and group of an add: the drain's ``2 * cols`` pair cycles, and one
    more so input A of the next pixel never overwrites a pair still draining."""
    return 2 * cfg.cols + 1


def layer_cycles(desc, cfg):
    """Analytical (and, by construction, exact) cycles of one descriptor on the overlay."""
    flush = cfg.add_flush_cycles if desc.op is Op.ADD else cfg.layer_flush_cycles
    return cfg.layer_setup_cycles + desc.issue_slots + flush


def _lane_channels(cols, groups, digits, per_word, channels):
    """(groups, cols) channel index held by each lane, -1 for an unused lane."""
    g = np.arange(groups)[:, None]
    lane = np.arange(cols)[None, :]
    ch = g * per_word + lane // digits
    return np.where((lane < per_word * digits) & (ch < channels), ch, -1)


def _plain(cfg, buf, shape, signed, digits=1):
    """A tensor in its own words: channels in order, ``cols // digits`` per word."""
    c = shape[0]
    per_word = cfg.cols // digits
    groups = _ceil(c, per_word)
    return TensorLoc(buf, 0, tuple(shape), tuple(shape), groups, digits, per_word, groups,
                     _lane_channels(cfg.cols, groups, digits, per_word, c), bool(signed))


def _stored(shape):
    return tuple(shape) if len(shape) == 3 else (int(np.prod(shape)), 1, 1)


def _input_loc(model, cfg):
    shape = tuple(model.input_shape)
    stored = _stored(shape)
    readers = model.consumers(-1)
    if readers and all(model.layers[j].kind is LayerKind.FLATTEN for j in readers):
        # The host packs the input, so a network that starts by flattening gets its input
        # stored as a vector: the first linear layer then fills every lane (C*H*W channels)
        # instead of only the C channels of one pixel.
        stored = (int(np.prod(shape)), 1, 1)
    bits = model.input_fmt.bits
    cfg.need("input bits", bits, cfg.input_bits)
    digits = max(1, _ceil(bits, cfg.act_bits))
    loc = _plain(cfg, Buffer.ACT0, stored, model.input_fmt.signed, digits)
    return loc.reshaped(shape)


def _canonical_shift(mult, shift, cfg):
    """Shifts past ``shift_max`` make ``acc*M + round`` shift to exactly 0: encode as M=0, s=0."""
    mult = np.asarray(mult, dtype=np.int64).copy()
    shift = np.asarray(shift, dtype=np.int64).copy()
    big = shift > cfg.shift_max
    mult[big] = 0
    shift[big] = 0
    return mult, shift


class _Builder:
    def __init__(self, model, cfg):
        self.model, self.cfg = model, cfg
        self.weights, self.bias, self.mult, self.shift = [], [], [], []
        self.n_weights = self.n_params = 0
        self.descs, self.macs = [], []

    def params(self, bias, mult, shift):
        base = self.n_params
        self.bias.append(np.asarray(bias, dtype=np.int64))
        m, s = _canonical_shift(mult, shift, self.cfg)
        self.mult.append(m)
        self.shift.append(s)
        self.n_params += len(bias)
        return base

    def weight_words(self, w4, src, window, wdigits=1):
        """(O, C, kh, kw) weights -> (tiles*kh*kw*n*wdigits, rows, cols) words in sequencer
        order: tile t reads the ``n`` groups of its window (``window = (n, tdiv, ginc)``), a
        wide layer's signed weight digits innermost."""
        cfg = self.cfg
        if wdigits > 1:
            digits = split_digits(w4, cfg.weight_bits, wdigits)       # (D, O, C, kh, kw)
            per = [self._words(d, src, window) for d in digits]        # D x (T*kh*kw*n, ...)
            words = np.stack(per, axis=1).reshape(-1, cfg.rows, cfg.cols)
        else:
            words = self._words(w4, src, window)
        base = self.n_weights
        self.weights.append(words)
        self.n_weights += len(words)
        return base

    def _words(self, w4, src, window):
        cfg = self.cfg
        n, tdiv, ginc = window
        o, _, kh, kw = w4.shape
        tiles = _ceil(o, cfg.rows)
        wpad = np.zeros((tiles * cfg.rows, w4.shape[1] + 1, kh, kw), dtype=np.int64)
        wpad[:o, :-1] = w4  # channel index -1 (unused lane) reads the zero column
        out = []
        for t in range(tiles):
            g0 = (t // tdiv) * ginc
            lanes = src.lanes[g0:g0 + n]                              # (n, cols)
            # words[ky, kx, g, r, l] = wpad[t*rows + r, lanes[g, l], ky, kx]
            sel = wpad[t * cfg.rows:(t + 1) * cfg.rows][:, lanes]     # (rows, n, cols, kh, kw)
            out.append(sel.transpose(3, 4, 1, 0, 2).reshape(-1, cfg.rows, cfg.cols))
        return np.concatenate(out)

    def desc(self, **kw):
        # Address steps the sequencer adds instead of multiplying (iCE40 Fmax): modulo the
        # address width, because the origin of a padded layer lies before ``src_base``.
        wrap = 1 << self.cfg.act_addr_bits
        kw.setdefault("src2_buf", 0)
        kw.setdefault("src2_delta", 0)
        kw.setdefault("b_signed", False)
        kw.setdefault("wdigits", 1)
        kw.setdefault("tdiv", 1)
        kw.setdefault("ginc", 0)
        kw["row_words"] = kw["in_w"] * kw["px_words"] % wrap
        kw["sx_words"] = kw["sx"] * kw["px_words"] % wrap
        kw["sy_words"] = kw["sy"] * kw["row_words"] % wrap
        kw["src_org"] = (kw["src_base"] - kw["py"] * kw["row_words"]
                         - kw["px"] * kw["px_words"]) % wrap
        if (kw["a_signed"] or kw["b_signed"]) and not self.cfg.signed_acts:
            raise UnsupportedOpError(f"descriptor {len(self.descs)} ({kw['op'].name}) reads a"
                                     " signed tensor, but the configuration's lanes are"
                                     " unsigned (signed_acts=False)")
        kw["lo"] %= 1 << (self.cfg.act_bits + 1)   # two's complement in the field
        kw["hi"] %= 1 << (self.cfg.act_bits + 1)
        d = LayerDesc(**kw)
        self.descs.append(d)
        return d


def _dense_weight(layer, c_in):
    """Grouped weights (O, C/groups, kh, kw) as a dense (O, C, kh, kw) with zeros between
    groups: output channel o reads only the channels of its group."""
    w = layer.weight
    g = layer.groups
    if g == 1:
        return w
    o = w.shape[0]
    dense = np.zeros((o, c_in, *w.shape[2:]), dtype=np.int64)
    cg, og = c_in // g, o // g
    for n in range(o):
        grp = n // og
        dense[n, grp * cg:(grp + 1) * cg] = w[n]
    return dense


def _group_window(cfg, w4, src):
    """``(n, tdiv, ginc)``: each output tile reads only the ``n`` groups holding the input
    channels its rows have non-zero weights for, tile ``t`` from group ``(t // tdiv) * ginc``
    (a depthwise layer on a square array reads one group per tile instead of all of them).
    A dense layer, or any pattern no such window covers, reads every group (``n = G``)."""
    o = w4.shape[0]
    tiles, groups = _ceil(o, cfg.rows), src.groups
    used = np.abs(w4).reshape(o, w4.shape[1], -1).sum(axis=2) != 0     # (O, C)
    need = []
    for t in range(tiles):
        chans = np.nonzero(used[t * cfg.rows:(t + 1) * cfg.rows].any(axis=0))[0]
        words = np.nonzero(np.isin(src.lanes, chans).any(axis=1))[0]
        need.append((int(words.min()), int(words.max())) if len(words) else None)
    widest = max([hi - lo + 1 for lo, hi in filter(None, need)] or [1])
    for n in range(widest, groups):
        for tdiv in range(1, tiles + 1):
            ginc = _window_step(need, n, tdiv, groups)
            if ginc is not None:
                return n, tdiv, ginc
    return groups, 1, 0


def _window_step(need, n, tdiv, groups):
    """The step ``ginc`` with every tile's needed groups inside its window, or None."""
    lo_g, hi_g = 0, groups
    for t, span in enumerate(need):
        q = t // tdiv
        if span is None:
            continue
        lo, hi = span
        if q == 0:
            if hi > n - 1:
                return None
            continue
        # q*ginc <= lo, q*ginc >= hi - n + 1, q*ginc + n <= groups
        lo_g = max(lo_g, -(-(hi - n + 1) // q))
        hi_g = min(hi_g, lo // q, (groups - n) // q)
    if lo_g > hi_g:
        return None
    last_q = (len(need) - 1) // tdiv
    return lo_g if last_q * lo_g + n <= groups else None


def _mac_layer(b, i, layer, src, dst):
    cfg = b.cfg
    where = f"layer {i} ({layer.name!r})"
    c, h, w = src.stored
    if layer.kind is LayerKind.LINEAR:
        w4 = layer.weight.reshape(layer.weight.shape[0], c, h, w)
        kernel, stride, pad = (h, w), (1, 1), (0, 0)
    else:
        w4 = _dense_weight(layer, c)
        kernel, stride, pad = tuple(layer.kernel), tuple(layer.stride), tuple(layer.padding)
    o = w4.shape[0]
    ho, wo = dst.stored[1:]
    wdigits = weight_digits(layer.w_fmt, cfg.weight_bits)
    if wdigits > 1:  # wider than the lanes: signed digits, one pass each
        cfg.need(f"{where} weight bits", layer.w_fmt.bits, cfg.wide_w_fmt.bits)
        cfg.need(f"{where} weight digits", wdigits, cfg.weight_digits_max)
    cfg.need(f"{where} reduction length", layer.reduction, cfg.max_reduction)
    for name, v in (("kernel", max(kernel)), ("stride", max(stride)), ("padding", max(pad)),
                    ("output size", max(ho, wo))):
        cfg.need(f"{where} {name}", v, cfg.max_dim)
    if layer.requant:
        mult, shift = layer.mult, layer.shift
        cfg.need(f"{where} requantization multiplier", int(np.max(mult)),
                 (1 << cfg.mult_bits) - 1)
        cfg.need(f"{where} output bits", layer.out_fmt.bits, cfg.act_bits)
    else:
        mult = shift = np.zeros(o, dtype=np.int64)
    window = _group_window(cfg, w4, src)
    w_base = b.weight_words(w4, src, window, wdigits)
    p_base = b.params(layer.bias, mult, shift)
    steps = kernel[0] * kernel[1] * window[0] * wdigits
    b.desc(op=Op.MAC, src_buf=src.buf.value, dst_buf=dst.buf.value % 2,
           to_acc=not layer.requant, bias_en=True, requant_en=bool(layer.requant),
           a_signed=src.signed, in_h=h, in_w=w, in_g=window[0], px_words=src.stride,
           out_h=ho, out_w=wo, out_g=dst.stride if layer.requant else 0,
           kh=kernel[0], kw=kernel[1], sy=stride[0], sx=stride[1], py=pad[0], px=pad[1],
           tiles=_ceil(o, cfg.rows), steps=steps, slots=max(steps, cfg.rows), out_ch=o,
           digits=src.digits, wdigits=wdigits, tdiv=window[1], ginc=window[2], w_base=w_base,
           p_base=p_base, src_base=src.base,
           dst_base=dst.base, lo=int(layer.lo) if layer.requant else 0,
           hi=int(layer.hi) if layer.requant else 0)
    b.macs.append(layer.macs)


def _written_channels(cfg, loc):
    """Lanes a lane-wise op (pool, add) writes: the channels in order when the lane map is the
    plain one, else every lane of every group (a concat's map has gaps; the output keeps it)."""
    c = loc.stored[0]
    if np.array_equal(loc.lanes.reshape(-1)[:c], np.arange(c)):
        return c
    return loc.groups * cfg.cols


def _pool_layer(b, i, layer, src, dst):
    cfg = b.cfg
    where = f"layer {i} ({layer.name!r})"
    if src.digits != 1:
        raise UnsupportedOpError(f"{where}: pooling the {layer.in_fmt.bits}-bit network input"
                                 f" needs activation lanes of that width, not {cfg.act_bits}")
    c, h, w = src.stored
    kernel, stride, pad = tuple(layer.kernel), tuple(layer.stride), tuple(layer.padding)
    _, ho, wo = layer.out_shape
    for name, v in (("kernel", max(kernel)), ("stride", max(stride)), ("padding", max(pad))):
        cfg.need(f"{where} {name}", v, cfg.max_dim)
    cfg.need(f"{where} window", kernel[0] * kernel[1], cfg.max_reduction)
    avg = layer.kind is LayerKind.AVGPOOL
    n_ch = _written_channels(cfg, src)
    if avg and layer.requant:
        cfg.need(f"{where} output bits", layer.out_fmt.bits, cfg.act_bits)
        p_base = b.params(np.zeros(n_ch, np.int64), np.full(n_ch, int(layer.mult[0])),
                          np.full(n_ch, int(layer.shift[0])))
        cfg.need(f"{where} requantization multiplier", int(layer.mult[0]),
                 (1 << cfg.mult_bits) - 1)
    else:
        p_base = 0
    if avg and not layer.requant:
        raise UnsupportedOpError(f"{where}: average pooling must requantize its window sum")
    steps = kernel[0] * kernel[1]
    b.desc(op=Op.SUM if avg else Op.MAX, src_buf=src.buf.value, dst_buf=dst.buf.value,
           to_acc=False, bias_en=False, requant_en=avg, a_signed=src.signed,
           in_h=h, in_w=w, in_g=src.groups, px_words=src.stride,
           out_h=ho, out_w=wo, out_g=dst.stride,
           kh=kernel[0], kw=kernel[1], sy=stride[0], sx=stride[1], py=pad[0], px=pad[1],
           tiles=src.groups, steps=steps, slots=max(steps, cfg.cols), out_ch=n_ch, digits=1,
           w_base=0, p_base=p_base, src_base=src.base, dst_base=dst.base,
           lo=int(layer.lo) if avg else 0, hi=int(layer.hi) if avg else 0)
    b.macs.append(0)


def _add_layer(b, i, layer, srcs, dst):
    cfg = b.cfg
    where = f"layer {i} ({layer.name!r})"
    if len(srcs) != 2:
        raise UnsupportedOpError(f"{where}: the overlay adds two tensors, not {len(srcs)}")
    a, bb = srcs
    if a.digits != 1 or bb.digits != 1:
        raise UnsupportedOpError(f"{where}: adding the {cfg.input_bits}-bit network input needs"
                                 f" activation lanes of that width, not {cfg.act_bits}")
    if a.stride != bb.stride or not np.array_equal(a.lanes, bb.lanes):
        raise UnsupportedOpError(f"{where}: the two inputs of an add must have one layout (a"
                                 " concat part cannot be added to a plain tensor)")
    cfg.need(f"{where} output bits", layer.out_fmt.bits, cfg.act_bits)
    cfg.need(f"{where} requantization multiplier", int(np.max(layer.mult)),
             (1 << cfg.mult_bits) - 1)
    c, h, w = a.stored
    wrap = 1 << cfg.act_addr_bits
    p_base = b.params(np.zeros(2, np.int64), layer.mult, layer.shift)
    b.desc(op=Op.ADD, src_buf=a.buf.value, dst_buf=dst.buf.value, to_acc=False,
           bias_en=False, requant_en=True, a_signed=a.signed, b_signed=bb.signed,
           src2_buf=bb.buf.value, src2_delta=(bb.base - a.base) % wrap,
           in_h=h, in_w=w, in_g=a.groups, px_words=a.stride, out_h=h, out_w=w,
           out_g=dst.stride, kh=1, kw=1, sy=1, sx=1, py=0, px=0, tiles=a.groups, steps=2,
           slots=add_slots(cfg), out_ch=_written_channels(cfg, a), digits=1, w_base=0,
           p_base=p_base, src_base=a.base, dst_base=dst.base, lo=int(layer.lo),
           hi=int(layer.hi))
    b.macs.append(0)


def _cat(parts, empty):
    return np.concatenate(parts) if parts else empty


def _layouts(model, cfg, input_loc):
    """Each layer output's TensorLoc before placement (bank 0, base 0), the concat each tensor
    is a part of, and the tensor whose words each tensor shares (a flatten's source)."""
    locs, part_of, alias = {-1: input_loc}, {}, {}
    for i, layer in enumerate(model.layers):
        src = model.sources(i)
        where = f"layer {i} ({layer.name!r})"
        kind, shape = layer.kind, tuple(layer.out_shape)
        signed = layer.out_fmt.signed
        if kind is LayerKind.FLATTEN:
            locs[i], alias[i] = locs[src[0]].reshaped(shape), src[0]
        elif kind in (LayerKind.CONV2D, LayerKind.LINEAR):
            if layer.requant:
                locs[i] = _plain(cfg, Buffer.ACT0, _stored(shape), signed).reshaped(shape)
            else:
                locs[i] = TensorLoc(Buffer.ACC, 0, _stored(shape), shape)
        elif kind in (LayerKind.MAXPOOL, LayerKind.AVGPOOL, LayerKind.ADD):
            s = locs[src[0]]
            locs[i] = TensorLoc(Buffer.ACT0, 0, _stored(shape), shape, s.groups, 1, s.per_word,
                                s.groups, s.lanes, signed)
        else:  # CONCAT: the parts side by side, each from a word boundary
            lanes, offset = [], 0
            for j in src:
                p = locs[j]
                if j < 0 or j in alias or j in part_of or p.buf is Buffer.ACC or p.digits != 1 \
                        or model.layers[j].kind is LayerKind.CONCAT or len(model.consumers(j)) \
                        and any(model.layers[k].kind is LayerKind.CONCAT and k != i
                                for k in model.consumers(j)):
                    raise UnsupportedOpError(
                        f"{where}: concat input {j} must be a Conv2d/Linear, pool or add output"
                        " read by no other concat (the network input, a flatten or a concat"
                        " cannot be placed inside one)")
                part_of[j] = i
                lanes.append(np.where(p.lanes >= 0, p.lanes + offset, -1))
                offset += p.stored[0]
            lanes = np.concatenate(lanes)
            locs[i] = TensorLoc(Buffer.ACT0, 0, _stored(shape), shape, len(lanes), 1, cfg.cols,
                                len(lanes), lanes, signed)
    return locs, part_of, alias


def _root(t, alias, part_of):
    while t in alias:
        t = alias[t]
    return part_of.get(t, t)


def _place(model, cfg, locs, part_of, alias):
    """Regions for every root tensor (first fit, kept until the last reader)."""
    n = len(model.layers)
    last, first = {}, {}
    for i in range(n):
        for j in model.sources(i):
            r = _root(j, alias, part_of)
            last[r] = max(last.get(r, -1), i)
    for t in [-1, *range(n)]:
        r = _root(t, alias, part_of)
        first[r] = min(first.get(r, n), t)
        last.setdefault(r, n)  # the output stays to the end
    requests = []
    for r in sorted(first, key=lambda k: (first[k], k)):
        if r == -1 or locs[r].buf is Buffer.ACC or r in alias:
            continue
        requests.append((r, locs[r].words, first[r], last[r]))
    fixed = [(-1, Region(0, 0, locs[-1].words, -1, last[-1]))] if -1 not in alias else []
    regions = allocate(requests, fixed)
    placed = {}
    for t in [-1, *range(n)]:
        loc = locs[t]
        if loc.buf is Buffer.ACC:
            placed[t] = loc
            continue
        r = _root(t, alias, part_of)
        reg = regions[r]
        if t in part_of or (t in alias and _root(t, alias, {}) in part_of):
            owner = locs[r]
            part = _root(t, alias, {})
            offset = _group_offset(model, locs, part, part_of[part])
            placed[t] = loc.at(Buffer(reg.bank), reg.base + offset, owner.stride)
        else:
            placed[t] = loc.at(Buffer(reg.bank), reg.base, loc.stride)
    return placed, regions


def _group_offset(model, locs, part, cat):
    offset = 0
    for j in model.sources(cat):
        if j == part:
            return offset
        offset += locs[j].groups
    raise AssertionError("a concat part is one of its sources")


def compile_program(model, cfg):
    """QuantizedModel + configuration -> :class:`Program` (deterministic).

    Raises
    ------
    UnsupportedOpError
        For a layer the overlay cannot run (pooling the wide network input, a concat it cannot
        lay out, an add of two layouts).
    Whatever ``cfg.need`` raises (``hwgen.errors.DoesNotFitError``)
        When a buffer, a field or a word length of the configuration is too small.
    """
    model.validate()
    b = _Builder(model, cfg)
    input_loc = _input_loc(model, cfg)
    locs, part_of, alias = _layouts(model, cfg, input_loc)
    placed, regions = _place(model, cfg, locs, part_of, alias)
    input_loc = placed[-1]
    outputs, layer_desc = [], []
    for i, layer in enumerate(model.layers):
        srcs = [placed[j] for j in model.sources(i)]
        for j, s in zip(model.sources(i), srcs, strict=True):
            if _root(j, alias, {}) >= 0 and s.buf is not Buffer.ACC \
                    and layer.kind is not LayerKind.FLATTEN:
                cfg.need(f"layer {i} ({layer.name!r}) input bits", model.tensor_fmt(j).bits,
                         cfg.act_bits)
        if any(s.buf is Buffer.ACC for s in srcs) and layer.kind is not LayerKind.FLATTEN:
            raise UnsupportedOpError(f"layer {i} ({layer.name!r}) follows a layer that"
                                     " returns its accumulator")
        dst = placed[i]
        if layer.kind in (LayerKind.FLATTEN, LayerKind.CONCAT):
            layer_desc.append(None)
        else:
            layer_desc.append(len(b.descs))
            if layer.kind in (LayerKind.CONV2D, LayerKind.LINEAR):
                _mac_layer(b, i, layer, srcs[0], dst)
            elif layer.kind is LayerKind.ADD:
                _add_layer(b, i, layer, srcs, dst)
            else:
                _pool_layer(b, i, layer, srcs[0], dst)
        outputs.append(dst)
    act_words = max([0] + [reg.end for reg in regions.values()])
    acc_words = max([0] + [o.words for o in outputs if o.buf is Buffer.ACC])
    busiest = max(regions.values(), key=lambda r: r.end)
    at = "the network input" if busiest.first < 0 else \
        f"layer {busiest.first} ({model.layers[busiest.first].name!r})"
    cfg.need(f"activation memory (words per bank; the live tensors at {at})", act_words,
             cfg.act_depth)
    cfg.need("weight memory (words)", b.n_weights, cfg.weight_depth)
    cfg.need("bias/requantization memory (entries)", b.n_params, cfg.param_depth)
    cfg.need("logits memory (entries)", acc_words, cfg.acc_depth)
    cfg.need("program memory (layer descriptors)", len(b.descs), cfg.max_layers)
    for d in b.descs:
        cfg.need("feature map size", max(d.in_h, d.in_w), cfg.max_dim)
    empty = np.zeros((0, cfg.rows, cfg.cols), dtype=np.int64)
    prog = Program(
        name=model.name, config_digest=cfg.digest, descs=b.descs, layer_desc=layer_desc,
        outputs=outputs, input_loc=input_loc,
        weights=_cat(b.weights, empty), bias=_cat(b.bias, np.zeros(0, np.int64)),
        mult=_cat(b.mult, np.zeros(0, np.int64)), shift=_cat(b.shift, np.zeros(0, np.int64)),
        macs=b.macs, cycles=[layer_cycles(d, cfg) for d in b.descs])
    prog.usage = {"weight_words": b.n_weights, "param_entries": b.n_params,
                  "act_words": act_words, "acc_words": acc_words, "descriptors": len(b.descs)}
    return prog


from .progmodel import execute, pack_input, read_loc  # noqa: E402  (re-exported)

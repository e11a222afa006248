"""The Program: a QuantizedModel scheduled onto an overlay, its memory images and cycle model.

Pure numpy (no torch, no Amaranth). The hardware configuration is read by attribute only
(``rows``, ``cols``, ``act_bits``, depths, latencies and ``need``), so this module does not
import ``hwgen``; :class:`hwgen.config.AccelConfig` is the configuration it is written for.

Dataflow the descriptors encode (README "design notes"):

- Activations live in two ping-pong memories, one word per ``(pixel, group)`` holding ``cols``
  channels of ``act_bits`` each, pixel-major: word ``base + (y*W + x)*G + g``. The network input
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
"""

import enum
from dataclasses import dataclass, field

import numpy as np

from .errors import UnsupportedOpError
from .numerics import requantize
from .qmodel import LayerKind

__all__ = ["Op", "Buffer", "LayerDesc", "TensorLoc", "Program", "compile_program",
           "execute", "pack_input", "read_loc", "layer_cycles", "DESC_FIELDS"]


class Op(enum.Enum):
    """What the datapath does with the activation words of one layer."""
    MAC = 0
    MAX = 1
    SUM = 2


class Buffer(enum.Enum):
    """Where a tensor lives: one of the ping-pong activation memories or the logits memory."""
    ACT0 = 0
    ACT1 = 1
    ACC = 2


#: Descriptor fields in hardware order (hwgen.layouts builds the bit layout from this list).
DESC_FIELDS = (
    "op", "src_buf", "dst_buf", "to_acc", "bias_en", "requant_en",
    "in_h", "in_w", "in_g", "row_words", "sx_words", "sy_words", "out_h", "out_w", "out_g",
    "kh", "kw", "sy", "sx", "py", "px",
    "tiles", "steps", "slots", "out_ch", "digits",
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
    in_h: int
    in_w: int
    in_g: int
    row_words: int
    sx_words: int
    sy_words: int
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


@dataclass(frozen=True)
class TensorLoc:
    """Where and how one layer output (or the input) is stored.

    ``stored`` is ``(C, H, W)`` as laid out in words (a vector is ``(F, 1, 1)``); ``shape`` is
    the model's logical shape of the tensor.
    """
    buf: Buffer
    base: int
    stored: tuple
    shape: tuple
    groups: int = 1
    digits: int = 1
    per_word: int = 1

    @property
    def words(self):
        c, h, w = self.stored
        if self.buf is Buffer.ACC:
            return c * h * w
        return h * w * self.groups


@dataclass(eq=False)
class Program:
    """Descriptors, memory images and the placement of every layer output."""
    name: str
    config_digest: str
    descs: list
    layer_desc: list          # model layer index -> descriptor index (None for FLATTEN)
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


def layer_cycles(desc, cfg):
    """Analytical (and, by construction, exact) cycles of one descriptor on the overlay."""
    return cfg.layer_setup_cycles + desc.issue_slots + cfg.layer_flush_cycles


def _lane_channels(cols, groups, digits, per_word, channels):
    """(groups, cols) channel index held by each lane, -1 for an unused lane."""
    g = np.arange(groups)[:, None]
    lane = np.arange(cols)[None, :]
    ch = g * per_word + lane // digits
    return np.where((lane < per_word * digits) & (ch < channels), ch, -1)


def _input_loc(model, cfg):
    shape = tuple(model.input_shape)
    stored = shape if len(shape) == 3 else (shape[0], 1, 1)
    if model.layers[0].kind is LayerKind.FLATTEN:
        # The host packs the input, so a network that starts by flattening gets its input
        # stored as a vector: the first linear layer then fills every lane (C*H*W channels)
        # instead of only the C channels of one pixel.
        stored = (int(np.prod(shape)), 1, 1)
    bits = model.input_fmt.bits
    if model.input_fmt.signed:
        raise UnsupportedOpError("the network input must be unsigned, not"
                                 f" {model.input_fmt}")
    cfg.need("input bits", bits, cfg.input_bits)
    digits = max(1, _ceil(bits, cfg.act_bits))
    per_word = cfg.cols // digits
    return TensorLoc(Buffer.ACT0, 0, stored, shape, _ceil(stored[0], per_word), digits, per_word)


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

    def weight_words(self, w4, src):
        """(O, C, kh, kw) weights -> (tiles*kh*kw*G, rows, cols) words in sequencer order."""
        cfg = self.cfg
        o, _, kh, kw = w4.shape
        tiles = _ceil(o, cfg.rows)
        lanes = _lane_channels(cfg.cols, src.groups, src.digits, src.per_word, src.stored[0])
        wpad = np.zeros((tiles * cfg.rows, w4.shape[1] + 1, kh, kw), dtype=np.int64)
        wpad[:o, :-1] = w4  # channel index -1 (unused lane) reads the zero column
        # words[t, ky, kx, g, r, l] = wpad[t*rows + r, lanes[g, l], ky, kx]
        sel = wpad[:, lanes]                      # (T*rows, G, cols, kh, kw)
        sel = sel.reshape(tiles, cfg.rows, src.groups, cfg.cols, kh, kw)
        words = sel.transpose(0, 4, 5, 2, 1, 3).reshape(-1, cfg.rows, cfg.cols)
        base = self.n_weights
        self.weights.append(words)
        self.n_weights += len(words)
        return base

    def desc(self, **kw):
        # Address steps the sequencer adds instead of multiplying (iCE40 Fmax): modulo the
        # address width, because the origin of a padded layer lies before ``src_base``.
        wrap = 1 << self.cfg.act_addr_bits
        kw["sx_words"] = kw["sx"] * kw["in_g"] % wrap
        kw["sy_words"] = kw["sy"] * kw["row_words"] % wrap
        kw["src_org"] = (kw["src_base"] - kw["py"] * kw["row_words"]
                         - kw["px"] * kw["in_g"]) % wrap
        d = LayerDesc(**kw)
        self.descs.append(d)
        return d


def _act_out(cfg, buf, shape):
    c, h, w = shape
    return TensorLoc(buf, 0, shape, shape, _ceil(c, cfg.cols), 1, cfg.cols)


def _mac_layer(b, i, layer, src):
    cfg = b.cfg
    where = f"layer {i} ({layer.name!r})"
    c, h, w = src.stored
    if layer.kind is LayerKind.LINEAR:
        w4 = layer.weight.reshape(layer.weight.shape[0], c, h, w)
        kernel, stride, pad = (h, w), (1, 1), (0, 0)
    else:
        w4 = layer.weight
        kernel, stride, pad = tuple(layer.kernel), tuple(layer.stride), tuple(layer.padding)
    o = w4.shape[0]
    ho = (h + 2 * pad[0] - kernel[0]) // stride[0] + 1
    wo = (w + 2 * pad[1] - kernel[1]) // stride[1] + 1
    cfg.need(f"{where} weight bits", layer.w_fmt.bits, cfg.weight_bits)
    cfg.need(f"{where} reduction length", layer.reduction, cfg.max_reduction)
    for name, v in (("kernel", max(kernel)), ("stride", max(stride)), ("padding", max(pad)),
                    ("output size", max(ho, wo))):
        cfg.need(f"{where} {name}", v, cfg.max_dim)
    if layer.requant:
        mult, shift = layer.mult, layer.shift
        cfg.need(f"{where} requantization multiplier", int(np.max(mult)),
                 (1 << cfg.mult_bits) - 1)
        _check_out_fmt(cfg, where, layer)
    else:
        mult = shift = np.zeros(o, dtype=np.int64)
    stored = (o, ho, wo)
    if layer.requant:
        dst = _act_out(cfg, Buffer(1 - src.buf.value), stored)
    else:
        dst = TensorLoc(Buffer.ACC, 0, stored, stored)
    w_base = b.weight_words(w4, src)
    p_base = b.params(layer.bias, mult, shift)
    steps = kernel[0] * kernel[1] * src.groups
    b.desc(op=Op.MAC, src_buf=src.buf.value, dst_buf=dst.buf.value % 2,
           to_acc=not layer.requant, bias_en=True, requant_en=bool(layer.requant),
           in_h=h, in_w=w, in_g=src.groups, row_words=w * src.groups,
           out_h=ho, out_w=wo, out_g=dst.groups if layer.requant else 0,
           kh=kernel[0], kw=kernel[1], sy=stride[0], sx=stride[1], py=pad[0], px=pad[1],
           tiles=_ceil(o, cfg.rows), steps=steps, slots=max(steps, cfg.rows), out_ch=o,
           digits=src.digits, w_base=w_base, p_base=p_base, src_base=src.base,
           dst_base=dst.base, lo=int(layer.lo) if layer.requant else 0,
           hi=int(layer.hi) if layer.requant else 0)
    b.macs.append(layer.macs)
    return dst


def _check_out_fmt(cfg, where, layer):
    if layer.out_fmt.signed:
        raise UnsupportedOpError(f"{where}: requantized outputs must be unsigned, not"
                                 f" {layer.out_fmt}")
    cfg.need(f"{where} output bits", layer.out_fmt.bits, cfg.act_bits)


def _pool_layer(b, i, layer, src):
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
    dst = _act_out(cfg, Buffer(1 - src.buf.value), (c, ho, wo))
    avg = layer.kind is LayerKind.AVGPOOL
    if avg and layer.requant:
        _check_out_fmt(cfg, where, layer)
        p_base = b.params(np.zeros(c, np.int64), np.full(c, int(layer.mult[0])),
                          np.full(c, int(layer.shift[0])))
        cfg.need(f"{where} requantization multiplier", int(layer.mult[0]),
                 (1 << cfg.mult_bits) - 1)
    else:
        p_base = 0
    if avg and not layer.requant:
        raise UnsupportedOpError(f"{where}: average pooling must requantize its window sum")
    steps = kernel[0] * kernel[1]
    b.desc(op=Op.SUM if avg else Op.MAX, src_buf=src.buf.value, dst_buf=dst.buf.value,
           to_acc=False, bias_en=False, requant_en=avg,
           in_h=h, in_w=w, in_g=src.groups, row_words=w * src.groups,
           out_h=ho, out_w=wo, out_g=dst.groups,
           kh=kernel[0], kw=kernel[1], sy=stride[0], sx=stride[1], py=pad[0], px=pad[1],
           tiles=src.groups, steps=steps, slots=max(steps, cfg.cols), out_ch=c, digits=1,
           w_base=0, p_base=p_base, src_base=src.base, dst_base=dst.base,
           lo=int(layer.lo) if avg else 0, hi=int(layer.hi) if avg else 0)
    b.macs.append(0)
    return dst


def _cat(parts, empty):
    return np.concatenate(parts) if parts else empty


def compile_program(model, cfg):
    """QuantizedModel + configuration -> :class:`Program` (deterministic).

    Raises
    ------
    UnsupportedOpError
        For a layer the overlay cannot run (pooling the wide network input, signed outputs).
    Whatever ``cfg.need`` raises (``hwgen.errors.DoesNotFitError``)
        When a buffer, a field or a word length of the configuration is too small.
    """
    model.validate()
    b = _Builder(model, cfg)
    loc = _input_loc(model, cfg)
    input_loc = loc
    outputs, layer_desc = [], []
    reads_input = True  # the network input may be wider than a lane (read as digits)
    for i, layer in enumerate(model.layers):
        if not reads_input and layer.kind is not LayerKind.FLATTEN:
            cfg.need(f"layer {i} ({layer.name!r}) input bits", layer.in_fmt.bits, cfg.act_bits)
        if layer.kind is LayerKind.FLATTEN:
            loc = TensorLoc(loc.buf, loc.base, loc.stored, tuple(layer.out_shape),
                            loc.groups, loc.digits, loc.per_word)
            layer_desc.append(None)
        else:
            if loc.buf is Buffer.ACC:
                raise UnsupportedOpError(f"layer {i} ({layer.name!r}) follows a layer that"
                                         " returns its accumulator")
            layer_desc.append(len(b.descs))
            reads_input = False
            if layer.kind in (LayerKind.CONV2D, LayerKind.LINEAR):
                loc = _mac_layer(b, i, layer, loc)
            else:
                loc = _pool_layer(b, i, layer, loc)
            loc = TensorLoc(loc.buf, loc.base, loc.stored, tuple(layer.out_shape), loc.groups,
                            loc.digits, loc.per_word)
        outputs.append(loc)
    act_words = max([input_loc.words] + [o.words for o in outputs if o.buf is not Buffer.ACC])
    acc_words = max([0] + [o.words for o in outputs if o.buf is Buffer.ACC])
    cfg.need("activation memory (words per ping-pong bank)", act_words, cfg.act_depth)
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


# -- software model: the Program executed the way the hardware does -----------------------------

def pack_input(program, cfg, x):
    """One input (``input_shape``) -> (words, cols) lane values of the activation memory."""
    loc = program.input_loc
    c, h, w = loc.stored
    x = np.asarray(x, dtype=np.int64).reshape(c, h * w)  # torch order: a flatten is a reshape
    lanes = _lane_channels(cfg.cols, loc.groups, loc.digits, loc.per_word, c)  # (G, cols)
    digit = np.arange(cfg.cols) % loc.digits
    xpad = np.concatenate([x, np.zeros((1, h * w), np.int64)])              # row -1 = zero
    vals = xpad[lanes]                                                      # (G, cols, HW)
    vals = (vals >> (cfg.act_bits * digit)[None, :, None]) & ((1 << cfg.act_bits) - 1)
    return vals.transpose(2, 0, 1).reshape(h * w * loc.groups, cfg.cols)


def read_loc(loc, cfg, act, acc):
    """Read a tensor from memory state (act: two (depth, cols) arrays; acc: (depth,))."""
    c, h, w = loc.stored
    if loc.buf is Buffer.ACC:
        flat = acc[loc.base:loc.base + c * h * w].reshape(h * w, c)
        out = flat.T.reshape(c, h, w)
    else:
        words = act[loc.buf.value][loc.base:loc.base + loc.words]
        lanes = words.reshape(h * w, loc.groups, cfg.cols)[:, :, :loc.per_word * loc.digits]
        digits = lanes.reshape(h * w, loc.groups * loc.per_word, loc.digits)[:, :c]
        weight = 1 << (cfg.act_bits * np.arange(loc.digits))
        out = (digits * weight).sum(axis=2).T.reshape(c, h, w)
    return out.reshape(loc.shape)


def _run_desc(d, cfg, act, acc, program):
    src, dst = act[d.src_buf], act[d.dst_buf]
    oy, ox = np.divmod(np.arange(d.pixels), d.out_w)
    k = np.arange(d.steps)
    inner_g = d.in_g if d.op is Op.MAC else 1
    g_step, tap = k % inner_g, k // inner_g
    ky, kx = tap // d.kw, tap % d.kw
    iy = oy[:, None] * d.sy - d.py + ky[None, :]
    ix = ox[:, None] * d.sx - d.px + kx[None, :]
    inside = (iy >= 0) & (iy < d.in_h) & (ix >= 0) & (ix < d.in_w)
    nfull = cfg.rows if d.op is Op.MAC else cfg.cols
    lane_shift = cfg.act_bits * (np.arange(cfg.cols) % d.digits)
    for t in range(d.tiles):
        g = g_step if d.op is Op.MAC else np.full_like(k, t)
        # The sequencer's sums (origin + pixel steps + tap offsets), modulo the address width;
        # equal to src_base + iy*row_words + ix*in_g + g wherever the tap is inside the map.
        addr = (d.src_org + oy[:, None] * d.sy_words + ox[:, None] * d.sx_words
                + ky[None, :] * d.row_words + kx[None, :] * d.in_g + g[None, :])
        addr %= 1 << cfg.act_addr_bits
        a = np.where(inside[..., None], src[np.where(inside, addr, 0)], 0)  # (P, S, cols)
        if d.op is Op.MAC:
            w = program.weights[d.w_base + t * d.steps + k]                    # (S, rows, cols)
            vec = np.einsum("psc,src->pr", a << lane_shift, w)
        elif d.op is Op.MAX:
            vec = a.max(axis=1)
        else:
            vec = a.sum(axis=1)
        n = min(nfull, d.out_ch - t * nfull)
        ch = t * nfull + np.arange(n)
        v = vec[:, :n]
        if d.bias_en:
            v = v + program.bias[d.p_base + ch][None, :]
        if d.requant_en:
            v = requantize(v, program.mult[d.p_base + ch][None, :],
                           program.shift[d.p_base + ch][None, :], d.lo, d.hi)
        pix = np.arange(d.pixels)[:, None]
        if d.to_acc:
            acc[d.dst_base + pix * d.out_ch + ch[None, :]] = v
        else:
            dst[d.dst_base + pix * d.out_g + (ch // cfg.cols)[None, :],
                (ch % cfg.cols)[None, :]] = v


def execute(program, cfg, x):
    """Run one input through the Program on a model of the memories; every layer's output.

    Returns a list, one int64 array per model layer, shaped like ``quantflow.reference.run``'s
    outputs without the batch axis.
    """
    act = [np.zeros((cfg.act_depth, cfg.cols), np.int64) for _ in range(2)]
    acc = np.zeros(cfg.acc_depth, np.int64)
    words = pack_input(program, cfg, x)
    act[program.input_loc.buf.value][:len(words)] = words
    outs = []
    for i, loc in enumerate(program.outputs):
        di = program.layer_desc[i]
        if di is not None:
            _run_desc(program.descs[di], cfg, act, acc, program)
        outs.append(read_loc(loc, cfg, act, acc))
    return outs

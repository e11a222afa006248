"""Descriptors of a Program, one per layer kind: MAC (dense, grouped, wide weights as digits),
pooling and the add, with the weight and parameter memory images they index.

Pure numpy; :func:`quantflow.program.compile_program` calls these in layer order.
"""

import numpy as np

from .errors import UnsupportedOpError
from .numerics import split_digits, weight_digits
from .program import LayerDesc, Op, _ceil, add_slots
from .qmodel import LayerKind

__all__ = ["out_position", "drain_group"]


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
        lanes = self.cfg.drain_lanes  # a block starts at a parameter word (drain_lanes entries)
        if self.n_params % lanes:
            pad = lanes - self.n_params % lanes
            for lst in (self.bias, self.mult, self.shift):
                lst.append(np.zeros(pad, dtype=np.int64))
            self.n_params += pad
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
        kw["lo"] %= 1 << self.cfg.clamp_bits   # two's complement in the field
        kw["hi"] %= 1 << self.cfg.clamp_bits
        d = LayerDesc(**kw)
        self.descs.append(d)
        return d


def out_position(cfg, per_tile, digits):
    """Where a layer's results go in its output words, from its output digits alone.

    Element ``c`` (a channel, or a lane of a pooled/added map) of a tensor with ``digits``
    digits and ``p = cols // digits`` elements per word goes to word ``c // p``, lanes
    ``(c % p) * digits`` .. ``+ digits - 1``. Each tile moves ``per_tile`` elements on (``rows``
    for a MAC layer, ``cols`` for the lane-wise ops): ``word_inc`` words and ``lane_inc`` lanes,
    with a carry into the next word at ``lane_wrap``; the drain steps ``digits`` lanes per
    element and starts the next word after ``lane_last``. The gateware builds the same table
    for every ``digits`` at elaboration (the sequencer and the drain only add and compare)."""
    per_word = cfg.cols // digits
    return dict(word_inc=per_tile // per_word, lane_inc=(per_tile % per_word) * digits,
                lane_wrap=per_word * digits, lane_last=(per_word - 1) * digits)


def drain_group(cfg, digits, per_vector=None):
    """Results drained per cycle from a vector of ``per_vector`` elements (a MAC layer's
    ``rows``, the default; max pooling's ``cols`` lanes) with ``digits``-digit outputs: the
    largest power of two up to ``cfg.drain_lanes`` that divides ``per_vector`` (a vector
    splits into whole groups) and ``cols // digits`` (a group never straddles two words).
    An add drains a MAC layer's group of pairs every two cycles (A's lanes, then B's);
    average pooling and logits one element per cycle. The gateware builds the
    same table at elaboration."""
    g, n = cfg.drain_lanes, cfg.rows if per_vector is None else per_vector
    while g > 1 and (n % g or (cfg.cols // digits) % g):
        g //= 2
    return g


def _odigits(dst):
    """Digits per written element: the output tensor's (1 for logits)."""
    return dst.digits if dst is not None and dst.buf.value != 2 else 1


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
    if cfg.bipolar_weights and getattr(layer, "groups", 1) > 1:
        raise UnsupportedOpError(
            f"{where} is a grouped convolution: the array runs it with zero weights between"
            " groups, and a bipolar 1-bit weight lane has no zero (it holds +-1): it needs"
            " weight lanes of 2+ bits")
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
        cfg.need(f"{where} output bits", layer.out_fmt.bits, cfg.wide_act_bits)
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
           tiles=_ceil(o, cfg.rows), steps=steps,
           slots=max(steps, _ceil(cfg.rows, drain_group(cfg, _odigits(dst))
                                  if layer.requant else 1)), out_ch=o,
           digits=src.digits, wdigits=wdigits, tdiv=window[1], ginc=window[2], w_base=w_base,
           p_base=p_base, src_base=src.base,
           dst_base=dst.base, lo=int(layer.lo) if layer.requant else 0,
           hi=int(layer.hi) if layer.requant else 0, odigits=_odigits(dst))
    b.macs.append(layer.macs)


def _written_channels(cfg, loc, joined):
    """Elements a lane-wise op (pool, add) writes: the channels in order when the lane map is
    the plain one or the op joins digits into values (``joined``: a sum or an add; a tensor
    of digits is always plain), else every lane of every group (a concat's map has gaps and
    max pooling keeps digit lanes; the output keeps the map)."""
    c = loc.stored[0]
    if (joined and loc.digits > 1) or np.array_equal(loc.lanes.reshape(-1)[:c], np.arange(c)):
        return c
    return loc.groups * cfg.cols


def _pool_layer(b, i, layer, src, dst):
    cfg = b.cfg
    where = f"layer {i} ({layer.name!r})"
    avg = layer.kind is LayerKind.AVGPOOL
    if src.digits > cfg.act_digits_max:
        raise UnsupportedOpError(
            f"{where}: {'average' if avg else 'max'} pooling the {layer.in_fmt.bits}-bit"
            f" {'network input' if i == 0 else 'tensor'} as {src.digits} digits needs an"
            f" overlay that stores activation tensors of that width (this one stores"
            f" {cfg.wide_act_bits} bits on {cfg.act_bits}-bit lanes)")
    c, h, w = src.stored
    kernel, stride, pad = tuple(layer.kernel), tuple(layer.stride), tuple(layer.padding)
    _, ho, wo = layer.out_shape
    for name, v in (("kernel", max(kernel)), ("stride", max(stride)), ("padding", max(pad))):
        cfg.need(f"{where} {name}", v, cfg.max_dim)
    cfg.need(f"{where} window", kernel[0] * kernel[1], cfg.max_reduction)
    op = Op.SUM if avg else Op.MAX
    n_ch = _written_channels(cfg, src, op.joins_digits)
    if avg and layer.requant:
        cfg.need(f"{where} output bits", layer.out_fmt.bits, cfg.wide_act_bits)
        p_base = b.params(np.zeros(n_ch, np.int64), np.full(n_ch, int(layer.mult[0])),
                          np.full(n_ch, int(layer.shift[0])))
        cfg.need(f"{where} requantization multiplier", int(layer.mult[0]),
                 (1 << cfg.mult_bits) - 1)
    else:
        p_base = 0
    if avg and not layer.requant:
        raise UnsupportedOpError(f"{where}: average pooling must requantize its window sum")
    steps = kernel[0] * kernel[1]
    b.desc(op=op, src_buf=src.buf.value, dst_buf=dst.buf.value,
           to_acc=False, bias_en=False, requant_en=avg, a_signed=src.signed,
           in_h=h, in_w=w, in_g=src.groups, px_words=src.stride,
           out_h=ho, out_w=wo, out_g=dst.stride,
           kh=kernel[0], kw=kernel[1], sy=stride[0], sx=stride[1], py=pad[0], px=pad[1],
           tiles=src.groups, steps=steps,
           slots=max(steps, cfg.cols // src.digits if avg
                     else _ceil(cfg.cols, drain_group(cfg, 1, cfg.cols))), out_ch=n_ch,
           digits=src.digits, w_base=0, p_base=p_base, src_base=src.base, dst_base=dst.base,
           lo=int(layer.lo) if avg else 0, hi=int(layer.hi) if avg else 0,
           odigits=_odigits(dst) if avg else 1)
    b.macs.append(0)


def _add_layer(b, i, layer, srcs, dst):
    cfg = b.cfg
    where = f"layer {i} ({layer.name!r})"
    if len(srcs) != 2:
        raise UnsupportedOpError(f"{where}: the overlay adds two tensors, not {len(srcs)}")
    a, bb = srcs
    if a.digits != bb.digits:
        raise UnsupportedOpError(
            f"{where}: the two inputs of an add must be stored alike, but one is"
            f" {a.digits} and the other {bb.digits} digits of the {cfg.act_bits}-bit lanes"
            " (give both inputs the same bit width)")
    if max(a.digits, bb.digits) > cfg.act_digits_max:
        raise UnsupportedOpError(
            f"{where}: adding the network input as {a.digits} digits needs an overlay that"
            f" stores activation tensors of that width (this one stores {cfg.wide_act_bits}"
            f" bits on {cfg.act_bits}-bit lanes)")
    if a.stride != bb.stride or not np.array_equal(a.lanes, bb.lanes):
        raise UnsupportedOpError(f"{where}: the two inputs of an add must have one layout (a"
                                 " concat part cannot be added to a plain tensor)")
    cfg.need(f"{where} output bits", layer.out_fmt.bits, cfg.wide_act_bits)
    cfg.need(f"{where} requantization multiplier", int(np.max(layer.mult)),
             (1 << cfg.mult_bits) - 1)
    c, h, w = a.stored
    wrap = 1 << cfg.act_addr_bits
    # ``g`` pairs drain side by side: each requantizer lane reads its own copy of A's (M, s)
    # in one cycle and of B's in the next, so the block is g copies of each
    g = drain_group(cfg, _odigits(dst))
    p_base = b.params(np.zeros(2 * g, np.int64), np.repeat(layer.mult, g),
                      np.repeat(layer.shift, g))
    b.desc(op=Op.ADD, src_buf=a.buf.value, dst_buf=dst.buf.value, to_acc=False,
           bias_en=False, requant_en=True, a_signed=a.signed, b_signed=bb.signed,
           src2_buf=bb.buf.value, src2_delta=(bb.base - a.base) % wrap,
           in_h=h, in_w=w, in_g=a.groups, px_words=a.stride, out_h=h, out_w=w,
           out_g=dst.stride, kh=1, kw=1, sy=1, sx=1, py=0, px=0, tiles=a.groups, steps=2,
           slots=add_slots(cfg, a.digits, g),
           out_ch=_written_channels(cfg, a, Op.ADD.joins_digits), digits=a.digits,
           w_base=0,
           p_base=p_base, src_base=a.base, dst_base=dst.base, lo=int(layer.lo),
           hi=int(layer.hi), odigits=_odigits(dst))
    b.macs.append(0)


def _cat(parts, empty):
    return np.concatenate(parts) if parts else empty



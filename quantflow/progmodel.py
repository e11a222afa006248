"""The software model: a Program executed the way the overlay does, on a model of its memories.

Pure numpy. Memories hold lane bit patterns (``act_bits`` unsigned); signed tensors are read
back by sign extension, as the datapath does with the descriptor's ``a_signed``/``b_signed``.
:func:`execute` returns every layer output in :func:`quantflow.reference.run`'s layout, so the
compiler's schedule is checked against the reference without a simulator.
"""

import numpy as np

from .numerics import add_requantize, requantize, weight_lane_values
from .schedule import drain_group, out_position

__all__ = ["execute", "pack_input", "read_loc"]


def _sext(v, bits):
    v = np.asarray(v, dtype=np.int64) & ((1 << bits) - 1)
    return v - ((v >> (bits - 1)) << bits)


def pack_input(program, cfg, x):
    """One input (``input_shape``) -> (words, cols) lane values of the activation memory.

    A wide input is split into ``digits`` digits of ``act_bits`` in adjacent lanes, low digit
    first; for a signed input the top digit is signed and the others unsigned, so
    ``sum_d digit_d << (act_bits * d)`` is the value either way."""
    loc = program.input_loc
    c, h, w = loc.stored
    if program.input_patches is not None:  # kernel taps gathered into channels
        x = program.input_patches.apply(x)
    x = np.asarray(x, dtype=np.int64).reshape(c, h * w)  # torch order: a flatten is a reshape
    lanes = loc.lanes                                                       # (G, cols)
    digit = np.arange(cfg.cols) % loc.digits
    xpad = np.concatenate([x, np.zeros((1, h * w), np.int64)])              # row -1 = zero
    vals = xpad[lanes]                                                      # (G, cols, HW)
    vals = (vals >> (cfg.act_bits * digit)[None, :, None]) & ((1 << cfg.act_bits) - 1)
    words = np.zeros((h * w, loc.stride, cfg.cols), np.int64)
    words[:, :loc.groups] = vals.transpose(2, 0, 1)
    return words.reshape(h * w * loc.stride, cfg.cols)[:loc.words]


def _lane_values(loc, cfg, lanes_raw):
    """Raw lane bits (..., cols) -> signed or unsigned digit values per lane."""
    if not loc.signed:
        return lanes_raw
    top = (np.arange(cfg.cols) % loc.digits) == loc.digits - 1
    return np.where(top, _sext(lanes_raw, cfg.act_bits), lanes_raw)


def read_loc(loc, cfg, act, acc):
    """Read a tensor from memory state (act: two (depth, cols) arrays; acc: (depth,))."""
    c, h, w = loc.stored
    if loc.buf.value == 2:  # Buffer.ACC
        flat = acc[loc.base:loc.base + c * h * w].reshape(h * w, c)
        out = flat.T.reshape(c, h, w)
        return out.reshape(loc.shape)
    words = np.zeros((h * w * loc.stride, cfg.cols), np.int64)
    got = act[loc.buf.value][loc.base:loc.base + loc.words]
    words[:len(got)] = got
    vals = _lane_values(loc, cfg, words.reshape(h * w, loc.stride, cfg.cols)[:, :loc.groups])
    weight = 1 << (cfg.act_bits * (np.arange(cfg.cols) % loc.digits))
    out = np.zeros((c, h * w), np.int64)
    g_idx, l_idx = np.nonzero(loc.lanes >= 0)
    np.add.at(out, loc.lanes[g_idx, l_idx], (vals[:, g_idx, l_idx] * weight[l_idx]).T)
    return out.reshape(c, h, w).reshape(loc.shape)


def _signed_lanes(flag, digits, cols):
    return flag & ((np.arange(cols) % digits) == digits - 1)


def _next_tile(pos, start):
    """The sequencer's per-tile step of the output position (``word_inc``, ``lane_inc``)."""
    word, lane = start
    lane += pos["lane_inc"]
    if lane >= pos["lane_wrap"]:
        return word + pos["word_inc"] + 1, lane - pos["lane_wrap"]
    return word + pos["word_inc"], lane


def _positions(pos, digits, n, start):
    """Word offsets and first lanes of a tile's ``n`` elements, as the drain steps them:
    ``digits`` lanes per element, the next word after ``lane_last``."""
    word, lane = start
    words, lanes = np.zeros(n, np.int64), np.zeros(n, np.int64)
    for k in range(n):
        words[k], lanes[k] = word, lane
        if lane == pos["lane_last"]:
            word, lane = word + 1, 0
        else:
            lane += digits
    return words, lanes


def _group_max(a, digits, cfg):
    """Max pooling (P, S, cols) lanes: lane-wise, or with ``digits > 1`` per group of
    ``digits`` lanes compared as whole values (the digits of the winning step); lanes past
    the last whole group stay lane-wise, as the pool unit does."""
    vec = a.max(axis=1)
    if digits == 1:
        return vec
    n = (cfg.cols // digits) * digits
    groups = a[..., :n].reshape(*a.shape[:2], -1, digits)              # (P, S, G, D)
    value = (groups << (cfg.act_bits * np.arange(digits))).sum(-1)    # (P, S, G)
    best = value.argmax(axis=1)                                        # (P, G)
    win = np.take_along_axis(groups, best[:, None, :, None], axis=1)[:, 0]  # (P, G, D)
    vec = vec.copy()
    vec[:, :n] = win.reshape(len(a), n)
    return vec


def _join(vec, digits, cfg):
    """The pool unit's second stage for sums and adds: (P, cols) digit-lane sums -> element
    ``g`` in lane ``g``, ``sum_d vec[g*digits + d] << (act_bits * d)`` (lanes past the
    ``cols // digits`` elements are never drained)."""
    if digits == 1:
        return vec
    n = cfg.cols // digits
    groups = vec[:, :n * digits].reshape(len(vec), n, digits)
    return (groups << (cfg.act_bits * np.arange(digits))).sum(-1)


def _taps(d, k):
    """Pixel, tap and group indices of every (pixel, activation read) and the padding mask."""
    oy, ox = np.divmod(np.arange(d.pixels), d.out_w)
    inner_g = d.in_g if d.op.name == "MAC" else 1
    g_step, tap = k % inner_g, k // inner_g
    ky, kx = tap // d.kw, tap % d.kw
    iy = oy[:, None] * d.sy - d.py + ky[None, :]
    ix = ox[:, None] * d.sx - d.px + kx[None, :]
    inside = (iy >= 0) & (iy < d.in_h) & (ix >= 0) & (ix < d.in_w)
    return oy, ox, ky, kx, g_step, inside


def _run_desc(d, cfg, act, acc, program):
    dst = act[d.dst_buf]
    is_add = d.op.name == "ADD"
    wd = d.wdigits if d.op.name == "MAC" else 1
    k = np.arange(1 if is_add else d.steps // wd)  # activation reads (each used wd times)
    oy, ox, ky, kx, g_step, inside = _taps(d, k)
    joined = d.op.joins_digits
    nfull = cfg.rows if d.op.name == "MAC" else cfg.cols // (d.digits if joined else 1)
    lane_shift = cfg.act_bits * (np.arange(cfg.cols) % d.digits)
    wrap = 1 << cfg.act_addr_bits
    start = (0, 0)  # (word, lane) of the tile's first element, as the sequencer keeps it
    pos = out_position(cfg, nfull, d.odigits)
    for t in range(d.tiles):
        g = g_step + (t // d.tdiv) * d.ginc if d.op.name == "MAC" else np.full_like(k, t)
        # The sequencer's sums (origin + pixel steps + tap offsets), modulo the address width;
        # equal to src_base + iy*row_words + ix*px_words + g wherever the tap is inside the map.
        addr = (d.src_org + oy[:, None] * d.sy_words + ox[:, None] * d.sx_words
                + ky[None, :] * d.row_words + kx[None, :] * d.px_words + g[None, :]) % wrap

        def read(bank, a, signed):
            raw = np.where(inside[..., None], act[bank][np.where(inside, a, 0)], 0)
            return np.where(_signed_lanes(signed, d.digits, cfg.cols),
                            _sext(raw, cfg.act_bits), raw)

        a = read(d.src_buf, addr, d.a_signed)                                 # (P, S, cols)
        n = min(nfull, d.out_ch - t * nfull)
        ch = t * nfull + np.arange(n)
        if d.op.name == "MAC":
            w = weight_lane_values(program.weights[d.w_base + t * d.steps
                                                   + np.arange(d.steps)], cfg.weight_bits)
            w = w.reshape(len(k), wd, cfg.rows, cfg.cols)
            w = w << (cfg.weight_bits * np.arange(wd))[None, :, None, None]  # digit e: 2**(b*e)
            vec = np.einsum("psc,serc->pr", a << lane_shift, w)
        elif d.op.name == "MAX":
            vec = _group_max(a, d.digits, cfg)
        elif d.op.name == "SUM":
            vec = _join(a.sum(axis=1), d.digits, cfg)
        else:
            b = read(d.src2_buf, (addr + d.src2_delta) % wrap, d.b_signed)
            p = d.p_base + np.array([0, drain_group(cfg, d.odigits)])  # A's, B's (M, s)
            vec = add_requantize([_join(a[:, 0], d.digits, cfg), _join(b[:, 0], d.digits, cfg)],
                                 program.mult[p], program.shift[p],
                                 _sext(d.lo, cfg.clamp_bits), _sext(d.hi, cfg.clamp_bits))
        v = vec[:, :n]
        if d.bias_en:
            v = v + program.bias[d.p_base + ch][None, :]
        if d.requant_en and not is_add:
            v = requantize(v, program.mult[d.p_base + ch][None, :],
                           program.shift[d.p_base + ch][None, :],
                           _sext(d.lo, cfg.clamp_bits), _sext(d.hi, cfg.clamp_bits))
        pix = np.arange(d.pixels)[:, None]
        if d.to_acc:
            acc[d.dst_base + pix * d.out_ch + ch[None, :]] = v
        else:
            word, lane = _positions(pos, d.odigits, n, start)
            if cfg.bipolar_weights:  # a write at lane 0 zeroes the word first
                fresh = word[lane == 0]
                dst[(d.dst_base + pix * d.out_g + fresh[None, :]) % wrap] = 0
            for e in range(d.odigits):  # digit e of each element, low digit first
                dst[(d.dst_base + pix * d.out_g + word[None, :]) % wrap, (lane + e)[None, :]] = \
                    (v >> (cfg.act_bits * e)) & ((1 << cfg.act_bits) - 1)
        start = _next_tile(pos, start)


def execute(program, cfg, x):
    """Run one input through the Program on a model of the memories; every layer's output.

    Returns a list, one int64 array per model layer, shaped like ``quantflow.reference.run``'s
    outputs without the batch axis.
    """
    act = [np.zeros((cfg.act_depth, cfg.cols), np.int64) for _ in range(2)]
    acc = np.zeros(cfg.acc_depth, np.int64)
    words = pack_input(program, cfg, x)
    loc = program.input_loc
    act[loc.buf.value][loc.base:loc.base + len(words)] = words
    outs = []
    for i, loc in enumerate(program.outputs):
        di = program.layer_desc[i]
        if di is not None:
            _run_desc(program.descs[di], cfg, act, acc, program)
        outs.append(read_loc(loc, cfg, act, acc))
    return outs

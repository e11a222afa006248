"""Where every tensor of a Program lives: lane maps, concat regions and bank placement.

Pure numpy. A tensor's lane map says which channel each lane of its words holds; a concat's
parts are written side by side (each from a word boundary) into one region; every root tensor
gets a region in one of the two activation banks (:mod:`quantflow.alloc`), kept until its last
reader. The descriptors that read and write these locations are built in
:mod:`quantflow.schedule`.
"""

import numpy as np

from .alloc import Region, allocate
from .errors import UnsupportedOpError
from .program import Buffer, TensorLoc, _ceil
from .qmodel import LayerKind

__all__ = []


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


def _out_digits(cfg, layer):
    """Digits of ``act_bits`` that store a requantized layer output (1 when it fits a lane)."""
    if not layer.requant:
        return 1
    cfg.need(f"layer {layer.name!r} output bits", layer.out_fmt.bits, cfg.wide_act_bits)
    return max(1, _ceil(layer.out_fmt.bits, cfg.act_bits))


def _is_plain(loc, cfg):
    """The lane map is the channels in order, ``cols`` per word (no concat gaps)."""
    c = loc.stored[0]
    return loc.per_word == cfg.cols and np.array_equal(loc.lanes.reshape(-1)[:c], np.arange(c))


def _stored(shape):
    return tuple(shape) if len(shape) == 3 else (int(np.prod(shape)), 1, 1)


def _input_loc(model, cfg, patches=None):
    shape = tuple(model.input_shape)
    stored = _stored(shape)
    readers = model.consumers(-1)
    if patches is not None:  # the host writes the reader's kernel taps as channels
        stored = patches.shape
    elif readers and all(model.layers[j].kind is LayerKind.FLATTEN for j in readers):
        # The host packs the input, so a network that starts by flattening gets its input
        # stored as a vector: the first linear layer then fills every lane (C*H*W channels)
        # instead of only the C channels of one pixel.
        stored = (int(np.prod(shape)), 1, 1)
    bits = model.input_fmt.bits
    cfg.need("input bits", bits, cfg.input_bits)
    digits = max(1, _ceil(bits, cfg.act_bits))
    loc = _plain(cfg, Buffer.ACT0, stored, model.input_fmt.signed, digits)
    return loc.reshaped(shape)



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
                locs[i] = _plain(cfg, Buffer.ACT0, _stored(shape), signed,
                                 _out_digits(cfg, layer)).reshaped(shape)
            else:
                locs[i] = TensorLoc(Buffer.ACC, 0, _stored(shape), shape)
        elif kind is LayerKind.MAXPOOL:  # the input's words, lane map and digits
            s = locs[src[0]]
            locs[i] = TensorLoc(Buffer.ACT0, 0, _stored(shape), shape, s.groups, s.digits,
                                s.per_word, s.groups, s.lanes, signed)
        elif kind in (LayerKind.AVGPOOL, LayerKind.ADD):
            s = locs[src[0]]
            digits = _out_digits(cfg, layer)
            if s.digits > 1:  # the pool unit joins the digits: channels in order
                locs[i] = _plain(cfg, Buffer.ACT0, _stored(shape), signed,
                                 digits).reshaped(shape)
            elif digits == 1:
                locs[i] = TensorLoc(Buffer.ACT0, 0, _stored(shape), shape, s.groups, 1,
                                    s.per_word, s.groups, s.lanes, signed)
            elif s.digits == 1 and _is_plain(s, cfg):
                locs[i] = _plain(cfg, Buffer.ACT0, _stored(shape), signed,
                                 digits).reshaped(shape)
            else:
                raise UnsupportedOpError(
                    f"{where}: a {layer.out_fmt.bits}-bit output wider than the"
                    f" {cfg.act_bits}-bit lanes needs a plain input (not a concat's)")
        else:  # CONCAT: the parts side by side, each from a word boundary
            lanes, offset = [], 0
            for j in src:
                p = locs[j]
                if j >= 0 and p.digits != 1:
                    raise UnsupportedOpError(
                        f"{where}: concat input {j} ({model.layers[j].out_fmt.bits} bits) is"
                        f" wider than the {cfg.act_bits}-bit lanes; a concat needs lanes of"
                        " its width")
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



"""Kernel taps across lanes for a first layer with few input channels (the host packs them).

A convolution reads ``C`` channels per pixel; with ``C * digits`` lanes far below ``cols``
(one image channel, three colour channels, one audio feature map) most lanes of every
activation word are empty and the layer runs at ``C * digits / cols`` of the array. The
network input is written by the host, so it can be written already gathered: along a packed
dimension the ``k`` kernel taps of every output position become ``k`` times the channels
(an im2col along that dimension), and the layer becomes a convolution with kernel 1, stride 1
and no padding there. Packing x only multiplies the input words by at most ``kw / sx`` (the
taps are along one axis); packing both is the full im2col.

``X'[(c * ph + ky) * pw + kx, y', x'] = X[c, y' * ty + ky - qy, x' * tx + kx - qx]`` with, per
dimension, ``p`` the taps gathered (the kernel when packed, else 1), ``t`` the stride and
``q`` the padding when packed (else 1 and 0); out of range reads zero, as the overlay's
padding does. The weights are reordered the same way, so every product and every sum is the
one the unpacked layer computes: the outputs are identical integers. The compiler chooses a
packing by the cycle model (:func:`choose`) and falls back to none when the gathered input
does not fit; :func:`quantflow.progmodel.pack_input` (hence the host ``Driver``) applies it.

Pure numpy.
"""

import dataclasses
from dataclasses import dataclass

import numpy as np

from .numerics import weight_digits
from .qmodel import LayerKind
from .schedule import drain_group

__all__ = ["InputPatches", "choose"]


def _ceil(a, b):
    return -(-a // b)


@dataclass(frozen=True)
class InputPatches:
    """The packing of the network input for its one reader, layer ``reader`` (a Conv2d with
    this geometry): ``pack_y`` and ``pack_x`` say which kernel dimensions are gathered into
    channels."""
    reader: int
    pack_y: bool
    pack_x: bool
    in_shape: tuple
    out_shape: tuple
    kernel: tuple
    stride: tuple
    padding: tuple

    @classmethod
    def of(cls, index, layer, pack_y, pack_x):
        return cls(index, pack_y, pack_x, tuple(layer.in_shape), tuple(layer.out_shape),
                   tuple(layer.kernel), tuple(layer.stride), tuple(layer.padding))

    def _dims(self):
        """Per dimension (y, x): taps gathered, read stride, read padding, and the packed
        layer's kernel, stride and padding there."""
        out = []
        for axis, packed in ((0, self.pack_y), (1, self.pack_x)):
            k, s, p = self.kernel[axis], self.stride[axis], self.padding[axis]
            out.append((k, s, p, 1, 1, 0) if packed else (1, 1, 0, k, s, p))
        return out

    @property
    def shape(self):
        """The gathered input's ``(C', H', W')``."""
        c, h, w = self.in_shape
        (ph, *_), (pw, *_) = self._dims()
        _, ho, wo = self.out_shape
        return (c * ph * pw, ho if self.pack_y else h, wo if self.pack_x else w)

    def to_json(self):
        return {"reader": self.reader, "pack_y": self.pack_y, "pack_x": self.pack_x,
                "shape": list(self.shape)}

    def apply(self, x):
        """One input ``(C, H, W)`` (integers) -> the gathered ``(C', H', W')``."""
        x = np.asarray(x, dtype=np.int64).reshape(self.in_shape)
        c, h, w = x.shape
        (ph, ty, qy, *_), (pw, tx, qx, *_) = self._dims()
        _, h2, w2 = self.shape
        ys = np.arange(h2)[None, :] * ty + np.arange(ph)[:, None] - qy       # (ph, H')
        xs = np.arange(w2)[None, :] * tx + np.arange(pw)[:, None] - qx       # (pw, W')
        pad = np.zeros((c, h + 1, w + 1), np.int64)   # index -1 reads the zero row/column
        pad[:, :h, :w] = x
        ys = np.where((ys >= 0) & (ys < h), ys, -1)
        xs = np.where((xs >= 0) & (xs < w), xs, -1)
        g = pad[:, ys[:, None, :, None], xs[None, :, None, :]]          # (C, ph, pw, H', W')
        return g.reshape(c * ph * pw, h2, w2)

    def layer(self, layer):
        """The reader as the overlay runs it: the gathered channels, the rest of the kernel."""
        (ph, _, _, kh, sy, py), (pw, _, _, kw, sx, px) = self._dims()
        o, c = layer.weight.shape[:2]
        # (O, C, KH, KW) -> (O, C, ph, kh', pw, kw') -> (O, C*ph*pw, kh', kw')
        w6 = layer.weight.reshape(o, c, ph, kh, pw, kw)
        w = w6.transpose(0, 1, 2, 4, 3, 5).reshape(o, c * ph * pw, kh, kw)
        return dataclasses.replace(layer, in_shape=self.shape, kernel=(kh, kw),
                                   stride=(sy, sx), padding=(py, px), weight=w)


def _cost(cfg, layer, digits, wdigits, patches):
    """(cycles, input words) of the reader by the cycle model's pixel rule, ``max(steps,
    rows / drain group)`` per output pixel and tile (:func:`quantflow.schedule._mac_layer`)."""
    lyr = patches.layer(layer) if patches else layer
    c, h, w = lyr.in_shape
    o, ho, wo = lyr.out_shape
    words = _ceil(c, cfg.cols // digits)
    steps = lyr.kernel[0] * lyr.kernel[1] * words * wdigits
    group = drain_group(cfg, max(1, _ceil(lyr.out_fmt.bits, cfg.act_bits))) \
        if lyr.requant else 1
    return ho * wo * _ceil(o, cfg.rows) * max(steps, _ceil(cfg.rows, group)), h * w * words


def choose(model, cfg):
    """The packing with the fewest cycles for the network input's reader, or None (no single
    dense Conv2d reads the input, or no packing saves a cycle). Ties go to fewer input words."""
    readers = model.consumers(-1)
    if len(readers) != 1:
        return None
    i = readers[0]
    layer = model.layers[i]
    if layer.kind is not LayerKind.CONV2D or layer.groups != 1 or len(layer.in_shape) != 3:
        return None
    digits = max(1, _ceil(model.input_fmt.bits, cfg.act_bits))
    wdigits = weight_digits(layer.w_fmt, cfg.weight_bits)
    base = _cost(cfg, layer, digits, wdigits, None)
    best, best_cost = None, base
    for pack_y, pack_x in ((False, True), (True, False), (True, True)):
        if (pack_y and layer.kernel[0] == 1 and layer.stride[0] == 1) or \
                (pack_x and layer.kernel[1] == 1 and layer.stride[1] == 1):
            continue  # gathering one tap with stride 1 changes nothing
        p = InputPatches.of(i, layer, pack_y, pack_x)
        cost = _cost(cfg, layer, digits, wdigits, p)
        if cost < best_cost:
            best, best_cost = p, cost
    return best

"""Random QuantizedModels with the zoo's shapes (or any chain), for hardware and program tests.

Weights, biases and requantization parameters are drawn in range, with the extremes mixed in:
format min/max weights, M = 0 and M = 2**m - 1, shift 0 and shifts past any hardware limit.
"""

import numpy as np

from quantflow.numerics import QFormat, product_bound
from quantflow.qmodel import LayerKind, QLayer, QuantizedModel

__all__ = ["random_model", "digits_cnn", "digits_mlp", "random_input", "CNN_SPEC", "MLP_SPEC"]

#: digits-cnn: conv3x3(1->16,p1)+ReLU, conv3x3(16->32,p1)+ReLU, maxpool2, conv3x3(32->32,p1)+ReLU,
#: flatten, linear(512->10), on 1x8x8 inputs.
CNN_SPEC = [("conv", 16, 3, 1, 1), ("conv", 32, 3, 1, 1), ("maxpool", 2, 2, 0),
            ("conv", 32, 3, 1, 1), ("flatten",), ("linear", 10)]
MLP_SPEC = [("flatten",), ("linear", 64), ("linear", 32), ("linear", 10)]


def _requant(rng, acc_std, hi, n, mult_bits=16):
    mult = rng.integers(1 << (mult_bits - 1), 1 << mult_bits, size=n)
    target = max(hi, 1) / 2
    shift = np.array([max(0, int(acc_std * m / target).bit_length()) for m in mult])
    shift = np.minimum(shift + rng.integers(-1, 2, size=n), 63).clip(0)
    if n >= 4:  # extremes: M = 0, M = max, s = 0 (saturates), a shift past any hardware limit
        mult[0] = 0
        mult[1] = (1 << mult_bits) - 1
        shift[2] = 0
        shift[3] = 63
    return mult.astype(np.int64), shift.astype(np.int64)


def _mac(rng, name, kind, shape_in, shape_out, in_fmt, w_fmt, a_fmt, weight, final, **kw):
    o = shape_out[0]
    k = int(np.prod(weight.shape[1:]))
    bound = product_bound(w_fmt, in_fmt, k)
    bias = rng.integers(-(bound // 4), bound // 4 + 1, size=o).astype(np.int64)
    acc_std = max(1.0, np.sqrt(k) * w_fmt.max * in_fmt.max / 3)
    layer = QLayer(name=name, kind=kind, in_shape=shape_in, out_shape=shape_out, in_fmt=in_fmt,
                   out_fmt=a_fmt, in_scale=1.0, out_scale=np.ones(1), w_fmt=w_fmt,
                   weight=weight, bias=bias, w_scale=np.ones(o), **kw)
    if final:
        layer.requant = False
        layer.out_fmt = layer.acc_fmt
        layer.out_scale = np.ones(o)
    else:
        layer.mult, layer.shift = _requant(rng, acc_std, a_fmt.max, o)
        layer.lo = int(rng.choice([0, 0, 1]) + (a_fmt.min if a_fmt.signed else 0))
        layer.hi = int(a_fmt.max if rng.random() < 0.7 else max(layer.lo, a_fmt.max - 1))
    return layer


def _weights(rng, w_fmt, shape):
    if w_fmt.bipolar:  # binary weights: -1 or +1, never 0
        w = rng.choice(np.array([-1, 1], dtype=np.int64), size=shape)
    else:
        w = rng.integers(w_fmt.min, w_fmt.max + 1, size=shape).astype(np.int64)
    flat = w.reshape(-1)
    if flat.size >= 2:
        flat[0], flat[-1] = w_fmt.min, w_fmt.max
    return w


def random_model(rng, spec, input_shape, wbits=4, abits=4, in_bits=8, final_acc=True,
                 name="random", layer_bits=None):
    """A validated QuantizedModel following ``spec`` (see CNN_SPEC for the tuple forms);
    ``layer_bits`` maps a spec index to its own ``(weight bits, output activation bits)``, or
    ``(weight bits, output bits, True)`` for a signed output."""
    fmt, shape = QFormat(in_bits, False), tuple(input_shape)
    layers = []
    last_mac = max(i for i, s in enumerate(spec) if s[0] in ("conv", "linear"))
    for i, s in enumerate(spec):
        wb, ab, *sgn = (layer_bits or {}).get(i, (wbits, abits))
        w_fmt, a_fmt = QFormat(wb, True), QFormat(ab, bool(sgn and sgn[0]))
        nm = f"{s[0]}{i}"
        final = final_acc and i == last_mac
        if s[0] == "conv":
            _, o, k, st, p = s
            c, h, w = shape
            out = (o, (h + 2 * p - k) // st + 1, (w + 2 * p - k) // st + 1)
            layer = _mac(rng, nm, LayerKind.CONV2D, shape, out, fmt, w_fmt, a_fmt,
                         _weights(rng, w_fmt, (o, c, k, k)), final,
                         kernel=(k, k), stride=(st, st), padding=(p, p))
        elif s[0] == "linear":
            f = int(np.prod(shape))
            out = (s[1],)
            layer = _mac(rng, nm, LayerKind.LINEAR, shape, out, fmt, w_fmt, a_fmt,
                         _weights(rng, w_fmt, (s[1], f)), final)
        elif s[0] in ("maxpool", "avgpool", "gap"):
            c, h, w = shape
            if s[0] == "gap":
                k, st, p = (h, w), (1, 1), (0, 0)
            else:
                k, st, p = (s[1], s[1]), (s[2], s[2]), (s[3], s[3]) if len(s) > 3 else (0, 0)
            out = (c, (h + 2 * p[0] - k[0]) // st[0] + 1, (w + 2 * p[1] - k[1]) // st[1] + 1)
            kind = LayerKind.MAXPOOL if s[0] == "maxpool" else LayerKind.AVGPOOL
            layer = QLayer(name=nm, kind=kind, in_shape=shape, out_shape=out, in_fmt=fmt,
                           out_fmt=fmt if kind is LayerKind.MAXPOOL else a_fmt, in_scale=1.0,
                           out_scale=np.ones(1), kernel=k, stride=st, padding=p)
            if kind is LayerKind.AVGPOOL:
                area = k[0] * k[1]
                layer.mult = np.array([rng.integers(1 << 15, 1 << 16)], dtype=np.int64)
                layer.shift = np.array([16 + (area - 1).bit_length() - 1 +
                                        int(rng.integers(0, 2))], dtype=np.int64)
                layer.hi = a_fmt.max
            else:
                layer.requant = False
        elif s[0] == "flatten":
            out = (int(np.prod(shape)),)
            layer = QLayer(name=nm, kind=LayerKind.FLATTEN, in_shape=shape, out_shape=out,
                           in_fmt=fmt, out_fmt=fmt, in_scale=1.0, out_scale=np.ones(1),
                           requant=False)
        else:
            raise ValueError(f"Layer spec must be conv/linear/maxpool/avgpool/gap/flatten,"
                             f" not {s!r}")
        layers.append(layer)
        shape, fmt = tuple(layer.out_shape), layer.out_fmt
    model = QuantizedModel(name=name, input_shape=tuple(input_shape),
                           input_fmt=QFormat(in_bits, False), input_scale=1.0, layers=layers)
    return model.validate()


def digits_cnn(rng, wbits=4, abits=4):
    return random_model(rng, CNN_SPEC, (1, 8, 8), wbits, abits, name="digits-cnn")


def digits_mlp(rng, wbits=4, abits=4):
    return random_model(rng, MLP_SPEC, (1, 8, 8), wbits, abits, name="digits-mlp")


def random_input(rng, model, n=1, extremes=True):
    fmt = model.input_fmt
    x = rng.integers(fmt.min, fmt.max + 1, size=(n, *model.input_shape)).astype(np.int64)
    if extremes and n >= 1:
        flat = x[0].reshape(-1)
        flat[0], flat[-1] = fmt.max, fmt.min
    return x

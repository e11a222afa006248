"""The integer reference on hand-computed cases and against naive Python loops."""

import numpy as np
import pytest
from flowkit import node_rng, tiny_model

from quantflow.numerics import QFormat
from quantflow.qmodel import LayerKind, QLayer
from quantflow.reference import AccumulatorOverflow, predict, run, run_layer


A4, W3 = QFormat(4, False), QFormat(3, True)


def _conv(weight, bias, in_shape, out_shape, *, stride=(1, 1), padding=(0, 0), requant=False,
          mult=None, shift=None, lo=0, hi=0, in_fmt=A4, w_fmt=W3):
    o = len(bias)
    layer = QLayer(name="c", kind=LayerKind.CONV2D, in_shape=in_shape, out_shape=out_shape,
                   in_fmt=in_fmt, out_fmt=QFormat(3, False), in_scale=1.0,
                   out_scale=np.ones(1), kernel=tuple(np.shape(weight)[2:]), stride=stride,
                   padding=padding, w_fmt=w_fmt, weight=np.array(weight, dtype=np.int64),
                   bias=np.array(bias, dtype=np.int64), requant=requant,
                   mult=None if mult is None else np.array(mult, dtype=np.int64),
                   shift=None if shift is None else np.array(shift, dtype=np.int64),
                   lo=lo, hi=hi, w_scale=np.ones(o))
    if not requant:
        layer.out_fmt = layer.acc_fmt
    layer.validate(0)
    return layer


X3 = np.arange(9, dtype=np.int64).reshape(1, 1, 3, 3)  # [[0,1,2],[3,4,5],[6,7,8]]
W2 = [[[[1, -1], [2, 0]]]]


def test_conv_hand_computed():
    # out[i, j] = x[i, j] - x[i, j+1] + 2 x[i+1, j] + 1
    layer = _conv(W2, [1], (1, 3, 3), (1, 2, 2))
    assert run_layer(layer, X3).tolist() == [[[[6, 8], [12, 14]]]]


def test_conv_padding_and_stride_hand_computed():
    # padded 5x5, windows at rows/cols -1 and 1 of the original
    layer = _conv(W2, [1], (1, 3, 3), (1, 2, 2), stride=(2, 2), padding=(1, 1))
    assert run_layer(layer, X3).tolist() == [[[[1, 3], [-2, 14]]]]


def test_conv_requant_hand_computed():
    # channel 0: acc = [[6, 8], [12, 14]], M=3, s=2: (3 acc + 2) >> 2 = 5, 6, 9->7, 11->7
    # channel 1: acc = -x - 3 = [[-3, -4], [-6, -7]], M=5, s=1: (5 acc + 1) >> 1 = -7.. -> 0
    layer = _conv([W2[0], [[[-1, 0], [0, 0]]]], [1, -3], (1, 3, 3), (2, 2, 2), requant=True,
                  mult=[3, 5], shift=[2, 1], lo=0, hi=7)
    assert run_layer(layer, X3).tolist() == [[[[5, 6], [7, 7]], [[0, 0], [0, 0]]]]
    layer.lo, layer.hi = -8, 7  # signed clamp: the negative channel now shows its rounding
    # (5 * -3 + 1) >> 1 = -7, (-20 + 1) >> 1 = -10 -> -8, (-30 + 1) >> 1 = -15 -> -8
    assert run_layer(layer, X3)[0, 1].tolist() == [[-7, -8], [-8, -8]]


def test_linear_hand_computed():
    layer = QLayer(name="fc", kind=LayerKind.LINEAR, in_shape=(3,), out_shape=(2,),
                   in_fmt=QFormat(4, False), out_fmt=QFormat(3, False), in_scale=1.0,
                   out_scale=np.ones(1), w_fmt=QFormat(4, True),
                   weight=np.array([[1, 2, -1], [0, -3, 4]]), bias=np.array([2, -1]),
                   mult=np.array([1, 1]), shift=np.array([1, 1]), lo=0, hi=7,
                   w_scale=np.ones(2))
    layer.validate(0)
    x = np.array([[3, 0, 5], [0, 0, 0], [15, 15, 15]])
    # accumulators [0, 19], [2, -1], [32, 14]; then (acc + 1) >> 1 clamped to 0..7
    assert run_layer(layer, x).tolist() == [[0, 7], [1, 0], [7, 7]]
    layer.requant = False
    assert run_layer(layer, x).tolist() == [[0, 19], [2, -1], [32, 14]]


def test_linear_flattens_feature_maps_in_torch_order():
    layer = QLayer(name="fc", kind=LayerKind.LINEAR, in_shape=(2, 1, 2), out_shape=(1,),
                   in_fmt=QFormat(4, False), out_fmt=QFormat(3, False), in_scale=1.0,
                   out_scale=np.ones(1), w_fmt=QFormat(5, True),
                   weight=np.array([[1, 2, 4, 8]]), bias=np.array([0]), requant=False,
                   w_scale=np.ones(1))
    x = np.array([[[[1, 0]], [[0, 1]]]])  # (C, H, W) order: c0w0=1, c1w1=1 -> 1 + 8
    assert run_layer(layer, x).tolist() == [[9]]


def test_pools_and_flatten_hand_computed():
    m = tiny_model().validate()
    x = np.arange(16, dtype=np.int64).reshape(1, 1, 4, 4)
    maxpool, avg, flat = m.layers[1], m.layers[2], m.layers[3]
    fm = np.array([[[[0, 1, 2, 3], [4, 5, 6, 7], [7, 6, 5, 4], [3, 2, 1, 0]],
                    [[0, 0, 0, 0], [0, 7, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]]])
    assert run_layer(maxpool, fm).tolist() == [[[[5, 7], [7, 5]], [[7, 0], [0, 1]]]]
    # window sums 24 and 8, M=1, s=2: (24 + 2) >> 2 = 6, (8 + 2) >> 2 = 2
    pooled = np.array([[[[5, 7], [7, 5]], [[7, 0], [0, 1]]]])
    assert run_layer(avg, pooled).tolist() == [[[[6]], [[2]]]]
    # round half up of the mean: sums 2 -> 1 (0.5 up), 1 -> 0, 6 -> 2 (1.5 up), 5 -> 1
    halves = np.array([[[[1, 1], [0, 0]], [[0, 0], [0, 1]]]])
    assert run_layer(avg, halves).tolist() == [[[[1]], [[0]]]]
    assert run_layer(avg, np.array([[[[3, 3], [0, 0]], [[4, 1], [0, 0]]]])).tolist() == \
        [[[[2]], [[1]]]]
    assert run_layer(flat, np.array([[[[4]], [[7]]]])).tolist() == [[4, 7]]
    outs = run(m, x)
    assert [o.shape[1:] for o in outs] == [tuple(layer.out_shape) for layer in m.layers]
    assert all(o.dtype == np.int64 for o in outs)
    # conv channel 0 is a horizontal edge filter: x[.., j-1] - x[.., j+1] = -2 per row inside
    # (acc -8 + 3 = -5 -> (3 * -5 + 4) >> 3 = -2 -> clamp 0); right column sees the zero pad.
    assert outs[0][0, 0].tolist() == [[0, 0, 0, 5], [0, 0, 0, 7], [0, 0, 0, 7], [0, 0, 0, 7]]
    # logits: fc on [4, 7]: [4 - 14 - 7, 12 + 0, -16 + 21 + 6]
    assert outs[3].tolist() == [[4, 7]]
    assert outs[4].tolist() == [[-17, 12, 11]]


def _naive_conv(x, w, b, stride, pad):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho, wo = (h + 2 * pad[0] - kh) // stride[0] + 1, (wd + 2 * pad[1] - kw) // stride[1] + 1
    out = np.zeros((n, o, ho, wo), dtype=object)
    for idx in np.ndindex(n, o, ho, wo):
        s = int(b[idx[1]])
        for ci, i, j in np.ndindex(c, kh, kw):
            y, xx = idx[2] * stride[0] + i - pad[0], idx[3] * stride[1] + j - pad[1]
            if 0 <= y < h and 0 <= xx < wd:
                s += int(x[idx[0], ci, y, xx]) * int(w[idx[1], ci, i, j])
        out[idx] = s
    return out


def _naive_maxpool(x, k, stride):
    n, c, h, w = x.shape
    ho, wo = (h - k[0]) // stride[0] + 1, (w - k[1]) // stride[1] + 1
    out = np.zeros((n, c, ho, wo), dtype=object)
    for idx in np.ndindex(n, c, ho, wo):
        out[idx] = max(int(x[idx[0], idx[1], idx[2] * stride[0] + i, idx[3] * stride[1] + j])
                       for i in range(k[0]) for j in range(k[1]))
    return out


@pytest.mark.parametrize(("shape", "k", "stride", "pad"), [
    ((1, 1, 1), (1, 1), (1, 1), (0, 0)),  # K = 1
    ((3, 5, 4), (3, 3), (1, 1), (1, 1)),
    ((2, 6, 7), (3, 2), (2, 3), (0, 1)),
    ((4, 3, 3), (3, 3), (1, 1), (0, 0)),
    ((1, 7, 5), (1, 5), (2, 1), (2, 0)),
])
def test_conv_matches_naive_loops(request, shape, k, stride, pad):
    seed, rng = node_rng(request)
    w_fmt, a_fmt = QFormat(4, True), QFormat(5, False)
    o = 3
    w = rng.integers(w_fmt.min, w_fmt.max + 1, size=(o, shape[0], *k))
    w.reshape(-1)[:2] = [w_fmt.min, w_fmt.max]
    x = rng.integers(a_fmt.min, a_fmt.max + 1, size=(2, *shape))
    x.reshape(-1)[:2] = [a_fmt.max, a_fmt.min]
    b = rng.integers(-50, 51, size=o)
    ho = (shape[1] + 2 * pad[0] - k[0]) // stride[0] + 1
    wo = (shape[2] + 2 * pad[1] - k[1]) // stride[1] + 1
    layer = _conv(w, b, shape, (o, ho, wo), stride=stride, padding=pad, in_fmt=a_fmt,
                  w_fmt=w_fmt)
    got = run_layer(layer, x)
    want = _naive_conv(x, w, b, stride, pad)
    assert np.array_equal(got, want.astype(np.int64)), f"seed={seed}"


@pytest.mark.parametrize(("shape", "k", "stride"), [((2, 4, 4), (2, 2), (2, 2)),
                                                    ((3, 5, 6), (3, 2), (1, 2)),
                                                    ((1, 3, 3), (3, 3), (1, 1))])
def test_maxpool_matches_naive_loops(request, shape, k, stride):
    seed, rng = node_rng(request)
    fmt = QFormat(3, False)
    out = (shape[0], (shape[1] - k[0]) // stride[0] + 1, (shape[2] - k[1]) // stride[1] + 1)
    layer = QLayer(name="p", kind=LayerKind.MAXPOOL, in_shape=shape, out_shape=out, in_fmt=fmt,
                   out_fmt=fmt, in_scale=1.0, out_scale=np.ones(1), kernel=k, stride=stride,
                   requant=False)
    layer.validate(0)
    x = rng.integers(0, 8, size=(3, *shape))
    assert np.array_equal(run_layer(layer, x), _naive_maxpool(x, k, stride).astype(np.int64)), \
        f"seed={seed}"


def test_accumulator_overflow_on_out_of_bound_weights():
    # 2-bit weights promise |w| <= 2; a weight of 100 breaks the derived bound
    layer = QLayer(name="bad", kind=LayerKind.LINEAR, in_shape=(4,), out_shape=(1,),
                   in_fmt=QFormat(8, False), out_fmt=QFormat(8, False), in_scale=1.0,
                   out_scale=np.ones(1), w_fmt=QFormat(2, True),
                   weight=np.array([[100, 100, 100, 100]]), bias=np.array([0]),
                   mult=np.array([1]), shift=np.array([0]), lo=0, hi=255, w_scale=np.ones(1))
    assert layer.acc_fmt == QFormat(2 + 8 + 2 + 1, True)
    assert run_layer(layer, np.full((1, 4), 10)).tolist() == [[255]]  # 4000 fits 13 bits
    with pytest.raises(AccumulatorOverflow,
                       match=r"^layer 'bad': accumulator range 102000\.\.102000 leaves "
                             r"QFormat\(bits=13, signed=True\)$"):
        run_layer(layer, np.full((1, 4), 255))
    assert issubclass(AccumulatorOverflow, AssertionError)


def test_accumulator_overflow_on_negative_side_of_conv():
    layer = _conv([[[[-4, -4], [-4, -4]]]], [0], (1, 2, 2), (1, 1, 1))
    ok = run_layer(layer, np.full((1, 1, 2, 2), 15))
    assert ok.tolist() == [[[[-240]]]]
    layer.weight = np.full((1, 1, 2, 2), -400)  # outside the 3-bit weight format
    with pytest.raises(AccumulatorOverflow, match=r"^layer 'c': accumulator range -24000\.\."):
        run_layer(layer, np.full((1, 1, 2, 2), 15))


def test_avgpool_overflow_on_out_of_format_inputs():
    layer = tiny_model().layers[2]
    with pytest.raises(AccumulatorOverflow, match=r"^layer 'avg': accumulator range"):
        run_layer(layer, np.full((1, 2, 2, 2), 100))


def test_run_rejects_out_of_format_inputs_and_bad_shapes():
    m = tiny_model().validate()
    with pytest.raises(ValueError,
                       match=r"^Inputs must lie in QFormat\(bits=4, signed=False\), not -1\.\.3$"):
        run(m, np.array([[[[-1, 3, 0, 0]] * 4]]))
    with pytest.raises(ValueError,
                       match=r"^Inputs must lie in QFormat\(bits=4, signed=False\), not 0\.\.16$"):
        run(m, np.full((1, 1, 4, 4), 16).astype(np.int64) * np.eye(4, dtype=np.int64))
    with pytest.raises(ValueError,
                       match=r"^Input shape must be \(N, 1, 4, 4\), not \(2, 1, 3, 4\)$"):
        run(m, np.zeros((2, 1, 3, 4), dtype=np.int64))


def test_run_all_zero_and_all_max_inputs():
    m = tiny_model().validate()
    zero = run(m, np.zeros((1, 1, 4, 4), dtype=np.int64))
    # all-zero input: conv is its bias requantized, (3*3+4)>>3 = 1 and (5*-5+8)>>4 = -2 -> 0
    assert np.all(zero[0][0, 0] == 1) and np.all(zero[0][0, 1] == 0)
    top = run(m, np.full((1, 1, 4, 4), 15, dtype=np.int64))
    assert all(layer.out_fmt.contains(o) for layer, o in zip(m.layers, top, strict=True))


def test_predict_uses_per_class_scale_and_batches(request):
    seed, rng = node_rng(request)
    m = tiny_model().validate()
    x = rng.integers(0, 16, size=(37, 1, 4, 4))
    logits = run(m, x)[-1]
    scale = np.asarray(m.output_scale).reshape(1, -1)
    want = np.argmax(logits * scale, axis=1)
    assert np.array_equal(predict(m, x), want), f"seed={seed}"
    assert np.array_equal(predict(m, x, batch=5), want), f"seed={seed}"
    assert predict(m, x[:0]).shape == (0,)
    # the per-class scale decides: logits [-17, 12, 11] rank class 2 (11 * 0.3 > 12 * 0.2)
    one = np.arange(16, dtype=np.int64).reshape(1, 1, 4, 4)
    assert run(m, one)[-1].tolist() == [[-17, 12, 11]]
    assert predict(m, one).tolist() == [2]
    m.layers[-1].out_scale = np.ones(3)
    assert predict(m, one).tolist() == [1]

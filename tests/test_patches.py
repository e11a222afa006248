"""Kernel taps gathered into lanes for the first layer (quantflow.patches): the outputs stay
the reference's integers on every layer, the choice follows the cycle model, and a packing
that needs a larger activation bank is not taken."""

import numpy as np
import pytest

from factories import random_input, random_model
from hwgen.config import AccelConfig
from quantflow import reference
from quantflow.patches import InputPatches, choose
from quantflow.program import _compile, compile_program, execute


def _naive_gather(p, x):
    c, h, w = p.in_shape
    taps_y = p.kernel[0] if p.pack_y else 1
    taps_x = p.kernel[1] if p.pack_x else 1
    ch, h2, w2 = p.shape
    out = np.zeros(p.shape, np.int64)
    for ci in range(c):
        for ky in range(taps_y):
            for kx in range(taps_x):
                for y in range(h2):
                    for xx in range(w2):
                        yy = y * p.stride[0] + ky - p.padding[0] if p.pack_y else y
                        xs = xx * p.stride[1] + kx - p.padding[1] if p.pack_x else xx
                        if 0 <= yy < h and 0 <= xs < w:
                            out[(ci * taps_y + ky) * taps_x + kx, y, xx] = x[ci, yy, xs]
    return out


def _equal_on_every_layer(model, program, cfg, xs, what):
    ref = reference.run(model, xs)
    for n, x in enumerate(xs):
        for i, g in enumerate(execute(program, cfg, x)):
            assert np.array_equal(g, ref[i][n]), f"{what}: layer {i} differs on input {n}"


@pytest.mark.parametrize("seed", range(12))
def test_every_packing_is_exact(seed):
    """Each of the three packings, forced, on a random first convolution (kernel, stride,
    padding, channels, widths): the gather equals a naive loop and every layer's output equals
    the reference."""
    rng = np.random.default_rng(seed)
    k = int(rng.choice([2, 3, 5]))
    st, pad = int(rng.choice([1, 2])), int(rng.integers(0, k // 2 + 1))
    wb, ab = int(rng.integers(2, 9)), int(rng.integers(2, 9))
    c, h = int(rng.integers(1, 4)), int(rng.integers(6, 10))
    spec = [("conv", int(rng.integers(1, 12)), k, st, pad), ("conv", 5, 1, 1, 0),
            ("flatten",), ("linear", 3)]
    model = random_model(rng, spec, (c, h, h), wb, ab)
    cols = max(int(rng.integers(2, 9)), -(-8 // ab))  # room for the input's digits
    cfg = AccelConfig.for_model(model, array=(int(rng.integers(1, 9)), cols),
                                weight_depth=1 << 14, act_depth=1 << 12)
    xs = random_input(rng, model, 2)
    for pack_y, pack_x in ((False, True), (True, False), (True, True)):
        p = InputPatches.of(0, model.layers[0], pack_y, pack_x)
        assert np.array_equal(p.apply(xs[0]), _naive_gather(p, xs[0])), (seed, p)
        program = _compile(model, cfg, p)
        assert program.input_patches == p
        _equal_on_every_layer(model, program, cfg, xs, f"seed {seed} {p}")


def _audio_net(rng, bits=4):
    """A DS-CNN-shaped first layer: one 49x10 feature map, a 10x4 kernel at stride 2."""
    from quantflow.qmodel import LayerKind, QFormat, QLayer, QuantizedModel
    from factories import _mac, _weights

    shape, out = (1, 49, 10), (16, 25, 5)
    conv = _mac(rng, "conv0", LayerKind.CONV2D, shape, out, QFormat(8, False),
                QFormat(bits, True), QFormat(bits, False),
                _weights(rng, QFormat(bits, True), (16, 1, 10, 4)), False,
                kernel=(10, 4), stride=(2, 2), padding=(5, 1))
    flat = QLayer(name="flat", kind=LayerKind.FLATTEN, in_shape=out, out_shape=(2000,),
                  in_fmt=conv.out_fmt, out_fmt=conv.out_fmt, in_scale=1.0,
                  out_scale=np.ones(1), requant=False)
    fc = _mac(rng, "fc", LayerKind.LINEAR, (2000,), (4,), conv.out_fmt, QFormat(bits, True),
              QFormat(bits, False), _weights(rng, QFormat(bits, True), (4, 2000)), True)
    return QuantizedModel(name="audio", input_shape=shape, input_fmt=QFormat(8, False),
                          input_scale=1.0, layers=[conv, flat, fc]).validate()


def test_audio_first_layer_packs_x_and_runs_four_times_faster():
    """The 10x4 stride-2 kernel on one channel: x packing puts the 4 taps of both input digits
    into one word (a quarter of the steps, half the input words), and the result is exact."""
    rng = np.random.default_rng(7)
    model = _audio_net(rng)
    cfg = AccelConfig.for_model(model, array=(8, 8), weight_depth=1 << 14)
    program = compile_program(model, cfg)
    p = program.input_patches
    assert p is not None and (p.pack_y, p.pack_x) == (False, True) and p.shape == (4, 49, 5)
    plain = _compile(model, cfg, None)
    assert plain.descs[0].steps == 4 * program.descs[0].steps
    assert program.input_loc.words * 2 == plain.input_loc.words
    assert sum(program.cycles) < sum(plain.cycles)
    _equal_on_every_layer(model, program, cfg, random_input(rng, model, 2), "audio")


def test_no_packing_that_grows_the_activation_bank():
    """Three colour channels with a 3x3 stride-1 kernel: gathering all 27 taps would save a
    cycle per pixel but store the input in 7 words per pixel instead of 1, more than the
    network's largest live set, so the plain layout stays."""
    rng = np.random.default_rng(3)
    model = random_model(rng, [("conv", 16, 3, 1, 1), ("conv", 8, 1, 1, 0), ("flatten",),
                               ("linear", 4)], (3, 16, 16), 4, 4)
    cfg = AccelConfig.for_model(model, array=(8, 8), weight_depth=1 << 14)
    assert choose(model, cfg) is not None  # the cycle rule alone would pack
    assert compile_program(model, cfg).input_patches is None


def test_only_a_single_dense_conv_reader_is_packed():
    rng = np.random.default_rng(1)
    mlp = random_model(rng, [("flatten",), ("linear", 5)], (1, 4, 4), 4, 4)
    assert choose(mlp, AccelConfig.for_model(mlp)) is None
    k1 = random_model(rng, [("conv", 4, 1, 1, 0), ("flatten",), ("linear", 2)], (1, 4, 4))
    assert choose(k1, AccelConfig.for_model(k1)) is None  # 1x1 stride 1: nothing to gather

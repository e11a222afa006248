"""Program compiler and its software model against quantflow.reference, exactly."""

import numpy as np
import pytest

from factories import CNN_SPEC, digits_cnn, digits_mlp, random_input, random_model
from hwgen.config import AccelConfig
from quantflow import reference
from quantflow.errors import UnsupportedOpError
from quantflow.program import Op, compile_program, execute, layer_cycles


def _check(model, cfg, xs, seed):
    program = compile_program(model, cfg)
    ref = reference.run(model, xs)
    for n, x in enumerate(xs):
        got = execute(program, cfg, x)
        for i, g in enumerate(got):
            want = ref[i][n]
            assert g.shape == want.shape, f"seed {seed} layer {i}: shape {g.shape} {want.shape}"
            bad = np.argwhere(g != want)
            assert not len(bad), (f"seed {seed} {cfg}: first mismatch layer {i}, index"
                                  f" {tuple(bad[0])}, expected {want[tuple(bad[0])]},"
                                  f" got {g[tuple(bad[0])]}")
    return program


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("array", [(8, 8), (3, 5), (16, 4)])
def test_zoo_shapes_match_reference(bits, array):
    seed = bits * 1000 + array[0] * 10 + array[1]
    rng = np.random.default_rng(seed)
    for make in (digits_cnn, digits_mlp):
        model = make(rng, bits, bits)
        cfg = AccelConfig.for_model(model, array=array, weight_depth=4096)
        _check(model, cfg, random_input(rng, model, 2), seed)


def _random_spec(rng):
    k = int(rng.choice([1, 3, 5]))
    spec = [("conv", int(rng.integers(1, 11)), k, int(rng.choice([1, 2])),
             int(rng.integers(0, k // 2 + 1)))]
    pool = rng.integers(0, 4)
    spec.append([("maxpool", 2, 2), ("maxpool", 3, 1, 1), ("avgpool", 2, 1), ("gap",)][pool])
    if rng.random() < 0.5:
        spec.append(("conv", int(rng.integers(1, 11)), 1, 1, 0))
    spec += [("flatten",), ("linear", int(rng.integers(1, 12)))]
    return spec


@pytest.mark.parametrize("seed", range(40))
def test_random_layers_match_reference(seed):
    rng = np.random.default_rng(seed)
    wb, ab = int(rng.integers(2, 9)), int(rng.integers(2, 9))
    inb = int(rng.choice([ab, 8]))
    spec = _random_spec(rng)
    h = int(rng.integers(7, 11))  # every spec keeps a non-empty map
    model = random_model(rng, spec, (int(rng.integers(1, 7)), h, h), wb, ab, in_bits=inb)
    cols = max(int(rng.integers(1, 9)), -(-inb // ab))
    cfg = AccelConfig.for_model(model, array=(int(rng.integers(1, 9)), cols),
                                weight_depth=1 << 14, param_depth=1024)
    _check(model, cfg, random_input(rng, model, 2), seed)


def test_all_zero_input_and_k1():
    rng = np.random.default_rng(5)
    model = random_model(rng, [("conv", 3, 1, 1, 0), ("flatten",), ("linear", 1)], (1, 1, 1))
    cfg = AccelConfig.for_model(model, array=(1, 2))
    _check(model, cfg, np.zeros((1, 1, 1, 1), np.int64), 5)


def test_deterministic_images():
    model = digits_cnn(np.random.default_rng(3))
    cfg = AccelConfig.for_model(model)
    a, b = compile_program(model, cfg), compile_program(model, cfg)
    assert a.descs == b.descs
    for name in ("weights", "bias", "mult", "shift"):
        assert np.array_equal(getattr(a, name), getattr(b, name))


def test_cycle_model_and_utilisation():
    """digits-cnn on the default array: conv layers >= 80% of the array's peak."""
    model = digits_cnn(np.random.default_rng(0))
    cfg = AccelConfig.for_model(model)
    program = compile_program(model, cfg)
    assert program.cycles == [layer_cycles(d, cfg) for d in program.descs]
    conv = [i for i, d in enumerate(program.descs) if d.op is Op.MAC and d.out_h * d.out_w > 1]
    useful = sum(program.macs[i] for i in conv)
    cycles = sum(program.cycles[i] for i in conv)
    assert useful / (cycles * cfg.array_macs) >= 0.8


def test_pooling_the_wide_input_is_unsupported():
    rng = np.random.default_rng(0)
    model = random_model(rng, [("maxpool", 2, 2)] + CNN_SPEC[3:], (4, 4, 4), 4, 4)
    with pytest.raises(UnsupportedOpError, match=r"^layer 0 \('maxpool0'\): max pooling the 8-bit"
                                                 r" network input as 2 digits needs an overlay"
                                                 r" that stores activation tensors of that width"
                                                 r" \(this one stores 4 bits on 4-bit lanes\)$"):
        compile_program(model, AccelConfig.for_model(model))


def _mixed(name, first_last=8, body=2, acts=2):
    """A dagnets network with 8-bit first and last layers around a narrow body (PTQ)."""
    import dagnets
    from flowkit import digits

    from quantflow import importers, ptq

    ds = digits()
    layers = importers.capture(dagnets.build(name), ds.input_shape)
    macs = [lyr.name for lyr in layers if lyr.kind.value in ("conv2d", "linear")]
    bits = {macs[0]: (first_last, acts), macs[-1]: (first_last, acts)}
    cfg = ptq.PTQConfig(body, acts, layer_bits=bits)
    qm = ptq.quantize(layers, name, ds.input_shape, ds.x_train[:256], cfg).export()
    return qm, qm.quantize_input(ds.x_test[:3])


@pytest.mark.parametrize("array", [(8, 8), (2, 4), (3, 5)])
@pytest.mark.parametrize("name", ["resnet", "mlp-residual"])
def test_wide_layers_run_as_weight_digits(name, array):
    """8-bit first/last layers on 2-bit weight lanes: signed weight digits, one pass each;
    every layer equals the reference and each wide layer takes exactly `digits` times the
    issue slots of its one-digit schedule."""
    qm, xs = _mixed(name)
    cfg = AccelConfig.for_model(qm, array=array)
    assert (cfg.weight_bits, cfg.layer_weight_bits, cfg.weight_digits_max) == (2, 8, 5)
    program = _check(qm, cfg, xs, 0)
    wide = [d for d in program.descs if d.wdigits > 1]
    assert len(wide) == 2 and all(d.wdigits == 5 for d in wide)
    for d in wide:
        assert d.steps == 5 * d.kh * d.kw * d.in_g
    narrow = AccelConfig.for_model(qm, array=array, weight_bits=8, layer_weight_bits=0)
    assert all(d.wdigits == 1 for d in compile_program(qm, narrow).descs)


def test_lane_width_choice():
    """for_model picks the lane width by area x cycles: a 2-bit body with 8-bit ends gets 2-bit
    lanes; a network at one width gets that width."""
    from hwgen.config import lane_weight_bits

    qm, _ = _mixed("resnet")
    assert lane_weight_bits(qm) == 2
    qm8, _ = _mixed("resnet", first_last=8, body=8)
    assert lane_weight_bits(qm8) == 8


def test_a_wide_layer_needs_digits_in_the_configuration():
    from hwgen.errors import DoesNotFitError

    qm, _ = _mixed("mlp-residual")
    cfg = AccelConfig.for_model(qm, layer_weight_bits=4)
    with pytest.raises(DoesNotFitError, match=r"^layer 1 \('inp'\) weight bits does not fit:"
                                              r" needs 8, has 4"):
        compile_program(qm, cfg)


@pytest.mark.parametrize("array,window", [((8, 8), (1, 1, 1)), ((4, 8), (1, 2, 1)),
                                          ((16, 8), (2, 1, 2))])
def test_depthwise_reads_only_its_own_group(array, window):
    """A depthwise layer's tile reads only the words holding its channels: on a square array
    one group per tile (9 steps for a 3x3 kernel instead of 9 * groups)."""
    from flowkit import digits

    from quantflow import importers, ptq

    layers = importers.capture(_wide_depthwise(), (1, 8, 8))
    ds = digits()
    qm = ptq.quantize(layers, "dw", (1, 8, 8), ds.x_train[:64], ptq.PTQConfig(4, 4)).export()
    cfg = AccelConfig.for_model(qm, array=array)
    program = _check(qm, cfg, qm.quantize_input(ds.x_test[:2]), 0)
    dw = program.descs[1]
    assert (dw.in_g, dw.tdiv, dw.ginc) == window, (dw.in_g, dw.tdiv, dw.ginc)
    assert dw.steps == 9 * window[0]


def _wide_depthwise():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.ReLU(),
                         nn.Flatten(), nn.Linear(32 * 64, 4)).eval()


@pytest.mark.parametrize("array", [(8, 8), (2, 4), (3, 5)])
@pytest.mark.parametrize("name,act_lanes", [("resnet", 2), ("resnet", 4), ("mobile", 2),
                                            ("mlp-residual", 2)])
def test_digits_feed_adds_and_average_pools(name, act_lanes, array):
    """8-bit ends on narrow activation lanes: the 8-bit tensors feeding a residual add or an
    average pool are read as digits that the pool unit joins into values; every layer equals
    the reference and an add of D-digit tensors takes 2 * (cols // D) + 1 slots per group."""
    qm, xs = _mixed(name, body=2, acts=8)
    cfg = AccelConfig.for_model(qm, array=array, act_bits=act_lanes)
    program = _check(qm, cfg, xs, 0)
    joined = [d for d in program.descs if d.op in (Op.ADD, Op.SUM) and d.digits > 1]
    assert joined
    for d in joined:
        if d.op is Op.ADD:
            assert d.slots == 2 * (cfg.cols // d.digits) + 1

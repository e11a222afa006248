"""Layers of random shape through the Top/Core in Amaranth simulation, bit-exact and exactly as
many cycles as the compiler's model; full zoo-shaped networks through the host Driver."""

import numpy as np
import pytest

from factories import digits_cnn, digits_mlp, random_input, random_model
from hwgen.config import AccelConfig
from simtop import first_mismatch, run_top

SMALL = dict(max_dim=16)  # buffer depths: for_model sizes them to the model


def _layer_case(seed, bits=None):
    rng = np.random.default_rng(seed)
    wb, ab = int(rng.integers(2, 9)), int(rng.integers(2, 9))
    wb, ab = bits or (wb, ab)
    inb = int(rng.choice([ab, 8]))
    k = [1, 3, 5][seed % 3]
    stride = 1 + (seed // 3) % 2
    pad = int(rng.integers(0, k // 2 + 1))
    h = int(rng.integers(k + 2, k + 5))
    spec = [("conv", int(rng.integers(1, 7)), k, stride, pad),
            [("maxpool", 2, 2), ("maxpool", 3, 1, 1), ("avgpool", 2, 1), ("gap",)][seed % 4],
            ("flatten",), ("linear", int(rng.integers(1, 7)))]
    model = random_model(rng, spec, (int(rng.integers(1, 6)), h, h), wb, ab, in_bits=inb)
    cols = max(int(rng.integers(1, 5)), -(-inb // ab))
    cfg = AccelConfig.for_model(model, array=(int(rng.integers(1, 5)), cols), **SMALL)
    return rng, model, cfg


def _exact_one_input(seed, rng, model, cfg):
    """One random input through the Top: every layer bit-exact, cycles equal to the model."""
    xs = random_input(rng, model, 1)
    program, results = run_top(cfg, model, xs)
    mismatch = first_mismatch(model, xs, results)
    assert mismatch is None, f"seed {seed} {cfg}: (input, layer, index, expected, got)" \
                             f" = {mismatch}"
    assert results[0].layer_cycles == program.cycles, f"seed {seed}: cycle model"
    return program


@pytest.mark.parametrize("seed", range(18))
def test_random_layers(seed):
    _exact_one_input(seed, *_layer_case(seed))


@pytest.mark.parametrize("seed,bits", [(s, (1, [1, 2, 8][s % 3])) for s in range(6)]
                         + [(6, (4, 1)), (7, (8, 1))])
def test_binary_layers(seed, bits):
    """Bipolar 1-bit weight lanes (a select between a and -a) and 1-bit activation lanes
    (an 8-bit input as 8 one-bit digits): bit-exact, cycles equal to the model."""
    rng, model, cfg = _layer_case(seed, bits)
    assert (cfg.weight_bits, cfg.act_bits) == bits and cfg.bipolar_weights == (bits[0] == 1)
    _exact_one_input(seed, rng, model, cfg)


@pytest.mark.parametrize("bits,host_bits", [(2, 32), (4, 16),
                                            pytest.param(8, 32, marks=pytest.mark.slow)])
def test_mlp_whole_program(bits, host_bits):
    """One RUN over every descriptor, then logits and counters (the fast path), with host
    words of 32 and of 16 bits (memory words then travel in more chunks)."""
    rng = np.random.default_rng(bits)
    model = digits_mlp(rng, bits, bits)
    cfg = AccelConfig.for_model(model, array=(4, 4), host_bits=host_bits,
                                counter_bits=host_bits)
    xs = random_input(rng, model, 2)
    program, results = run_top(cfg, model, xs, every_layer=False)
    assert first_mismatch(model, xs, results) is None, f"seed {bits}"
    for res in results:
        assert res.layer_cycles == program.cycles
        assert res.total_cycles == sum(program.cycles)


@pytest.mark.parametrize("idle,backpressure", [(0.5, 0.0), (0.0, 0.7), (0.3, 0.3)])
def test_stream_stalls(idle, backpressure):
    """Idle cycles on the command stream and backpressure on the reply stream change nothing."""
    rng, model, cfg = _layer_case(4)
    xs = random_input(rng, model, 1)
    program, results = run_top(cfg, model, xs, idle=idle, backpressure=backpressure, seed=9)
    assert first_mismatch(model, xs, results) is None, f"seed 4 idle {idle} bp {backpressure}"
    assert results[0].layer_cycles == program.cycles


def test_mlp_every_layer():
    """A network that starts with FLATTEN: its input is stored as a vector, read back as one."""
    rng = np.random.default_rng(21)
    model = digits_mlp(rng, 3, 3)
    cfg = AccelConfig.for_model(model, array=(4, 4))
    xs = random_input(rng, model, 1)
    program, results = run_top(cfg, model, xs, every_layer=True)
    assert first_mismatch(model, xs, results) is None, "seed 21"
    assert results[0].layer_cycles == program.cycles


def _cnn(bits, seed):
    rng = np.random.default_rng(seed)
    model = digits_cnn(rng, bits, bits)
    cfg = AccelConfig.for_model(model)
    xs = random_input(rng, model, 1)
    program, results = run_top(cfg, model, xs)
    mismatch = first_mismatch(model, xs, results)
    assert mismatch is None, f"seed {seed} bits {bits}: {mismatch}"
    assert results[0].layer_cycles == program.cycles
    return program, results


@pytest.mark.slow
@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7, 8])
def test_digits_cnn_bits(bits):
    _cnn(bits, 100 + bits)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(18, 120))
def test_random_layers_sweep(seed):
    test_random_layers(seed)


def _dag_case(name, signed, bits=(4, 4)):
    import dagnets

    from quantflow import importers, ptq
    from flowkit import digits

    ds = digits()
    x, xt = ds.x_train[:300], ds.x_test[:1]
    if signed:  # standardized features: a signed network input
        x, xt = (x - 0.3) / 0.4, (xt - 0.3) / 0.4
    layers = importers.capture(dagnets.build(name), ds.input_shape)
    qm = ptq.quantize(layers, name, ds.input_shape, x, ptq.PTQConfig(*bits)).export()
    return qm, qm.quantize_input(xt)


@pytest.mark.parametrize("name,signed", [
    ("mlp-residual", True), ("concat", False), ("resnet", True),
    pytest.param("mlp-residual", False, marks=pytest.mark.slow),
    pytest.param("mobile", False, marks=pytest.mark.slow),
    pytest.param("mobile", True, marks=pytest.mark.slow)])
def test_dag_networks(name, signed):
    """Residual adds (signed and unsigned branches), concat, depthwise/grouped convolutions and
    signed inputs through the Core: every layer bit-exact, cycles equal to the model."""
    qm, xs = _dag_case(name, signed)
    cfg = AccelConfig.for_model(qm, array=(4, 4), **SMALL)
    assert cfg.signed_acts == (signed or any(lyr.out_fmt.signed and lyr.requant
                                              for lyr in qm.layers))
    program, results = run_top(cfg, qm, xs)
    assert first_mismatch(qm, xs, results) is None
    assert results[0].layer_cycles == program.cycles


@pytest.mark.parametrize("name,signed", [("mlp-residual", True), ("concat", False),
                                         ("resnet", True)])
def test_binary_weights_in_dag_networks(name, signed):
    """1-bit weights with 4-bit (signed where the graph needs it) activations on bipolar lanes:
    residual adds, a concat whose parts start at word boundaries, projection shortcuts."""
    qm, xs = _dag_case(name, signed, (1, 4))
    cfg = AccelConfig.for_model(qm, array=(4, 4), **SMALL)
    assert cfg.bipolar_weights, cfg
    program, results = run_top(cfg, qm, xs)
    assert first_mismatch(qm, xs, results) is None
    assert results[0].layer_cycles == program.cycles


@pytest.mark.parametrize("name", ["mlp-residual",
                                  pytest.param("resnet", marks=pytest.mark.slow)])
def test_wide_layers_on_narrow_lanes(name):
    """8-bit first/last layers on an overlay with 2-bit weight lanes (weight digits)."""
    from test_program import _mixed

    qm, xs = _mixed(name)
    cfg = AccelConfig.for_model(qm, array=(4, 4), **SMALL)
    assert (cfg.weight_bits, cfg.weight_digits_max) == (2, 5)
    program, results = run_top(cfg, qm, xs[:1])
    assert first_mismatch(qm, xs[:1], results) is None
    assert results[0].layer_cycles == program.cycles


@pytest.mark.parametrize("seed,layer_bits,array", [
    (0, {0: (8, 8), 3: (2, 8), 5: (8, 2)}, (4, 4)),   # 8-bit first and last layers, 2-bit body
    (1, {1: (2, 8)}, (2, 4)),                          # max pooling an 8-bit tensor as digits
    (2, {0: (2, 5), 1: (3, 7)}, (3, 5)),               # 5 and 7 bits on 2-bit lanes, gaps
    (3, {0: (8, 8, True)}, (4, 4)),                    # signed: only the top digit is signed
    (4, {1: (2, 6, True)}, (2, 4))])                   # max pooling signed digit groups
def test_wide_activations_as_digits(seed, layer_bits, array):
    """Activation tensors wider than the lanes: the drain writes each element's digits into
    adjacent lanes, the next layer's PEs shift them back, max pooling compares digit groups;
    every layer bit-exact and cycles equal to the model."""
    spec = [("conv", 5, 3, 1, 1), ("conv", 6, 3, 1, 1), ("maxpool", 2, 2, 0),
            ("conv", 5, 3, 1, 0), ("flatten",), ("linear", 4)]
    rng = np.random.default_rng(seed)
    model = random_model(rng, spec, (1, 6, 6), 2, 2, layer_bits=layer_bits)
    cfg = AccelConfig.for_model(model, array=array, act_bits=2, **SMALL)
    assert cfg.layer_act_bits == max(bits[1] for bits in layer_bits.values())
    xs = random_input(rng, model, 1)
    program, results = run_top(cfg, model, xs)
    assert any(d.odigits > 1 for d in program.descs)
    mismatch = first_mismatch(model, xs, results)
    assert mismatch is None, f"seed {seed} {cfg}: {mismatch}"
    assert results[0].layer_cycles == program.cycles


@pytest.mark.parametrize("seed,layer_bits,array", [
    (0, {1: (2, 8), 2: (2, 8)}, (4, 4)),          # an 8-bit tensor averaged, 8-bit result
    (1, {1: (2, 8, True), 2: (2, 2)}, (2, 4)),    # signed digits averaged to a 2-bit tensor
    (2, {1: (2, 6), 2: (2, 4)}, (3, 5))])         # 3 digits in, 2 out, lanes left over
def test_average_pooling_joins_digits(seed, layer_bits, array):
    """Average pooling a tensor wider than the lanes: the pool unit sums each digit lane (only
    the top digit signed) and joins each element's digits into its value before the drain
    rescales it; every layer bit-exact and cycles equal to the model."""
    spec = [("conv", 5, 3, 1, 1), ("conv", 6, 3, 1, 1), ("avgpool", 2, 2, 0),
            ("conv", 5, 3, 1, 0), ("flatten",), ("linear", 4)]
    rng = np.random.default_rng(seed)
    model = random_model(rng, spec, (1, 6, 6), 2, 2, layer_bits=layer_bits)
    cfg = AccelConfig.for_model(model, array=array, act_bits=2, **SMALL)
    xs = random_input(rng, model, 2)
    program, results = run_top(cfg, model, xs)
    assert any(d.op.name == "SUM" and d.digits > 1 for d in program.descs)
    mismatch = first_mismatch(model, xs, results)
    assert mismatch is None, f"seed {seed} {cfg}: {mismatch}"
    assert results[0].layer_cycles == program.cycles


def _drain_case(seed):
    """A random first conv and 1x1 convs over few channels (drain-bound pixels), with wide
    activation tensors as digits on some seeds, on an array whose rows admit several drain
    lanes."""
    rng = np.random.default_rng(seed)
    ab = int(rng.choice([2, 4, 8]))
    wb = int(rng.integers(2, 9))
    spec = [("conv", int(rng.integers(3, 13)), int(rng.choice([1, 3])), 1, 1),
            ("conv", int(rng.integers(2, 11)), 1, 1, 0), ("maxpool", 2, 2),
            ("conv", int(rng.integers(1, 9)), 1, 1, 0), ("flatten",), ("linear", 5)]
    layer_bits = {1: (wb, 8)} if ab < 8 and seed % 2 else None
    model = random_model(rng, spec, (int(rng.integers(1, 4)), 6, 6), wb, ab,
                         layer_bits=layer_bits)
    rows = int(rng.choice([2, 4, 8]))
    lanes = int(rng.choice([2, 4, 8][:[2, 4, 8].index(rows) + 1]))
    cfg = AccelConfig.for_model(model, array=(rows, 8), drain_lanes=lanes, **SMALL)
    return rng, model, cfg


@pytest.mark.parametrize("seed", range(14))
def test_parallel_drain(seed):
    """Several requantizers side by side: every layer bit-exact, cycles equal to the model,
    and fewer cycles than one drain lane where a pixel has fewer steps than rows."""
    from quantflow.program import compile_program

    import dataclasses

    rng, model, cfg = _drain_case(seed)
    program = _exact_one_input(seed, rng, model, cfg)
    one = compile_program(model, dataclasses.replace(cfg, drain_lanes=1))
    assert sum(program.cycles) < sum(one.cycles), (seed, program.cycles, one.cycles)


@pytest.mark.parametrize("name,signed,lanes", [("mlp-residual", True, 4), ("resnet", True, 2),
                                               ("resnet", False, 4)])
def test_adds_through_the_parallel_drain(name, signed, lanes):
    """An add drains ``drain_group`` pairs side by side (A's lanes, then B's, each requantizer
    holding its own first value): every layer bit-exact, cycles equal to the model, and each
    add in fewer cycles than through one drain lane."""
    import dataclasses

    from quantflow.program import Op, compile_program

    qm, xs = _dag_case(name, signed)
    cfg = AccelConfig.for_model(qm, array=(4, 4), drain_lanes=lanes, **SMALL)
    program, results = run_top(cfg, qm, xs)
    assert first_mismatch(qm, xs, results) is None
    assert results[0].layer_cycles == program.cycles
    one = compile_program(qm, dataclasses.replace(cfg, drain_lanes=1))
    adds = [i for i, d in enumerate(program.descs) if d.op is Op.ADD]
    assert adds and all(program.cycles[i] < one.cycles[i] for i in adds), (
        [program.cycles[i] for i in adds], [one.cycles[i] for i in adds])

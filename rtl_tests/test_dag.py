"""DAG networks through the generated overlay on Verilator and Icarus, every layer compared.

Residual adds (identity and strided projection shortcuts, with and without a ReLU after the
add), depthwise convolutions with depth multipliers, grouped convolutions, concatenations,
linear (signed) bottlenecks and signed network inputs, with seeded random weights and
BatchNorm statistics (tests/dagnets.py) quantized by the PTQ flow. Default: a random DAG at
every width 2..8 and at mixed per-layer widths on Icarus, the four named DAG nets at 4 bits on
Verilator (unsigned and standardized inputs), the zoo's digits-resnet and digits-dsconv, and
8-bit first/last layers on 2-bit lanes; ``-m slow``: random DAGs at every width on Verilator,
every image of the zoo nets.
"""

import numpy as np
import pytest

from rtl_tests.simulate import simulate
from quantflow import importers, ptq, serialize
from quantflow.data import digits
from rtl_tests.runner import Sim
from tests import dagnets


def _quantize(net, wbits, abits, signed, layer_bits=None):
    ds = digits()
    x, xt = ds.x_train[:256], ds.x_test[:3]
    if signed:  # standardized features: the network input is signed
        x, xt = (x - 0.3) / 0.4, (xt - 0.3) / 0.4
    layers = importers.capture(net, ds.input_shape)
    cfg = ptq.PTQConfig(wbits, abits, layer_bits=layer_bits or {})
    qm = ptq.quantize(layers, "dag", ds.input_shape, x, cfg).export()
    return qm, qm.quantize_input(xt)


def _check(sim, qm, xs, tmp_path, seed, where, array=(8, 8)):
    """Every layer of ``xs`` bit-exact and measured cycles equal to the model. Verilator runs
    the default 8x8 array (the digits zoo nets share those builds), Icarus a 4x4 one (its
    simulation time grows with the design)."""
    folder = serialize.save(qm, tmp_path / "q")
    s = simulate(folder, sim, inputs=xs, seed=seed, array=array, quiet=True).summary()
    assert s["bit_exact"] and s["mismatches"] == 0 and s["images"] == len(xs), (
        f"seed {seed}, {where}, {sim.value}: {s['mismatches']} mismatches, first"
        f" {s['first_mismatches'][:3]}")
    measured = [row["cycles"] for row in s["layers"]]
    analytical = [row["analytical_cycles"] for row in s["layers"]]
    assert measured == analytical, f"seed {seed}, {where}: cycles {measured} vs {analytical}"
    return s


def _random_case(seed, wbits, abits, mixed=False):
    rng = np.random.default_rng(seed)
    net = dagnets.random_dag(rng, blocks=3)
    signed = bool(rng.random() < 0.5)
    layer_bits = None
    if mixed:
        names = [lyr.name for lyr in importers.capture(net, (1, 8, 8))
                 if lyr.kind.value in ("conv2d", "linear")]
        layer_bits = {n: (int(rng.integers(2, wbits + 1)), int(rng.integers(2, abits + 1)))
                      for n in names}
    return _quantize(net, wbits, abits, signed, layer_bits)


@pytest.mark.icarus
@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7, 8])
def test_random_dag_icarus(bits, seed, tmp_path):
    qm, xs = _random_case(seed, bits, bits)
    _check(Sim.ICARUS, qm, xs[:1], tmp_path, seed, f"random DAG W{bits}A{bits}", (4, 4))


@pytest.mark.icarus
def test_random_dag_mixed_widths_icarus(seed, tmp_path):
    qm, xs = _random_case(seed, 8, 8, mixed=True)
    assert len({lyr.w_fmt.bits for lyr in qm.mac_layers}) > 1
    _check(Sim.ICARUS, qm, xs[:1], tmp_path, seed, "random DAG, mixed widths", (4, 4))


@pytest.mark.verilator
@pytest.mark.parametrize("name,signed", [
    ("resnet", True), ("mobile", True), ("concat", False), ("mlp-residual", True),
    pytest.param("resnet", False, marks=pytest.mark.slow),
    pytest.param("mobile", False, marks=pytest.mark.slow),
    pytest.param("concat", True, marks=pytest.mark.slow),
    pytest.param("mlp-residual", False, marks=pytest.mark.slow)])
def test_dag_nets_verilator(name, signed, seed, tmp_path):
    qm, xs = _quantize(dagnets.build(name), 4, 4, signed)
    _check(Sim.VERILATOR, qm, xs[:2], tmp_path, seed, f"{name} W4A4")


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7, 8])
def test_random_dag_verilator(bits, seed, tmp_path):
    for n in range(3):
        qm, xs = _random_case(seed + n, bits, bits)
        _check(Sim.VERILATOR, qm, xs, tmp_path / str(n), seed + n, f"random DAG W{bits}A{bits}")


def _mixed_case(name, body):
    """8-bit first and last layers around a ``body``-bit network: the overlay gets
    ``body``-bit weight lanes and runs the ends as weight digits."""
    net = dagnets.build(name)
    macs = [lyr.name for lyr in importers.capture(net, (1, 8, 8))
            if lyr.kind.value in ("conv2d", "linear")]
    return _quantize(net, body, body, False, {macs[0]: (8, body), macs[-1]: (8, body)})


def _mixed_act_case(name, body):
    """8-bit weights and activations at both ends around a ``body``-bit network: the first
    layer's output and the last layer's input are 8-bit tensors, stored as digits of the
    ``body``-bit activation lanes."""
    net = dagnets.build(name)
    macs = [lyr.name for lyr in importers.capture(net, (1, 8, 8))
            if lyr.kind.value in ("conv2d", "linear")]
    bits = {macs[0]: (8, 8), macs[-2]: (body, 8), macs[-1]: (8, body)}
    return _quantize(net, body, body, False, bits)


@pytest.mark.parametrize("sim,name,body", [
    pytest.param(Sim.ICARUS, "mlp-residual", 2, marks=pytest.mark.icarus),
    pytest.param(Sim.ICARUS, "resnet", 4, marks=[pytest.mark.icarus, pytest.mark.slow]),
    pytest.param(Sim.VERILATOR, "resnet", 2, marks=[pytest.mark.verilator, pytest.mark.slow]),
    pytest.param(Sim.VERILATOR, "mobile", 2, marks=[pytest.mark.verilator, pytest.mark.slow])])
def test_mixed_precision_on_narrow_lanes(sim, name, body, seed, tmp_path):
    qm, xs = _mixed_case(name, body)
    array = (4, 4) if sim is Sim.ICARUS else (8, 8)
    s = _check(sim, qm, xs[:2], tmp_path, seed, f"{name} 8/{body}/8", array)
    assert s["config_digest"]


@pytest.mark.parametrize("sim,name,body", [
    pytest.param(Sim.VERILATOR, "mobile", 2, marks=pytest.mark.verilator),
    pytest.param(Sim.ICARUS, "concat", 2, marks=pytest.mark.icarus),
    # the 8-bit input layer's signed output feeds the residual add (digits joined in the pool)
    pytest.param(Sim.ICARUS, "mlp-residual", 2, marks=pytest.mark.icarus),
    pytest.param(Sim.VERILATOR, "concat", 4, marks=[pytest.mark.verilator, pytest.mark.slow]),
    pytest.param(Sim.ICARUS, "mobile", 3, marks=[pytest.mark.icarus, pytest.mark.slow])])
def test_wide_activations_on_narrow_lanes(sim, name, body, seed, tmp_path):
    """8-bit ends (weights and activations) on ``body``-bit lanes: the overlay gets
    ``body``-bit weight and activation lanes (for_model's choice), the 8-bit tensors run as
    activation digits (a depthwise layer, a concat's branches and the MLP's residual add of
    signed tensors read them), and every layer
    is bit-exact with measured cycles equal to the model."""
    from hwgen.config import AccelConfig

    qm, xs = _mixed_act_case(name, body)
    array = (4, 4) if sim is Sim.ICARUS else (8, 8)
    cfg = AccelConfig.for_model(qm, array=array)
    assert (cfg.weight_bits, cfg.act_bits, cfg.layer_act_bits) == (body, body, 8)
    s = _check(sim, qm, xs[:2], tmp_path, seed, f"{name} 8/{body}/8 with 8-bit activations",
               array)
    assert s["config_digest"] == cfg.digest


@pytest.mark.verilator
@pytest.mark.parametrize("name", ["digits-resnet", "digits-dsconv"])
def test_digits_dag_zoo_verilator(quantized_zoo, name, seed):
    """The zoo's trained digits-sized DAG networks (residual with a projection shortcut,
    depthwise separable) at W4A4: 20 test images (all 450 behind ``slow``), every layer."""
    s = simulate(quantized_zoo(name, 4, 4), Sim.VERILATOR, images=20, seed=seed,
                 quiet=True).summary()
    assert s["bit_exact"] and s["mismatches"] == 0 and s["images"] == 20, s["first_mismatches"]
    assert s["accuracy"] is not None and s["accuracy"] > 0.9, s["accuracy"]
    measured = [row["cycles"] for row in s["layers"]]
    assert measured == [row["analytical_cycles"] for row in s["layers"]]


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.parametrize("bits", [2, 8])
@pytest.mark.parametrize("name", ["digits-resnet", "digits-dsconv"])
def test_digits_dag_zoo_every_image(quantized_zoo, name, bits, seed):
    s = simulate(quantized_zoo(name, bits, bits), Sim.VERILATOR, images=0, seed=seed,
                 quiet=True).summary()
    assert s["bit_exact"] and s["mismatches"] == 0 and s["images"] == 450, s["first_mismatches"]


@pytest.mark.parametrize("sim,name,images", [
    pytest.param(Sim.VERILATOR, "digits-resnet", 20, marks=pytest.mark.verilator),
    pytest.param(Sim.VERILATOR, "digits-dsconv", 20, marks=pytest.mark.verilator),
    pytest.param(Sim.ICARUS, "digits-dsconv", 2, marks=pytest.mark.icarus)])
def test_digits_dag_zoo_mixed_precision(quantized_zoo, zoo_bit_exact, sim, name, images, seed):
    """The zoo's trained digits-sized DAG networks with 8-bit weights in the first and last
    layers around a 2-bit body: the overlay gets 2-bit weight lanes (for_model's choice), the
    ends run as weight digits, and every layer of every image is bit-exact with measured cycles
    equal to the model."""
    zoo_bit_exact(quantized_zoo(name, 2, 2, ends=8), sim, images, seed, (2, 2),
                  f"{name} 8/2/8")


@pytest.mark.parametrize("sim,name,images", [
    pytest.param(Sim.VERILATOR, "digits-resnet", 20, marks=pytest.mark.verilator),
    pytest.param(Sim.ICARUS, "digits-mlp", 3, marks=pytest.mark.icarus)])
def test_wide_head_on_the_overlay(quantized_zoo, zoo_bit_exact, sim, name, images, seed):
    """The classifier's input kept at 8 bits in a W4A4 network (``--wide-head``'s trial): on
    4-bit lanes that tensor is two digits per element; digits-resnet's global average pool
    sums and joins them before the classifier. Every layer bit-exact, cycles = model."""
    from hwgen.config import AccelConfig
    from quantflow.serialize import load

    folder = quantized_zoo(name, 4, 4, head=8)
    qm = load(folder)
    kinds = ("conv2d", "linear", "add")  # the head is the last hidden layer or the final add
    assert {lyr.out_fmt.bits for lyr in qm.layers[:-1] if lyr.kind.value in kinds} == {4, 8}
    assert AccelConfig.for_model(qm).layer_act_bits == 8
    zoo_bit_exact(folder, sim, images, seed, (4, 4), f"{name} W4A4 head A8")

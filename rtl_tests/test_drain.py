"""Several requantizers side by side in the drain (``AccelConfig.drain_lanes``) on Verilator and
Icarus: the zoo's digits networks (digits-resnet's adds too) bit-exact on every layer, measured
cycles equal to the model, and fewer cycles than a single drain lane."""

import dataclasses

import pytest

from hwgen.config import AccelConfig
from quantflow.program import compile_program
from quantflow.serialize import load
from rtl_tests.runner import Sim
from rtl_tests.simulate import simulate


@pytest.mark.parametrize("sim,name,bits,ends,lanes,images", [
    pytest.param(Sim.VERILATOR, "digits-cnn", 4, None, 4, 30,
                 marks=[pytest.mark.verilator, pytest.mark.slow]),
    pytest.param(Sim.VERILATOR, "digits-dsconv", 2, 8, 8, 20, marks=pytest.mark.verilator),
    pytest.param(Sim.VERILATOR, "digits-resnet", 4, None, 4, 10, marks=pytest.mark.verilator),
    pytest.param(Sim.ICARUS, "digits-cnn", 4, None, 2, 2, marks=pytest.mark.icarus),
    # residual adds through the parallel drain (pairs side by side)
    pytest.param(Sim.ICARUS, "digits-resnet", 4, None, 4, 2, marks=pytest.mark.icarus)])
def test_parallel_drain_on_the_zoo(quantized_zoo, sim, name, bits, ends, lanes, images, seed):
    folder = quantized_zoo(name, bits, bits, ends=ends)
    model = load(folder)
    cfg = AccelConfig.for_model(model, drain_lanes=lanes)
    s = simulate(folder, sim, images=images, seed=seed, quiet=True,
                 overrides={"drain_lanes": lanes}).summary()
    assert s["bit_exact"] and s["mismatches"] == 0 and s["images"] == images, (
        f"seed {seed}, {name} on {sim.value} with {lanes} drain lanes:"
        f" {s['first_mismatches'][:3]}")
    assert s["config_digest"] == cfg.digest
    measured = [row["cycles"] for row in s["layers"]]
    assert measured == [row["analytical_cycles"] for row in s["layers"]]
    one = compile_program(model, dataclasses.replace(cfg, drain_lanes=1))
    assert sum(measured) < sum(one.cycles), (measured, one.cycles)

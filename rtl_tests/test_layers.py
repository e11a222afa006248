"""Layers of random shape through the overlay on Verilator and Icarus, every output compared.

Chains cover kernel 1, 3 and 5, stride 1 and 2, padding, channel counts that are not
multiples of the array, max/average/global pooling and linear layers, with random weights,
biases and requantization parameters including the format extremes (tests/factories.py), and
inputs with the input format's min and max. Default: bit widths 2, 4 and 8 on Icarus (the
ends and the middle; rtl_tests/test_dag.py runs random DAGs at every width 2..8 on Icarus in
the default suite too) and 4 bits on Verilator (the build the network tests share);
``-m slow``: the other widths on Icarus, every width and mixed widths on Verilator.
"""

import numpy as np
import pytest

from rtl_tests.simulate import simulate
from quantflow import serialize
from rtl_tests.runner import Sim
from tests.factories import random_input, random_model

#: (name, input shape, layer spec) - spec tuples as in tests/factories.py.
CHAINS = [
    ("k135", (3, 9, 9), [("conv", 5, 3, 1, 1), ("conv", 11, 5, 2, 2), ("conv", 9, 1, 1, 0),
                         ("flatten",), ("linear", 7)]),
    ("pools", (2, 12, 12), [("conv", 10, 3, 2, 0), ("maxpool", 2, 2, 0), ("conv", 13, 1, 1, 0),
                            ("avgpool", 2, 1), ("conv", 6, 3, 1, 1), ("gap",), ("flatten",),
                            ("linear", 3)]),
    ("wide", (17, 4, 4), [("conv", 19, 3, 1, 1), ("conv", 8, 2, 2, 0), ("flatten",),
                          ("linear", 9), ("linear", 4)]),
]


def _run_chains(sim, wbits, abits, seed, tmp_path, images=2):
    rng = np.random.default_rng(seed)
    for name, shape, spec in CHAINS:
        model = random_model(rng, spec, shape, wbits, abits, name=name)
        folder = serialize.save(model, tmp_path / name)
        x = random_input(rng, model, images)
        s = simulate(folder, sim, inputs=x, seed=seed).summary()
        assert s["bit_exact"] and s["mismatches"] == 0 and s["images"] == images, (
            f"seed {seed}, chain {name}, W{wbits}A{abits}, {sim.value}: "
            f"{s['mismatches']} mismatches, first {s['first_mismatches'][:3]}")


@pytest.mark.icarus
@pytest.mark.parametrize("bits", [2, pytest.param(3, marks=pytest.mark.slow), 4,
                                  *(pytest.param(b, marks=pytest.mark.slow) for b in (5, 6, 7)),
                                  8])
def test_random_layers_icarus(bits, seed, tmp_path):
    _run_chains(Sim.ICARUS, bits, bits, seed, tmp_path, images=1)


@pytest.mark.verilator
def test_random_layers_verilator_4bit(seed, tmp_path):
    _run_chains(Sim.VERILATOR, 4, 4, seed, tmp_path)


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.parametrize("wbits,abits", [(2, 2), (3, 3), (5, 5), (6, 6), (7, 7), (8, 8),
                                         (2, 8), (8, 2), (3, 6)])
def test_random_layers_verilator(wbits, abits, seed, tmp_path):
    _run_chains(Sim.VERILATOR, wbits, abits, seed, tmp_path)

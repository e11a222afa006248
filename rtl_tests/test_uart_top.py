"""End to end through the board design: Driver -> simulated UART pins -> bridge -> Top.

The design is the pair of files ``hwgen synth`` puts on a board (``hwgen_uart_top.v``
instantiating ``hwgen_top.v``, :class:`hwgen.emit.Design`), with block RAM and at a divisor of
4 clock cycles per bit so that simulation is fast (``hwgen simulate --board NAME --uart``
runs the board's own divisor and memories: ``tests/test_board_design.py``); the host code is
the :class:`hwgen.host.Driver` ``hwgen run`` uses, and every layer is compared.
"""

import pytest

from hwgen.config import AccelConfig
from hwgen.emit import Design
from rtl_tests.simulate import simulate
from hwgen.uart import MIN_DIVISOR
from quantflow.serialize import load
from rtl_tests.runner import Sim


def _run(qdir, sim, images, seed, array=(4, 4)):
    cfg = AccelConfig.for_model(load(qdir), array=array)
    report = simulate(qdir, sim, images=images, seed=seed, quiet=True, uart=True,
                      design=Design(cfg, divisor=MIN_DIVISOR, about={"board": None}))
    s = report.summary()
    assert s["images"] == images and s["bit_exact"], s["first_mismatches"]
    assert s["mismatches"] == 0 and s["cycles_per_inference"] == \
        s["analytical_cycles_per_inference"]
    assert s["design"]["simulated_top"] == "hwgen_uart_top"
    assert s["design"]["uart_divisor"] == MIN_DIVISOR


@pytest.mark.parametrize("sim", [pytest.param(Sim.ICARUS, id="icarus", marks=pytest.mark.icarus)])
def test_digits_mlp_over_uart(quantized_zoo, sim, seed):
    _run(quantized_zoo("digits-mlp", 4, 4), sim, images=3, seed=seed)


@pytest.mark.parametrize("sim", [pytest.param(Sim.VERILATOR, id="verilator",
                                              marks=pytest.mark.verilator)])
def test_digits_cnn_over_uart(quantized_zoo, sim, seed):
    _run(quantized_zoo("digits-cnn", 4, 4), sim, images=1, seed=seed)

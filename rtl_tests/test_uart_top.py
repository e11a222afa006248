"""End to end through the board design: Driver -> simulated UART pins -> bridge -> Top.

The design is the same :class:`hwgen.uart.UARTTop` that ``hwgen synth`` puts on a board (with
block RAM instead of SPRAM), at a divisor of 4 clock cycles per bit so that simulation is
fast; the host code is :func:`hwgen.commands.run.run_on_link`, the one ``hwgen run`` uses.
"""

import json

import numpy as np
import pytest
from amaranth.back import verilog

from hwgen.config import AccelConfig
from hwgen.simulate import images_for
from hwgen.uart import MIN_DIVISOR, UARTTop
from quantflow.serialize import load
from rtl_tests import runner
from rtl_tests.runner import Sim

TOPLEVEL = "hwgen_uart_top"


def _design(tmp_path, qdir, array):
    cfg = AccelConfig.for_model(load(qdir), array=array)
    folder = tmp_path / "design"
    folder.mkdir()
    text = verilog.convert(UARTTop(cfg, MIN_DIVISOR), name=TOPLEVEL, emit_src=False)
    (folder / f"{TOPLEVEL}.v").write_text(text)
    (folder / "config.json").write_text(json.dumps({"config": cfg.to_json(),
                                                    "divisor": MIN_DIVISOR}))
    return folder


def _run(tmp_path, qdir, sim, images, seed, array=(4, 4)):
    model = load(qdir)
    design = _design(tmp_path, qdir, array)
    xs, ys = images_for(model, images)
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, x=xs, y=ys)
    r, build_dir = runner.build(design / f"{TOPLEVEL}.v", TOPLEVEL, sim)
    passed, failed, result = runner.run(
        r, build_dir, TOPLEVEL, "rtl_tests.tb.tb_uart", seed=seed,
        env={"HWGEN_DESIGN": design, "HWGEN_QMODEL": qdir, "HWGEN_INPUTS": inputs})
    assert failed == 0 and passed == 1, result
    assert result["images"] == images and result["mismatching_images"] == []


@pytest.mark.parametrize("sim", [pytest.param(Sim.ICARUS, id="icarus", marks=pytest.mark.icarus)])
def test_digits_mlp_over_uart(quantized_zoo, sim, seed, tmp_path):
    _run(tmp_path, quantized_zoo("digits-mlp", 4, 4), sim, images=3, seed=seed)


@pytest.mark.parametrize("sim", [pytest.param(Sim.VERILATOR, id="verilator",
                                              marks=pytest.mark.verilator)])
def test_digits_cnn_over_uart(quantized_zoo, sim, seed, tmp_path):
    _run(tmp_path, quantized_zoo("digits-cnn", 4, 4), sim, images=1, seed=seed)

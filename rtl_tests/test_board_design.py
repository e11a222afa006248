"""The design ``hwgen simulate --board`` proves bit-exact is the design ``hwgen synth --board``
builds: the same Verilog files, byte for byte (:func:`boards.overlay.board_design`).

The board build's plan (what Yosys reads) is compared with the simulated design folder
without running Yosys; the real builds in ``tests/test_boards.py`` check the SHA-256 a
``synth`` report carries against the simulated one.
"""

import hashlib
import json

import pytest

from boards import Board
from boards.build import _plan, design_verilog
from boards.overlay import board_config, board_design
from hwgen.emit import TOP_NAME, UART_NAME
from quantflow.serialize import load
from rtl_tests.runner import Sim
from rtl_tests.simulate import simulate


def _sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("board", [Board.ICEBREAKER, Board.ULX3S_85F],
                         ids=lambda b: b.value.name)
def test_board_build_reads_the_simulated_files(quantized_zoo, board):
    target = board.value
    model = load(quantized_zoo("digits-cnn", 4, 4))
    design = board_design(target, model)
    cfg, style = board_config(target, model)
    assert design.cfg == cfg and design.about["multipliers"] == style
    files = design_verilog(design)
    plan = _plan(target, design)
    for name in (f"{TOP_NAME}.v", f"{UART_NAME}.v"):
        assert plan.files[name] == files[name]  # what the Yosys script reads
    script = plan.files["top.ys"].splitlines()
    assert all(any(ln.split() == ["read_verilog", name] for ln in script) for name in files)
    top = files[f"{TOP_NAME}.v"]
    if target.device.spram:  # the weights in SPRAM, in simulation as on the chip
        assert "SB_SPRAM256KA" in top and design.about["memories"]["WEIGHT"].endswith(
            "SB_SPRAM256KA")
        assert [name for name, _ in design.models] == ["SB_SPRAM256KA.v"]
    else:
        assert "SB_SPRAM256KA" not in top and not design.models
    assert f"{TOP_NAME} " in files[f"{UART_NAME}.v"]  # the bridge instantiates the top


def _simulate(qdir, board, images, sim, uart=False):
    """What ``hwgen simulate QDIR --board NAME`` runs: the board's design on the simulator
    (the command's own output is tested in tests/test_cli.py)."""
    design = board_design(board.value, load(qdir))
    s = simulate(qdir, sim, images=images, design=design, uart=uart, quiet=True).summary()
    return (0 if s["bit_exact"] else 1), json.loads(json.dumps(s))


@pytest.mark.parametrize("sim", [pytest.param(Sim.VERILATOR, id="verilator",
                                              marks=pytest.mark.verilator)])
def test_simulate_board_is_bit_exact_on_the_built_files(quantized_zoo, sim):
    """iCEBreaker, digits-cnn W4A4: the 2x2 with its weights in SPRAM (Yosys's model)."""
    qdir = quantized_zoo("digits-cnn", 4, 4)
    code, s = _simulate(qdir, Board.ICEBREAKER, 4, sim)
    assert code == 0 and s["bit_exact"] and s["images"] == 4 and s["mismatches"] == 0
    assert s["cycles_per_inference"] == s["analytical_cycles_per_inference"]
    d = s["design"]
    design = board_design(Board.ICEBREAKER.value, load(qdir))
    assert d["board"] == "icebreaker" and d["array"] == [design.cfg.rows, design.cfg.cols]
    assert d["simulated_top"] == TOP_NAME and d["uart_divisor"] == 104
    built = {n: _sha(t) for n, t in design_verilog(design).items()}
    assert {n: d["sha256"][n] for n in built} == built


@pytest.mark.parametrize("sim", [pytest.param(Sim.ICARUS, id="icarus", marks=pytest.mark.icarus)])
def test_simulate_board_dsp_multipliers(quantized_zoo, sim):
    """ULX3S-85F, digits-mlp W8A8: the 8x8 with its products in `*` (DSP blocks on the chip)."""
    qdir = quantized_zoo("digits-mlp", 8, 8)
    code, s = _simulate(qdir, Board.ULX3S_85F, 2, sim)
    assert code == 0 and s["bit_exact"] and s["images"] == 2
    assert s["design"]["multipliers"] == "dsp" and s["design"]["board"] == "ulx3s-85f"


@pytest.mark.slow
@pytest.mark.parametrize("sim", [pytest.param(Sim.VERILATOR, id="verilator",
                                              marks=pytest.mark.verilator)])
def test_simulate_board_top_over_uart(quantized_zoo, sim):
    """The whole board top at the iCEBreaker's own 104 cycles per bit, every layer read back
    over the simulated UART pins."""
    code, s = _simulate(quantized_zoo("digits-mlp", 4, 4), Board.ICEBREAKER, 2, sim, uart=True)
    assert code == 0 and s["bit_exact"] and s["images"] == 2
    assert s["design"]["simulated_top"] == UART_NAME and s["design"]["uart_divisor"] == 104


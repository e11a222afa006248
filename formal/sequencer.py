"""Proof 3b: the sequencer finishes every run in exactly the cycles the compiler predicts
(bounded model check over every small program).

The harness gives a real :class:`hwgen.sequencer.Sequencer` a program memory of free words
(``AnyConst``, read with the memory's latency of one cycle): any ``max_layers`` descriptors whose
op is one the compiler emits, with at least one tile, pixel and slot, and at most
``max_tiles`` tiles, ``max_side`` x ``max_side`` pixels and ``max_slots`` slots (so a run fits
the depth). Every other field is free: the timing must not depend on it. The run starts in the
first cycle (``Initial``: a start at any cycle multiplies the solver's work and meets the same
IDLE state) and ``first <= last`` are any descriptors. It asserts:

- each layer's cycle counter (``cnt_data`` at ``cnt_we``) is :func:`predicted_cycles`;
- the run is busy for exactly the sum of its layers' predictions (a late finish fails at the
  first cycle past it), and ``total`` is that sum.

:func:`predicted_cycles` is :func:`quantflow.program.layer_cycles` written so that it evaluates
on Amaranth values as well as on ints; the tests compare the two on descriptors of compiled
programs, so the property cannot drift from the compiler.
"""

from amaranth.asserts import AnyConst, Initial
from amaranth.hdl import (Array, Assert, Assume, Cat, Elaboratable, Module, Mux, ResetSignal,
                          Signal)
from amaranth.lib import data

from hwgen.config import PROG_WORD_BITS
from hwgen.layouts import desc_layout, layer_bits
from hwgen.sequencer import Sequencer
from quantflow.program import Op

__all__ = ["SequencerProof", "predicted_cycles", "longest_run"]


def predicted_cycles(cfg, op, tiles, out_h, out_w, slots):
    """The compiler's cycles of one descriptor (``layer_cycles``): setup, ``tiles * pixels *
    slots`` issue slots, then the flush (an add's is longer). ``op`` is the op's value; works
    on ints and on Amaranth values alike."""
    is_add = op == Op.ADD.value
    flush = cfg.layer_flush_cycles + is_add * (cfg.add_flush_cycles - cfg.layer_flush_cycles)
    return cfg.layer_setup_cycles + tiles * out_h * out_w * slots + flush


def longest_run(cfg, max_tiles=2, max_side=2, max_slots=3):
    """Cycles of the longest run the bounds allow (a BMC deeper than this sees every run end)."""
    return cfg.max_layers * predicted_cycles(cfg, Op.ADD.value, max_tiles, max_side, max_side,
                                             max_slots)


class SequencerProof(Elaboratable):
    """A :class:`~hwgen.sequencer.Sequencer` on a free program (see the module docstring).

    Parameters
    ----------
    cfg : AccelConfig
        What the compiler predicts for (:func:`predicted_cycles` reads it).
    dut_cfg : AccelConfig or None
        The configuration the sequencer is built with (a broken variant's); ``cfg`` when None.
    max_tiles, max_side, max_slots : int
        Bounds on the descriptors' tiles, output height/width and slots per pixel.
    """

    def __init__(self, cfg, dut_cfg=None, *, max_tiles=2, max_side=2, max_slots=3):
        self.cfg = cfg
        self.dut_cfg = dut_cfg or cfg
        self.max_tiles, self.max_side, self.max_slots = max_tiles, max_side, max_slots

    def longest_run(self):
        return longest_run(self.cfg, self.max_tiles, self.max_side, self.max_slots)

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        seq = m.submodules.dut = Sequencer(self.dut_cfg)
        words = [Signal(PROG_WORD_BITS, name=f"prog{i}")
                 for i in range(cfg.max_layers * cfg.desc_words)]
        m.d.comb += [w.eq(AnyConst(PROG_WORD_BITS)) for w in words]
        rdata = Signal(PROG_WORD_BITS)
        m.d.sync += rdata.eq(Array(words)[seq.desc_addr])  # synchronous read, latency 1
        m.d.comb += seq.desc_data.eq(rdata)

        predictions = []
        for layer in range(cfg.max_layers):
            raw = Cat(*words[layer * cfg.desc_words:(layer + 1) * cfg.desc_words])
            d = data.View(desc_layout(cfg), raw[:cfg.desc_bits])
            ops = [op.value for op in Op]
            m.d.comb += [
                Assume(d.op.matches(*ops)),
                Assume((d.tiles >= 1) & (d.tiles <= self.max_tiles)),
                Assume((d.out_h >= 1) & (d.out_h <= self.max_side)),
                Assume((d.out_w >= 1) & (d.out_w <= self.max_side)),
                Assume((d.slots >= 1) & (d.slots <= self.max_slots)),
            ]
            pred = Signal(range(self.longest_run() + 1), name=f"pred{layer}")
            m.d.comb += pred.eq(predicted_cycles(cfg, d.op, d.tiles, d.out_h, d.out_w, d.slots))
            predictions.append(pred)

        lb = layer_bits(cfg)
        first, last = Signal(lb), Signal(lb)
        start = Signal()
        m.d.comb += [first.eq(AnyConst(lb)), last.eq(AnyConst(lb)), start.eq(Initial()),
                     Assume(first <= last), Assume(last < cfg.max_layers),
                     Assume(~ResetSignal()),
                     seq.first.eq(first), seq.last.eq(last), seq.start.eq(start)]
        expected = Signal(range(self.longest_run() + 1))
        m.d.comb += expected.eq(sum(Mux((first <= i) & (i <= last), predictions[i], 0)
                                    for i in range(cfg.max_layers)))

        # Cycles with busy high since the run started; a run starts when start meets IDLE.
        elapsed = Signal(range(self.longest_run() + 2))
        running = Signal()
        with m.If(start & ~seq.busy):
            m.d.sync += [elapsed.eq(0), running.eq(1)]
        with m.Elif(seq.busy):
            m.d.sync += elapsed.eq(elapsed + 1)
        with m.If(running & ~seq.busy & ~start):
            m.d.sync += running.eq(0)
        with m.If(running & seq.busy):
            m.d.comb += Assert(elapsed < expected)  # not past the prediction
        with m.If(running & ~seq.busy):
            m.d.comb += [Assert(elapsed == expected), Assert(seq.total == expected)]
        with m.If(seq.cnt_we):
            m.d.comb += Assert(seq.cnt_data == Array(predictions)[seq.cnt_addr])
        return m

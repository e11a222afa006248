"""The requantizer: ``quantflow.numerics.requantize`` in gateware, exactly."""

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import requant_in_layout

__all__ = ["Requantizer"]

#: Bits of the accumulator's low half in the split product (a 16 x 16 multiplier block on
#: the iCE40, within the ECP5's and Gowin's 18 x 18).
_SPLIT = 16


class Requantizer(wiring.Component):
    """``clamp((acc * M + round_term(s)) >> s, lo, hi)``, floor shift. Latency 9.

    Implements :func:`quantflow.numerics.requantize` bit for bit: ``round_term(s)`` is
    ``2**(s-1)`` for ``s > 0`` and 0 for ``s == 0``; ``>>`` is arithmetic (floor). ``M`` is
    unsigned ``mult_bits`` wide and ``s`` lies in ``0..shift_max`` (the compiler encodes any
    larger shift, whose result is exactly 0 before clamping, as ``M = 0, s = 0``).
    Stages 1-2 register the input (twice: the multiplier blocks' neighbours), stages 3-4
    ``acc * M`` as two partial products (the accumulator's low 16 bits and the rest; twice
    again), stage 5 their sum, stage 6 ``+ round_term(s)``, stage 7 the shifted value, stage
    8 an add's pair summed, stage 9 the clamped value (on the iCE40 the shift and the two
    compares in one cycle were the design's longest path; on the ECP5 the DSP product with the
    rounding add after it, 25 logic levels, and the sum, compares and select, 50).

    Members
    -------
    i : In(stream.Signature(requant_in_layout, always_ready=True)) — a fixed pipeline with
        no stalls: its consumer is a memory write port, which always accepts.
    lo, hi : In(signed(clamp_bits)) — clamp bounds (layer constants; unsigned maximum or
        signed minimum of the widest activation tensor).
    pair : In(1) — an add: elements come in pairs (``payload.second`` marks the second); the
        first's shifted value is held and added to the second's before the clamp
        (:func:`quantflow.numerics.add_requantize`), and only the second gives an output.
    o : Out(stream.Signature(signed(clamp_bits), always_ready=True)) — the clamped value, in
        ``lo..hi``; the drain splits a value wider than the lanes into digits.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__({
            "i": In(stream.Signature(requant_in_layout(cfg), always_ready=True)),
            "lo": In(signed(cfg.clamp_bits)),
            "hi": In(signed(cfg.clamp_bits)),
            "pair": In(1),
            "o": Out(stream.Signature(signed(cfg.clamp_bits), always_ready=True)),
        })

    @property
    def latency(self):
        return self._cfg.requant_latency

    @property
    def product_bits(self):
        """Signed width of ``acc * M + round_term``: ``round_term < 2**(shift_max-1)`` fits."""
        return self._cfg.acc_bits + self._cfg.mult_bits + 1

    def elaborate(self, platform):
        m = Module()
        # Stage 0: the input registered inside the requantizer (from the drain's registers
        # into the DSP, with the product registers beside the drain, was 5.7 ns of routing
        # around the block's 3.9 on the ULX3S: the DSP row was 25 rows away).
        p_in = Signal.like(self.i.payload)
        valid_in0 = Signal()
        m.d.sync += [p_in.eq(self.i.payload), valid_in0.eq(self.i.valid)]
        # Stage 0b: a register whose only neighbours are stage 0 and the multiplier blocks,
        # so the placer puts it between them (from stage 0 straight into a DSP still ran
        # 2.3-2.7 ns of routing, and out of it 2.1-3.0 ns into the product registers).
        p = Signal.like(self.i.payload)
        valid_in = Signal()
        m.d.sync += [p.eq(p_in), valid_in.eq(valid_in0)]
        # Stage 1: the product in two halves of the accumulator, each one 16 x M multiplier
        # block (the whole acc x M is two DSP blocks and a carry chain joining them, which
        # with the block's own delay was the ECP5's longest path at W8A8, 27 levels);
        # stage 1b joins them.
        low = _SPLIT if self._cfg.acc_bits > _SPLIT + 1 else self._cfg.acc_bits
        lo_prod = Signal(unsigned(low + self._cfg.mult_bits))
        hi_prod = Signal(signed(max(1, self._cfg.acc_bits - low) + self._cfg.mult_bits + 1))
        lo_dsp, hi_dsp = Signal.like(lo_prod), Signal.like(hi_prod)
        m.d.sync += lo_dsp.eq(p.acc[:low] * p.mult)
        if low < self._cfg.acc_bits:
            m.d.sync += hi_dsp.eq(p.acc[low:].as_signed() * p.mult)
        else:  # the accumulator in one piece: its sign is a term of its own
            m.d.sync += hi_dsp.eq(Mux(p.acc[-1], -p.mult, 0))
        # and the products once more before they are joined (the same reason, outbound)
        m.d.sync += [lo_prod.eq(lo_dsp), hi_prod.eq(hi_dsp)]
        shift_a, valid_a, second_a = Signal.like(p.shift), Signal(), Signal()
        m.d.sync += [shift_a.eq(p.shift), valid_a.eq(valid_in), second_a.eq(p.second)]
        shift0 = Signal.like(p.shift)
        valid0, second0 = Signal(), Signal()
        m.d.sync += [shift0.eq(shift_a), valid0.eq(valid_a), second0.eq(second_a)]
        prod = Signal(signed(self.product_bits))
        shift1 = Signal.like(p.shift)
        valid1, second1 = Signal(), Signal()
        m.d.sync += [prod.eq((hi_prod << low) + lo_prod), shift1.eq(shift0),
                     valid1.eq(valid0), second1.eq(second0)]
        # (1 << s) >> 1 is round_term(s): 2**(s-1), and 0 for s == 0, without a comparator;
        # decoded a stage early and registered with the product (decoder and 45-bit add in
        # one cycle were the iCE40's longest path, 43 levels)
        round_term = Signal(unsigned(self.product_bits - 1))
        m.d.sync += round_term.eq((Const(1, 1) << shift0)[1:])
        rounded = Signal(signed(self.product_bits))
        shift2 = Signal.like(p.shift)
        valid1b, second1b = Signal(), Signal()
        m.d.sync += [rounded.eq(prod + round_term), shift2.eq(shift1), valid1b.eq(valid1),
                     second1b.eq(second1)]
        shifted = Signal(signed(self.product_bits))
        valid2, second2 = Signal(), Signal()
        m.d.sync += [shifted.eq(rounded >> shift2), valid2.eq(valid1b), second2.eq(second1b)]
        hold = Signal.like(shifted)
        with m.If(valid2 & ~second2):
            m.d.sync += hold.eq(shifted)
        # The pair's sum gets a cycle of its own: with the two compares and the select it was
        # three ~45-bit carry chains in one (the ECP5's longest path at W8A8, 50 levels). (The
        # compares registered apart from the select make the pinned Yosys 0.70 assert in
        # ABC_OPS_REINTEGRATE on the ULX3S's 8x8 W4A4 build.)
        total = Signal(signed(self.product_bits + 1))
        valid3 = Signal()
        m.d.sync += [total.eq(Mux(self.pair, shifted + hold, shifted)),
                     valid3.eq(valid2 & (~self.pair | second2))]
        # The clamp compares clamp_bits-wide values: ``total`` is in that range exactly when
        # its bits from clamp_bits - 1 up are all equal (a wide AND/OR, no carry chain), and
        # outside it the sign says which bound; so no ~45-bit compare (the iCE40's longest
        # path, 41 levels from the descriptor's lo/hi).
        cb = len(self.lo)
        top = total[cb - 1:]
        fits = Signal()
        m.d.comb += fits.eq((top == 0) | (top == (1 << len(top)) - 1))
        small = total[:cb].as_signed()
        neg = total[-1]
        below = Mux(fits, small < self.lo, neg)
        above = Mux(fits, small > self.hi, ~neg)
        m.d.sync += [
            self.o.payload.eq(Mux(below, self.lo, Mux(above, self.hi, small))),
            self.o.valid.eq(valid3),
        ]
        return m

"""The requantizer: ``quantflow.numerics.requantize`` in gateware, exactly."""

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import requant_in_layout

__all__ = ["Requantizer"]


class Requantizer(wiring.Component):
    """``clamp((acc * M + round_term(s)) >> s, lo, hi)``, floor shift. Latency 6.

    Implements :func:`quantflow.numerics.requantize` bit for bit: ``round_term(s)`` is
    ``2**(s-1)`` for ``s > 0`` and 0 for ``s == 0``; ``>>`` is arithmetic (floor). ``M`` is
    unsigned ``mult_bits`` wide and ``s`` lies in ``0..shift_max`` (the compiler encodes any
    larger shift, whose result is exactly 0 before clamping, as ``M = 0, s = 0``).
    Stages 1-2 register ``acc * M`` (twice: the multiplier blocks' neighbours), stage 3
    ``+ round_term(s)``, stage 4 the shifted value, stage 5 an add's pair summed, stage 6
    the clamped value (on the iCE40 the shift and the two
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
        p, valid_in = self.i.payload, self.i.valid
        # Stage 1: the product (a DSP block, or two and their join), and stage 1b the same
        # once more: the first register's only neighbours are the block and the second, so
        # the placer can put it by the block (the DSP row sat 25 rows from the drain on the
        # ULX3S). The drain registers this component's input twice for the same reason, on
        # its side: inside, a register before the product makes the SymbiYosys proof (whose
        # contract multiplies the input) compare two multipliers, which does not finish; so
        # does a product split into registered halves.
        prod_dsp = Signal(signed(self.product_bits))
        m.d.sync += prod_dsp.eq(p.acc * p.mult)
        shift0 = Signal.like(p.shift)
        valid0, second0 = Signal(), Signal()
        m.d.sync += [shift0.eq(p.shift), valid0.eq(valid_in), second0.eq(p.second)]
        prod = Signal(signed(self.product_bits))
        shift1 = Signal.like(p.shift)
        valid1, second1 = Signal(), Signal()
        m.d.sync += [prod.eq(prod_dsp), shift1.eq(shift0), valid1.eq(valid0),
                     second1.eq(second0)]
        # (1 << s) >> 1 is round_term(s): 2**(s-1), and 0 for s == 0, without a comparator.
        round_term = Signal(unsigned(self.product_bits - 1))
        m.d.comb += round_term.eq((Const(1, 1) << shift1)[1:])
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

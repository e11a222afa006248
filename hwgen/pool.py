"""Lane-wise pooling: integer max or window sum (average pooling before requantization)."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import acc_vector_layout, act_layout, operand_layout

__all__ = ["PoolUnit"]


class PoolUnit(wiring.Component):
    """``cols`` lanes of ``acc = first ? a : op(acc, a)``, op = max or +. Latency 1.

    Padding taps arrive as zero words, which equals the reference's padding value for max
    pooling (the unsigned format's minimum, 0) and for sums.

    Members
    -------
    i : In(stream.Signature(operand_layout, always_ready=True)) — only ``act``, ``first`` and
        ``last`` are used; never stalls (one window step per cycle).
    sum : In(1) — 1: window sum (AVGPOOL), 0: maximum (MAXPOOL). Layer constant.
    digits : In(digit_bits) — lanes per element of a tensor wider than the lanes (layer
        constant, 1..act_digits_max): max pooling compares each group of ``digits`` lanes as
        one value (low digit first, the top digit signed for a signed tensor) and keeps the
        winner's digits. A window sum (``sum``; an add's inputs come through as one-step sums)
        adds each digit lane on its own (only the top digit signed) and then joins each
        group into its value, ``o[g] = sum_d acc[g*digits + d] << (act_bits * d)``: element
        ``g`` of the word leaves in lane ``g`` (``cols // digits`` of them), so the drain
        rescales whole values.
    o : Out(stream.Signature(acc_vector_layout(cols), always_ready=True)) — ``latency``
        cycles after the last step; the drain is idle then (each window gets ``max(steps, n)``
        slots for its ``n`` elements).
    """

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__({
            "i": In(stream.Signature(operand_layout(cfg), always_ready=True)),
            "sum": In(1),
            "digits": In(cfg.digit_bits),
            "o": Out(stream.Signature(acc_vector_layout(cfg, cfg.cols), always_ready=True)),
        })

    @property
    def latency(self):
        return self._cfg.pool_latency

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        a = Signal(act_layout(cfg))
        m.d.comb += a.eq(self.i.payload.act)
        first, sgn = self.i.payload.first, self.i.payload.signed

        acc = Signal(acc_vector_layout(cfg, cfg.cols))
        b = cfg.act_bits

        def lanewise(lanes, n=1):
            for lane in lanes:
                cur, x = acc[lane], a[lane]
                if cfg.signed_acts and lane % n == n - 1:
                    # a signed tensor's lanes (only the top digit of an element) are signed
                    x = Cat(x, sgn & x[-1]).as_signed()
                # max pooling: cur holds an earlier x, extended, so its low len(x) bits are
                # that value and the compare needs no more (at the accumulator's width it
                # was the iCE40's longest path, a 26-bit carry chain into the enables)
                low = cur[:len(x)].as_signed() if x.shape().signed else cur[:len(x)]
                nxt = Mux(self.sum, cur + x, Mux(x > low, x, cur))
                m.d.sync += cur.eq(Mux(first, x, nxt))

        def value(lanes):  # a group of digit lanes as one value (raw digits, low first)
            v = Cat(*lanes)
            return Cat(v, sgn & v[-1]).as_signed() if cfg.signed_acts else v

        def grouped(n):
            with m.If(self.sum):
                lanewise(range(cfg.cols // n * n), n)
            with m.Else():
                for g in range(cfg.cols // n):
                    lanes = range(g * n, (g + 1) * n)
                    gt = Signal(name=f"gt{n}_{g}")
                    m.d.comb += gt.eq(value([a[j] for j in lanes])
                                      > value([acc[j][:b] for j in lanes]))
                    for j in lanes:
                        m.d.sync += acc[j].eq(Mux(first | gt, a[j], acc[j]))
            lanewise(range(cfg.cols // n * n, cfg.cols))

        valid = Signal()
        m.d.sync += valid.eq(self.i.valid & self.i.payload.last)
        with m.If(self.i.valid):
            if cfg.act_digits_max == 1:
                lanewise(range(cfg.cols))
            else:
                with m.Switch(self.digits):
                    for n in range(2, cfg.act_digits_max + 1):
                        with m.Case(n):
                            grouped(n)
                    with m.Default():
                        lanewise(range(cfg.cols))
        if cfg.act_digits_max == 1:
            m.d.comb += [self.o.payload.eq(acc), self.o.valid.eq(valid)]
            return m
        # Second stage: a sum's digit lanes joined into values (max pooling keeps its digits).
        m.d.sync += [self.o.payload.eq(acc), self.o.valid.eq(valid)]
        with m.Switch(self.digits):
            for n in range(2, cfg.act_digits_max + 1):
                with m.Case(n):
                    with m.If(self.sum):
                        m.d.sync += [self.o.payload[g].eq(
                            sum(acc[g * n + d] << (b * d) for d in range(n)))
                            for g in range(cfg.cols // n)]
        return m

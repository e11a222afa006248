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
    o : Out(stream.Signature(acc_vector_layout(cols), always_ready=True)) — one cycle after the
        last step; the drain is idle then (each window gets ``max(steps, cols)`` slots).
    """

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__({
            "i": In(stream.Signature(operand_layout(cfg), always_ready=True)),
            "sum": In(1),
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
        with m.If(self.i.valid):
            for lane in range(cfg.cols):
                cur, x = self.o.payload[lane], a[lane]
                if cfg.signed_acts:  # a signed tensor's lanes compare and sum signed
                    x = Cat(x, self.i.payload.signed & x[-1]).as_signed()
                nxt = Mux(self.sum, cur + x, Mux(x > cur, x, cur))
                m.d.sync += cur.eq(Mux(self.i.payload.first, x, nxt))
        m.d.sync += self.o.valid.eq(self.i.valid & self.i.payload.last)
        return m

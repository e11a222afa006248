"""The MAC array: ``rows`` PEs sharing one broadcast activation word (PE x SIMD)."""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import acc_vector_layout, operand_layout
from .mac import PE

__all__ = ["MACArray"]


class MACArray(wiring.Component):
    """``rows`` output channels x ``cols`` input lanes, output-stationary. Latency 3.

    Every cycle with ``i.valid`` each PE multiplies its weight row with the shared activation
    word and accumulates; after the ``last`` step of an output pixel the ``rows`` accumulators
    appear on ``o`` for one cycle.

    Members
    -------
    i : In(stream.Signature(operand_layout, always_ready=True)) — never stalls: the sequencer
        issues at most one operand set per cycle and the array consumes one per cycle.
    digits : In(digit_bits) — layer constant, see :class:`hwgen.mac.PE`.
    o : Out(stream.Signature(acc_vector_layout(rows), always_ready=True)) — the drain is idle
        whenever a vector arrives (the sequencer gives each pixel ``max(steps, rows)`` slots).
    """

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__({
            "i": In(stream.Signature(operand_layout(cfg), always_ready=True)),
            "digits": In(cfg.digit_bits),
            "o": Out(stream.Signature(acc_vector_layout(cfg, cfg.rows), always_ready=True)),
        })

    @property
    def latency(self):
        return self._cfg.mac_latency

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        for r in range(cfg.rows):
            pe = m.submodules[f"pe{r}"] = PE(cfg)
            m.d.comb += [
                pe.a.eq(self.i.payload.act), pe.w.eq(self.i.payload.weight[r]),
                pe.en.eq(self.i.valid), pe.first.eq(self.i.payload.first),
                pe.last.eq(self.i.payload.last), pe.digits.eq(self.digits),
                pe.signed.eq(self.i.payload.signed), pe.e.eq(self.i.payload.e),
                self.o.payload[r].eq(pe.acc),
            ]
            if r == 0:
                m.d.comb += self.o.valid.eq(pe.valid)
        return m

"""The MAC array: ``rows`` PEs sharing one broadcast activation word (PE x SIMD)."""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import acc_vector_layout, operand_layout
from .mac import PE

__all__ = ["MACArray"]


class MACArray(wiring.Component):
    """``rows`` output channels x ``cols`` input lanes, output-stationary. Latency 4.

    The operands are registered first: the activation word comes straight from a block
    RAM's read port and fans out to every multiplier, and the weight rows too (the RAM's
    clock-to-out and that fan-out were the ECP5's and iCE40's longest path in one cycle).

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
        op, valid = Signal(operand_layout(cfg)), Signal()
        m.d.sync += [op.eq(self.i.payload), valid.eq(self.i.valid)]
        for r in range(cfg.rows):
            pe = m.submodules[f"pe{r}"] = PE(cfg)
            m.d.comb += [
                pe.a.eq(op.act), pe.w.eq(op.weight[r]),
                pe.en.eq(valid), pe.first.eq(op.first),
                pe.last.eq(op.last), pe.digits.eq(self.digits),
                pe.signed.eq(op.signed), pe.e.eq(op.e),
                self.o.payload[r].eq(pe.acc),
            ]
            if r == 0:
                m.d.comb += self.o.valid.eq(pe.valid)
        return m

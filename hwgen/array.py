"""The MAC array: ``rows`` PEs sharing one broadcast activation word (PE x SIMD)."""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import acc_vector_layout, operand_layout
from .mac import PE

__all__ = ["MACArray"]


class MACArray(wiring.Component):
    """``rows`` output channels x ``cols`` input lanes, output-stationary. Latency
    ``cfg.mac_latency``.

    The operands are registered twice before the PEs: once as they come from the block RAMs
    (whose clock-to-out, 5.8 ns on the ECP5 at speed 6, leaves time for the bank and padding
    mux and little routing), then once per PE (``opcopy<r>``), so that each activation bit
    drives one multiplier of one PE from a flip-flop the placer can put beside it. The
    shared register fanned out to every PE across the device: on the ULX3S 8x8 at W8A8, 5 ns
    of routing to the farthest of 64 DSPs. Yosys would merge the copies (equal inputs), so
    board builds mark them ``keep`` (:func:`boards.build._plan`); they are the same logic
    either way.

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

    #: Name prefix of the per-PE operand registers (board builds keep them apart).
    COPY_PREFIX = "opcopy"

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
            # this PE's copy: the activation word, its weight row and the step control
            act = Signal.like(op.act, name=f"{self.COPY_PREFIX}{r}_act")
            weight = Signal.like(op.weight[r], name=f"{self.COPY_PREFIX}{r}_weight")
            ctrl = Signal(4 + len(op.e), name=f"{self.COPY_PREFIX}{r}_ctrl")
            m.d.sync += [act.eq(op.act), weight.eq(op.weight[r]),
                         ctrl.eq(Cat(valid, op.first, op.last, op.signed, op.e))]
            m.d.comb += [
                pe.a.eq(act), pe.w.eq(weight),
                pe.en.eq(ctrl[0]), pe.first.eq(ctrl[1]),
                pe.last.eq(ctrl[2]), pe.digits.eq(self.digits),
                pe.signed.eq(ctrl[3]), pe.e.eq(ctrl[4:]),
                self.o.payload[r].eq(pe.acc),
            ]
            if r == 0:
                m.d.comb += self.o.valid.eq(pe.valid)
        return m

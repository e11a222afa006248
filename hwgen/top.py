"""Top: the Core behind one command word stream in and one result word stream out.

Protocol (words of ``host_bits``; see :class:`hwgen.layouts.Command`)::

    WRITE: [op=1 | mem << 8], addr, count, then count x chunks(mem) data words
    READ:  [op=2 | mem << 8], addr, count  -> count x chunks(mem) data words
    RUN:   [op=3], first, last             -> one word: cycles of descriptors first..last

A memory word travels as ``chunks(mem) = ceil(width / host_bits)`` words, least significant
first. Two plain streams make the UART bridge and the cocotb drivers trivial.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from quantflow.packing import chunks_per_word

from .core import Core, host_addr_bits, host_data_bits
from .layouts import Command, Mem, mem_width

__all__ = ["Top"]


class Top(wiring.Component):
    """Host command processor around a :class:`~hwgen.core.Core`.

    Members
    -------
    i : In(stream.Signature(unsigned(host_bits))) — command words (backpressured while a
        memory word is written, a layer runs or a reply is pending).
    o : Out(stream.Signature(unsigned(host_bits))) — replies; honours ``o.ready``.

    ``memory`` is passed to :class:`~hwgen.core.Core` (a board's buffer factory, or ``None``).
    """

    def __init__(self, cfg, memory=None):
        self._cfg = cfg
        self._memory = memory
        super().__init__({
            "i": In(stream.Signature(cfg.host_bits)),
            "o": Out(stream.Signature(cfg.host_bits)),
        })

    @property
    def config(self):
        return self._cfg

    def elaborate(self, platform):
        cfg = self._cfg
        hb = cfg.host_bits
        m = Module()
        core = m.submodules.core = Core(cfg, memory=self._memory)
        nmax = chunks_per_word(host_data_bits(cfg), hb)
        op, mem = Signal(8), Signal(3)
        addr = Signal(host_addr_bits(cfg))
        count = Signal(hb)
        arg = Signal(hb)
        buf = Signal(nmax * hb)
        j = Signal(range(nmax + 1))
        # Host words per memory word, less one, registered: ``mem`` is latched in HDR and
        # first used in WDATA or RSEND (the decode and the compare with ``j`` in one cycle
        # were the ECP5's longest path at W8A8).
        nlast = Signal(range(nmax + 1))
        with m.Switch(mem):
            for mm in Mem:
                with m.Case(mm):
                    m.d.sync += nlast.eq(chunks_per_word(mem_width(cfg, mm), hb) - 1)
        m.d.comb += [core.host_mem.eq(mem), core.host_addr.eq(addr),
                     core.host_wdata.eq(buf), core.first.eq(arg), core.last.eq(count)]

        with m.FSM():
            with m.State("HDR"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [op.eq(self.i.payload[:8]), mem.eq(self.i.payload[8:11])]
                    m.next = "ARG1"
            with m.State("ARG1"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [arg.eq(self.i.payload), addr.eq(self.i.payload)]
                    m.next = "ARG2"
            with m.State("ARG2"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [count.eq(self.i.payload), j.eq(0)]
                    with m.Switch(op):
                        with m.Case(Command.WRITE):
                            m.next = "WDATA"
                        with m.Case(Command.READ):
                            m.next = "RADDR"
                        with m.Case(Command.RUN):
                            m.next = "RUN"
                        with m.Default():  # unknown opcodes are dropped with their arguments
                            m.next = "HDR"
                    with m.If(self.i.payload == 0):
                        with m.If(op != Command.RUN):
                            m.next = "HDR"
            with m.State("WDATA"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [buf.word_select(j, hb).eq(self.i.payload), j.eq(j + 1)]
                    with m.If(j == nlast):
                        m.next = "WWRITE"
            with m.State("WWRITE"):
                m.d.comb += core.host_we.eq(1)
                m.d.sync += [addr.eq(addr + 1), count.eq(count - 1), j.eq(0), buf.eq(0)]
                with m.If(count == 1):
                    m.next = "HDR"
                with m.Else():
                    m.next = "WDATA"
            with m.State("RADDR"):
                m.next = "RMUX"
            with m.State("RMUX"):  # the memory's read, then the Core's registered mux
                m.next = "RWAIT"
            with m.State("RWAIT"):
                m.d.sync += [buf.eq(core.host_rdata), j.eq(0)]
                m.next = "RSEND"
            with m.State("RSEND"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(buf.word_select(j, hb))]
                with m.If(self.o.ready):
                    m.d.sync += j.eq(j + 1)
                    with m.If(j == nlast):
                        m.d.sync += [addr.eq(addr + 1), count.eq(count - 1)]
                        with m.If(count == 1):
                            m.next = "HDR"
                        with m.Else():
                            m.next = "RADDR"
            with m.State("RUN"):
                m.d.comb += core.start.eq(1)
                m.next = "RWAITRUN"
            with m.State("RWAITRUN"):
                with m.If(~core.busy):
                    m.next = "REPLY"
            with m.State("REPLY"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(core.total)]
                with m.If(self.o.ready):
                    m.next = "HDR"
        return m

"""On-chip memories: one synchronous read port and one write port each (simple dual port).

Every buffer is an :class:`amaranth.lib.memory.Memory` with the shape of its word layout, so
Yosys infers block RAM; a vendor instance (iCE40 SPRAM) can replace it behind the same
signature from ``boards/`` (STYLE rule 11).
"""

from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["BufferMemory"]


class BufferMemory(wiring.Component):
    """``depth`` words of ``shape``: read data one cycle after its address. Latency 1.

    Parameters
    ----------
    shape : shape-like or data.Layout
        Word layout (``layouts.act_layout``, ``weight_layout``, ...).
    depth : int
        Words, from :class:`~hwgen.config.AccelConfig`.
    lanes : bool
        Give the write port one enable per array element (activation words, written one
        channel at a time by the drain); otherwise one enable per word.

    Members
    -------
    r_addr : In(addr_bits); r_data : Out(shape) — synchronous read.
    w_addr : In(addr_bits); w_data : In(shape); w_en : In(elements or 1) — write at the edge.
    """

    def __init__(self, shape, depth, *, lanes=False):
        if not isinstance(depth, int) or depth < 2:
            raise ValueError(f"Buffer depth must be an integer >= 2, not {depth!r}")
        self._shape, self._depth = shape, depth
        self._granularity = 1 if lanes else None
        if lanes and not isinstance(shape, data.ArrayLayout):
            raise TypeError(f"Buffer shape with lane enables must be an ArrayLayout, not"
                            f" {shape!r}")
        en = shape.length if lanes else 1
        abits = max(1, (depth - 1).bit_length())
        super().__init__({
            "r_addr": In(abits), "r_data": Out(shape),
            "w_addr": In(abits), "w_data": In(shape), "w_en": In(en),
        })

    @property
    def latency(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=self._shape, depth=self._depth, init=[])
        rd = mem.read_port()
        wr = mem.write_port(granularity=self._granularity)
        m.d.comb += [rd.addr.eq(self.r_addr), self.r_data.eq(rd.data),
                     wr.addr.eq(self.w_addr), wr.data.eq(self.w_data), wr.en.eq(self.w_en)]
        return m

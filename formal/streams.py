"""Proof 3a: the host streams of :class:`hwgen.top.Top` lose and duplicate nothing under any
valid/ready pattern (bounded model check).

The harness is a host that writes ``words`` memory words (each sent as ``chunks(mem)`` host
words of free values, ``AnyConst``) to any memory at any address where they fit, then reads
them back. Its input stream obeys the stream rule (once valid, a word stays until accepted) with
free idle cycles; the output's ready is free every cycle. It asserts:

- a reply word appears only after the whole READ command was accepted, never more than the
  read asked for, and the ``k``-th one carries the ``k``-th host word written, in the bits that
  lie inside the memory's width (the others carry no data: a signed memory's words come back
  sign-extended, and the host masks them): a dropped, duplicated or reordered word on either
  stream, or a word written to the wrong address, is a mismatch; a memory that is write-only
  to the host (:data:`hwgen.layouts.HOST_READABLE`: program, weights, biases, ``(M, s)``)
  replies zero words, as many as the READ asked for (what lands in those is checked by the
  bit-exact regressions, whose every layer depends on it);
- the output obeys the stream rule: a word not accepted stays, unchanged, the next cycle.

Everything is the real Top with its Core and memories (no RUN command is sent).
"""

from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import (Array, Assert, Assume, Cover, Elaboratable, Module, Mux, ResetSignal,
                          Signal)

from hwgen.layouts import HOST_READABLE, Command, Mem, mem_depth, mem_width
from hwgen.top import Top
from quantflow.packing import chunks_per_word

__all__ = ["StreamProof"]


class StreamProof(Elaboratable):
    """WRITE then READ of ``words`` memory words through a :class:`~hwgen.top.Top`.

    Parameters
    ----------
    cfg : AccelConfig
        The overlay (use a tiny one: the whole Core is in the model).
    words : int
        Memory words per command (at most the smallest memory's depth).
    """

    def __init__(self, cfg, words=2):
        if not 1 <= words <= min(mem_depth(cfg, mem) for mem in Mem):
            raise ValueError(f"Stream proof words must be an integer in 1..the smallest memory"
                             f" depth, not {words!r}")
        self.cfg, self.words = cfg, words

    def longest_exchange(self):
        """Host words of the longest exchange (both commands and the reply)."""
        nmax = max(chunks_per_word(mem_width(self.cfg, mem), self.cfg.host_bits) for mem in Mem)
        return 6 + 2 * self.words * nmax

    def elaborate(self, platform):
        cfg, n = self.cfg, self.words
        hb = cfg.host_bits
        m = Module()
        top = m.submodules.dut = Top(cfg)
        nmax = max(chunks_per_word(mem_width(cfg, mem), hb) for mem in Mem)
        chunks = [Signal(hb, name=f"chunk{k}") for k in range(n * nmax)]
        mem, addr = Signal(3), Signal(hb)
        m.d.comb += [c.eq(AnyConst(hb)) for c in chunks]
        m.d.comb += [mem.eq(AnyConst(3)), addr.eq(AnyConst(hb)), Assume(~ResetSignal())]

        # Per memory: host words per memory word, and what the k-th reply word must be (the
        # bits of chunk k that lie inside the memory's width).
        nch = Signal(range(nmax + 1))
        expected = [Signal(hb, name=f"expected{k}") for k in range(n * nmax)]
        keeps = [Signal(hb, name=f"keep{k}") for k in range(n * nmax)]
        with m.Switch(mem):
            for mm in Mem:
                with m.Case(mm):
                    width = mem_width(cfg, mm)
                    per = chunks_per_word(width, hb)
                    m.d.comb += [nch.eq(per), Assume(addr + n <= mem_depth(cfg, mm))]
                    for k in range(n * per):
                        j = k % per
                        if mm in HOST_READABLE:
                            keep = (1 << max(0, min(hb, width - j * hb))) - 1
                            m.d.comb += [expected[k].eq(chunks[k] & keep), keeps[k].eq(keep)]
                        else:  # write-only to the host: the reply words are zero
                            m.d.comb += [expected[k].eq(0), keeps[k].eq((1 << hb) - 1)]

        # The host's words: WRITE mem, addr, n, the data chunks, then READ mem, addr, n.
        data_end = Signal(range(self.longest_exchange() + 1))
        length = Signal.like(data_end)
        m.d.comb += [data_end.eq(3 + n * nch), length.eq(data_end + 3)]
        sent = Signal(range(self.longest_exchange() + 1))
        head = Array([Command.WRITE | (mem << 8), addr, n])
        tail = Array([Command.READ | (mem << 8), addr, n])
        in_data, in_tail = (sent - 3)[:len(sent)], (sent - data_end)[:len(sent)]
        word = Mux(sent < 3, head[sent],
                   Mux(sent < data_end, Array(chunks)[in_data], tail[in_tail]))
        hold = Signal()  # a word offered stays offered until it is accepted (stream rule)
        valid = Signal()
        m.d.comb += [valid.eq((sent < length) & (hold | AnySeq(1))),
                     top.i.valid.eq(valid), top.i.payload.eq(word),
                     top.o.ready.eq(AnySeq(1))]
        m.d.sync += hold.eq(valid & ~top.i.ready)
        with m.If(valid & top.i.ready):
            m.d.sync += sent.eq(sent + 1)

        received = Signal.like(sent)
        with m.If(top.o.valid & top.o.ready):
            m.d.sync += received.eq(received + 1)
        with m.If(top.o.valid):
            m.d.comb += [Assert(sent == length), Assert(received < n * nch),
                         Assert((top.o.payload & Array(keeps)[received])
                                == Array(expected)[received])]
        stalled, last_payload = Signal(), Signal(hb)
        m.d.sync += [stalled.eq(top.o.valid & ~top.o.ready), last_payload.eq(top.o.payload)]
        with m.If(stalled):
            m.d.comb += [Assert(top.o.valid), Assert(top.o.payload == last_payload)]
        m.d.comb += Cover(received == n * nch)  # the whole read-back is reachable
        return m

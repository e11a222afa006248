"""The Core: MAC array + pool unit + buffers + drain (bias, requantizer) + sequencer."""

from amaranth.hdl import Cat, Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from quantflow.program import JOINING_OPS, Op

from .array import MACArray
from .buffers import BufferMemory
from .drain import Drain
from .layouts import (HOST_READABLE, Mem, act_layout, drain_in_layout, layer_bits, mem_depth,
                      mem_shape, mem_width, meta_layout, operand_layout)
from .pool import PoolUnit
from .sequencer import Sequencer

__all__ = ["Core", "host_addr_bits", "host_data_bits", "host_read_bits"]


def host_addr_bits(cfg):
    return max(cfg.addr_bits(mem_depth(cfg, mem)) for mem in Mem)


def host_data_bits(cfg):
    return max(mem_width(cfg, mem) for mem in Mem)


def host_read_bits(cfg):
    """Width of the host's read data: the widest readable buffer's word."""
    return max(mem_width(cfg, mem) for mem in HOST_READABLE)


def _delay(m, sig, cycles, name):
    for n in range(cycles):
        nxt = Signal.like(sig, name=f"{name}_d{n}")
        m.d.sync += nxt.eq(sig)
        sig = nxt
    return sig


class Core(wiring.Component):
    """Runs descriptors ``first..last`` from its own memories; host access while idle.

    Datapath per issue slot: sequencer addresses -> memories (latency 1) -> array (or pool
    unit, delayed to the same latency) -> drain -> activation / logits memory.

    Members
    -------
    host_mem : In(3) — :class:`hwgen.layouts.Mem`; host_addr, host_wdata, host_we : In;
    host_rdata : Out — read data two cycles after ``host_addr`` (only while not busy; the
        buffers of :data:`hwgen.layouts.HOST_READABLE`, zero for the others), from
        flip-flops.
    start : In(1); first, last : In(layer_bits); busy : Out(1); total : Out(counter_bits).

    Parameters
    ----------
    cfg : AccelConfig
    memory : callable or None
        ``memory(mem, shape, depth, lanes=...)`` -> a component with
        :class:`~hwgen.buffers.BufferMemory`'s signature and latency, for buffer ``mem``
        (:class:`hwgen.layouts.Mem`); ``None`` gives ``BufferMemory`` everywhere. Boards use it
        to put a buffer in vendor memory (iCE40 SPRAM) without hwgen knowing the board.
    """

    def __init__(self, cfg, memory=None):
        if memory is not None and not callable(memory):
            raise TypeError(f"Memory factory must be callable or None, not {memory!r}")
        self._cfg = cfg
        self._memory = memory
        lb = layer_bits(cfg)
        super().__init__({
            "host_mem": In(3), "host_addr": In(host_addr_bits(cfg)),
            "host_wdata": In(host_data_bits(cfg)), "host_we": In(1),
            "host_rdata": Out(host_read_bits(cfg)),
            "start": In(1), "first": In(lb), "last": In(lb),
            "busy": Out(1), "total": Out(cfg.counter_bits),
        })

    @property
    def latency(self):
        """Issue slot -> result vector at the drain (sequencer + memory + array)."""
        return self._cfg.seq_latency + self._cfg.operand_read_latency + self._cfg.mac_latency

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        mems = {}
        for mem in Mem:
            lanes = mem in (Mem.ACT0, Mem.ACT1)
            if self._memory is None:
                buf = BufferMemory(mem_shape(cfg, mem), mem_depth(cfg, mem), lanes=lanes)
            else:
                buf = self._memory(mem, mem_shape(cfg, mem), mem_depth(cfg, mem), lanes=lanes)
            mems[mem] = m.submodules[f"mem_{mem.name.lower()}"] = buf
        seq = m.submodules.seq = Sequencer(cfg)
        array = m.submodules.array = MACArray(cfg)
        pool = m.submodules.pool = PoolUnit(cfg)
        drain = m.submodules.drain = Drain(cfg)
        d = seq.desc
        busy = seq.busy
        m.d.comb += [seq.start.eq(self.start), seq.first.eq(self.first), seq.last.eq(self.last),
                     self.busy.eq(busy), self.total.eq(seq.total)]

        # Host access (idle only) or the engine's ports.
        # Reads: each readable buffer's data registered as it leaves the block RAM (no logic
        # after a block RAM's clock-to-out, 5.8 ns on the ECP5 at speed 6), then a one-hot
        # AND-OR from flip-flops (``host_mem`` holds still through a READ).
        sel_d = Signal(len(HOST_READABLE))
        m.d.sync += sel_d.eq(Cat(*(self.host_mem == mem for mem in HOST_READABLE)))
        # (the activation banks' registers are the operand path's too, below)
        read_q, rdata = {}, 0
        for k, mem in enumerate(HOST_READABLE):
            read_q[mem] = Signal(mem_width(cfg, mem), name=f"{mem.name.lower()}_q")
            m.d.sync += read_q[mem].eq(Value.cast(mems[mem].r_data))
            rdata = rdata | Mux(sel_d[k], read_q[mem], 0)
        m.d.comb += self.host_rdata.eq(rdata)
        for mem in Mem:
            buf = mems[mem]
            host_we = ~busy & self.host_we & (self.host_mem == mem)
            m.d.comb += [buf.r_addr.eq(self.host_addr), buf.w_addr.eq(self.host_addr),
                         buf.w_data.eq(self.host_wdata)]
            m.d.comb += buf.w_en.eq(Mux(host_we, (1 << len(buf.w_en)) - 1, 0))

        # The weight address one cycle late, so the weight word arrives with the activation
        # banks' registered words.
        w_addr_d = Signal.like(seq.w_addr)
        m.d.sync += w_addr_d.eq(seq.w_addr)
        with m.If(busy):
            m.d.comb += [
                mems[Mem.PROG].r_addr.eq(seq.desc_addr),
                mems[Mem.WEIGHT].r_addr.eq(w_addr_d),
                mems[Mem.ACT0].r_addr.eq(seq.act_addr),
                mems[Mem.ACT1].r_addr.eq(seq.act_addr),
                mems[Mem.BIAS].r_addr.eq(drain.p_addr),
                mems[Mem.RQ].r_addr.eq(drain.p_addr),
                mems[Mem.CYCLES].w_addr.eq(seq.cnt_addr),
                mems[Mem.CYCLES].w_data.eq(seq.cnt_data),
                mems[Mem.CYCLES].w_en.eq(seq.cnt_we),
                mems[Mem.ACC].w_addr.eq(drain.acc_addr),
                mems[Mem.ACC].w_data.eq(drain.acc_data),
                mems[Mem.ACC].w_en.eq(drain.acc_en),
            ]
            for buf_mem, sel in ((Mem.ACT0, 0), (Mem.ACT1, 1)):
                buf = mems[buf_mem]
                m.d.comb += [buf.w_addr.eq(drain.act_addr), buf.w_data.eq(drain.act_data),
                             buf.w_en.eq(Mux(d.dst_buf == sel, drain.act_en, 0))]
        m.d.comb += seq.desc_data.eq(mems[Mem.PROG].r_data)

        # Operands: the read latency after the sequencer's addresses: the memory's, then the
        # activation banks' words registered as they leave the block RAMs (the bank and
        # padding mux after a block RAM's clock-to-out was the ECP5's longest path at W8A8).
        step = _delay(m, seq.step, cfg.operand_read_latency, "step")
        meta = _delay(m, seq.meta, cfg.operand_read_latency, "meta")
        act = Signal(act_layout(cfg))
        raw = Mux(step.bank, read_q[Mem.ACT1], read_q[Mem.ACT0])
        m.d.comb += act.eq(Mux(step.pad, 0, raw))
        operands = Signal(operand_layout(cfg))
        m.d.comb += [operands.act.eq(act), operands.weight.eq(mems[Mem.WEIGHT].r_data),
                     operands.first.eq(step.first), operands.last.eq(step.last),
                     operands.signed.eq(step.signed), operands.e.eq(step.e)]
        # The layer's op decoded into registered flags (layer constants: the descriptor is
        # latched cycles before the first issue slot, and the previous layer has drained;
        # the decode in front of the drain's input mux was the iCE40's longest path).
        is_mac, joins, is_add, is_max = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [is_mac.eq(d.op == Op.MAC.value),  # MAX, SUM and ADD: the pool unit
                     joins.eq(Cat(*(d.op == op.value for op in JOINING_OPS)).any()),
                     is_add.eq(d.op == Op.ADD.value), is_max.eq(d.op == Op.MAX.value)]
        m.d.comb += [array.i.valid.eq(step.valid & is_mac), array.i.payload.eq(operands),
                     array.digits.eq(d.digits)]
        # The pool unit is shallower than the array: delay its operands to the same latency.
        # (the activation word and the step control only: the pool unit takes no weights)
        pool_in = Signal(operand_layout(cfg))
        m.d.comb += [pool_in.act.eq(operands.act), pool_in.first.eq(operands.first),
                     pool_in.last.eq(operands.last), pool_in.signed.eq(operands.signed)]
        pool_ops = _delay(m, pool_in, array.latency - pool.latency, "pool_ops")
        pool_valid = _delay(m, step.valid & ~is_mac, array.latency - pool.latency, "pool_v")
        m.d.comb += [pool.i.valid.eq(pool_valid), pool.i.payload.eq(pool_ops),
                     # an add's inputs are one-step sums (the pool joins their digits)
                     pool.sum.eq(joins),
                     pool.digits.eq(d.digits)]

        meta_out = Signal(meta_layout(cfg))
        m.d.comb += meta_out.eq(_delay(m, meta, array.latency, "meta_arr"))
        vec = Signal(drain_in_layout(cfg))
        with m.If(is_mac):
            m.d.comb += [vec.acc[r].eq(array.o.payload[r]) for r in range(cfg.rows)]
        with m.Else():
            m.d.comb += [vec.acc[c].eq(pool.o.payload[c]) for c in range(cfg.cols)]
        m.d.comb += [
            vec.meta.eq(meta_out),
            drain.i.valid.eq(array.o.valid | pool.o.valid), drain.i.payload.eq(vec),
            drain.bias_en.eq(d.bias_en), drain.requant_en.eq(d.requant_en),
            drain.to_acc.eq(d.to_acc), drain.p_base.eq(d.p_base),
            drain.lo.eq(d.lo.as_signed()), drain.hi.eq(d.hi.as_signed()),
            drain.pair.eq(is_add),
            *([drain.group.eq((is_mac & d.requant_en & ~d.to_acc) | is_add),
               drain.group_max.eq(is_max)] if cfg.drain_lanes > 1 else []),
            drain.odigits.eq(d.odigits),
            drain.bias.eq(mems[Mem.BIAS].r_data), drain.rq.eq(mems[Mem.RQ].r_data),
        ]

        return m

"""The drain: result vectors out of the array or pool unit, one element per cycle, to memory.

Each element gets its channel's bias (MAC layers), goes through the single requantizer (one
wide ``acc x M`` multiplier for the whole design instead of one per PE) or bypasses it (max
pooling, logits), and is written to its lane of an activation word or to the logits memory.

For an add (``pair``) the vector of input A arrives one cycle before the vector of input B
(elements of a tensor wider than the lanes arrive joined, one value per lane);
the drain keeps A's lanes and emits ``A_0, B_0, A_1, B_1, ...``, each rescaled with its own
input's ``(M, s)`` (parameter entries ``p_base`` and ``p_base + 1``); the requantizer sums
each pair before the clamp (:func:`quantflow.numerics.add_requantize`) and one lane is written
per pair.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.data import ArrayLayout as data_array
from amaranth.lib.wiring import In, Out

from .layouts import (acc_shape, acc_vector_layout, act_addr_bits, act_layout, drain_in_layout,
                      lane_bits, rq_layout)
from quantflow.schedule import out_position

from .requant import Requantizer

__all__ = ["Drain"]


class Drain(wiring.Component):
    """Serialize ``meta.n`` results; bias, requantize, write. Latency ``drain_latency``.

    Members
    -------
    i : In(stream.Signature(drain_in_layout, always_ready=True)) — a vector arrives at most
        every ``max(steps, n)`` cycles, and its first element leaves in the cycle it arrives,
        so the drain is always free when the next one comes.
    bias_en, requant_en, to_acc, pair : In(1); p_base : In(param address);
        lo, hi : In(signed(clamp_bits)) — layer constants from the descriptor (``pair``: an
        add); odigits : In(digit_bits) — each element fills ``odigits`` adjacent lanes (its
        digits, low first: a tensor wider than the lanes), ``cols // odigits`` elements per
        word (:func:`quantflow.schedule.out_position`).
    p_addr : Out — bias / requantization parameter address; bias, rq : In — their data.
    act_addr, act_en (one per lane), act_data : Out — activation write (dst buffer chosen
        by the core); acc_addr, acc_data, acc_en : Out — logits write.
    busy : Out(1) — elements still in flight.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        pbits = cfg.addr_bits(cfg.param_depth)
        super().__init__({
            "i": In(stream.Signature(drain_in_layout(cfg), always_ready=True)),
            "bias_en": In(1), "requant_en": In(1), "to_acc": In(1), "pair": In(1),
            "p_base": In(pbits), "lo": In(signed(cfg.clamp_bits)),
            "hi": In(signed(cfg.clamp_bits)),
            "odigits": In(cfg.digit_bits),
            "p_addr": Out(pbits), "bias": In(acc_shape(cfg)), "rq": In(rq_layout(cfg)),
            "act_addr": Out(cfg.addr_bits(cfg.act_depth)), "act_en": Out(cfg.cols),
            "act_data": Out(act_layout(cfg)),
            "acc_addr": Out(cfg.addr_bits(cfg.acc_depth)), "acc_en": Out(1),
            "acc_data": Out(acc_shape(cfg)),
            "busy": Out(1),
        })

    @property
    def latency(self):
        return self._cfg.drain_latency

    def elaborate(self, platform):  # one pipeline, kept in one place (~120 lines)
        cfg = self._cfg
        m = Module()
        n_lanes = cfg.lanes_max
        abits = act_addr_bits(cfg)
        vec = Signal(acc_vector_layout(cfg, n_lanes))
        # An add's input A, kept while the pairs drain (an element is at most the widest
        # tensor's digits joined, plus a sign: the pool unit joins digit lanes into values).
        va_bits = cfg.act_bits * cfg.act_digits_max + 1
        va = Signal(data_array(signed(va_bits), cfg.cols))
        phase = Signal()  # pair mode: the next element is B's
        cnt = Signal(cfg.drain_span.bit_length())
        ch = Signal(cfg.count_bits)
        word = Signal(abits)
        lane = Signal(lane_bits(cfg))
        acc_addr = Signal(abits)

        # The element leaving this cycle: straight from an arriving vector, or from a register.
        e_valid, e_val, e_second = Signal(), Signal(acc_shape(cfg)), Signal()
        e_ch, e_word, e_lane, e_acc = (Signal.like(ch), Signal.like(word), Signal.like(lane),
                                       Signal.like(acc_addr))
        src = Signal(acc_vector_layout(cfg, n_lanes))
        meta = self.i.payload.meta
        inc = self.i.payload.acc
        shift_vec = Cat(*[src[j + 1] for j in range(n_lanes - 1)], src[n_lanes - 1])
        shift_va = Cat(*[va[j + 1] for j in range(cfg.cols - 1)], va[cfg.cols - 1])
        m.d.comb += src.eq(vec)
        with m.If(self.i.valid & self.pair & ~meta.b):
            # input A of an add: keep its lanes, emit nothing yet
            m.d.sync += va.eq(Cat(*[inc[j][:va_bits] for j in range(cfg.cols)]))
        with m.Elif(self.i.valid):
            m.d.comb += [e_valid.eq(meta.n != 0), e_ch.eq(meta.ch), e_word.eq(meta.word),
                         e_lane.eq(meta.lane), e_acc.eq(meta.acc_addr)]
            with m.If(self.pair):  # input B: A_0 leaves now, B_0 next
                m.d.comb += e_val.eq(va[0])
                m.d.sync += [cnt.eq(Mux(meta.n != 0, 2 * meta.n - 1, 0)), phase.eq(1),
                             vec.eq(inc), va.eq(shift_va)]
            with m.Else():
                m.d.comb += [src.eq(inc), e_val.eq(inc[0])]
                m.d.sync += [cnt.eq(Mux(meta.n != 0, meta.n - 1, 0)), vec.eq(shift_vec)]
        with m.Else():
            m.d.comb += [e_valid.eq(cnt != 0), e_ch.eq(ch), e_word.eq(word),
                         e_lane.eq(lane), e_acc.eq(acc_addr)]
            with m.If(cnt != 0):
                m.d.sync += cnt.eq(cnt - 1)
                with m.If(self.pair & ~phase):
                    m.d.comb += e_val.eq(va[0])
                    m.d.sync += [va.eq(shift_va), phase.eq(1)]
                with m.Else():
                    m.d.comb += [e_val.eq(vec[0]), e_second.eq(self.pair)]
                    m.d.sync += [vec.eq(shift_vec), phase.eq(0)]
        # The position advances after each element, or after each pair's B element.
        advance = ~self.pair | e_second
        lane_last = Signal(lane_bits(cfg) + 1)  # the word's last element starts here
        with m.Switch(self.odigits):
            for n in range(2, cfg.act_digits_max + 1):
                with m.Case(n):
                    m.d.comb += lane_last.eq(out_position(cfg, 1, n)["lane_last"])
            with m.Default():
                m.d.comb += lane_last.eq(out_position(cfg, 1, 1)["lane_last"])
        last_lane = e_lane == lane_last
        m.d.sync += [
            ch.eq(e_ch + advance),
            lane.eq(Mux(advance, Mux(last_lane, 0, e_lane + self.odigits), e_lane)),
            word.eq(Mux(advance & last_lane, e_word + 1, e_word)),
            acc_addr.eq(e_acc + advance),
        ]
        # Stage 0: the parameter address registered, so the element's selection (from the
        # pool's valid through the channel mux) and the base add end at a flip-flop instead
        # of running on into the block RAM's address (the iCE40's critical path).
        s0_valid, s0_val, s0_second = Signal(), Signal(acc_shape(cfg)), Signal()
        s0_word, s0_lane, s0_acc = Signal.like(word), Signal.like(lane), Signal.like(acc_addr)
        s0_paddr = Signal.like(self.p_addr)
        m.d.sync += [s0_valid.eq(e_valid), s0_val.eq(e_val), s0_word.eq(e_word),
                     s0_lane.eq(e_lane), s0_acc.eq(e_acc), s0_second.eq(e_second),
                     s0_paddr.eq(self.p_base + Mux(self.pair, e_second, e_ch))]
        m.d.comb += self.p_addr.eq(s0_paddr)

        # Stage 1: parameters arrive (memory latency 1).
        s1_valid, s1_val, s1_second = Signal(), Signal(acc_shape(cfg)), Signal()
        s1_word, s1_lane, s1_acc = Signal.like(word), Signal.like(lane), Signal.like(acc_addr)
        m.d.sync += [s1_valid.eq(s0_valid), s1_val.eq(s0_val), s1_word.eq(s0_word),
                     s1_lane.eq(s0_lane), s1_acc.eq(s0_acc), s1_second.eq(s0_second)]
        # Stage 2: bias added and registered (keeps the add out of the multiplier's path).
        s2_sum = Signal(acc_shape(cfg))  # fits: the reference bounds acc + bias by acc_bits
        s2_valid, s2_rq, s2_second = Signal(), Signal.like(self.rq), Signal()
        s2_word, s2_lane, s2_acc = Signal.like(word), Signal.like(lane), Signal.like(acc_addr)
        m.d.sync += [s2_sum.eq(s1_val + Mux(self.bias_en, self.bias, 0)), s2_rq.eq(self.rq),
                     s2_valid.eq(s1_valid), s2_word.eq(s1_word), s2_lane.eq(s1_lane),
                     s2_acc.eq(s1_acc), s2_second.eq(s1_second)]
        m.submodules.requant = rq = Requantizer(cfg)
        m.d.comb += [rq.i.valid.eq(s2_valid), rq.i.payload.acc.eq(s2_sum),
                     rq.i.payload.mult.eq(s2_rq.mult), rq.i.payload.shift.eq(s2_rq.shift),
                     rq.i.payload.second.eq(s2_second), rq.pair.eq(self.pair),
                     rq.lo.eq(self.lo), rq.hi.eq(self.hi)]

        # Bypass path delayed alongside the requantizer.
        pipe = [(s2_valid & (~self.pair | s2_second), s2_sum, s2_word, s2_lane, s2_acc)]
        for n in range(rq.latency):
            prev = pipe[-1]
            nxt = tuple(Signal.like(s, name=f"d{n}_{i}") for i, s in enumerate(prev))
            m.d.sync += [a.eq(b) for a, b in zip(nxt, prev, strict=True)]
            pipe.append(nxt)
        w_valid, w_sum, w_word, w_lane, w_acc = pipe[-1]
        b, dmax = cfg.act_bits, cfg.act_digits_max
        # The value written, sign-extended over every digit it may need (a bypassed element,
        # max pooling's, is one lane: odigits is 1 then).
        value = Signal(signed(b * dmax))
        m.d.comb += value.eq(Mux(self.requant_en, rq.o.payload, w_sum[:b]))
        mask = Signal(cfg.cols)  # the element's lanes, from lane 0
        m.d.comb += self.act_addr.eq(w_word)
        if dmax == 1:
            m.d.comb += [mask.eq(1)] + [self.act_data[j].eq(value) for j in range(cfg.cols)]
        else:  # lane j holds digit j % odigits (an element starts at a multiple of odigits)
            with m.Switch(self.odigits):
                for n in range(2, dmax + 1):
                    with m.Case(n):
                        m.d.comb += mask.eq((1 << n) - 1)
                        m.d.comb += [self.act_data[j].eq(value[b * (j % n):b * (j % n + 1)])
                                     for j in range(cfg.cols)]
                with m.Default():
                    m.d.comb += [mask.eq(1)] + [self.act_data[j].eq(value)
                                                for j in range(cfg.cols)]
        m.d.comb += [
            self.act_en.eq(Mux(w_valid & ~self.to_acc, mask << w_lane, 0)),
            self.acc_addr.eq(w_acc), self.acc_data.eq(w_sum),
            self.acc_en.eq(w_valid & self.to_acc),
        ]
        valids = [s0_valid, s1_valid] + [p[0] for p in pipe]
        m.d.comb += self.busy.eq(self.i.valid | (cnt != 0) | Cat(*valids).any())
        return m
